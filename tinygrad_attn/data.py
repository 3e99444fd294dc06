"""Sequence tasks made in code (nothing is downloaded): copy, reverse, sort, and dates into ISO form.

Every task is a source string -> target string. A ``Vocab`` maps characters to
ids after the three specials PAD=0, BOS=1, EOS=2; ``batch`` pads pairs into
int64 arrays. ``heldout`` draws a fixed evaluation set and ``train_batch`` draws
training pairs that never come from it (for dates: never the same day, in any
format).

Dates. Numeric formats are day first (03/04/2021 is 3 April 2021); years are
1950-2049, so a two-digit year is unambiguous: 50-99 -> 19xx, 00-49 -> 20xx.
"""

import datetime

import numpy as np

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<s>", "</s>")


class Vocab:
    """Characters <-> ids; ids 0, 1, 2 are PAD, BOS, EOS."""

    def __init__(self, chars):
        self.itos = list(SPECIALS) + sorted(set(chars))
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def __repr__(self):
        return f"Vocab({len(self)} symbols: {''.join(self.itos[3:])!r})"

    def encode(self, text, bos=False, eos=False):
        try:
            ids = [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"Vocab.encode: character {e.args[0]!r} in {text!r} is not in the vocabulary "
                             f"{''.join(self.itos[3:])!r}") from None
        return [BOS] * bos + ids + [EOS] * eos

    def decode(self, ids):
        """Text up to the first EOS, skipping PAD and BOS."""
        out = []
        for i in np.asarray(ids).tolist():
            if i == EOS:
                break
            if i > EOS:
                out.append(self.itos[i])
        return "".join(out)


def pad(seqs, length=None):
    """Lists of ids -> an int64 (len(seqs), length) array right-padded with PAD."""
    length = length or max(len(s) for s in seqs)
    out = np.full((len(seqs), length), PAD, dtype=np.int64)
    for row, s in zip(out, seqs):
        row[: len(s)] = s
    return out


def sources(texts, vocab):
    """Source texts -> (B, S) int64: each text + EOS, PAD-padded. The EOS marks where the source ends,
    so the decoder can find its last position by attention instead of counting."""
    return pad([vocab.encode(s, eos=True) for s in texts])


def batch(pairs, src_vocab, tgt_vocab):
    """[(src, tgt), ...] -> src (B, S) and tgt (B, T) int64: src is text + EOS (see sources), tgt is
    BOS + text + EOS, both PAD-padded. Train on tgt[:, :-1] -> tgt[:, 1:] with ignore_index=PAD.
    """
    src = sources([s for s, _ in pairs], src_vocab)
    tgt = pad([tgt_vocab.encode(t, bos=True, eos=True) for _, t in pairs])
    return src, tgt


# ---------------------------------------------------------------- the tasks

DIGITS = "0123456789"


class Task:
    """A named source -> target task; ``draw(rng)`` returns (key, src, tgt), key identifying the example."""

    def __init__(self, name, src_chars, tgt_chars, max_src, max_tgt):
        self.name = name
        self.src_vocab, self.tgt_vocab = Vocab(src_chars), Vocab(tgt_chars)
        self.max_src, self.max_tgt = max_src, max_tgt  # longest texts, without BOS/EOS

    def draw(self, rng):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, src {self.src_vocab}, tgt {self.tgt_vocab})"


class SequenceTask(Task):
    """copy, reverse or sort a random string of ``alphabet`` of length min_len..max_len."""

    def __init__(self, name, alphabet=DIGITS, min_len=3, max_len=10):
        if name not in ("copy", "reverse", "sort"):
            raise ValueError(f"SequenceTask: unknown task {name!r}; choose copy, reverse or sort")
        super().__init__(name, alphabet, alphabet, max_len, max_len)
        self.alphabet, self.min_len = np.array(list(alphabet)), min_len

    def draw(self, rng):
        n = int(rng.integers(self.min_len, self.max_src + 1))
        src = "".join(self.alphabet[rng.integers(0, len(self.alphabet), n)])
        tgt = {"copy": src, "reverse": src[::-1], "sort": "".join(sorted(src))}[self.name]
        return src, src, tgt


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def ordinal(n):
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fields(d):
    return {"d": d.day, "dd": f"{d.day:02d}", "do": ordinal(d.day), "m": d.month, "mm": f"{d.month:02d}",
            "mon": MONTHS[d.month - 1][:3], "MON": MONTHS[d.month - 1][:3].upper(),
            "month": MONTHS[d.month - 1],
            "yy": f"{d.year % 100:02d}", "yyyy": d.year, "wd": WEEKDAYS[d.weekday()][:3],
            "weekday": WEEKDAYS[d.weekday()]}


