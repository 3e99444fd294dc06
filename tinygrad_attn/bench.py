"""``tinygrad-attn bench``: time fixed workloads against PyTorch's eager CPU mode, in the same run.

Each workload builds a ``step()`` for us and, when it is installed, one for the
reference: PyTorch, or micrograd for the scalar engine. Each workload runs in a fresh
process with the thread count fixed (threadpoolctl for NumPy's BLAS, torch.set_num_threads);
steps are warmed up, then timed alternately (ours, torch, ours, ...) so that both see the
same machine load; the report gives medians with min and max. Peak memory is measured in a
fresh process per workload and framework. The GEMM floor is the workload's matmul FLOPs at
this machine's best NumPy matmul rate. docs/benchmarks.md keeps the current table.
"""

import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from . import ops
from .rng import manual_seed

WORKLOADS = {}  # name -> (description, make, reference, backward_too)


def workload(name, description, reference="torch", backward_too=True):
    """Register ``make(framework)``, which returns a step function; framework is 'ours' or the reference."""

    def register(make):
        WORKLOADS[name] = (description, make, reference, backward_too)
        return make

    return register


# ---------------------------------------------------------------- the workloads


@workload("mha", "W1 multi-head self-attention, B=16 T=64 d_model=256 h=8, forward + backward")
def _mha(framework):
    B, T, d, h = 16, 64, 256, 8
    x = np.random.default_rng(0).standard_normal((B, T, d)).astype(np.float32)
    if framework == "torch":
        import torch

        attn = torch.nn.MultiheadAttention(d, h, batch_first=True)
        xt = torch.tensor(x, requires_grad=True)

        def step():
            out, _ = attn(xt, xt, xt, need_weights=False)
            out.backward(torch.ones_like(out))

        return step
    from .nn import MultiheadAttention
    from .tensor import Tensor

    attn = MultiheadAttention(d, h)
    xt = Tensor(x, requires_grad=True)
    g = np.ones((B, T, d), np.float32)

    def step():
        out, _ = attn(xt, xt, xt, need_weights=False)
        out.backward(g)

    return step


def _seq2seq_config(size):
    if size == "tiny":  # W3: the copy task's size, bound by per-op overhead
        return dict(d_model=32, nhead=4, layers=1, d_ff=64, vocab=11, batch=8, length=10)
    return dict(d_model=128, nhead=4, layers=2, d_ff=512, vocab=64, batch=32, length=32)


def _seq2seq_data(c):
    rng = np.random.default_rng(0)
    src = rng.integers(1, c["vocab"], (c["batch"], c["length"]))
    tgt = rng.integers(1, c["vocab"], (c["batch"], c["length"] + 1))
    return src, tgt[:, :-1], tgt[:, 1:]  # source, decoder input, next-token target


def _torch_seq2seq(c):
    """The same model in PyTorch: embeddings * sqrt(d), sinusoidal positions, nn.Transformer, projection."""
    import torch

    class Seq2Seq(torch.nn.Module):
        def __init__(self):
            super().__init__()
            d = c["d_model"]
            self.src_embed = torch.nn.Embedding(c["vocab"], d)
            self.tgt_embed = torch.nn.Embedding(c["vocab"], d)
            pos = np.arange(512)[:, None] / 10000 ** (np.arange(0, d, 2) / d)
            pe = np.zeros((512, d), np.float32)
            pe[:, 0::2], pe[:, 1::2] = np.sin(pos), np.cos(pos)
            self.register_buffer("pe", torch.tensor(pe), persistent=False)  # a constant, as ours
            self.transformer = torch.nn.Transformer(
                d, c["nhead"], c["layers"], c["layers"], c["d_ff"], dropout=0.0, batch_first=True
            )
            self.generator = torch.nn.Linear(d, c["vocab"])
            self.scale = math.sqrt(d)

        def embed(self, table, ids):
            return table(ids) * self.scale + self.pe[: ids.shape[1]]

        def encode(self, src):
            return self.transformer.encoder(self.embed(self.src_embed, src))

        def decode(self, tgt, memory):
            mask = torch.nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
            out = self.transformer.decoder(self.embed(self.tgt_embed, tgt), memory, tgt_mask=mask, tgt_is_causal=True)
            return self.generator(out)

        def forward(self, src, tgt):
            return self.decode(tgt, self.encode(src))

    return Seq2Seq()


