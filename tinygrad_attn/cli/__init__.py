"""The ``tinygrad-attn`` command and every command-line program: the library's modules are what people
learn from; this package holds the tools around them (argparse, the benchmark's processes and /proc).
Each subcommand lives in its own module here, which defines

    add_arguments(parser)   # fill in the subcommand's argparse parser
    run(args)               # do the work; return an exit code (None means 0)

and is listed in COMMANDS below, and in FILES with what its files must be (the hint after a file error).
A module is imported only when its subcommand runs (or when --help needs its arguments), so the command
starts quickly.
"""

import argparse
import difflib
import importlib
import os
import sys

from ..serialization import CheckpointError

# name: (module, one line of help)
COMMANDS = {
    "tour": ("tinygrad_attn.cli.tour",
             "train a small transformer in about a minute and write its pictures to a folder"),
    "demo": ("tinygrad_attn.cli.demo", "list the step-through demos, or run one (--step pauses between cells)"),
    "train": ("tinygrad_attn.cli.train",
              "train a transformer on copy, reverse, sort or dates; progress on stderr, one JSON line on stdout"),
    "bench": ("tinygrad_attn.cli.bench", "time fixed workloads against PyTorch (and micrograd) on this machine"),
    "graph": ("tinygrad_attn.cli.graph", "render the graph of a neuron, an MLP or make_model()"),
    "attention": ("tinygrad_attn.cli.attention", "draw the attention of a trained checkpoint or a pretrained model"),
    "embed": ("tinygrad_attn.cli.embed", "embed sentences with a pretrained model; print their cosine similarities"),
}

# What a command needs of the files it reads and writes: the hint after a file error the system raised
FILES = {
    "tour": "--out must be a folder you can create and write to, such as --out tour",
    "demo": "the demos folder that ships with the package must be readable; reinstall it (pip install -e .)",
    "train": "--out must be a folder you can create and write to, such as --out runs/copy",
    "bench": "--json must name a file in a folder you can write to, such as --json bench.json",
    "graph": "-o must name a file in a folder you can write to, such as -o graph.svg; its .dot text goes beside it",
    "attention": "the checkpoint must be a file you can read; -o and --masks files in a folder you can write to",
    "embed": "--model must be a folder of model files you can read",
}


def build_parser(only=None):
    parser = argparse.ArgumentParser(
        prog="tinygrad-attn",
        description="Learn how a transformer works by running one: train, decode, draw its graphs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        if only in (None, name):
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen is not None and chosen not in COMMANDS:
        close = difflib.get_close_matches(chosen, COMMANDS, n=1)
        hint = f" Did you mean: tinygrad-attn {close[0]}?" if close else ""
        print(f"tinygrad-attn: unknown command {chosen!r}; the commands are {', '.join(COMMANDS)}.{hint}",
              file=sys.stderr)
        return 2
    args = build_parser(only=chosen).parse_args(argv)
    args.argv = argv  # as typed: train's Ctrl-C message repeats it with --resume
    if args.command is None:
        build_parser(only="").print_help()
        return 0
    try:
        return importlib.import_module(COMMANDS[args.command][0]).run(args) or 0
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        sys.stdout = open(os.devnull, "w")  # so the interpreter's final flush does not complain either
        return 0
    except KeyboardInterrupt:  # Ctrl-C: the user knows why it stopped
        print("\ntinygrad-attn: interrupted", file=sys.stderr)
        return 130
    except (CheckpointError, OSError, ValueError, ImportError) as e:  # a missing file or package, a damaged or
        print(f"tinygrad-attn: {_message(args.command, e)}", file=sys.stderr)  # foreign checkpoint, bad settings:
        return 1                                                                 # one line each (see _message)


def _message(command, e):
    """The one line for an error: the library's messages name the op and the file already; an error the system
    raised about a file ([Errno 2] No such file or directory: 'x') gets the command and what to do instead."""
    if not isinstance(e, OSError) or not e.strerror or e.filename is None:
        return str(e)
    files = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else f"{e.filename}"
    return f"{command}: {e.strerror[:1].lower()}{e.strerror[1:]}: {files} ({FILES[command]})"


if __name__ == "__main__":
    sys.exit(main())
