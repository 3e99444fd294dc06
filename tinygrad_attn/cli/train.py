"""``tinygrad-attn train TASK``: train a transformer on a task of tinygrad_attn.data (see tinygrad_attn.train).
Progress and where the checkpoint went are human-readable lines on stderr; the result is one JSON line on
stdout. Ctrl-C stops cleanly: the last checkpoint stays whole and the message gives the command that resumes.

    tinygrad-attn train copy --steps 20
    tinygrad-attn train dates --out runs/dates --stop-after 1000   # then: --resume
"""

import dataclasses
import json
import os
import shlex
import sys

from ..train import LIMITS, SETTINGS, STEPS, TrainConfig, train
from .options import positive_int, within

SHORT = {"nhead": "--heads", "dim_feedforward": "--d-ff"}  # shorter spellings of PyTorch's names


def add_arguments(parser):
    parser.add_argument("task", choices=list(STEPS), help="what to learn")
    steps = ", ".join(f"{t} {n}" for t, n in STEPS.items())
    parser.add_argument("--steps", type=within(LIMITS["steps"]), help=f"total number of updates (default: {steps})")
    parser.add_argument("--out", help="directory for checkpoint.npz (default: no checkpoint)")
    parser.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    parser.add_argument("--stop-after", type=positive_int, metavar="K", help="stop (with a checkpoint) after step K")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--layers", type=positive_int, help="sets both --num-encoder-layers and --num-decoder-layers")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for key in SETTINGS:
        flags = ["--" + key.replace("_", "-")] + ([SHORT[key]] if key in SHORT else [])
        parser.add_argument(*flags, type=within(LIMITS[key]) if key in LIMITS else type(defaults[key]), dest=key,
                            choices=("noam", "cosine") if key == "schedule" else None,
                            help=f"default: {defaults[key]}")


def run(args):
    settings = {k: getattr(args, k) for k in SETTINGS}
    for key in ("num_encoder_layers", "num_decoder_layers"):
        if settings[key] is None:
            settings[key] = args.layers
    try:
        result = train(args.task, steps=args.steps, out=args.out, resume=args.resume, stop_after=args.stop_after,
                       progress=not args.no_progress, **settings)
    except KeyboardInterrupt:
        print(f"\ntrain: interrupted. {_how_to_resume(args)}", file=sys.stderr)
        return 130  # the shell's code for a run ended by Ctrl-C
    result.pop("history"), result.pop("losses")
    if args.out:
        print(f"checkpoint: {os.path.join(args.out, 'checkpoint.npz')} (step {result['steps']})", file=sys.stderr)
    print(json.dumps(result))
    return 0


def _how_to_resume(args):
    """What an interrupted run left, and the exact command that continues it."""
    path = os.path.join(args.out, "checkpoint.npz") if args.out else None
    if not path or not os.path.exists(path):
        return "No checkpoint was written" + ("" if args.out else " (train with --out DIR to keep one)") + "."
    from ..serialization import load

    argv = list(getattr(args, "argv", None) or sys.argv[1:])
    command = shlex.join(["tinygrad-attn"] + argv + ([] if args.resume else ["--resume"]))
    return f"The checkpoint {path} holds step {int(load(path)['step'])}; continue with:\n  {command}"