def _train_step(size, framework):
    c = _seq2seq_config(size)
    src, tgt_in, tgt_out = _seq2seq_data(c)
    if framework == "torch":
        import torch

        model = _torch_seq2seq(c)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        src, tgt_in, tgt_out = (torch.tensor(a) for a in (src, tgt_in, tgt_out))

        def step():
            logits = model(src, tgt_in)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, c["vocab"]), tgt_out.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step
    from .functional import cross_entropy
    from .optim import Adam

    model = _our_seq2seq(c)
    opt = Adam(model.parameters(), lr=1e-3)

    def step():
        logits = model(src, tgt_in)  # tgt_mask=None: causal
        loss = cross_entropy(logits.reshape(-1, c["vocab"]), tgt_out.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _our_seq2seq(c):
    from .nn import make_model

    return make_model(c["vocab"], c["vocab"], N=c["layers"], d_model=c["d_model"], d_ff=c["d_ff"],
                      h=c["nhead"], dropout=0.0)


@workload("train_step", "W2 encoder-decoder train step, d_model=128 h=4 2+2 layers d_ff=512 vocab=64 B=32 T=32")
def _w2(framework):
    return _train_step("full", framework)


@workload("tiny_step", "W3 the same at copy-task size, d_model=32 h=4 1+1 layers d_ff=64 vocab=11 B=8 T=10")
def _w3(framework):
    return _train_step("tiny", framework)


@workload("greedy_decode", "W4 W2's model, no grad, 32 new tokens for 32 sources of length 32",
          backward_too=False)
def _w4(framework):
    c = _seq2seq_config("full")
    src, _, _ = _seq2seq_data(c)
    bos = 1
    if framework == "torch":
        import torch

        model = _torch_seq2seq(c).eval()
        src = torch.tensor(src)

        return lambda: torch_greedy_decode(model, src, 32, bos)
    from .decoding import greedy_decode

    model = _our_seq2seq(c)
    model.eval()

    def step():
        return greedy_decode(model, src, max_len=32, bos=bos, eos=None)

    return step


def torch_greedy_decode(model, src, max_len, bos):
    """Greedy decoding as the classic PyTorch tutorials do it: every step recomputes the whole prefix."""
    import torch

    with torch.no_grad():
        memory = model.encode(src)
        ys = torch.full((src.shape[0], 1), bos, dtype=torch.long)
        for _ in range(max_len):
            nxt = model.decode(ys, memory)[:, -1].argmax(-1, keepdim=True)
            ys = torch.cat([ys, nxt], dim=1)
    return ys[:, 1:]


@workload("scalar_mlp", "W5 micrograd's demo on the scalar engine: MLP 2-16-16-1, 100 points, hinge + L2, SGD",
          reference="micrograd")
def _w5(framework):
    X, y = _moons(100)
    rows = [[float(a) for a in row] for row in X]  # plain floats for both engines
    labels = [float(t) for t in y]
    if framework == "micrograd":
        import random

        from micrograd.engine import Value
        from micrograd.nn import MLP

        random.seed(1)
    else:
        from .scalar import MLP, Value

        manual_seed(1)
    model = MLP(2, [16, 16, 1])

    def step():  # micrograd's demo loop, line for line
        scores = [model([Value(a) for a in row]) for row in rows]
        losses = [(1 + -t * s).relu() for t, s in zip(labels, scores)]
        total = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in model.parameters())
        model.zero_grad()
        total.backward()
        for p in model.parameters():
            p.data -= 0.05 * p.grad

    return step


@workload("tensor_mlp", "W5 the same model and step on the Tensor engine (float32)")
def _w5_tensor(framework):
    X, y = _moons(100)
    X, y = X.astype(np.float32), y.astype(np.float32)[:, None]
    rng = np.random.default_rng(1)
    shapes = [(2, 16), (16,), (16, 16), (16,), (16, 1), (1,)]
    init = [rng.uniform(-1, 1, s).astype(np.float32) for s in shapes]
    if framework == "torch":
        import torch

        params = [torch.tensor(a, requires_grad=True) for a in init]
        X, y = torch.tensor(X), torch.tensor(y)

        def step():
            total = _mlp_loss(params, X, y)
            for p in params:
                p.grad = None
            total.backward()
            with torch.no_grad():
                for p in params:
                    p -= 0.05 * p.grad

        return step
    from .tensor import Tensor

    params = [Tensor(a, requires_grad=True) for a in init]

    def step():
        total = _mlp_loss(params, X, y)
        for p in params:
            p.grad = None
        total.backward()
        for p in params:
            p.data -= 0.05 * p.grad.data

    return step


