# %% [markdown]
# # 8. Translating dates
#
# A small translation task with real structure: "the 3rd of March, 2021", "03/03/21",
# "Wed 3 Mar 2021" and thirteen other ways of writing a day all mean 2021-03-03. The model
# must find the day, the month and the year wherever the format puts them, turn month
# names into numbers and two-digit years into four. We train one, compare greedy
# decoding with beam search, check that the key/value cache changes the speed and not
# the answer, and look at which input characters each output character attended to.

# %%
import shutil
import time
from pathlib import Path

import numpy as np

from tinygrad_attn import data
from tinygrad_attn.decoding import beam_search, greedy_decode, sequence_log_prob
from tinygrad_attn.env import quick, set_blas_threads
from tinygrad_attn.train import evaluate, load_model, train
from tinygrad_attn.viz.attention import translate

np.set_printoptions(precision=3, suppress=True)
set_blas_threads(1)  # small matrices: one BLAS thread beats two that wait on each other (train() does the same)
out_dir = Path("tinygrad_attn_out/demos")
task = data.get_task("dates")
rng = np.random.default_rng(0)
for _ in range(6):
    day, src, tgt = task.draw(rng)
    print(f"{src!r:34s} -> {tgt}")
print(task)

# %% [markdown]
# ## Training
# `train("dates", ...)` builds the model (2 encoder and 2 decoder layers, d_model 64,
# 4 heads), trains it on fresh random dates with Adam and a warm-up plus cosine
# schedule, and scores exact matches on 1000 held-out days that training never sees,
# in any format. We stop a third of the way to keep a half-trained model for the next
# section, then resume: the checkpoint holds everything, so the resumed run is the
# uninterrupted one, bit for bit. (Training runs `train`'s default 3000 steps with
# `tinygrad-attn train dates`; the demo uses fewer to stay within a couple of minutes.)

# %%
run_dir = out_dir / "08_dates_run"
shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time the demo runs
beam_size = 4
settings = {"steps": 1000, "beam_size": beam_size}
if quick():
    settings.update(steps=20, eval_size=50, num_encoder_layers=1, num_decoder_layers=1, d_model=32,
                    dim_feedforward=64, batch_size=16, warmup=5)
early = settings["steps"] * 3 // 10
start = time.perf_counter()
half = train("dates", out=run_dir, stop_after=early, **settings)
model_early, _, cfg = load_model(run_dir / "checkpoint.npz")
full = train("dates", out=run_dir, resume=True, **settings)
model, _, cfg = load_model(run_dir / "checkpoint.npz")
print(f"{full['steps']} steps in {time.perf_counter() - start:.1f} s (evaluations included); "
      f"final training loss {full['train_loss']}")
print(f"exact match on {cfg.eval_size} held-out dates: step {half['steps']}: greedy {half['exact_match']:.1%}; "
      f"step {full['steps']}: greedy {full['exact_match']:.1%}, beam of {beam_size} "
      f"{full['exact_match_beam']:.1%}")
heldout, _ = data.heldout(task, cfg.eval_size)

# %% [markdown]
# ## Beam search versus greedy
# Greedy decoding takes the most likely character at every step and never looks back.
# Beam search keeps the `beam_size` most likely prefixes, so an early choice that
# looked best can lose to one that leads to a likelier whole output. Where the two
# disagree we print the log-probability the model gives each whole answer (beam search
# ranks its finished answers per character, so a longer answer is not penalised for
# its length); the likelier answer is not always the right one. A model that is sure of
# every character leaves beam search nothing to find, so we look at the half-trained
# model as well as the final one.

# %%
for name, m in ((f"step {half['steps']}", model_early), (f"step {full['steps']}", model)):
    greedy_acc, greedy_out = evaluate(m, task, heldout)
    beam_acc, beam_out = evaluate(m, task, heldout, beam_size=beam_size)
    differ = [i for i, (g, b) in enumerate(zip(greedy_out, beam_out)) if g != b]
    print(f"{name}: greedy {greedy_acc:.1%}, beam {beam_acc:.1%}; they differ on {len(differ)} of {len(heldout)}")
    if not differ:
        print("   no held-out date where greedy and beam search disagree")
    for i in differ[:4]:
        text, want = heldout[i]
        src = data.sources([text], task.src_vocab)  # (1, S)
        g, b = greedy_decode(m, src, task.max_tgt + 1), beam_search(m, src, beam_size, task.max_tgt + 1)
        both = data.pad([g[0].tolist(), b[0].tolist()])  # (2, L): the two answers' ids, EOS included
        logp = sequence_log_prob(m, np.repeat(src, 2, axis=0), both)
        print(f"   {text!r}: target {want}; greedy {greedy_out[i]!r} (log p {logp[0]:.2f}), "
              f"beam {beam_out[i]!r} (log p {logp[1]:.2f})")

