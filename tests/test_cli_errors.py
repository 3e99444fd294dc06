"""Bad input to the tinygrad-attn command: each is one line saying what is wrong, never a traceback or a silent
wrong answer. Tables: (command line) -> the fragment of the message a user must see."""

import os

import pytest

from tinygrad_attn import cli

TRAIN = ["train", "copy", "--no-progress"]

# argparse refuses these before anything runs: exit code 2, its usage, then one line naming the option
REFUSED_BY_ARGPARSE = [
    (TRAIN + ["--clip", "-1"], "argument --clip: must be a finite number >= 0, got '-1'"),
    (TRAIN + ["--clip", "nan"], "argument --clip: must be a finite number >= 0"),
    (TRAIN + ["--eval-every", "0"], "argument --eval-every: must be an integer >= 1, got '0'"),
    (TRAIN + ["--warmup", "0"], "argument --warmup: must be an integer >= 1"),
    (TRAIN + ["--warmup", "-10"], "argument --warmup: must be an integer >= 1, got '-10'"),
    (TRAIN + ["--d-model", "0"], "argument --d-model: must be an integer >= 1"),
    (TRAIN + ["--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
    (TRAIN + ["--eval-size", "0"], "argument --eval-size: must be an integer >= 1"),
    (TRAIN + ["--steps", "-5"], "argument --steps: must be an integer >= 1, got '-5'"),
    (TRAIN + ["--steps", "2.5"], "argument --steps: must be an integer >= 1, got '2.5'"),
    (TRAIN + ["--layers", "-1"], "argument --layers: must be an integer >= 1"),
    (TRAIN + ["--num-decoder-layers", "0"], "argument --num-decoder-layers: must be an integer >= 1"),
    (TRAIN + ["--heads", "0"], "argument --nhead/--heads: must be an integer >= 1"),
    (TRAIN + ["--d-ff", "0"], "argument --dim-feedforward/--d-ff: must be an integer >= 1"),
    (TRAIN + ["--beam-size", "0"], "argument --beam-size: must be an integer >= 1"),
    (TRAIN + ["--seed", "-1"], "argument --seed: must be an integer >= 0"),
    (TRAIN + ["--lr-factor", "nan"], "argument --lr-factor: must be a finite number > 0, got 'nan'"),
    (TRAIN + ["--lr-factor", "inf"], "argument --lr-factor: must be a finite number > 0, got 'inf'"),
    (TRAIN + ["--lr-factor", "0"], "argument --lr-factor: must be a finite number > 0"),
    (TRAIN + ["--dropout", "1"], "argument --dropout: must be a finite number in [0, 1), got '1'"),
    (TRAIN + ["--label-smoothing", "1.5"], "argument --label-smoothing: must be a finite number in [0, 1]"),
    (TRAIN + ["--stop-after", "0"], "argument --stop-after: must be an integer >= 1, got '0'"),
    (TRAIN + ["--stop-after", "-1"], "argument --stop-after: must be an integer >= 1"),
    (TRAIN + ["--schedule", "linear"], "argument --schedule: invalid choice: 'linear'"),
    (["graph", "--depth", "-1"], "argument --depth: must be an integer >= 0, got '-1'"),
    (["graph", "--max-nodes", "-5"], "argument --max-nodes: must be an integer >= 1, got '-5'"),
    (["graph", "--max-nodes", "many"], "argument --max-nodes: must be an integer >= 1, got 'many'"),
    (["graph", "--d-model", "0"], "argument --d-model: must be an integer >= 1"),
    (["graph", "--layers", "0"], "argument --layers: must be an integer >= 1"),
    (["graph", "--heads", "-2"], "argument --heads: must be an integer >= 1"),
    (["tour", "--steps", "0"], "argument --steps: must be an integer >= 1"),
    (["graph", "--show", "shape,grads"], "argument --show: 'grads' is not one of shape, data, grad, grad_stats"),
    (["attention", "c.npz", "x", "--heads", "a"], "argument --heads: must be comma-separated integers >= 0"),
    (["attention", "c.npz", "x", "--heads", "1,,2"], "argument --heads: must be comma-separated integers >= 0"),
    (["attention", "c.npz", "x", "--heads", "-1"], "argument --heads: must be comma-separated integers >= 0"),
    (["attention", "c.npz", "x", "--heads", "2,2"], "argument --heads: names a head twice"),
]


@pytest.mark.parametrize("argv, fragment", REFUSED_BY_ARGPARSE, ids=[" ".join(a[3:] if a[0] == "train" else a)
                                                                      for a, _ in REFUSED_BY_ARGPARSE])
def test_bad_option_values_are_refused_by_argparse_in_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0].startswith("usage: tinygrad-attn ") and all(line.startswith(" ") for line in lines[1:-1])
    assert lines[-1] == f"tinygrad-attn {argv[0]}: error: " + lines[-1].split(": error: ", 1)[1]
    assert fragment in lines[-1] and captured.out == ""


@pytest.mark.parametrize("settings, fragment", [
    ({"clip": -1.0}, "train: clip must be a finite number >= 0, got -1.0"),
    ({"lr_factor": float("nan")}, "train: lr_factor must be a finite number > 0, got nan"),
    ({"steps": 0}, "train: steps must be an integer >= 1, got 0"),
    ({"d_model": 32.0}, "train: d_model must be an integer >= 1, got 32.0"),
    ({"eval_every": True}, "train: eval_every must be an integer >= 1, got True"),
    ({"schedule": "linear"}, "train: schedule must be 'noam' or 'cosine', got 'linear'"),
])
def test_the_library_refuses_the_same_settings(settings, fragment):
    from tinygrad_attn.train import config_for

    with pytest.raises(ValueError) as error:
        config_for("copy", **settings)
    assert fragment in str(error.value)


# ---------------------------------------------------------------- checkpoints that are zip files but wrong inside

import io  # noqa: E402
import json  # noqa: E402
import zipfile  # noqa: E402

import numpy as np  # noqa: E402

from tinygrad_attn.serialization import load, save  # noqa: E402

TINY_CLI = ["--steps", "4", "--layers", "1", "--d-model", "16", "--d-ff", "32", "--heads", "2", "--batch-size", "8",
            "--eval-size", "10", "--beam-size", "1", "--eval-every", "2", "--no-progress"]


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    assert cli.main(["train", "copy", *TINY_CLI, "--stop-after", "2", "--out", str(out)]) == 0
    return load(out / "checkpoint.npz")


def with_config(change):
    def corrupt(state):
        cfg = json.loads(str(state["config"]))
        return dict(state, config=np.asarray(json.dumps(change(cfg))))
    return corrupt


def without(key):
    return lambda state: {k: v for k, v in state.items() if k != key}


def huge_header(path):
    """Rewrite the generator weight's .npy header to declare 10^12 float32s; the bytes stay as they were."""
    members = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            members[info.filename] = archive.read(info)
    raw = members["model.generator.weight.npy"]
    version = np.lib.format.read_magic(io.BytesIO(raw))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    data_start = len(raw) - 4 * np.prod(load_shape(raw, version))
    members["model.generator.weight.npy"] = header.getvalue() + raw[int(data_start):]
    with zipfile.ZipFile(path, "w") as archive:
        for name, body in members.items():
            archive.writestr(name, body)


def load_shape(raw, version):
    f = io.BytesIO(raw)
    np.lib.format.read_magic(f)
    return (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)[0]


OK = None  # the command does not need this entry: it runs
# kind: (change to the saved state, or a function of the path; fragment from `attention`; fragment from --resume)
CORRUPT = {
    "missing weight": (without("model.generator.weight"), "missing keys: generator.weight",
                       "missing keys: generator.weight"),
    "d_model 64, weights 16 wide": (with_config(lambda c: dict(c, d_model=64)), "shape mismatches",
                                    "d_model=64 there, 16 here"),
    "missing rng entry": (without("rng.data"), OK, "lacks ['rng.data']"),
    "config is a list": (with_config(lambda c: [1, 2]), "its config is a JSON list", "its config is a JSON list"),
    "config lacks a key": (with_config(lambda c: {k: v for k, v in c.items() if k != "nhead"}),
                           "its config lacks ['nhead']", "its config lacks ['nhead']"),
    "config with a negative size": (with_config(lambda c: dict(c, d_model=-5)), "d_model must be an integer >= 1",
                                    "d_model must be an integer >= 1"),
    "config not JSON": (lambda s: dict(s, config=np.asarray("{d_model: 16")), "its config is not JSON",
                        "its config is not JSON"),
    "bad rng state": (lambda s: dict(s, **{"rng.library": np.asarray('{"bit_generator": "PCG64", "state": 5}')}),
                      OK, "rng.library is not a random generator's state"),
    "npy header of 10^12 elements": (huge_header, "declares shape (1000000, 1000000)",
                                     "declares shape (1000000, 1000000)"),
    "step -5": (lambda s: dict(s, step=np.asarray(-5)), OK, "its step must be one integer in [0, 4], got -5"),
    "step 1e30": (lambda s: dict(s, step=np.asarray(1e30)), OK, "its step must be one integer in [0, 4], got 1e+30"),
    "losses missing": (without("losses"), OK, "lacks ['losses']"),
    "losses of another length": (lambda s: dict(s, losses=np.zeros(7)), OK, "must hold the 2 losses of its steps"),
}


def damaged(tmp_path, good_checkpoint, kind):
    out = tmp_path / "run"
    out.mkdir()
    path = out / "checkpoint.npz"
    change = CORRUPT[kind][0]
    save(good_checkpoint, path)
    if change.__name__ == "huge_header":
        change(path)
    else:
        save(change(good_checkpoint), path)
    return out, path


def one_line_error(capsys, code, path, fragment):
    err = capsys.readouterr().err
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("tinygrad-attn: ") and "Traceback" not in err, err
    assert str(path) in err and fragment in err, err


@pytest.mark.parametrize("kind", CORRUPT)
def test_attention_on_a_damaged_checkpoint_is_one_line(kind, tmp_path, good_checkpoint, capsys):
    pytest.importorskip("matplotlib")
    out, path = damaged(tmp_path, good_checkpoint, kind)
    code = cli.main(["attention", str(path), "12", "-o", str(tmp_path / "a.png")])
    fragment = CORRUPT[kind][1]
    if fragment is OK:
        assert code == 0 and (tmp_path / "a.png").is_file()
    else:
        one_line_error(capsys, code, path, fragment)


@pytest.mark.parametrize("kind", CORRUPT)
def test_resuming_a_damaged_checkpoint_is_one_line_and_changes_nothing(kind, tmp_path, good_checkpoint, capsys):
    out, path = damaged(tmp_path, good_checkpoint, kind)
    before = path.read_bytes()
    code = cli.main(["train", "copy", *TINY_CLI, "--out", str(out), "--resume"])
    one_line_error(capsys, code, path, CORRUPT[kind][2])
    assert path.read_bytes() == before


# ---------------------------------------------------------------- run-time errors: one line, exit code 1

@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "copy", *TINY_CLI, "--out", str(out)]) == 0
    return out / "checkpoint.npz"


