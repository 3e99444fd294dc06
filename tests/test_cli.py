"""The tinygrad-attn command: help for every subcommand, and errors that say what to do instead."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tinygrad_attn.cli import COMMANDS


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinygrad_attn", *args], capture_output=True, text=True, cwd=cwd)


def test_top_level_help_lists_every_command():
    out = cli("--help").stdout
    assert all(name in out for name in COMMANDS) and set(COMMANDS) >= {"tour", "demo", "train", "graph",
                                                                         "attention", "bench"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command):
    done = cli(command, "--help")
    assert done.returncode == 0 and f"tinygrad-attn {command}" in done.stdout and "options:" in done.stdout


def test_a_misspelt_command_suggests_the_right_one():
    done = cli("trian", "copy")
    assert done.returncode == 2
    assert "unknown command 'trian'" in done.stderr and "Did you mean: tinygrad-attn train?" in done.stderr


def test_a_missing_or_foreign_checkpoint_is_one_clear_line(tmp_path):
    done = cli("attention", str(tmp_path / "missing.npz"), "1 May 2020")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "missing.npz" in done.stderr and done.stderr.startswith("tinygrad-attn: ")
    foreign = tmp_path / "notes.npz"
    foreign.write_text("not a checkpoint")
    done = cli("attention", str(foreign), "1 May 2020")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "is not a readable tinygrad_attn checkpoint" in done.stderr


def test_training_into_an_existing_checkpoint_says_to_resume(tmp_path):
    assert cli("train", "copy", "--steps", "2", "--out", str(tmp_path), "--no-progress").returncode == 0
    done = cli("train", "copy", "--steps", "2", "--out", str(tmp_path), "--no-progress")
    assert done.returncode == 1 and "Traceback" not in done.stderr and "--resume" in done.stderr


def test_a_reader_that_stops_early_is_not_an_error():
    proc = subprocess.Popen([sys.executable, "-m", "tinygrad_attn", "demo"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    assert proc.wait() == 0
    assert "Broken pipe" not in proc.stderr.read()


# ---------------------------------------------------------------- lessons and tools apart

ROOT = Path(__file__).parent.parent
LIBRARY = sorted(p for p in (ROOT / "tinygrad_attn").rglob("*.py")  # __main__.py is `python -m`: the command
                 if "cli" not in p.relative_to(ROOT).parts and p.name != "__main__.py")
DEMOS = sorted((ROOT / "demos").glob("[0-9][0-9]_*.py")) + [ROOT / "docs" / "make_figures.py"]


def imported(path):
    """Every module a file imports, absolute (tinygrad_attn.cli.tour) or relative as written (..cli)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_modules_hold_no_command_line_code(path):
    names = imported(path)
    tools = {"argparse"} | ({"subprocess"} if path.name != "graph.py" else set())  # graph.py runs Graphviz's dot
    assert not names & tools, f"{path.name} imports {names & tools}: that belongs in tinygrad_attn/cli/"
    assert not any(n.lstrip(".").split(".")[0] == "cli" for n in names if n.startswith(".")), path.name
    assert "/proc/" not in path.read_text(), f"{path.name} reads /proc: that belongs in tinygrad_attn/cli/"


@pytest.mark.parametrize("path", DEMOS, ids=lambda p: p.name)
def test_demos_and_figures_import_only_library_modules(path):
    assert not [n for n in imported(path) if n.startswith("tinygrad_attn.cli")], path.name
