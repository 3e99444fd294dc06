"""``tinygrad-attn demo``: list the demos, or run one, optionally pausing between its cells.

Demos are jupytext percent scripts: ``# %%`` starts a code cell and
``# %% [markdown]`` a prose cell whose lines are ``#`` comments. They open as
notebooks in Jupyter or VS Code and run top to bottom as ``python demos/NN_name.py``.
Setting TINYGRAD_ATTN_QUICK=1 (``--quick``) makes every demo use small sizes (``env.quick``).
"""

import os
import re
import sys
from pathlib import Path

from ..env import QUICK_VARIABLE

PACKAGE = Path(__file__).parent.parent


def demo_dir():
    """The demos shipped inside the package, or the checkout's demos/ folder."""
    for folder in (PACKAGE / "demos", PACKAGE.parent / "demos"):
        if folder.is_dir() and any(folder.glob("[0-9][0-9]_*.py")):
            return folder
    raise FileNotFoundError("demo: no demos found next to the package; reinstall with pip install .")


def demos():
    """{name: path}, in order: 01_scalars, 02_tensors, ..."""
    return {p.stem: p for p in sorted(demo_dir().glob("[0-9][0-9]_*.py"))}


def find(name):
    """A demo by full name (03_self_attention), number (3, 03) or word (self_attention)."""
    table = demos()
    for stem, path in table.items():
        number, _, word = stem.partition("_")
        if name in (stem, word, number, number.lstrip("0")):
            return path
    raise SystemExit(f"demo: no demo called {name!r}; the demos are: {', '.join(table)} "
                     f"(run one with: tinygrad-attn demo {next(iter(table), 'NAME')})")


def cells(source):
    """Split a percent script into (kind, text) cells, kind 'code' or 'markdown'."""
    parts = re.split(r"^# %%(.*)$", source, flags=re.MULTILINE)
    out = [("code", parts[0])] if parts[0].strip() else []
    for header, body in zip(parts[1::2], parts[2::2]):
        out.append(("markdown" if "[markdown]" in header else "code", body))
    return out


def _prose(text):
    return "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.strip().splitlines())


def run_demo(path, step=False, stream=sys.stdout):
    """Run a demo cell by cell in one namespace; with ``step``, wait for Enter between cells. A cell that
    raises SystemExit(0) ends the demo there, as it ends the script run with python."""
    namespace = {"__name__": "__main__", "__file__": str(path)}
    all_cells = cells(Path(path).read_text())
    for i, (kind, text) in enumerate(all_cells, 1):
        if kind == "markdown":
            print("\n" + _prose(text) + "\n", file=stream)
        else:
            if step:
                print(f"---- cell {i}/{len(all_cells)} ----\n{text.strip()}\n----", file=stream)
            try:
                exec(compile(text, f"{path} (cell {i})", "exec"), namespace)
            except SystemExit as stop:  # a demo that cannot go on (a package is missing) says why and stops
                if stop.code not in (None, 0):
                    raise
                break
        if step and i < len(all_cells) and _answer("[Enter] next cell, [q] quit: ") == "q":
            break
    return namespace


def _answer(prompt):
    """What the person typed, lower-cased; the end of input (Ctrl-D, a closed pipe) counts as 'q'."""
    try:
        return input(prompt).strip().lower()
    except EOFError:
        print(file=sys.stderr)
        return "q"


def add_arguments(parser):
    parser.add_argument("name", nargs="?", help="the demo to run (a name or number); omit to list them")
    parser.add_argument("--step", action="store_true", help="pause after each cell until you press Enter")
    parser.add_argument("--quick", action="store_true", help="small sizes, as the test suite runs them")


def run(args):
    if args.name is None:
        print("The demos (run one with: tinygrad-attn demo NAME [--step]):")
        for stem, path in demos().items():
            title = next((line.lstrip("# ").strip() for line in path.read_text().splitlines()
                          if line.startswith("# #")), "")
            print(f"  {stem:28s} {title}")
        return 0
    if args.quick:
        os.environ[QUICK_VARIABLE] = "1"
    run_demo(find(args.name), step=args.step)
    return 0
