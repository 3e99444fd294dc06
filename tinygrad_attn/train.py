"""Train a seq2seq transformer on a task from tinygrad_attn.data, with checkpoints that resume exactly.

    from tinygrad_attn.train import train
    result = train("copy")                       # per-task defaults: see DEFAULTS
    train("dates", out="runs/dates", stop_after=1000)   # stops at step 1000, as if interrupted
    train("dates", out="runs/dates", resume=True)       # continues: the same parameters as one whole run

A checkpoint (``out/checkpoint.npz``, written every eval_every steps and at the end) holds the model,
the optimiser, the step, both random generators' states and the configuration (``steps`` included: the
cosine schedule depends on it). Resuming with another configuration is an error that names the
differences. ``train`` restores everything a step depends on, so a resumed run is bit for bit the
uninterrupted one.
"""

import json
import os
import sys
import time

import numpy as np

from . import data, decoding, optim, rng
from . import functional as F
from .env import set_blas_threads
from .nn.model import make_model
from .serialization import load, save

# What a run is made of; every key is a keyword of train() and a --flag of the CLI.
CONFIG_KEYS = ("steps", "layers", "d_model", "d_ff", "heads", "dropout", "batch_size", "schedule", "lr_factor",
               "warmup", "label_smoothing", "clip", "seed", "eval_size")
COMMON = {"layers": 2, "d_model": 64, "d_ff": 128, "heads": 4, "dropout": 0.0, "batch_size": 64,
          "schedule": "cosine", "lr_factor": 1.0, "warmup": 200, "label_smoothing": 0.0, "clip": 1.0, "seed": 0,
          "eval_every": 500, "eval_size": 1000, "beam_size": 4}
DEFAULTS = {  # chosen to reach the targets in docs on 2 cores; see README
    "copy": dict(COMMON, steps=1000),
    "reverse": dict(COMMON, steps=1500),
    "sort": dict(COMMON, steps=1500),
    "dates": dict(COMMON, steps=3000),
}


def config_for(task, **overrides):
    """DEFAULTS[task] with ``overrides`` applied; unknown tasks and settings are errors."""
    if task not in DEFAULTS:
        raise ValueError(f"train: unknown task {task!r}; choose one of {', '.join(DEFAULTS)}")
    unknown = set(overrides) - set(DEFAULTS[task])
    if unknown:
        raise TypeError(f"train: unknown settings {sorted(unknown)}; they are {sorted(DEFAULTS[task])}")
    return dict(DEFAULTS[task], **{k: v for k, v in overrides.items() if v is not None}, task=task)


