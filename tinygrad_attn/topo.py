"""Topological order without recursion: one function for the Tensor engine, the Value engine and the drawings."""


def topological_order(root, parents):
    """Every node ``root`` depends on through ``parents(node)``, each listed after all of its parents.

    An iterative depth-first search, so a 100,000-op chain needs no recursion. A node is marked
    when it is first *visited*, not when it is pushed: a node pushed early by one child and
    reached again through another must still come after everything it depends on.
    """
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)  # all of its parents are already in order
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in parents(node):
            if id(p) not in seen:
                stack.append((p, False))
    return order
