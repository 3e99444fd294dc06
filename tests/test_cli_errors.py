"""Bad input to the tinygrad-attn command: each is one line saying what is wrong, never a traceback or a silent
wrong answer. Tables: (command line) -> the fragment of the message a user must see."""

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
