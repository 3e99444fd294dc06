import json

import numpy as np
import pytest

from tinygrad_attn import cli, data
from tinygrad_attn.serialization import load, save
from tinygrad_attn.train import evaluate, load_model, train

# small enough to run in a second or two; dropout on, so resuming must restore the dropout generator too
TINY = {"num_encoder_layers": 1, "num_decoder_layers": 1, "d_model": 32, "dim_feedforward": 64, "nhead": 4,
        "dropout": 0.1, "batch_size": 16, "warmup": 30, "lr_factor": 0.25, "eval_size": 40, "beam_size": 2,
        "progress": False}


def test_a_tiny_run_learns_copy():
    result = train("copy", steps=300, eval_every=20, **TINY)
    first = result["history"][0]["loss"]  # mean over steps 1..20, about log(13)
    assert result["steps"] == 300
    assert result["train_loss"] < 0.6 * first
    assert 0.0 <= result["exact_match"] <= 1.0
    assert {"task", "seconds", "exact_match_beam"} <= set(result)


def test_resume_is_exact(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    a = train("copy", steps=30, out=str(whole), eval_every=25, **TINY)
    b1 = train("copy", steps=30, out=str(split), stop_after=12, eval_every=25, **TINY)
    assert b1["steps"] == 12 and int(load(split / "checkpoint.npz")["step"]) == 12
    b = train("copy", steps=30, out=str(split), resume=True, eval_every=25, **TINY)
    assert b["steps"] == 30
    ca, cb = load(whole / "checkpoint.npz"), load(split / "checkpoint.npz")
    assert set(ca) == set(cb) and any(k.startswith("optim.") for k in ca)
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)
    assert a["train_loss"] is not None and a["exact_match"] == b["exact_match"]
    # and it is not equal by accident: another dropout draw gives other weights
    c = train("copy", steps=30, out=str(tmp_path / "other"), eval_every=25, **dict(TINY, seed=1))
    cc = load(tmp_path / "other" / "checkpoint.npz")
    assert c["steps"] == 30 and not np.array_equal(cc["model.generator.weight"], ca["model.generator.weight"])


def test_checkpoint_from_another_configuration_is_an_error(tmp_path):
    train("copy", steps=3, out=str(tmp_path), eval_every=10, **TINY)
    before = load(tmp_path / "checkpoint.npz")
    with pytest.raises(ValueError, match=r"different configuration \(d_model=32 there, 64 here\)"):
        train("copy", steps=3, out=str(tmp_path), resume=True, **dict(TINY, d_model=64))
    with pytest.raises(ValueError, match=r"steps=3 there, 6 here"):
        train("copy", steps=6, out=str(tmp_path), resume=True, **TINY)
    with pytest.raises(ValueError, match=r"task='copy' there, 'reverse' here"):
        train("reverse", steps=3, out=str(tmp_path), resume=True, **TINY)
    with pytest.raises(FileExistsError, match="already exists; pass resume=True"):
        train("copy", steps=6, out=str(tmp_path), **TINY)
    after = load(tmp_path / "checkpoint.npz")
    for k in before:  # the failed attempts left the checkpoint alone
        np.testing.assert_array_equal(before[k], after[k])


def test_resume_without_a_checkpoint_and_unknown_settings(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        train("copy", steps=3, out=str(tmp_path), resume=True, **TINY)
    with pytest.raises(ValueError, match="unknown task 'paint'"):
        train("paint", steps=3)
    with pytest.raises(TypeError, match=r"unknown settings \['d_modle'\]"):
        train("copy", steps=3, d_modle=8)
    with pytest.raises(TypeError, match="heads is now nhead"):
        train("copy", steps=3, heads=2)


def test_decoding_with_the_cache_equals_decoding_without_it(tmp_path):
    """Greedy and beam search on a model that has learnt something: the KV cache changes only the speed."""
    train("copy", steps=150, out=str(tmp_path), eval_every=1000, **TINY)
    model, task, _ = load_model(tmp_path / "checkpoint.npz")
    pairs, _ = data.heldout(task, 60)
    for beam_size in (None, 2):
        accuracy, cached = evaluate(model, task, pairs, beam_size=beam_size)
        assert evaluate(model, task, pairs, beam_size=beam_size, use_cache=False) == (accuracy, cached)
        assert len(set(cached)) > 1  # not one answer for every input: the model has learnt something


def test_a_checkpoint_with_the_old_names_loads_and_resumes(tmp_path):
    """Checkpoints written before the PyTorch names stored layers, heads and d_ff: they are mapped."""
    train("copy", steps=4, out=str(tmp_path), stop_after=2, eval_every=10, **TINY)
    state = load(tmp_path / "checkpoint.npz")
    cfg = json.loads(str(state["config"]))
    for old, new in (("layers", "num_encoder_layers"), ("heads", "nhead"), ("d_ff", "dim_feedforward")):
        cfg[old] = cfg.pop(new)
    del cfg["num_decoder_layers"]
    save(dict(state, config=np.asarray(json.dumps(cfg))), tmp_path / "checkpoint.npz")
    model, _, loaded = load_model(tmp_path / "checkpoint.npz")
    assert (loaded.num_encoder_layers, loaded.num_decoder_layers, loaded.nhead, loaded.dim_feedforward) == (1, 1, 4, 64)
    np.testing.assert_array_equal(model.generator.weight.data, state["model.generator.weight"])
    assert train("copy", steps=4, out=str(tmp_path), resume=True, eval_every=10, **TINY)["steps"] == 4


def test_load_model_reads_a_checkpoint_back(tmp_path):
    result = train("copy", steps=5, out=str(tmp_path), eval_every=10, **TINY)
    model, task, cfg = load_model(tmp_path / "checkpoint.npz")
    assert cfg.d_model == 32 and cfg.nhead == 4 and task.name == "copy" and not model.training
    state = load(tmp_path / "checkpoint.npz")
    np.testing.assert_array_equal(model.generator.weight.data, state["model.generator.weight"])
    assert result["steps"] == 5


def test_cli_prints_one_json_line(capsys, tmp_path):
    args = ["train", "copy", "--steps", "8", "--layers", "1", "--d-model", "16", "--d-ff", "32", "--heads",
            "2", "--batch-size", "8", "--eval-size", "20", "--beam-size", "2", "--no-progress",
            "--out", str(tmp_path)]
    assert cli.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["task"] == "copy" and result["steps"] == 8
    assert {"seconds", "train_loss", "exact_match"} <= set(result)
    stored = json.loads(str(load(tmp_path / "checkpoint.npz")["config"]))
    assert (stored["num_encoder_layers"], stored["num_decoder_layers"], stored["nhead"],
            stored["dim_feedforward"]) == (1, 1, 2, 32)
    assert not {"layers", "heads", "d_ff"} & set(stored)
