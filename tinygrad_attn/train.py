"""Train a seq2seq transformer on a task from tinygrad_attn.data, with checkpoints that resume exactly.

    from tinygrad_attn.train import train
    result = train("copy")                       # per-task defaults: TrainConfig and STEPS
    train("dates", out="runs/dates", stop_after=1000)   # stops at step 1000, as if interrupted
    train("dates", out="runs/dates", resume=True)       # continues: the same parameters as one whole run

A checkpoint (``out/checkpoint.npz``, written every eval_every steps and at the end) holds the model,
the optimiser, the step, both random generators' states and the configuration (``steps`` included: the
cosine schedule depends on it). Resuming with another configuration is an error that names the
differences. ``train`` restores everything a step depends on, so a resumed run is bit for bit the
uninterrupted one.
"""

import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

from . import data, decoding, optim, rng
from . import functional as F
from .env import set_blas_threads
from .nn.model import Seq2Seq
from .serialization import CheckpointError, load, remove_stale_temporaries, save

STEPS = {"copy": 1000, "reverse": 1500, "sort": 1500, "dates": 3000}  # reach the targets in docs on 2 cores


@dataclasses.dataclass
class TrainConfig:
    """One run's settings, the model's in PyTorch's names (nn.Transformer's). A checkpoint stores every
    field but eval_every and beam_size, which do not change the parameters a run reaches."""

    task: str
    steps: int
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    d_model: int = 64
    nhead: int = 4
    dim_feedforward: int = 128
    dropout: float = 0.0
    batch_size: int = 64
    schedule: str = "cosine"  # or "noam"
    lr_factor: float = 1.0
    warmup: int = 200
    label_smoothing: float = 0.0
    clip: float = 1.0
    seed: int = 0
    eval_size: int = 1000
    eval_every: int = 500
    beam_size: int = 4

    def __post_init__(self):
        for name, allowed in LIMITS.items():
            allowed.check(f"train: {name}", getattr(self, name))
        if self.schedule not in ("noam", "cosine"):
            raise ValueError(f"train: schedule must be 'noam' or 'cosine', got {self.schedule!r}")


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: ``kind`` int, or float (finite), from ``low`` to ``high``
    (None: unbounded), the bounds named in ``excluded`` ("low", "high") left out."""

    kind: type
    low: float = None
    high: float = None
    excluded: tuple = ()

    def __str__(self):  # "an integer >= 1", "a finite number in [0, 1)"
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            return (f"{what} in {'(' if 'low' in self.excluded else '['}{self.low:g}, "
                    f"{self.high:g}{')' if 'high' in self.excluded else ']'}")
        if self.low is not None:
            return f"{what} {'>' if 'low' in self.excluded else '>='} {self.low:g}"
        if self.high is not None:
            return f"{what} {'<' if 'high' in self.excluded else '<='} {self.high:g}"
        return what

    def __contains__(self, value):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            return False
        if self.kind is int and not isinstance(value, (int, np.integer)):
            return False
        if not math.isfinite(value):
            return False
        low_ok = self.low is None or (value > self.low if "low" in self.excluded else value >= self.low)
        high_ok = self.high is None or (value < self.high if "high" in self.excluded else value <= self.high)
        return low_ok and high_ok

    def check(self, name, value):
        """``value`` if it is in the range, else a ValueError naming ``name`` and the range."""
        if value not in self:
            raise ValueError(f"{name} must be {self}, got {value!r}")
        return value


COUNT = Range(int, 1)  # steps, layers, sizes: at least one
LIMITS = {  # the allowed values of every numeric TrainConfig field
    "steps": COUNT, "num_encoder_layers": COUNT, "num_decoder_layers": COUNT, "d_model": COUNT, "nhead": COUNT,
    "dim_feedforward": COUNT, "dropout": Range(float, 0, 1, excluded=("high",)), "batch_size": COUNT,
    "lr_factor": Range(float, 0, excluded=("low",)), "warmup": COUNT, "label_smoothing": Range(float, 0, 1),
    "clip": Range(float, 0),  # 0: no clipping
    "seed": Range(int, 0), "eval_size": COUNT, "eval_every": COUNT, "beam_size": COUNT,
}


SETTINGS = tuple(f.name for f in dataclasses.fields(TrainConfig))[2:]  # what train(**settings) may override
NOT_STORED = ("eval_every", "beam_size")
OLD_NAMES = {"layers": ("num_encoder_layers", "num_decoder_layers"), "heads": ("nhead",),
             "d_ff": ("dim_feedforward",)}  # the names checkpoints written before PyTorch's names used


def config_for(task, **overrides):
    """TrainConfig for ``task`` with its STEPS and ``overrides`` (None means the default); unknown tasks and
    settings are errors."""
    if task not in STEPS:
        raise ValueError(f"train: unknown task {task!r}; choose one of {', '.join(STEPS)}")
    unknown = sorted(set(overrides) - set(SETTINGS) - {"steps"})
    if unknown:
        renamed = "".join(f"; {old} is now {' and '.join(new)}" for old, new in OLD_NAMES.items() if old in unknown)
        raise TypeError(f"train: unknown settings {unknown}{renamed}; they are {sorted(SETTINGS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(**dict({"task": task, "steps": STEPS[task]}, **given))


def stored(cfg):
    """The configuration a checkpoint keeps, as a dict."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_STORED}


