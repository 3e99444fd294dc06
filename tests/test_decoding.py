import numpy as np
import pytest

from tinygrad_attn import data, decoding, rng
from tinygrad_attn.nn import make_model
from tinygrad_attn.tensor import Tensor

PAD, BOS, EOS = data.PAD, data.BOS, data.EOS


@pytest.fixture(scope="module")
def model_and_src():
    """A random (untrained) model: its outputs vary from row to row and step to step."""
    rng.manual_seed(0)
    model = make_model(12, 9, N=2, d_model=32, d_ff=64, h=4, dropout=0.1).eval()
    g = np.random.default_rng(0)
    src = g.integers(3, 12, size=(16, 7))
    lengths = g.integers(2, 8, 16)
    for i, n in enumerate(lengths):
        src[i, n:] = PAD  # ragged rows
    return model, src


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_cached_decoding_gives_the_tokens_of_full_recomputation(model_and_src, search):
    model, src = model_and_src
    run = (lambda c: decoding.greedy_decode(model, src, 9, use_cache=c)) if search == "greedy" else (
        lambda c: decoding.beam_search(model, src, 3, 9, use_cache=c))
    cached, uncached = run(True), run(False)
    assert cached.shape[0] == 16 and cached.dtype == np.int64
    np.testing.assert_array_equal(cached, uncached)
    assert len({tuple(r) for r in cached}) > 3  # the rows differ: the comparison means something


def test_greedy_outputs_end_at_eos_then_pad(model_and_src):
    model, src = model_and_src
    out = decoding.greedy_decode(model, src, 9)
    assert out.shape[1] <= 9
    ended = 0
    for row in out:
        hits = np.flatnonzero(row == EOS)
        if hits.size:
            ended += 1
            assert (row[hits[0] + 1:] == PAD).all()
    assert ended >= 2


def test_greedy_picks_the_argmax_of_teacher_forced_logits(model_and_src):
    model, src = model_and_src
    out = decoding.greedy_decode(model, src, 6, use_cache=False)
    ys = np.concatenate([np.full((len(src), 1), BOS), out], axis=1)
    logits = model(src, ys[:, :-1], src_key_padding_mask=src == PAD).data  # (B, L, V)
    done = np.cumsum(out == EOS, axis=1) - (out == EOS) > 0
    np.testing.assert_array_equal(np.where(done, PAD, logits.argmax(-1)), out)


def test_beam_size_one_is_greedy(model_and_src):
    model, src = model_and_src
    greedy = decoding.greedy_decode(model, src, 9)
    np.testing.assert_array_equal(decoding.beam_search(model, src, 1, 9), greedy)


def test_beam_never_scores_below_greedy(model_and_src):
    model, src = model_and_src
    greedy = decoding.greedy_decode(model, src, 9)
    beam = decoding.beam_search(model, src, 4, 9, length_penalty=0.0)
    g, b = decoding.sequence_log_prob(model, src, greedy), decoding.sequence_log_prob(model, src, beam)
    assert (b >= g - 1e-9).all()


class PrefixModel:
    """A stand-in decoder whose next-token distribution depends on the prefix only (a table), to build
    the case where the greedy first step is a trap. It follows the protocol decoding needs."""

    V = 6  # PAD, BOS, EOS, A=3, B=4, C=5

    def __init__(self, table):
        self.table = table

    class Cache:
        def __init__(self):
            self.length, self.prefix = 0, None

        def reorder(self, rows):
            self.prefix = self.prefix[rows]

    def new_cache(self):
        return self.Cache()

    def encode(self, src, src_key_padding_mask=None):
        return Tensor(np.zeros((len(src), 1, 1)))

    def decode(self, tgt, memory, memory_key_padding_mask=None, cache=None):
        tgt = np.asarray(tgt)
        if cache is not None:
            cache.prefix = tgt if cache.prefix is None else np.concatenate([cache.prefix, tgt], axis=1)
            cache.length = cache.prefix.shape[1]
            tgt = cache.prefix
        logits = np.full(tgt.shape + (self.V,), -30.0)
        for i, row in enumerate(tgt):
            for t in range(tgt.shape[1]):
                for tok, p in self.table.get(tuple(row[1:t + 1].tolist()), {EOS: 1.0}).items():
                    logits[i, t, tok] = np.log(p)
        return Tensor(logits)


def test_beam_finds_a_more_likely_sequence_than_greedy():
    a, b, c = 3, 4, 5
    table = {(): {a: 0.6, b: 0.4},                 # greedy takes A...
             (a,): {a: 0.34, b: 0.33, c: 0.33},    # ...and then nothing is likely
             (a, a): {EOS: 1.0}, (a, b): {EOS: 1.0}, (a, c): {EOS: 1.0},
             (b,): {EOS: 0.9, c: 0.1}}             # B EOS has probability 0.36 > 0.6 * 0.34 = 0.204
    model, src = PrefixModel(table), np.array([[3], [3]])
    greedy = decoding.greedy_decode(model, src, 4)
    np.testing.assert_array_equal(greedy[0], [a, a, EOS])
    for use_cache in (True, False):
        beam, score = decoding.beam_search(model, src, 2, 4, length_penalty=0.0, use_cache=use_cache,
                                           return_scores=True)
        np.testing.assert_array_equal(beam[0], [b, EOS, PAD])
        assert score[0] == pytest.approx(np.log(0.36), abs=1e-6)
    g, bs = decoding.sequence_log_prob(model, src, greedy), decoding.sequence_log_prob(model, src, beam)
    assert bs[0] > g[0] + 0.5


def test_length_penalty_prefers_longer_outputs():
    a, b = 3, 4
    # A EOS: 0.5 * 0.6 = 0.3 in 2 tokens; B B B EOS: 0.5 * 0.6 * 0.6 = 0.18 in 4
    table = {(): {a: 0.5, b: 0.5}, (a,): {EOS: 0.6, a: 0.4}, (a, a): {EOS: 1.0},
             (b,): {b: 0.6, EOS: 0.4}, (b, b): {b: 0.6, EOS: 0.4}, (b, b, b): {EOS: 1.0}}
    model, src = PrefixModel(table), np.array([[3]])
    short = decoding.beam_search(model, src, 4, 6, length_penalty=0.0)[0]
    long = decoding.beam_search(model, src, 4, 6, length_penalty=2.0)[0]
    assert list(short) == [a, EOS, PAD, PAD]  # log 0.3 beats log 0.18
    assert list(long) == [b, b, b, EOS]  # log 0.18 / 4^2 beats log 0.3 / 2^2


def test_bad_arguments():
    model = PrefixModel({})
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        decoding.beam_search(model, np.array([[3]]), 0, 4)
    with pytest.raises(ValueError, match=r"src must be token ids \(B, S\), got shape \(3,\)"):
        decoding.greedy_decode(model, np.array([3, 4, 5]), 4)


def test_the_pad_argument_also_sets_the_default_source_mask():
    rng.manual_seed(0)
    model = make_model(12, 12, N=1, d_model=16, d_ff=32, h=2, dropout=0.0)
    src = np.array([[3, 4, 5, 11, 11]])  # padded with 11, not the library's PAD
    implied = decoding.greedy_decode(model, src, 6, pad=11)
    explicit = decoding.greedy_decode(model, src, 6, pad=11, src_key_padding_mask=src == 11)
    unmasked = decoding.greedy_decode(model, src, 6, pad=11, src_key_padding_mask=np.zeros_like(src, bool))
    np.testing.assert_array_equal(implied, explicit)
    assert not np.array_equal(implied, unmasked)  # the mask matters here, so the test can tell them apart