class Run:
    """The model, optimiser and both generators of one training run, which a checkpoint captures."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.task = data.get_task(cfg["task"])
        rng.manual_seed(cfg["seed"])  # the library's generator: initialisation, then dropout
        self.model = make_model(len(self.task.src_vocab), len(self.task.tgt_vocab), N=cfg["layers"],
                                d_model=cfg["d_model"], d_ff=cfg["d_ff"], h=cfg["heads"],
                                dropout=cfg["dropout"])
        self.params = list(self.model.parameters())
        self.opt = optim.Adam(self.params, lr=0.0, betas=(0.9, 0.98), eps=1e-9)
        if cfg["schedule"] == "noam":
            self.schedule = optim.NoamLR(self.opt, cfg["d_model"], cfg["warmup"], cfg["lr_factor"])
        elif cfg["schedule"] == "cosine":  # the same peak as noam's, then a half cosine to 0 at cfg["steps"]
            self.opt.lr = optim.noam_rate(cfg["warmup"], cfg["d_model"], cfg["warmup"], cfg["lr_factor"])
            self.schedule = optim.CosineLR(self.opt, cfg["steps"], cfg["warmup"])
        else:
            raise ValueError(f"train: schedule must be 'noam' or 'cosine', got {cfg['schedule']!r}")
        self.data_rng = np.random.default_rng(cfg["seed"] + 1)
        self.heldout, self.heldout_keys = data.heldout(self.task, cfg["eval_size"])
        self.step = 0

    def train_step(self):
        """One update on a fresh batch; returns (loss, number of target tokens)."""
        src, tgt = data.train_batch(self.task, self.data_rng, self.cfg["batch_size"], self.heldout_keys)
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # (B, T): predict each next token
        logits = self.model(src, tgt_in, src_key_padding_mask=src == data.PAD)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                               ignore_index=data.PAD, label_smoothing=self.cfg["label_smoothing"])
        self.opt.zero_grad()
        loss.backward()
        if self.cfg["clip"]:
            optim.clip_grad_norm_(self.params, self.cfg["clip"])
        self.opt.step()
        self.schedule.step()
        self.step += 1
        return loss.item(), int((tgt_out != data.PAD).sum())

    # ------------------------------------------------------------ checkpoints

    def state(self):
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        out.update({f"optim.{k}": v for k, v in self.opt.state_dict().items()})
        out["step"] = np.asarray(self.step)
        out["config"] = np.asarray(json.dumps(_run_config(self.cfg), sort_keys=True))
        out["rng.data"] = np.asarray(json.dumps(self.data_rng.bit_generator.state))
        out["rng.library"] = np.asarray(json.dumps(rng.generator().bit_generator.state))
        return out

    def load(self, path):
        state = load(path)
        if "config" not in state:
            raise ValueError(f"train: {path} is not a training checkpoint (it has no config)")
        theirs, ours = json.loads(str(state["config"])), _run_config(self.cfg)
        diff = [f"{k}={theirs.get(k)!r} there, {ours.get(k)!r} here" for k in sorted(set(theirs) | set(ours))
                if theirs.get(k) != ours.get(k)]
        if diff:
            raise ValueError(f"train: the checkpoint {path} comes from a different configuration ("
                             + "; ".join(diff) + "); resume with the same settings or choose another --out")
        self.model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        self.opt.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("optim.")})
        self.step = int(state["step"])
        self.schedule.last_step = self.step
        self.opt.lr = self.schedule.rate(self.step + 1)
        self.data_rng.bit_generator.state = json.loads(str(state["rng.data"]))
        rng.generator().bit_generator.state = json.loads(str(state["rng.library"]))


def load_model(path):
    """(model in eval mode, task, config) from a checkpoint written by train()."""
    state = load(path)
    if "config" not in state:
        raise ValueError(f"load_model: {path} is not a training checkpoint (it has no config)")
    cfg = json.loads(str(state["config"]))
    task = data.get_task(cfg["task"])
    model = make_model(len(task.src_vocab), len(task.tgt_vocab), N=cfg["layers"], d_model=cfg["d_model"],
                       d_ff=cfg["d_ff"], h=cfg["heads"], dropout=0.0)
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    return model.eval(), task, cfg


def _run_config(cfg):
    return {k: cfg[k] for k in ("task",) + CONFIG_KEYS}


# ---------------------------------------------------------------- evaluation


def evaluate(model, task, pairs, beam_size=None, batch_size=500, use_cache=True):
    """Exact-match accuracy of greedy (or beam) decoding on [(src, tgt), ...]; also returns the outputs."""
    outputs = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        src = data.sources([s for s, _ in chunk], task.src_vocab)
        max_len = task.max_tgt + 1
        if beam_size:
            ids = decoding.beam_search(model, src, beam_size, max_len, use_cache=use_cache)
        else:
            ids = decoding.greedy_decode(model, src, max_len, use_cache=use_cache)
        outputs += [task.tgt_vocab.decode(row) for row in ids]
    accuracy = float(np.mean([out == tgt for out, (_, tgt) in zip(outputs, pairs)]))
    return accuracy, outputs


# ---------------------------------------------------------------- the loop


def train(task, steps=None, out=None, resume=False, stop_after=None, progress=True, threads=1, **settings):
    """Train on ``task`` ('copy', 'reverse', 'sort', 'dates') and return the result dict.

    ``settings`` override DEFAULTS[task] (d_model=..., layers=..., lr_factor=..., eval_every=...).
    With ``out`` a checkpoint is written there every eval_every steps and at the end; ``resume=True``
    continues from it (it must exist and match the configuration). ``stop_after=k`` stops at step k
    (checkpointed) as an interruption would. ``threads``: BLAS threads while training (None leaves
    NumPy's setting alone). The result: task, steps, seconds, train_loss (mean of the last 50 steps),
    exact_match (greedy, on the eval_size held-out examples), exact_match_beam, cached_equals_uncached
    (greedy and beam on 100 of them), the periodic evaluations in history, and every step's loss in losses.
    """
    cfg = config_for(task, steps=steps, **settings)
    start = time.perf_counter()
    threads_before = set_blas_threads(threads) if threads else None
    try:
        return _train(cfg, out, resume, stop_after or cfg["steps"], progress, start)
    finally:
        if threads_before:
            set_blas_threads(threads_before)


def _train(cfg, out, resume, stop, progress, start):
    from tqdm import tqdm

    task = cfg["task"]
    run = Run(cfg)
    path = os.path.join(out, "checkpoint.npz") if out else None
    if resume:
        if not path or not os.path.exists(path):
            raise FileNotFoundError(f"train: resume=True but there is no checkpoint at {path}; "
                                    f"train without resume first")
        run.load(path)
    elif path and os.path.exists(path):
        raise FileExistsError(f"train: {path} already exists; pass resume=True (--resume) to continue it, "
                              f"or choose another out directory")
    if path:
        os.makedirs(out, exist_ok=True)
    losses, tokens, history = [], 0, []
    bar = tqdm(total=cfg["steps"], initial=run.step, disable=not progress, desc=task, unit="step",
               leave=False)
    tick = time.perf_counter()
    while run.step < min(stop, cfg["steps"]):
        loss, n = run.train_step()
        losses.append(loss)
        tokens += n
        bar.update(1)
        if run.step % 10 == 0:
            now = time.perf_counter()
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", tok_s=f"{tokens / (now - tick):.0f}")
            tokens, tick = 0, now
        if run.step % cfg["eval_every"] == 0 or run.step in (stop, cfg["steps"]):
            if path:
                save(run.state(), path)
            if run.step < min(stop, cfg["steps"]):
                sample = run.heldout[:200]
                acc, _ = evaluate(run.model.eval(), run.task, sample)
                run.model.train()
                history.append({"step": run.step, "loss": round(float(np.mean(losses[-50:])), 4),
                                "exact_match": acc, "of": len(sample)})
                if progress:
                    bar.write(json.dumps(history[-1]), file=sys.stderr)
    bar.close()
    run.model.eval()
    result = {"task": task, "steps": run.step, "seconds": None,
              "train_loss": round(float(np.mean(losses[-50:])), 4) if losses else None}
    result["exact_match"], greedy = evaluate(run.model, run.task, run.heldout)
    beam_size = cfg["beam_size"] or 1
    if beam_size > 1:
        result["exact_match_beam"], beam = evaluate(run.model, run.task, run.heldout, beam_size=beam_size)
    sample = run.heldout[:100]
    same = evaluate(run.model, run.task, sample, use_cache=False)[1] == greedy[:100]
    if beam_size > 1:
        same &= evaluate(run.model, run.task, sample, beam_size=beam_size, use_cache=False)[1] == beam[:100]
    result["cached_equals_uncached"] = same
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["history"] = history
    result["losses"] = [round(float(x), 5) for x in losses]  # every step's training loss, for a curve
    return result
