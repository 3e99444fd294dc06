import datetime
import re

import numpy as np
import pytest

from tinygrad_attn import data

FIELD_PATTERNS = {
    "d": r"(?P<d>\d{1,2})", "dd": r"(?P<d>\d{2})", "do": r"(?P<d>\d{1,2})(?:st|nd|rd|th)",
    "m": r"(?P<m>\d{1,2})", "mm": r"(?P<m>\d{2})", "mon": rf"(?P<mon>{'|'.join(m[:3] for m in data.MONTHS)})",
    "MON": rf"(?P<MON>{'|'.join(m[:3].upper() for m in data.MONTHS)})",
    "month": rf"(?P<month>{'|'.join(data.MONTHS)})", "yy": r"(?P<yy>\d{2})", "yyyy": r"(?P<y>\d{4})",
    "wd": rf"(?P<wd>{'|'.join(w[:3] for w in data.WEEKDAYS)})",
    "weekday": rf"(?P<weekday>{'|'.join(data.WEEKDAYS)})",
}


def parse(text, fmt):
    """Read a date back from ``fmt`` independently of data.format_date (numbers day first, 50-99 -> 19xx)."""
    pattern = re.sub(r"\\\{(\w+)\\\}", lambda m: FIELD_PATTERNS[m.group(1)], re.escape(fmt))
    f = re.fullmatch(pattern, text).groupdict()
    abbreviations = [m[:3] for m in data.MONTHS]
    if "m" in f:
        month = int(f["m"])
    elif "month" in f:
        month = data.MONTHS.index(f["month"]) + 1
    else:
        month = abbreviations.index(f.get("mon") or f["MON"].title()) + 1
    year = int(f["y"]) if "y" in f else (1900 if int(f["yy"]) >= 50 else 2000) + int(f["yy"])
    d = datetime.date(year, month, int(f["d"]))
    if "weekday" in f or "wd" in f:
        assert data.WEEKDAYS[d.weekday()].startswith(f.get("weekday") or f["wd"])
    return d


@pytest.mark.parametrize("fmt", data.DATE_FORMATS)
def test_every_format_reads_back_to_the_same_date(fmt):
    rng = np.random.default_rng(0)
    days = [data.FIRST_DAY, data.LAST_DAY, datetime.date(2021, 3, 3), datetime.date(2011, 12, 22)]
    days += [data.FIRST_DAY + datetime.timedelta(int(k)) for k in rng.integers(0, 36524, 200)]
    for d in days:
        assert parse(data.format_date(d, fmt), fmt) == d


def test_example_renderings_and_task_targets():
    d = datetime.date(2021, 3, 3)
    got = {data.format_date(d, f) for f in data.DATE_FORMATS}
    assert {"3rd of March 2021", "03/03/21", "March 3, 2021", "Wednesday, March 3, 2021", "03.03.2021",
            "3/3/2021", "Mar 3 2021", "3 March 2021"} <= got
    assert [data.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]
    task = data.get_task("dates")
    key, src, tgt = task.draw(np.random.default_rng(3))
    assert tgt == key.isoformat() and re.fullmatch(r"\d{4}-\d\d-\d\d", tgt)
    assert any(parse(src, f) == key for f in data.DATE_FORMATS if re.fullmatch(
        re.sub(r"\\\{(\w+)\\\}", lambda m: FIELD_PATTERNS[m.group(1)], re.escape(f)), src))


@pytest.mark.parametrize("name, rule", [("copy", lambda s: s), ("reverse", lambda s: s[::-1]),
                                        ("sort", lambda s: "".join(sorted(s)))])
def test_sequence_tasks(name, rule):
    task = data.get_task(name)
    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(200):
        key, src, tgt = task.draw(rng)
        assert tgt == rule(src) and key == src and set(src) <= set(data.DIGITS)
        lengths.add(len(src))
    assert lengths == set(range(task.max_src - 7, task.max_src + 1))


@pytest.mark.parametrize("name", data.TASKS)
def test_vocab_round_trip_covers_every_example(name):
    task = data.get_task(name)
    rng = np.random.default_rng(1)
    for _ in range(300):
        _, src, tgt = task.draw(rng)
        assert task.src_vocab.decode(task.src_vocab.encode(src)) == src
        ids = task.tgt_vocab.encode(tgt, bos=True, eos=True)
        assert ids[0] == data.BOS and ids[-1] == data.EOS
        assert task.tgt_vocab.decode(ids[1:] + [data.PAD, 7]) == tgt  # stops at EOS
        assert len(src) <= task.max_src and len(tgt) <= task.max_tgt


def test_vocab_specials_and_unknown_characters():
    v = data.Vocab("cab")
    assert v.itos[:3] == ["<pad>", "<s>", "</s>"] and len(v) == 6
    assert v.encode("abc", bos=True, eos=True) == [1, 3, 4, 5, 2]
    with pytest.raises(ValueError, match=r"character 'z' in 'abz' is not in the vocabulary 'abc'"):
        v.encode("abz")


def _matches(text, fmt):
    return re.fullmatch(re.sub(r"\\\{(\w+)\\\}", lambda m: FIELD_PATTERNS[m.group(1)], re.escape(fmt)), text)


def key_of(task, src):
    """What identifies an example: the day for dates, the string otherwise."""
    if task.name != "dates":
        return src
    return next(parse(src, f) for f in data.DATE_FORMATS if _matches(src, f))


@pytest.mark.parametrize("name", data.TASKS)
def test_heldout_is_fixed_distinct_and_disjoint_from_training(name):
    task = data.get_task(name)
    pairs, keys = data.heldout(task, 300, seed=5)
    assert len(pairs) == 300 == len(keys) == len({key_of(task, s) for s, _ in pairs})
    assert data.heldout(task, 300, seed=5)[0] == pairs
    assert data.heldout(task, 300, seed=6)[0] != pairs
    src, _tgt = data.train_batch(task, np.random.default_rng(0), 2000, exclude=keys)
    texts = [task.src_vocab.decode(row) for row in src]
    assert not {key_of(task, t) for t in texts} & keys
    # the same draws without the filter do hit held-out examples, so the filter had work to do
    unfiltered, _ = data.train_batch(task, np.random.default_rng(0), 2000)
    assert {key_of(task, task.src_vocab.decode(row)) for row in unfiltered} & keys


def test_batch_pads_and_adds_bos_eos():
    v = data.Vocab(data.DIGITS)
    src, tgt = data.batch([("12", "21"), ("3", "3"), ("4567", "7654")], v, v)
    assert src.dtype == tgt.dtype == np.int64
    assert src.shape == (3, 5) and tgt.shape == (3, 6)
    np.testing.assert_array_equal(src[1], [v.stoi["3"], 2, 0, 0, 0])
    np.testing.assert_array_equal(src[2], v.encode("4567") + [2])
    np.testing.assert_array_equal(tgt[1], [1, v.stoi["3"], 2, 0, 0, 0])
    np.testing.assert_array_equal(tgt[2], [1] + v.encode("7654") + [2])
