"""`tinygrad-attn train` as a user runs it: where its lines go, Ctrl-C, a kill during a save, and a resumed
run's summary."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from tinygrad_attn.serialization import load
from tinygrad_attn.train import load_model, train

SMALL = ["--layers", "1", "--d-model", "16", "--d-ff", "32", "--heads", "2", "--batch-size", "8", "--eval-size", "10",
         "--beam-size", "1"]
TINY = {"num_encoder_layers": 1, "num_decoder_layers": 1, "d_model": 16, "dim_feedforward": 32, "nhead": 2,
        "dropout": 0.1, "batch_size": 8, "eval_size": 10, "beam_size": 1, "eval_every": 5, "progress": False}


def start(args, code=""):
    """``tinygrad-attn ARGS`` in a subprocess, after running ``code`` (to slow a save down, say)."""
    script = f"import sys; {code}\nfrom tinygrad_attn.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_summary_is_on_stdout_and_the_human_lines_on_stderr(tmp_path):
    args = ["train", "copy", "--steps", "6", "--eval-every", "2", *SMALL, "--out", str(tmp_path / "run")]
    done = subprocess.run([sys.executable, "-m", "tinygrad_attn", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["steps"] == 6
    err = done.stderr
    assert "{" not in err and "step 2/6: loss " in err and "step 4/6: loss " in err
    assert f"checkpoint: {tmp_path / 'run' / 'checkpoint.npz'} (step 6)" in err


def test_ctrl_c_stops_cleanly_keeps_the_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    args = ["train", "copy", "--steps", "100000", "--eval-every", "3", *SMALL, "--no-progress", "--out", str(out)]
    proc = start(args)
    wait_for(lambda: (out / "checkpoint.npz").exists(), proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr and stdout == ""
    step = int(load(out / "checkpoint.npz")["step"])
    assert step > 0 and step % 3 == 0
    assert stderr.strip().splitlines()[-2:] == [
        f"train: interrupted. The checkpoint {out / 'checkpoint.npz'} holds step {step}; continue with:",
        "  tinygrad-attn " + " ".join(args) + " --resume"]
    model, task, cfg = load_model(out / "checkpoint.npz")
    assert cfg.steps == 100000 and task.name == "copy"


def test_a_kill_during_a_save_leaves_no_temporary_file_after_the_next_run(tmp_path):
    out = tmp_path / "run"
    args = ["train", "copy", "--steps", "6", "--eval-every", "2", *SMALL, "--no-progress", "--out", str(out)]
    slow_second_save = ("import time, tinygrad_attn.serialization as s; w = s._write_npz; calls = []\n"
                        "def slow(*a):\n    calls.append(1)\n    w(*a)\n    if len(calls) == 2: time.sleep(600)\n"
                        "s._write_npz = slow")
    proc = start(args, slow_second_save)
    wait_for(lambda: list(out.glob(".checkpoint.npz.tmp-*")) and (out / "checkpoint.npz").exists(), proc)
    proc.kill()  # SIGKILL: no handler runs, the temporary file stays
    proc.communicate()
    assert list(out.glob(".checkpoint.npz.tmp-*")) and int(load(out / "checkpoint.npz")["step"]) == 2
    done = subprocess.run([sys.executable, "-m", "tinygrad_attn", *args, "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ["checkpoint.npz"] and int(load(out / "checkpoint.npz")["step"]) == 6
    # resuming a finished run saves nothing: the resume itself removes what a killed save left
    (out / f".checkpoint.npz.tmp-{proc.pid}-abc123").write_bytes(b"half a zip")
    done = subprocess.run([sys.executable, "-m", "tinygrad_attn", *args, "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ["checkpoint.npz"]


def test_a_resumed_run_summarises_the_whole_run(tmp_path):
    whole = train("copy", steps=30, out=str(tmp_path / "whole"), **TINY)
    first = train("copy", steps=30, out=str(tmp_path / "split"), stop_after=12, **TINY)
    resumed = train("copy", steps=30, out=str(tmp_path / "split"), resume=True, **TINY)
    assert first["steps"] == 12 and resumed["steps"] == 30
    assert resumed["losses"] == whole["losses"] and len(whole["losses"]) == 30
    assert resumed["train_loss"] == whole["train_loss"] == round(float(np.mean(whole["losses"][-50:])), 4)
    again = train("copy", steps=30, out=str(tmp_path / "split"), resume=True, **TINY)  # a finished run
    assert again["train_loss"] == whole["train_loss"] and again["steps"] == 30