# %% [markdown]
# Each line above gives both answers' log-probability under the model. Greedy commits to
# one character at a time; beam search keeps several candidates and can find an answer
# the model scores higher as a whole. On the half-trained model that is sometimes the
# right date and sometimes not (its scores are not yet reliable), so compare the two
# accuracies for the net effect. In the full run the two agree on every held-out date
# at step 1000: a model this sure of every character leaves the beam nothing better to
# find.

# %% [markdown]
# ## Cached and uncached decoding
# Without a cache, each decoding step runs the decoder over the whole prefix again.
# With the key/value cache each step feeds only the newest character: the keys and
# values of earlier steps are kept, and the cross-attention keys and values of the
# encoder's output are computed once. Same tokens, less work.

# %%
n = 50 if quick() else 500
src = data.sources([s for s, _ in heldout[:n]], task.src_vocab)
timings, outputs = {}, {}
for use_cache in (False, True):
    for name, decode in (("greedy", lambda c: greedy_decode(model, src, task.max_tgt + 1, use_cache=c)),
                         ("beam", lambda c: beam_search(model, src, beam_size, task.max_tgt + 1, use_cache=c))):
        start = time.perf_counter()
        outputs[name, use_cache] = decode(use_cache)
        timings[name, use_cache] = time.perf_counter() - start
for name in ("greedy", "beam"):
    same = np.array_equal(outputs[name, True], outputs[name, False])
    print(f"{name:6s} on {n} dates: uncached {timings[name, False]:.2f} s, cached {timings[name, True]:.2f} s "
          f"({timings[name, False] / timings[name, True]:.1f}x faster); identical tokens: {same}")
    assert same

# %% [markdown]
# ## Which input characters did each output character look at?
# Translate one date, then read the cross-attention of the last decoder layer, averaged
# over its heads: the row of the output character being written, spread over the input
# characters. For each output character we print the input characters it weighted most.

# %%
text = "the 3rd of March, 2021" if "the {do} of {month}, {yyyy}" in task.formats else heldout[0][0]
output, src_tokens, tgt_tokens = translate(model, task, text)
cross = model.transformer.decoder.layers[-1].cross_attn.attn_weights[0].mean(axis=0)  # (T, S)
written = list(output) + ["</s>"]  # row i reads tgt_tokens[i] and writes written[i]
print(f"{text!r} -> {output!r}")
for i, char in enumerate(written[:len(cross)]):
    top = np.argsort(-cross[i])[:3]
    print(f"  writes {char!r:6s} looking at " + ", ".join(f"{src_tokens[j]!r} ({cross[i, j]:.2f})" for j in top))

year_in = [j for j in range(len(text) - 3) if text[j:j + 4] == output[:4]]
if year_in:
    cols = list(range(year_in[0], year_in[0] + 4))
    share = cross[:4, cols].sum(axis=1)
    print("share of attention the four year digits put on the input's year:", share.round(2))

try:
    import matplotlib

    matplotlib.use("Agg")
    from tinygrad_attn.viz import plot_attention, plot_layers, show

    out_dir.mkdir(parents=True, exist_ok=True)
    show(plot_attention(cross, src_tokens, [f"-> {c}" for c in written[:len(cross)]],
                   title=f"{text!r} -> {output!r}\nlast decoder layer, cross-attention, mean of heads",
                   path=out_dir / "08_alignment.png"))
    show(plot_layers(model, src_tokens, tgt_tokens, path=out_dir / "08_attention_layers.png",
                     title=f"{text!r} -> {output!r}: rows are queries, columns are keys"))
    print("pictures written to", out_dir / "08_alignment.png", "and", out_dir / "08_attention_layers.png")
except ImportError:
    print("(install matplotlib to draw the attention: pip install matplotlib)")

# %% [markdown]
# Reading the full run's numbers: the year's last two digits put almost all of their
# attention on the input's year (the shares printed last), most of it on the very digit
# they copy. The month's "3" looks mostly at the "M" of "March": the model turns the
# month's name into a number by reading its first letters. The characters with no
# single input character to copy are less sure: the month's leading "0" spreads its
# attention over the letters of the name, and the year's first two digits spread over
# the year and the end-of-input marker or barely look at the year at all; in "03/03/21"
# the century is not in the input, and the model must infer it from the two digits it
# has. The layer picture shows every head of every layer. With `--quick` the model has
# barely trained and none of this holds yet.
