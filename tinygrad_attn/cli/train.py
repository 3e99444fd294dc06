"""``tinygrad-attn train TASK``: train a transformer on a task of tinygrad_attn.data (see tinygrad_attn.train)
and print the result as one JSON line.

    tinygrad-attn train copy --steps 20
    tinygrad-attn train dates --out runs/dates --stop-after 1000   # then: --resume
"""

import json

from ..train import COMMON, CONFIG_KEYS, DEFAULTS, train


def add_arguments(parser):
    parser.add_argument("task", choices=list(DEFAULTS), help="what to learn")
    steps = ", ".join(f"{t} {d['steps']}" for t, d in DEFAULTS.items())
    parser.add_argument("--steps", type=int, help=f"total number of updates (default: {steps})")
    parser.add_argument("--out", help="directory for checkpoint.npz (default: no checkpoint)")
    parser.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    parser.add_argument("--stop-after", type=int, metavar="K", help="stop (with a checkpoint) after step K")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    for key in CONFIG_KEYS[1:] + ("eval_every", "beam_size"):
        values = {task: d[key] for task, d in DEFAULTS.items()}
        default = COMMON[key]
        if len(set(values.values())) > 1:
            default = ", ".join(f"{t} {v}" for t, v in values.items())
        parser.add_argument("--" + key.replace("_", "-"), type=type(COMMON[key]), dest=key,
                            choices=("noam", "cosine") if key == "schedule" else None,
                            help=f"default: {default}")


def run(args):
    settings = {k: getattr(args, k) for k in CONFIG_KEYS[1:] + ("eval_every", "beam_size")}
    result = train(args.task, steps=args.steps, out=args.out, resume=args.resume, stop_after=args.stop_after,
                   progress=not args.no_progress, **settings)
    result.pop("history"), result.pop("losses")
    print(json.dumps(result))
    return 0
