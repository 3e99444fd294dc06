"""``tinygrad-attn bench``: time fixed workloads against PyTorch's eager CPU mode the way a training loop runs.

For each workload (bench_workloads.py) two worker processes start (bench_worker.py): one builds our step, the
other the reference's (PyTorch, micrograd or transformers), each with the same thread count fixed. Each worker
measures its peak memory over the first 3 steps, warms up, and sizes a block: as many back-to-back steps as last
at least --block seconds. This process then asks the workers for blocks in turn (ours, reference, ours, ...)
with a --settle pause before each, so one library's spinning BLAS/OpenMP threads have stopped before the other
is timed. Garbage collection stays enabled and is timed with the steps, as in training.

Each block also reports the CPU time other processes took while it ran: the machine's busy time in /proc/stat
minus the worker's own CPU time (getrusage). A block during which others took more than --max-load cores (on
average over the block) is measured again, up to --retries times. The report gives seconds per step as the
median over blocks with [min, max], the ratio of the medians, peak memory, the GEMM floor and the load seen.
docs/benchmarks.md keeps the current table.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from importlib import metadata

import numpy as np

from .. import ops
from ..env import set_blas_threads
from ..rng import manual_seed
from .bench_worker import live_tensors, rss_mb
from .bench_workloads import WORKLOADS

# ---------------------------------------------------------------- the workers


class Worker:
    """One bench_worker.py process for one workload and framework, driven over its stdin and stdout.

    started() -> what the worker found when it built the step (peak_mb, steps_per_block, matmul_flops) or
    {"unavailable": why}; block(steps) -> bench_worker.run_block's figures for that many steps.
    """

    def __init__(self, name, framework, threads, warmup, block_seconds):
        self.name, self.framework = name, framework
        command = [sys.executable, "-m", "tinygrad_attn.cli.bench_worker", name, framework, str(threads),
                   str(warmup), str(block_seconds)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def started(self):
        return self._reply()

    def block(self, steps):
        self.process.stdin.write(json.dumps({"steps": steps}) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def _reply(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"bench: the {self.framework} worker for {self.name} stopped (exit code "
                               f"{self.process.wait()}); its error is printed above")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def measure_block(worker, steps, settle, max_load, retries):
    """One block of ``steps`` steps after a ``settle``-second pause; taken again (up to ``retries`` times) while
    other processes took more than ``max_load`` cores during it. Adds "load" (others' CPU seconds per second)
    and "attempts" to the worker's figures."""
    for attempt in range(1, retries + 2):
        time.sleep(settle)
        block = worker.block(steps)
        block["load"] = block["others"] / block["seconds"]
        block["attempts"] = attempt
        if block["load"] <= max_load:
            break
    return block


def time_workload(name, repeats=7, threads=2, block_seconds=0.3, settle=0.2, warmup=3, max_load=0.25, retries=3,
                  make_worker=Worker):
    """Time one workload: ours and its reference in their own worker processes, ``repeats`` blocks each,
    interleaved. Returns a dict of the figures (see report() and the --json output)."""
    workload = WORKLOADS[name]
    result = {"workload": name, "description": workload.description, "reference_name": workload.reference}
    workers = {f: make_worker(name, f, threads, warmup, block_seconds) for f in ("ours", workload.reference)}
    try:
        facts = {f: w.started() for f, w in workers.items()}  # both build at once; timing starts after
        if "unavailable" in facts["ours"]:
            return {**result, "skipped": facts["ours"]["unavailable"]}
        if "unavailable" in facts[workload.reference]:
            result["reference_unavailable"] = facts[workload.reference]["unavailable"]
            workers.pop(workload.reference).close()
        blocks = {f: [] for f in workers}
        for _ in range(repeats):
            for f, worker in workers.items():
                blocks[f].append(measure_block(worker, facts[f]["steps_per_block"], settle, max_load, retries))
    finally:
        for worker in workers.values():
            worker.close()
    for f, bs in blocks.items():
        per_step = [b["seconds"] / b["steps"] for b in bs]
        result["ours" if f == "ours" else "reference"] = {
            "median_ms": 1e3 * statistics.median(per_step), "min_ms": 1e3 * min(per_step),
            "max_ms": 1e3 * max(per_step), "peak_mb": facts[f]["peak_mb"], "threads": facts[f]["threads"],
            "gc_enabled": facts[f]["gc_enabled"], "blocks": bs,
        }
    if "reference" in result:
        result["ratio"] = result["ours"]["median_ms"] / result["reference"]["median_ms"]
    kept = [b for bs in blocks.values() for b in bs]
    result["load"] = {
        "mean": sum(b["others"] for b in kept) / sum(b["seconds"] for b in kept),
        "max": max(b["load"] for b in kept),
        "remeasured": sum(b["attempts"] - 1 for b in kept),
        "kept_loaded": sum(b["load"] > max_load for b in kept),
    }
    flops = facts["ours"].get("matmul_flops", 0) * (3 if workload.backward_too else 1)  # a backward is 2 more
    if flops:
        result["matmul_gflop"] = flops / 1e9
    return result


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


# ---------------------------------------------------------------- the report


def report(results, rate):
    """A table: ms per step, median [min, max] over blocks; the ratio of the medians; peak memory; the GEMM
    floor; the load other processes put on the machine while the workload ran (cores, mean and worst block),
    how many blocks were taken again, and how many were still loaded after the last retry."""
    head = (f"{'workload':14s} {'ours ms':>22s} {'reference ms':>28s} {'ratio':>6s} {'peak MiB':>11s} "
            f"{'floor ms':>8s}  load (max) re-measured, kept loaded")
    lines = [head, "-" * len(head)]
    for r in results:
        if "skipped" in r:
            lines.append(f"{r['workload']:14s} skipped: {r['skipped']}")
            continue
        o = r["ours"]
        ours = f"{o['median_ms']:8.2f} [{o['min_ms']:.1f}, {o['max_ms']:.1f}]"
        ref = r.get("reference")
        if ref:
            refs = f"{r['reference_name']:>12s} {ref['median_ms']:7.2f} [{ref['min_ms']:.1f}, {ref['max_ms']:.1f}]"
            ratio = f"{r['ratio']:6.2f}"
        else:
            refs, ratio = f"{r['reference_name']:>12s} (unavailable)", "     -"
        mem = f"{_mb(o['peak_mb'])} / {_mb(ref['peak_mb'] if ref else None)}"
        floor = f"{1e3 * r['matmul_gflop'] * 1e9 / rate:8.2f}" if r.get("matmul_gflop") else "       -"
        load = r["load"]
        lines.append(f"{r['workload']:14s} {ours:>22s} {refs:>28s} {ratio} {mem:>11s} {floor}  "
                     f"{load['mean']:.2f} ({load['max']:.2f}) {load['remeasured']}, {load['kept_loaded']}")
        if "reference_unavailable" in r:
            lines.append(f"{'':14s} {r['reference_name']}: {r['reference_unavailable']}")
    return "\n".join(lines)


def overall_load(results):
    """Others' CPU seconds per second over every timed block of the run, in cores, and the worst block."""
    blocks = [b for r in results for side in ("ours", "reference") if side in r for b in r[side]["blocks"]]
    if not blocks:
        return {"mean": 0.0, "max": 0.0, "remeasured": 0, "kept_loaded": 0}
    return {"mean": sum(b["others"] for b in blocks) / sum(b["seconds"] for b in blocks),
            "max": max(b["load"] for b in blocks),
            "remeasured": sum(r["load"]["remeasured"] for r in results if "load" in r),
            "kept_loaded": sum(r["load"]["kept_loaded"] for r in results if "load" in r)}


def machine():
    """The facts a reader needs to compare tables: cores, threads, versions."""
    from threadpoolctl import threadpool_info

    facts = {"cores": os.cpu_count(), "python": sys.version.split()[0], "numpy": np.__version__}
    blas = [f"{lib.get('internal_api')} {lib.get('version')} ({lib['num_threads']} threads)"
            for lib in threadpool_info() if lib["user_api"] == "blas"]
    facts["blas"] = ", ".join(blas) or "unknown"
    for name in ("torch", "micrograd", "transformers"):  # versions from the installed metadata: nothing imported
        try:
            facts[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return facts


def _mb(x):
    return "-" if x is None else f"{x:.0f}"


# ---------------------------------------------------------------- soak and fused ops (in this process)


SOAK_WORKLOADS = ("tiny_step", "train_step", "greedy_decode")


def soak_step(step, steps, every):
    """Call ``step`` ``steps`` times; sample resident memory and the number of live Tensors at step 1 and every
    ``every`` steps. Flat figures mean no graph, cache or gradient outlives its step."""
    samples = []
    for i in range(1, steps + 1):
        step()
        if i % every == 0 or i == 1:
            samples.append({"step": i, "rss_mb": rss_mb("VmRSS"), "live_tensors": live_tensors()})
    return samples


def soak(steps, names=SOAK_WORKLOADS, every=None):
    """soak_step() on our step of each named workload."""
    out = {}
    for name in names:
        manual_seed(0)
        out[name] = soak_step(WORKLOADS[name].make("ours"), steps, every or max(steps // 10, 1))
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
    table, qkv = t(64, 128), t(32, 32, 384)

    def layer_norm(x):
        xc = x - x.mean(-1, keepdims=True)
        return xc / ((xc * xc).mean(-1, keepdims=True) + 1e-5).sqrt() * w + b

    def cross_entropy(z):
        return -z.log_softmax(-1)[np.arange(len(target)), target].mean()

    def self_attention(qkv):  # q, k, v sliced out of qkv as heads (B, h, T, d), attention(), the heads joined
        q, k, v = (qkv.reshape(32, 32, 3, 4, 32).permute(2, 0, 3, 1, 4)[i] for i in range(3))
        return F.attention(q, k, v, bias)[0].transpose(1, 2).reshape(32, 32, 128)

    pairs = {
        "linear": (lambda: F.linear(x, weight, b), lambda: x @ weight.T + b),
        "layer_norm": (lambda: apply(ops.layer_norm, x, w, b), lambda: layer_norm(x)),
        "masked_softmax": (lambda: F.masked_softmax(scores, bias, 0.125),
                           lambda: (scores * 0.125 + bias).softmax(-1)),
        "cross_entropy": (lambda: F.cross_entropy(logits, target), lambda: cross_entropy(logits)),
        "embedding": (lambda: F.embedding(ids, table), lambda: table[ids]),
        "self_attention": (lambda: F.self_attention(qkv, 4, bias)[0], lambda: self_attention(qkv)),
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
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed blocks per framework (default 7); with --fused: calls per op")
    parser.add_argument("--block", type=float, default=0.3, metavar="SECONDS",
                        help="a block is as many back-to-back steps as last at least this long (default 0.3)")
    parser.add_argument("--settle", type=float, default=0.2, metavar="SECONDS",
                        help="pause before each block, so the other library's threads stop spinning (default 0.2)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before the first block (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="NumPy BLAS and torch threads (default 2)")
    parser.add_argument("--max-load", type=float, default=0.25, metavar="CORES",
                        help="re-measure a block during which other processes used more than this many cores "
                             "on average (default 0.25)")
    parser.add_argument("--retries", type=int, default=3, help="re-measurements allowed per block (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures (every block) to FILE as JSON")
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
        print(f"running {name}: {WORKLOADS[name].description}", file=sys.stderr, flush=True)
        results.append(time_workload(name, args.repeats, args.threads, args.block, args.settle, args.warmup,
                                     args.max_load, args.retries))
    load = overall_load(results)
    print(report(results, rate))
    print(f"GEMM floor: each workload's matmul FLOPs at NumPy's best float32 rate here, {rate / 1e9:.0f} GFLOP/s.")
    print(f"blocks: {args.repeats} per framework, each >= {args.block} s of back-to-back steps with garbage "
          f"collection, interleaved with {args.settle} s pauses; ours and the reference in their own processes, "
          f"{args.threads} threads each")
    print(f"load: other processes used {load['mean']:.2f} cores on average while blocks ran (worst block "
          f"{load['max']:.2f}); {load['remeasured']} blocks re-measured above {args.max_load}, "
          f"{load['kept_loaded']} kept above it after {args.retries} retries")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "repeats": args.repeats, "block_seconds": args.block,
                       "settle_seconds": args.settle, "max_load": args.max_load, "gemm_gflops": rate / 1e9,
                       "load": load, "machine": machine(), "results": results}, f, indent=2)
        print(f"wrote {args.json}")