def _read_config(state, path, who):
    """The TrainConfig a checkpoint stores, the old names (layers, heads, d_ff) mapped; a CheckpointError
    naming the file when it is missing, not JSON, not an object, or lacks or misstates a setting."""
    if "config" not in state:
        raise CheckpointError(f"{who}: {path} is not a training checkpoint (it has no config)")
    try:
        cfg = json.loads(str(state["config"]))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{who}: {path}: its config is not JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{who}: {path}: its config is a JSON {type(cfg).__name__}, not an object of settings")
    for old, new in OLD_NAMES.items():
        if old in cfg:
            value = cfg.pop(old)
            cfg.update({name: value for name in new})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    missing, unknown = sorted(fields - set(NOT_STORED) - set(cfg)), sorted(set(cfg) - fields)
    if missing or unknown:
        raise CheckpointError(f"{who}: {path}: its config " + "; ".join(
            [f"lacks {missing}"] * bool(missing) + [f"has unknown settings {unknown}"] * bool(unknown)))
    try:
        return TrainConfig(**cfg)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{who}: {path}: its config is wrong: {e}") from None


def _restore(path, who, what, load_state_dict, entries):
    """``load_state_dict(entries)``, its KeyError / ValueError / TypeError a CheckpointError naming the file."""
    try:
        load_state_dict(entries)
    except (KeyError, ValueError, TypeError) as e:
        reason = e.args[0] if e.args else type(e).__name__
        raise CheckpointError(f"{who}: {path}: its {what} does not fit: {reason}") from None


