"""``tinygrad-attn train TASK``: train a transformer on a task of tinygrad_attn.data (see tinygrad_attn.train)
and print the result as one JSON line.

    tinygrad-attn train copy --steps 20
    tinygrad-attn train dates --out runs/dates --stop-after 1000   # then: --resume
"""

import dataclasses
import json

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
    result = train(args.task, steps=args.steps, out=args.out, resume=args.resume, stop_after=args.stop_after,
                   progress=not args.no_progress, **settings)
    result.pop("history"), result.pop("losses")
    print(json.dumps(result))
    return 0
