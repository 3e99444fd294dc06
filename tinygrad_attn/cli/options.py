"""argparse types for every numeric option of every subcommand: a bad value is argparse's own one-line error,
naming the option and what it may be (``argument --clip: must be a finite number >= 0, got '-1'``).

    parser.add_argument("--steps", type=positive_int)
    parser.add_argument("--clip", type=within(Range(float, 0)))
"""

import argparse

from ..train import Range


def within(allowed):
    """An argparse type: the text as ``allowed.kind``, refused unless it lies in the Range ``allowed``."""

    def parse(text):
        try:
            value = allowed.kind(text)
        except ValueError:
            value = None
        if value is None or value not in allowed:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    parse.__name__ = str(allowed)  # what argparse calls the type in its own messages
    return parse


positive_int = within(Range(int, 1))
non_negative_int = within(Range(int, 0))


def int_list(text):
    """An argparse type: comma-separated integers >= 0, each once (``0,2,3``)."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 0 such as 0,2, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"names a head twice: {text!r}")
    return values


def names_from(allowed):
    """An argparse type: comma-separated names, each one of ``allowed`` (``shape,grad``)."""

    def parse(text):
        names = tuple(part.strip() for part in text.split(","))
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"{unknown[0]!r} is not one of {', '.join(allowed)}")
        return names

    return parse