@pytest.mark.parametrize("args, fragment", [
    (["--heads", "7"], "head 7 does not exist: the model has 2 heads, 0 to 1"),
    (["--heads", "1,2"], "head 2 does not exist: the model has 2 heads, 0 to 1"),
    (["-o", "{tmp}"], "is a directory; give an image file such as attention.png"),
    (["-o", "{tmp}/a.xyz"], "-o: unknown image format '.xyz'; use .png, .svg, .pdf or .jpg"),
    (["--masks", "{tmp}"], "is a directory; give an image file such as attention.png"),
])
def test_attention_output_and_heads_errors(args, fragment, checkpoint_path, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = cli.main(["attention", str(checkpoint_path), "12", *(["-o", str(tmp_path / "a.png")]), *args])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and fragment in err, err
    assert not list(tmp_path.glob("a.*"))


def test_attention_names_the_file_it_really_wrote(checkpoint_path, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from tinygrad_attn.viz import attention

    monkeypatch.chdir(tmp_path)
    masks = []
    draw = attention.plot_masks
    monkeypatch.setattr(attention, "plot_masks", lambda tokens, **kw: masks.append(tokens) or draw(tokens, **kw))
    assert cli.main(["attention", str(checkpoint_path), "12", "-o", "pic", "--masks", "m"]) == 0
    assert masks[0][0] == "<s>" and masks[0][-2:] == ["</s>", "<pad>"]  # a decoder input that can occur
    out = capsys.readouterr().out
    assert "wrote pic.png" in out and "wrote m.png" in out
    assert (tmp_path / "pic.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "m.png").is_file()


@pytest.mark.parametrize("out, fragment", [
    ("{tmp}", "is a directory; give a file such as graph.svg"),
    ("{tmp}/g.xyz", "-o: unknown format '.xyz'; use .svg, .png, .pdf, .dot, .gv or .html"),
])
def test_graph_output_errors(out, fragment, tmp_path, capsys):
    code = cli.main(["graph", "neuron", "-o", out.replace("{tmp}", str(tmp_path))])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and fragment in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, fragment", [
    (["tour", "--steps", "2", "--out", "{file}"], "tour: --out {file} is a file; give a folder"),
    (["train", "copy", "--steps", "2", "--resume"], "train: resume=True (--resume) needs out (--out DIR)"),
])
def test_more_run_time_errors_are_one_line(argv, fragment, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("notes")
    code = cli.main([a.replace("{file}", str(afile)) for a in argv])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and fragment.replace("{file}", str(afile)) in err, err


ON_LINUX_PROC = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")


def _sys_refuses_files():
    """Linux's /sys refuses a new file with 'Permission denied', even to root, where chmod would not."""
    try:
        open("/sys/tinygrad_attn_probe", "w").close()
    except PermissionError:
        return True
    except OSError:
        return False
    os.remove("/sys/tinygrad_attn_probe")
    return False


ON_LINUX_SYS = pytest.mark.skipif(not _sys_refuses_files(), reason="needs Linux's /sys, which refuses new files")
# a file the system refused: (command line, the line a user sees after "tinygrad-attn: "); {file} is a regular file,
# so {file}/x cannot be created on any system; {run} is a folder that `train --out` wrote, {tmp} an empty folder
FILE_ERRORS = [
    (["train", "copy", "--steps", "2", "--no-progress", "--out", "{file}/run"],
     "train: not a directory: {file}/run (--out must be a folder you can create and write to, such as "
     "--out runs/copy)"),
    pytest.param(["train", "copy", "--steps", "2", "--no-progress", "--out", "/proc/x"],
                 "train: no such file or directory: /proc/x (--out must be a folder you can create and write to, "
                 "such as --out runs/copy)", marks=ON_LINUX_PROC),
    (["tour", "--steps", "2", "--out", "{file}/tour"],
     "tour: not a directory: {file}/tour (--out must be a folder you can create and write to, such as --out tour)"),
    (["graph", "neuron", "-o", "{file}/g.svg"], "graph: file exists: {file} (-o must name a file in a folder you can "
     "write to, such as -o graph.svg; its .dot text goes beside it)"),
    (["attention", "{tmp}/missing.npz", "12"], "attention: there is no checkpoint file {tmp}/missing.npz; train a "
     "model first (tinygrad-attn train copy --out runs/copy) and give its runs/copy/checkpoint.npz"),
    (["attention", "{run}", "12"], "attention: there is no checkpoint file {run}; did you mean {run}/checkpoint.npz?"),
    (["attention", "{run}/checkpoint.npz", "12", "-o", "{file}/a.png"], "attention: not a directory: {file}/a.png "
     "(the checkpoint must be a file you can read; -o and --masks files in a folder you can write to)"),
    pytest.param(["attention", "{run}/checkpoint.npz", "12", "-o", "/proc/a.png"], "attention: no such file or "
                 "directory: /proc/a.png (the checkpoint must be a file you can read; -o and --masks files in a "
                 "folder you can write to)", marks=ON_LINUX_PROC),
    pytest.param(["attention", "{run}/checkpoint.npz", "12", "-o", "/sys/a.png"], "attention: permission denied: "
                 "/sys/a.png (the checkpoint must be a file you can read; -o and --masks files in a folder you can "
                 "write to)", marks=ON_LINUX_SYS),
    pytest.param(["attention", "{run}/checkpoint.npz", "12", "-o", "/sys/a.html"], "attention: permission denied: "
                 "/sys/a.html (the checkpoint must be a file you can read; -o and --masks files in a folder you can "
                 "write to)", marks=ON_LINUX_SYS),
    pytest.param(["graph", "neuron", "-o", "/sys/g.svg"], "graph: permission denied: /sys/g.dot (-o must name a file "
                 "in a folder you can write to, such as -o graph.svg; its .dot text goes beside it)",
                 marks=ON_LINUX_SYS),
]


@pytest.mark.parametrize("argv, line", FILE_ERRORS, ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else None)
def test_a_file_the_system_refuses_is_one_line_naming_the_command_and_the_fix(argv, line, checkpoint_path, tmp_path,
                                                                             capsys):
    if argv[0] == "attention":
        pytest.importorskip("matplotlib")
    afile = tmp_path / "afile"
    afile.write_text("notes")
    empty = tmp_path / "empty"
    empty.mkdir()
    where = {"{file}": str(afile), "{run}": str(checkpoint_path.parent), "{tmp}": str(empty)}

    def fill(text):
        for key, value in where.items():
            text = text.replace(key, value)
        return text

    code = cli.main([fill(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 1 and err.splitlines() == ["tinygrad-attn: " + fill(line)], err
    assert afile.read_text() == "notes" and list(empty.iterdir()) == []


def test_every_command_says_what_its_files_must_be():
    assert set(cli.FILES) == set(cli.COMMANDS)


def test_train_out_naming_a_file_says_so(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("notes")
    code = cli.main(["train", "copy", *TINY_CLI, "--out", str(afile)])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "--out) is a file" in err and "choose a directory" in err and "Errno" not in err
    assert afile.read_text() == "notes"


def test_attention_without_matplotlib_says_what_to_install(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['matplotlib'] = None; from tinygrad_attn.cli import main; "
            f"sys.exit(main(['attention', {str(tmp_path / 'c.npz')!r}, '12']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == ["tinygrad-attn: attention: drawing needs matplotlib: pip install matplotlib "
                                        '(or pip install "tinygrad_attn[viz]")']


@pytest.mark.parametrize("stop_after", [0, -1, 2.5])
def test_the_library_refuses_a_stop_after_that_is_not_a_step(stop_after):
    from tinygrad_attn.train import train

    with pytest.raises(ValueError, match=f"train: stop_after must be an integer >= 1, got {stop_after}"):
        train("copy", steps=3, stop_after=stop_after, progress=False)
