"""show: a picture inline when the code runs in a Jupyter notebook, nothing when it runs as a script.

The demos save every picture to a file and also call show(), so the same file reads well both ways.
"""

import io


def in_notebook():
    """True inside a Jupyter kernel (IPython with a kernel attached), False in a plain Python script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def show(picture):
    """Display ``picture`` inline in a notebook: a matplotlib Figure (as PNG, whatever the backend), a graph
    from draw_graph (as SVG), or a page from explore()/attention_view(). A no-op in a script. Returns None, so
    a cell ending in show(...) displays the picture once."""
    if not in_notebook():
        return
    from IPython.display import Image, display

    if hasattr(picture, "savefig"):  # a Figure: PNG bytes, since a demo may have chosen the Agg backend
        buf = io.BytesIO()
        picture.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        display(Image(data=buf.getvalue(), format="png"))
    else:
        display(picture)