def _mlp_loss(params, X, y):
    """The hinge loss + L2 of the 2-16-16-1 MLP: the same code runs on our Tensors and on torch's."""
    w1, b1, w2, b2, w3, b3 = params
    scores = ((X @ w1 + b1).relu() @ w2 + b2).relu() @ w3 + b3
    return (1 - y * scores).relu().mean() + 1e-4 * sum((p * p).sum() for p in params)


def _moons(n):
    """Two interleaved half circles, labels +1 and -1 (generated here: no data set is downloaded)."""
    rng = np.random.default_rng(0)
    t = rng.uniform(0, np.pi, n // 2)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
    X = np.concatenate([upper, lower]) + rng.normal(0, 0.1, (n, 2))
    return X, np.array([1] * (n // 2) + [-1] * (n - n // 2))


# ---------------------------------------------------------------- measuring


def _available(framework):
    if framework == "ours":
        return True
    try:
        __import__(framework)
        return True
    except ImportError:
        return False


def time_interleaved(steps, repeats, warmup):
    """Seconds per call for each step function, alternating between them so both share the machine's state.

    A full garbage collection runs (untimed) before each call, so no step pays to collect the garbage
    another left: micrograd's graphs are reference cycles that only the collector frees.
    """
    import gc

    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            gc.collect()
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def matmul_flops(step):
    """The FLOPs of the matrix products (ops.matmul and ops.linear) one call of an engine step runs
    forward: 2*M*K*N each, batch included."""
    counted = []
    originals = {name: getattr(ops, name) for name in ("matmul", "linear")}

    def counting(original):
        def op(x, y, *rest, **options):
            out, vjp = original(x, y, *rest, **options)
            counted.append(2 * out.size * x.shape[-1])
            return out, vjp

        op.__name__ = original.__name__
        return op

    for name, original in originals.items():  # only for the length of one step, restored below
        setattr(ops, name, counting(original))
    try:
        step()
    finally:
        for name, original in originals.items():
            setattr(ops, name, original)
    return sum(counted)


def gemm_rate(n=1024, repeats=5):
    """The best float32 matmul rate NumPy reaches on this machine, in FLOP/s."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    best = min(_seconds(lambda: a @ a) for _ in range(repeats))
    return 2 * n**3 / best


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _rss_mb(field):
    """A memory figure of this process from /proc (VmRSS now, VmHWM the peak), in MiB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def in_fresh_process(function, *args):
    """``function(*args)`` (a function of this module, JSON in and out) run in a new Python process."""
    code = f"import json, tinygrad_attn.bench as b; print(json.dumps(b.{function}(*{json.dumps(args)})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench: {function}{tuple(args)} failed in its process:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_memory_mb(name, framework, steps=3, threads=1):
    """Peak resident memory that ``steps`` calls add over the set-up model, measured in a fresh process."""
    return in_fresh_process("_memory_probe", name, framework, steps, threads)


def _memory_probe(name, framework, steps, threads):
    step = WORKLOADS[name][1](framework)
    fix_threads(threads)
    before = _rss_mb("VmRSS")
    for _ in range(steps):
        step()
    peak = _rss_mb("VmHWM")
    return None if before is None or peak is None else round(peak - before, 1)


def run_workload(name, repeats, warmup, memory=True, threads=1):
    """Time one workload for us and its reference in a fresh process (so no workload pays for another's
    imports and garbage: Python's garbage collector rescans every live object), then measure peak memory;
    return a dict of the figures."""
    result = in_fresh_process("time_workload", name, repeats, warmup, threads)
    if memory:
        for key, framework in (("ours", "ours"), ("reference", result["reference_name"])):
            if key in result:
                result[key]["peak_mb"] = peak_memory_mb(name, framework, threads=threads)
    return result


def time_workload(name, repeats, warmup, threads=1):
    """Time one workload for us and its reference, interleaved, in this process."""
    description, make, reference, backward_too = WORKLOADS[name]
    fix_threads(threads)
    frameworks = ["ours"] + ([reference] if _available(reference) else [])
    manual_seed(0)
    steps = {f: make(f) for f in frameworks}
    fix_threads(threads)  # again, now that the reference is imported
    times = time_interleaved(steps, repeats, warmup)
    result = {"workload": name, "description": description, "repeats": repeats, "reference_name": reference}
    for f, ts in times.items():
        key = "ours" if f == "ours" else "reference"
        result[key] = {"median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts), "max_ms": 1e3 * max(ts)}
    if "reference" in result:
        result["ratio"] = result["ours"]["median_ms"] / result["reference"]["median_ms"]
    flops = matmul_flops(steps["ours"]) * (3 if backward_too else 1)  # a matmul's backward is two more
    if flops:
        result["matmul_gflop"] = flops / 1e9
    return result


def report(results, rate):
    """A table: medians [min, max], the ratio to the reference, peak memory and the GEMM floor."""
    head = f"{'workload':14s} {'ours ms':>22s} {'reference ms':>26s} {'ratio':>6s} {'peak MiB':>15s} {'floor ms':>8s}"
    lines = [head, "-" * len(head)]
    for r in results:
        o = r["ours"]
        ours = f"{o['median_ms']:8.2f} [{o['min_ms']:.1f}, {o['max_ms']:.1f}]"
        ref = r.get("reference")
        if isinstance(ref, dict):
            refs = f"{r['reference_name']:>9s} {ref['median_ms']:7.2f} [{ref['min_ms']:.1f}, {ref['max_ms']:.1f}]"
            ratio = f"{r['ratio']:6.2f}"
        else:
            refs, ratio = f"{r['reference_name']:>9s} (not installed)", "     -"
        mem = f"{_mb(o.get('peak_mb'))} / {_mb(ref.get('peak_mb') if isinstance(ref, dict) else None)}"
        floor = f"{1e3 * r['matmul_gflop'] * 1e9 / rate:8.2f}" if r.get("matmul_gflop") else "       -"
        lines.append(f"{r['workload']:14s} {ours:>22s} {refs:>26s} {ratio} {mem:>15s} {floor}")
    lines.append(f"GEMM floor: each workload's matmul FLOPs at NumPy's best float32 rate here, "
                 f"{rate / 1e9:.0f} GFLOP/s.")
    return "\n".join(lines)


def machine():
    """The facts a reader needs to compare tables: cores, threads, versions."""
    from threadpoolctl import threadpool_info

    facts = {"cores": os.cpu_count(), "python": sys.version.split()[0], "numpy": np.__version__}
    blas = [f"{lib.get('internal_api')} {lib.get('version')} ({lib['num_threads']} threads)"
            for lib in threadpool_info() if lib["user_api"] == "blas"]
    facts["blas"] = ", ".join(blas) or "unknown"
    for name in ("torch", "micrograd"):
        if _available(name):
            module = __import__(name)
            facts[name] = getattr(module, "__version__", "installed")
    return facts


def _mb(x):
    return "-" if x is None else f"{x:.0f}"


def fix_threads(n):
    """NumPy's BLAS (through threadpoolctl, as train.set_blas_threads) and PyTorch both use n threads."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(n, user_api="blas")
    if "torch" in sys.modules:  # not imported for it: the scalar workload runs without torch's objects
        sys.modules["torch"].set_num_threads(n)


SOAK_WORKLOADS = ("tiny_step", "train_step", "greedy_decode")


def soak(steps, names=SOAK_WORKLOADS, every=None):
    """Run each workload's step of ours ``steps`` times; sample resident memory and the number of live
    Tensors as they go. Flat figures mean no graph, cache or gradient outlives its step."""
    import gc

    from .tensor import Tensor

    every = every or max(steps // 10, 1)
    out = {}
    for name in names:
        manual_seed(0)
        step = WORKLOADS[name][1]("ours")
        samples = []
        for i in range(1, steps + 1):
            step()
            if i % every == 0 or i == 1:
                gc.collect()
                live = sum(issubclass(type(o), Tensor) for o in gc.get_objects())  # type(): no __class__ lookups
                samples.append({"step": i, "rss_mb": _rss_mb("VmRSS"), "live_tensors": live})
        out[name] = samples
    return out


def soak_report(samples):
    """The --soak table: resident memory and live Tensors over the steps, per workload."""
    lines = []
    for name, rows in samples.items():
        lines.append(f"{name}: step, resident MiB, live Tensors")
        lines += [f"  {r['step']:6d} {r['rss_mb'] or 0:8.1f} {r['live_tensors']:6d}" for r in rows]
    return "\n".join(lines)


def fused_vs_composite(repeats=50):
    """Forward + backward of each fused op and of the same math spelled with primitives, at W2's shapes
    (1024 tokens, d_model 128, 4 heads, vocab 64); returns {op: (fused ms, composite ms)} medians."""
    from . import functional as F
    from .tensor import Tensor, apply

    rng = np.random.default_rng(0)

    def t(*shape):
        return Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)

    x, w, b = t(32, 32, 128), t(128), t(128)
    weight, scores, logits = t(128, 128), t(32, 4, 32, 32), t(1024, 64)
    ids, target = rng.integers(0, 64, (32, 32)), rng.integers(0, 64, 1024)
    bias = np.where(np.triu(np.ones((32, 32), bool), 1), np.float32(-np.inf), np.float32(0))
    table = t(64, 128)

    def layer_norm(x):
        xc = x - x.mean(-1, keepdims=True)
        return xc / ((xc * xc).mean(-1, keepdims=True) + 1e-5).sqrt() * w + b

    def cross_entropy(z):
        return -z.log_softmax(-1)[np.arange(len(target)), target].mean()

    pairs = {
        "linear": (lambda: F.linear(x, weight, b), lambda: x @ weight.T + b),
        "layer_norm": (lambda: apply(ops.layer_norm, x, w, b), lambda: layer_norm(x)),
        "masked_softmax": (lambda: F.masked_softmax(scores, bias, 0.125),
                           lambda: (scores * 0.125 + bias).softmax(-1)),
        "cross_entropy": (lambda: F.cross_entropy(logits, target), lambda: cross_entropy(logits)),
        "embedding": (lambda: F.embedding(ids, table), lambda: table[ids]),
    }
    out = {}
    for name, fns in pairs.items():
        times = []
        for fn in fns:
            g = np.ones(fn().shape, np.float32)
            calls = [_seconds(lambda fn=fn, g=g: fn().backward(g)) for _ in range(repeats)]
            times.append(statistics.median(calls))
        out[name] = tuple(round(1e3 * s, 3) for s in times)
    return out


# ---------------------------------------------------------------- the command


def add_arguments(parser):
    parser.add_argument("workloads", nargs="*", choices=[[]] + list(WORKLOADS), metavar="WORKLOAD",
                        help=f"which to run (default all): {', '.join(WORKLOADS)}")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per framework (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="NumPy BLAS and torch threads (default 2)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--fused", action="store_true",
                        help="instead of timing workloads: each fused op against its composite, at W2's shapes")
    parser.add_argument("--soak", type=int, metavar="N",
                        help="instead of timing: run each workload (default W3, W2, W4) N times, printing "
                             "resident memory and live Tensors every N/10 steps")


def run(args):
    fix_threads(args.threads)
    if args.fused:
        print(f"{'op (forward + backward)':24s} {'fused ms':>9s} {'composite ms':>13s}")
        for name, (fused, composite) in fused_vs_composite(args.repeats).items():
            print(f"{name:24s} {fused:9.3f} {composite:13.3f}")
        return 0
    if args.soak:
        samples = soak(args.soak, args.workloads or SOAK_WORKLOADS)
        print(soak_report(samples))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"threads": args.threads, "soak": samples}, f, indent=2)
        return 0
    rate = gemm_rate()
    results = []
    for name in args.workloads or list(WORKLOADS):
        print(f"running {name}: {WORKLOADS[name][0]}", file=sys.stderr, flush=True)
        results.append(run_workload(name, args.repeats, args.warmup, memory=not args.no_memory,
                                    threads=args.threads))
    print(report(results, rate))
    print(f"threads: {args.threads} for NumPy's BLAS and for torch; each workload timed in a fresh process")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "gemm_gflops": rate / 1e9, "machine": machine(),
                       "results": results}, f, indent=2)
        print(f"wrote {args.json}")
