"""``tinygrad-attn bench``: time fixed workloads against PyTorch's eager CPU mode, in the same run.

Each workload (bench_workloads.py) builds a ``step()`` for us and, when it is installed, one for the
reference: PyTorch, or micrograd for the scalar engine. Each workload runs in a fresh
process with the thread count fixed (env.set_blas_threads: NumPy's BLAS and torch);
steps are warmed up, then timed alternately (ours, torch, ours, ...) so that both see the
same machine load; the report gives medians with min and max. Peak memory is measured in a
fresh process per workload and framework. The GEMM floor is the workload's matmul FLOPs at
this machine's best NumPy matmul rate. docs/benchmarks.md keeps the current table.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from .. import ops
from ..env import set_blas_threads
from ..rng import manual_seed
from .bench_workloads import WORKLOADS

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
    code = f"import json, tinygrad_attn.cli.bench as b; print(json.dumps(b.{function}(*{json.dumps(args)})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench: {function}{tuple(args)} failed in its process:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_memory_mb(name, framework, steps=3, threads=1):
    """Peak resident memory that ``steps`` calls add over the set-up model, measured in a fresh process."""
    return in_fresh_process("_memory_probe", name, framework, steps, threads)


def _memory_probe(name, framework, steps, threads):
    step = WORKLOADS[name][1](framework)
    set_blas_threads(threads)
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
    set_blas_threads(threads)
    frameworks = ["ours"] + ([reference] if _available(reference) else [])
    manual_seed(0)
    steps = {f: make(f) for f in frameworks}
    set_blas_threads(threads)  # again, now that the reference is imported
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


SOAK_WORKLOADS = ("tiny_step", "train_step", "greedy_decode")


def soak(steps, names=SOAK_WORKLOADS, every=None):
    """Run each workload's step of ours ``steps`` times; sample resident memory and the number of live
    Tensors as they go. Flat figures mean no graph, cache or gradient outlives its step."""
    import gc

    from ..tensor import Tensor

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
    from .. import functional as F
    from ..tensor import Tensor, apply

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
    set_blas_threads(args.threads)
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