def _entries(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _model(cfg, task, dropout):
    return Seq2Seq(len(task.src_vocab), len(task.tgt_vocab), d_model=cfg.d_model, nhead=cfg.nhead,
                   num_encoder_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers,
                   dim_feedforward=cfg.dim_feedforward, dropout=dropout)


class Run:
    """The model, optimiser and both generators of one training run, which a checkpoint captures."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.task = data.get_task(cfg.task)
        rng.manual_seed(cfg.seed)  # the library's generator: initialisation, then dropout
        self.model = _model(cfg, self.task, cfg.dropout)
        self.params = list(self.model.parameters())
        self.opt = optim.Adam(self.params, lr=0.0, betas=(0.9, 0.98), eps=1e-9)
        if cfg.schedule == "noam":
            self.schedule = optim.NoamLR(self.opt, cfg.d_model, cfg.warmup, cfg.lr_factor)
        else:  # cosine (TrainConfig allows no other): noam's peak, then a half cosine to 0 at cfg.steps
            self.opt.lr = optim.noam_rate(cfg.warmup, cfg.d_model, cfg.warmup, cfg.lr_factor)
            self.schedule = optim.CosineLR(self.opt, cfg.steps, cfg.warmup)
        self.data_rng = np.random.default_rng(cfg.seed + 1)
        self.heldout, self.heldout_keys = data.heldout(self.task, cfg.eval_size)
        self.step = 0
        self.losses = []  # the training loss of every step, resumed runs included

    def train_step(self):
        """One update on a fresh batch; returns (loss, number of target tokens)."""
        src, tgt = data.train_batch(self.task, self.data_rng, self.cfg.batch_size, self.heldout_keys)
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # (B, T): predict each next token
        logits = self.model(src, tgt_in, src_key_padding_mask=src == data.PAD)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                               ignore_index=data.PAD, label_smoothing=self.cfg.label_smoothing)
        self.opt.zero_grad()
        loss.backward()
        if self.cfg.clip:
            optim.clip_grad_norm_(self.params, self.cfg.clip)
        self.opt.step()
        self.schedule.step()
        self.step += 1
        self.losses.append(loss.item())
        return self.losses[-1], int((tgt_out != data.PAD).sum())

    def state(self):
        """Everything a step depends on, as a flat dict of arrays for serialization.save."""
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        out.update({f"optim.{k}": v for k, v in self.opt.state_dict().items()})
        out["step"] = np.asarray(self.step)
        out["losses"] = np.asarray(self.losses, dtype=np.float64)  # every step's loss so far: the run's summary
        out["config"] = np.asarray(json.dumps(stored(self.cfg), sort_keys=True))
        out["rng.data"] = np.asarray(json.dumps(self.data_rng.bit_generator.state))
        out["rng.library"] = np.asarray(json.dumps(rng.generator().bit_generator.state))
        return out

    def load(self, path):
        """Restore the state of a checkpoint written by a run with the same configuration; anything missing or
        wrong in it is a CheckpointError naming the file, and then nothing has changed."""
        state = load(path)
        theirs, ours = stored(_read_config(state, path, "train")), stored(self.cfg)
        diff = [f"{k}={theirs.get(k)!r} there, {ours.get(k)!r} here" for k in sorted(set(theirs) | set(ours))
                if theirs.get(k) != ours.get(k)]
        if diff:
            raise ValueError(f"train: the checkpoint {path} comes from a different configuration ("
                             + "; ".join(diff) + "); resume with the same settings or choose another --out")
        missing = [k for k in ("step", "losses", "rng.data", "rng.library") if k not in state]
        if missing:
            raise CheckpointError(f"train: {path}: it lacks {missing}, so the run cannot continue exactly")
        step = state["step"]
        if step.shape != () or step.dtype.kind not in "iu" or not 0 <= int(step) <= self.cfg.steps:
            raise CheckpointError(f"train: {path}: its step must be one integer in [0, {self.cfg.steps}], got "
                                  f"{step.tolist()!r} ({step.dtype})")
        losses = state["losses"]
        if losses.shape != (int(step),) or losses.dtype.kind != "f":
            raise CheckpointError(f"train: {path}: it must hold the {int(step)} losses of its steps, got "
                                  f"{losses.dtype} of shape {losses.shape}")
        generators = {}
        for name, generator in (("rng.data", self.data_rng), ("rng.library", np.random.default_rng())):
            try:  # into a generator of the same kind first, so a bad state changes nothing
                probe = type(generator.bit_generator)()
                probe.state = json.loads(str(state[name]))
            except (ValueError, TypeError, KeyError) as e:
                raise CheckpointError(f"train: {path}: {name} is not a random generator's state ({e!r})") from None
            generators[name] = probe.state
        _restore(path, "train", "model", self.model.load_state_dict, _entries(state, "model."))
        _restore(path, "train", "optimiser state", self.opt.load_state_dict, _entries(state, "optim."))
        self.step, self.losses = int(step), losses.tolist()
        self.schedule.last_step = self.step
        self.opt.lr = self.schedule.rate(self.step + 1)
        self.data_rng.bit_generator.state = generators["rng.data"]
        rng.generator().bit_generator.state = generators["rng.library"]


def load_model(path):
    """(model in eval mode, task, TrainConfig) from a checkpoint written by train()."""
    state = load(path)
    cfg = _read_config(state, path, "load_model")
    task = data.get_task(cfg.task)
    model = _model(cfg, task, dropout=0.0)
    _restore(path, "load_model", "model", model.load_state_dict, _entries(state, "model."))
    return model.eval(), task, cfg


def checkpoint(run, path):
    """Write the run's state to ``path`` (atomically: an interrupted write leaves the old checkpoint)."""
    save(run.state(), path)


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

    ``settings`` override TrainConfig's defaults (d_model=..., num_encoder_layers=..., lr_factor=...,
    eval_every=...). With ``out`` a checkpoint is written there every eval_every steps and at the end;
    ``resume=True`` continues from it (it must exist and match the configuration). ``stop_after=k`` stops
    at step k (checkpointed) as an interruption would. ``threads``: BLAS threads while training (None
    leaves NumPy's setting alone). The result: task, steps, seconds (of this call), train_loss (mean of the
    last 50 steps of the whole run, resumed or not), exact_match (greedy, on the eval_size held-out examples),
    exact_match_beam, the periodic evaluations in history, and every step's loss in losses.
    """
    from tqdm import tqdm

    cfg = config_for(task, steps=steps, **settings)
    if stop_after is not None:
        COUNT.check("train: stop_after", stop_after)
    start = time.perf_counter()
    threads_before = set_blas_threads(threads) if threads else None
    try:
        run = Run(cfg)
        path = _checkpoint_path(run, out, resume)
        end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
        losses, history, tokens, tick = run.losses, [], 0, time.perf_counter()
        bar = tqdm(total=cfg.steps, initial=run.step, disable=not progress, desc=task, unit="step", leave=False)
        while run.step < end:
            _, n = run.train_step()
            tokens += n
            bar.update(1)
            if run.step % 10 == 0:  # the progress bar: recent loss and throughput
                now = time.perf_counter()
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", tok_s=f"{tokens / (now - tick):.0f}")
                tokens, tick = 0, now
            if run.step % cfg.eval_every == 0 or run.step == end:
                if path:
                    checkpoint(run, path)
                if run.step < end:
                    history.append(_heldout_check(run, losses))
                    if progress:
                        h = history[-1]
                        bar.write(f"step {h['step']}/{cfg.steps}: loss {h['loss']:.4f}, exact match "
                                  f"{h['exact_match']:.1%} on {h['of']} held-out examples", file=sys.stderr)
        bar.close()
        result = _final_evaluation(run, losses)
    finally:
        if threads_before:
            set_blas_threads(threads_before)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["history"] = history
    result["losses"] = [round(float(x), 5) for x in losses]  # every step's training loss (resumed or not)
    return result


def _checkpoint_path(run, out, resume):
    """Where the run's checkpoint goes (None without ``out``); loads it into ``run`` when resuming."""
    path = os.path.join(out, "checkpoint.npz") if out else None
    if out and os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(f"train: out={out!r} (--out) is a file, but it names the directory for "
                                 f"checkpoint.npz; choose a directory (a new one is created)")
    if path:
        remove_stale_temporaries(path)  # left by a save that was killed
    if resume and not out:
        raise ValueError("train: resume=True (--resume) needs out (--out DIR), the folder of the checkpoint to "
                         "continue")
    if resume:
        if not os.path.exists(path):
            raise FileNotFoundError(f"train: resume=True but there is no checkpoint at {path}; "
                                    f"train without resume first")
        run.load(path)
    elif path and os.path.exists(path):
        raise FileExistsError(f"train: {path} already exists; pass resume=True (--resume) to continue it, "
                              f"or choose another out directory")
    if path:
        os.makedirs(out, exist_ok=True)
    return path


def _heldout_check(run, losses, n=200):
    """A line of history during training: the recent loss and greedy exact match on n held-out examples."""
    sample = run.heldout[:n]
    accuracy, _ = evaluate(run.model.eval(), run.task, sample)
    run.model.train()
    return {"step": run.step, "loss": round(float(np.mean(losses[-50:])), 4), "exact_match": accuracy,
            "of": len(sample)}


def _final_evaluation(run, losses):
    """The result of a run: greedy (and beam) exact match on every held-out example."""
    run.model.eval()
    result = {"task": run.cfg.task, "steps": run.step, "seconds": None,
              "train_loss": round(float(np.mean(losses[-50:])), 4) if losses else None}
    result["exact_match"], _ = evaluate(run.model, run.task, run.heldout)
    if (run.cfg.beam_size or 1) > 1:
        result["exact_match_beam"], _ = evaluate(run.model, run.task, run.heldout, beam_size=run.cfg.beam_size)
    return result
