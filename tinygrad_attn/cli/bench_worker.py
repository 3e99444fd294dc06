"""The benchmark's worker process: it builds one workload's step for one framework and times blocks of it on
request. bench.py starts one worker per framework and workload and drives it over a pipe, one JSON line each way:

    {"steps": 12}      ->  {"seconds": 0.31, "steps": 12, "cpu": 0.58, "busy": 0.60, "others": 0.02}

Everything here measures this process: wall time (time.perf_counter), this process's CPU time in all its
threads (resource.getrusage), the whole machine's busy CPU time (/proc/stat) and the peak resident set
(/proc/self/status, VmHWM, reset through /proc/self/clear_refs). Linux only for the last two.
"""

import gc
import json
import os
import resource
import sys
import time

import numpy as np

from .. import ops
from ..env import set_blas_threads
from ..rng import manual_seed
from .bench_workloads import WORKLOADS, Unavailable

# /proc/stat's columns counted as busy: user nice system idle iowait irq softirq steal -> all but idle, iowait
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat counts in 1/_TICK seconds


def busy_seconds():
    """CPU seconds the whole machine has spent busy since boot, summed over its cores (/proc/stat's first line:
    user + nice + system + irq + softirq + steal); None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    return sum(int(fields[i]) for i in _BUSY_COLUMNS if i < len(fields)) / _TICK


def own_cpu_seconds():
    """CPU seconds this process has used, user + system, over all its threads (BLAS's and OpenMP's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_block(step, steps):
    """Call ``step`` ``steps`` times back to back, garbage collection enabled, and say what the machine did
    meanwhile: {"seconds": wall time, "steps", "cpu": this process's CPU seconds, "busy": the machine's busy CPU
    seconds, "others": busy - cpu, the CPU seconds other processes took during the block (0 off Linux)}."""
    busy, cpu = busy_seconds(), own_cpu_seconds()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    cpu = own_cpu_seconds() - cpu
    busy = None if busy is None else busy_seconds() - busy
    others = 0.0 if busy is None else max(busy - cpu, 0.0)
    return {"seconds": seconds, "steps": steps, "cpu": cpu, "busy": busy, "others": others}


def rss_mb(field="VmRSS"):
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM the peak), in MiB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak():
    """Make VmHWM start again from the current resident set (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb(step, steps=3):
    """How far ``steps`` calls of ``step`` raise the resident set above where it stood before them, in MiB:
    the peak (VmHWM, reset first) minus the resident set before. None where /proc cannot tell."""
    gc.collect()
    before = rss_mb("VmRSS")
    if before is None or not _reset_peak():
        for _ in range(steps):
            step()
        return None
    for _ in range(steps):
        step()
    return round(rss_mb("VmHWM") - before, 1)


def live_tensors():
    """How many Tensors are alive in this process now (after a full collection)."""
    from ..tensor import Tensor

    gc.collect()
    return sum(issubclass(type(o), Tensor) for o in gc.get_objects())  # type(): no __class__ lookups


def matmul_flops(step):
    """The FLOPs of the matrix products (in ops.matmul, ops.linear and the two fused attention ops) one call of
    an engine step runs forward: 2*M*K*N each, batch included."""
    counted = []
    flops = {  # op -> the FLOPs of one call, from its output and its inputs
        "matmul": lambda z, x, *rest: 2 * z.size * x.shape[-1],
        "linear": lambda z, x, *rest: 2 * z.size * x.shape[-1],
        # q k^T and p v: per head (T, S, d) each, S the keys
        "self_attention": lambda z, qkv: 2 * 2 * z.size * qkv.shape[1],
        "cross_attention": lambda z, q, kv: 2 * 2 * z.size * kv.shape[1],
    }
    originals = {name: getattr(ops, name) for name in flops}

    def counting(original):
        def op(*inputs, **options):
            out, vjp = original(*inputs, **options)
            counted.append(flops[original.__name__](out, *inputs))
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


def threads_in_use():
    """The threads this process's BLAS libraries and (if imported) torch will use: what set_blas_threads set."""
    from threadpoolctl import threadpool_info

    used = {"blas": max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=None)}
    if "torch" in sys.modules:
        used["torch"] = sys.modules["torch"].get_num_threads()
    return used


def start(name, framework, threads, warmup, block_seconds):
    """Build the step, fix the threads, then: peak memory over the first 3 calls, the threads in use, warm-up
    calls, the number of steps a block needs to last block_seconds, and (ours) the matmul FLOPs of a step.
    Returns (step, facts)."""
    manual_seed(0)
    step = WORKLOADS[name].make(framework)
    set_blas_threads(threads)  # after make(): torch is imported by now, so its threads are set too
    facts = {"peak_mb": peak_memory_mb(step, 3), "threads": threads_in_use(), "gc_enabled": gc.isenabled()}
    for _ in range(warmup):
        step()
    one = min(run_block(step, 1)["seconds"] for _ in range(2))
    facts["steps_per_block"] = max(1, int(np.ceil(block_seconds / one)))
    if framework == "ours":
        facts["matmul_flops"] = matmul_flops(step)
    return step, facts


def serve(name, framework, threads, warmup, block_seconds):
    """The worker's loop: report what start() found (or why the workload cannot run here), then answer
    {"steps": n} with run_block(step, n) until stdin closes. Replies go to the real stdout, one JSON line
    each; anything a step prints goes to stderr."""
    reply, sys.stdout = sys.stdout, sys.stderr
    try:
        step, facts = start(name, framework, int(threads), int(warmup), float(block_seconds))
    except Unavailable as e:
        print(json.dumps({"unavailable": str(e)}), file=reply, flush=True)
        return
    print(json.dumps(facts), file=reply, flush=True)
    for line in sys.stdin:
        print(json.dumps(run_block(step, int(json.loads(line)["steps"]))), file=reply, flush=True)


if __name__ == "__main__":
    serve(*sys.argv[1:])