# How people write 3 March 2021 (numbers day first). Fields: see _fields.
DATE_FORMATS = [
    "{do} of {month} {yyyy}",           # 3rd of March 2021
    "the {do} of {month}, {yyyy}",      # the 3rd of March, 2021
    "{d} {month} {yyyy}",               # 3 March 2021
    "{d} {mon} {yyyy}",                 # 3 Mar 2021
    "{month} {d}, {yyyy}",              # March 3, 2021
    "{month} {do}, {yyyy}",             # March 3rd, 2021
    "{mon} {d} {yyyy}",                 # Mar 3 2021
    "{weekday}, {month} {d}, {yyyy}",   # Wednesday, March 3, 2021
    "{wd} {d} {mon} {yyyy}",            # Wed 3 Mar 2021
    "{dd}/{mm}/{yyyy}",                 # 03/03/2021
    "{d}/{m}/{yyyy}",                   # 3/3/2021
    "{dd}/{mm}/{yy}",                   # 03/03/21
    "{dd}.{mm}.{yyyy}",                 # 03.03.2021
    "{d}.{m}.{yy}",                     # 3.3.21
    "{dd}-{MON}-{yyyy}",                # 03-MAR-2021
    "{yyyy}/{mm}/{dd}",                 # 2021/03/03
]
FIRST_DAY, LAST_DAY = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)


def format_date(d, fmt):
    """A datetime.date written in one of DATE_FORMATS, e.g. "{do} of {month} {yyyy}" -> "3rd of March 2021"."""
    return fmt.format(**_fields(d))


class DateTask(Task):
    """A date in one of DATE_FORMATS -> its ISO form 'YYYY-MM-DD'; examples are keyed by the day."""

    def __init__(self, formats=DATE_FORMATS):
        self.formats = list(formats)
        self.days = (LAST_DAY - FIRST_DAY).days + 1
        year = [datetime.date(2000, 1, 1) + datetime.timedelta(k) for k in range(366)]  # every field value
        sample = [format_date(d, f) for d in year for f in self.formats]
        super().__init__("dates", "".join(sample), DIGITS + "-", max(map(len, sample)), 10)

    def draw(self, rng):
        d = FIRST_DAY + datetime.timedelta(int(rng.integers(self.days)))
        return d, format_date(d, self.formats[int(rng.integers(len(self.formats)))]), d.isoformat()


def get_task(name):
    """The task called 'copy', 'reverse', 'sort' or 'dates'."""
    if name == "dates":
        return DateTask()
    return SequenceTask(name)


TASKS = ("copy", "reverse", "sort", "dates")


# ---------------------------------------------------------------- splits


def heldout(task, n, seed=1234):
    """n examples with distinct keys, the same for every run with this seed: ([(src, tgt), ...], keys)."""
    rng = np.random.default_rng(seed)
    keys, pairs = set(), []
    for _ in range(100 * n):
        key, src, tgt = task.draw(rng)
        if key not in keys:
            keys.add(key)
            pairs.append((src, tgt))
            if len(pairs) == n:
                return pairs, keys
    raise ValueError(f"heldout: could not find {n} distinct {task.name} examples")


def train_batch(task, rng, batch_size, exclude=frozenset()):
    """One training batch: (src (B, S), tgt (B, T)) int64, none of whose examples is in ``exclude``."""
    pairs = []
    while len(pairs) < batch_size:
        key, src, tgt = task.draw(rng)
        if key not in exclude:
            pairs.append((src, tgt))
    return batch(pairs, task.src_vocab, task.tgt_vocab)
