"""The benchmark harness runs end to end, its workloads are what they claim, and steps leave nothing behind.

No timing is asserted here (the machines are shared); the figures live in docs/benchmarks.md.
"""

import gc
import json
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from tinygrad_attn import no_grad, pretrained
from tinygrad_attn.cli import bench, bench_reference, bench_worker, bench_workloads
from tinygrad_attn.decoding import greedy_decode
from tinygrad_attn.env import set_blas_threads
from tinygrad_attn.functional import cross_entropy
from tinygrad_attn.nn import spelled_out
from tinygrad_attn.rng import manual_seed
from tinygrad_attn.tensor import Tensor


def _live_tensors(with_graph=False):
    gc.collect()
    return sum(issubclass(type(o), Tensor) and (not with_graph or bool(o._parents)) for o in gc.get_objects())


# ---------------------------------------------------------------- the harness runs


def test_command_writes_json_with_every_figure(tmp_path):
    """A smoke run: tiny blocks, two per framework, each framework in its own worker process."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "tinygrad_attn", "bench", "tensor_mlp", "--repeats", "2", "--block", "0.02",
         "--settle", "0", "--retries", "0", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    for words in ("tensor_mlp", "GEMM floor", "machine: cores", "load: other processes used"):
        assert words in done.stdout
    figures = json.loads(out.read_text())
    assert figures["threads"] == 1 and figures["repeats"] == 2 and figures["gemm_gflops"] > 0
    assert {"cores", "numpy", "blas"} <= set(figures["machine"])
    assert set(figures["load"]) == {"mean", "max", "remeasured", "kept_loaded"}
    (result,) = figures["results"]
    assert result["workload"] == "tensor_mlp"
    sides = ("ours", "reference") if "reference" in result else ("ours",)  # torch installed or not
    for side in sides:
        r = result[side]
        assert len(r["blocks"]) == 2 and all(b["steps"] >= 1 and b["attempts"] == 1 for b in r["blocks"])
        per_step = sorted(1e3 * b["seconds"] / b["steps"] for b in r["blocks"])
        assert (r["min_ms"], r["max_ms"]) == pytest.approx((per_step[0], per_step[-1]))
        assert r["median_ms"] == pytest.approx(sum(per_step) / 2)
        assert r["peak_mb"] is None or r["peak_mb"] >= 0
        assert r["gc_enabled"] and set(r["threads"].values()) == {1}  # torch's too, where it runs
    if "reference" in result:
        assert result["ratio"] == pytest.approx(result["ours"]["median_ms"] / result["reference"]["median_ms"])


class FakeWorker:
    """Stands in for a worker process: records the order of the blocks, and reports the loads it is given."""

    log = []

    def __init__(self, name, framework, threads, warmup, block_seconds):
        self.framework, self.loads = framework, list(LOADS[framework])

    def started(self):
        return {"peak_mb": 1.0, "steps_per_block": 4, "matmul_flops": 10**9, "threads": {}, "gc_enabled": True}

    def block(self, steps):
        load = self.loads.pop(0)
        FakeWorker.log.append((self.framework, load))
        seconds = 0.01 if self.framework == "ours" else 0.02
        return {"seconds": seconds + load, "steps": steps, "cpu": seconds, "busy": seconds + load * seconds,
                "others": load * (seconds + load)}

    def close(self):
        pass


LOADS = {"ours": [0.0, 0.9, 0.0], "torch": [0.0, 0.0]}  # ours's second block is loaded and taken again


def test_blocks_alternate_and_loaded_blocks_are_measured_again():
    FakeWorker.log = []
    r = bench.time_workload("mha", repeats=2, settle=0, max_load=0.5, retries=3, make_worker=FakeWorker)
    assert FakeWorker.log == [("ours", 0.0), ("torch", 0.0), ("ours", 0.9), ("ours", 0.0), ("torch", 0.0)]
    assert [b["attempts"] for b in r["ours"]["blocks"]] == [1, 2]
    assert r["ours"]["median_ms"] == pytest.approx(1e3 * 0.01 / 4)  # the loaded block is not among them
    assert r["ratio"] == pytest.approx(0.5)
    assert r["load"]["remeasured"] == 1 and r["load"]["kept_loaded"] == 0
    assert r["matmul_gflop"] == pytest.approx(3.0)  # forward + backward of W1: three times the forward


class MissingWorker(FakeWorker):
    """A worker whose framework is not installed here."""

    missing = "torch"

    def started(self):
        return {"unavailable": "torch is not installed"} if self.framework == self.missing else super().started()


@pytest.mark.parametrize("missing, shown", [("torch", "torch (unavailable)"),
                                            ("ours", "skipped: torch is not installed")])
def test_a_missing_framework_is_reported_with_its_reason(missing, shown):
    MissingWorker.missing = missing
    r = bench.time_workload("mha", repeats=1, settle=0, make_worker=MissingWorker)
    assert "reference" not in r and ("ours" in r) == (missing != "ours")
    table = bench.report([r], rate=1e11)
    assert shown in table and ("torch is not installed" in table)


def test_a_block_sees_another_process_holding_a_core():
    """While a child process spins, the CPU time others took during the block is most of a core; the step's own
    CPU time is counted as ours, not as the others'."""
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() < t + 3: pass"])
    try:
        time.sleep(0.3)  # the child is running by now

        def spin():  # 0.2 s of this process's CPU time
            start = time.process_time()
            while time.process_time() < start + 0.2:
                pass

        block = bench_worker.run_block(spin, 2)
    finally:
        spinner.kill()
        spinner.wait()
    assert block["cpu"] >= 0.39
    assert block["others"] >= 0.3 * block["seconds"], block


@pytest.mark.parametrize("mib, at_least, at_most", [(50, 40, 80), (0, 0, 10)])
def test_peak_memory_is_what_the_step_allocates(mib, at_least, at_most):
    """A step that touches a 50 MiB array raises the peak by about 50 MiB; one that allocates nothing by almost
    nothing (the peak is reset, not carried over from earlier). In a fresh process, as the benchmark's workers
    measure: this process keeps memory its earlier tests freed (env.keep_freed_memory), and a step may reuse it."""
    code = f"""
import numpy as np
from tinygrad_attn.cli import bench_worker
# an earlier peak, higher than anything measured: above malloc's mmap threshold (256 MiB), so it goes back
# to the system when freed, and only the high-water mark remembers it
np.ones(300 * 2**20 // 8)
print(bench_worker.peak_memory_mb(lambda: np.ones({mib} * 2**20 // 8), steps=2))  # float64: every page touched
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert at_least <= float(done.stdout) <= at_most


def test_live_tensors_of_a_leaking_step_grow():
    kept = []
    manual_seed(0)
    params = [Tensor(np.ones(3, np.float32), requires_grad=True)]

    def leaking():  # keeps one new Tensor per call
        kept.append(Tensor(np.ones(3, np.float32)))

    def clean():
        (params[0] * 2).sum().backward()

    leak = bench.soak_step(leaking, 6, every=2)
    assert [s["live_tensors"] - leak[0]["live_tensors"] for s in leak] == [0, 1, 3, 5]
    flat = bench.soak_step(clean, 6, every=2)
    assert len({s["live_tensors"] for s in flat}) == 1
    assert flat[0]["live_tensors"] >= len(kept) + 2  # the leaked ones, the parameter and its gradient


def test_matmul_flops_counts_every_product():
    """W1: four projections (B*T, E) x (E, E) and two batched products (B*h, T, d_k) x (d_k, T), whether
    self-attention runs its fast path (one packed projection and ops.self_attention) or spelled out."""
    b, t, e, h = 16, 64, 256, 8
    step = bench.WORKLOADS["mha"].make("ours")
    expected = 4 * 2 * (b * t) * e * e + 2 * 2 * (b * h) * t * t * (e // h)
    assert bench_worker.matmul_flops(step) == expected
    with spelled_out():
        assert bench_worker.matmul_flops(step) == expected
    w2 = bench.WORKLOADS["train_step"].make("ours")  # its decoder attends to the memory: cross_attention
    with spelled_out():
        spelled = bench_worker.matmul_flops(w2)
    assert bench_worker.matmul_flops(w2) == spelled


def test_fused_ops_are_timed_against_their_composites():
    times = bench.fused_vs_composite(repeats=1)
    assert set(times) == {"linear", "layer_norm", "masked_softmax", "cross_entropy", "embedding", "self_attention"}
    assert all(fused > 0 and composite > 0 for fused, composite in times.values())


def test_set_blas_threads_sets_blas_and_torch_threads():
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_info

    def blas():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    before, torch_before = blas(), torch.get_num_threads()
    try:
        assert set_blas_threads(1) == max(before)
        assert blas() == {1} and torch.get_num_threads() == 1
    finally:
        set_blas_threads(max(before))
        torch.set_num_threads(torch_before)


# ---------------------------------------------------------------- the workloads are the same on both sides


def _same_weights(size):
    torch = pytest.importorskip("torch")
    from tinygrad_attn.interop import load_torch_state_dict

    c = bench_reference.seq2seq_config(size)
    torch.manual_seed(0)
    theirs = bench_reference.torch_seq2seq(c)
    ours = bench_reference.our_seq2seq(c)
    load_torch_state_dict(ours, theirs.state_dict())
    return torch, c, ours, theirs


def test_w2_models_are_the_same_architecture():
    """Same weights in, same logits and loss out: post-norm, ReLU, causal decoder, embeddings * sqrt(d) +
    sinusoids, output projection, the same sizes."""
    torch, c, ours, theirs = _same_weights("full")
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    src, tgt_in, tgt_out = bench_reference.seq2seq_data(c)
    with no_grad():
        logits = ours(src, tgt_in)
        loss = cross_entropy(logits.reshape(-1, c["vocab"]), tgt_out.reshape(-1))
    with torch.no_grad():
        their_logits = theirs(torch.tensor(src), torch.tensor(tgt_in))
        their_loss = torch.nn.functional.cross_entropy(their_logits.reshape(-1, c["vocab"]),
                                                       torch.tensor(tgt_out).reshape(-1))
    np.testing.assert_allclose(logits.data, their_logits.numpy(), rtol=1e-4, atol=1e-4)
    assert loss.item() == pytest.approx(their_loss.item(), rel=1e-5)


def test_w4_cached_decoding_matches_torch_recomputing_decoding():
    torch, c, ours, theirs = _same_weights("tiny")
    src = bench_reference.seq2seq_data(c)[0]
    ours.eval()
    mine = greedy_decode(ours, src, max_len=8, bos=1, eos=None)
    reference = bench_reference.torch_greedy_decode(theirs.eval(), torch.tensor(src), 8, bos=1)
    np.testing.assert_array_equal(mine, reference.numpy())


# ---------------------------------------------------------------- nothing outlives a step


def _tiny_model():
    manual_seed(0)
    c = bench_reference.seq2seq_config("tiny")
    return c, bench_reference.our_seq2seq(c), bench_reference.seq2seq_data(c)


def test_no_grad_forward_keeps_no_graph():
    _, model, (src, tgt_in, _) = _tiny_model()
    before = _live_tensors(with_graph=True)
    logits = model(src, tgt_in)  # with gradients: a graph hangs off the logits
    assert _live_tensors(with_graph=True) > before
    del logits
    assert _live_tensors(with_graph=True) == before
    with no_grad():
        logits = model(src, tgt_in)
    assert not logits.requires_grad and logits._parents == () and logits._vjp is None
    assert _live_tensors(with_graph=True) == before


def test_greedy_decoding_keeps_no_graph_or_cache():
    c, model, (src, _, _) = _tiny_model()
    model.eval()
    greedy_decode(model, src, max_len=6, bos=1, eos=None)  # warm the caches (positional encodings, masks)
    tensors = _live_tensors()
    out = greedy_decode(model, src, max_len=6, bos=1, eos=None)
    assert out.shape == (c["batch"], 6)
    assert _live_tensors() == tensors and _live_tensors(with_graph=True) == 0


def test_training_steps_do_not_accumulate_tensors_or_memory():
    manual_seed(0)
    step = bench.WORKLOADS["tiny_step"].make("ours")
    for _ in range(3):  # Adam's state and the gradients appear in the first steps
        step()
    tensors = _live_tensors()
    tracemalloc.start()
    try:
        step()
        gc.collect()
        settled = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            step()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - settled
    finally:
        tracemalloc.stop()
    assert _live_tensors() == tensors
    assert grown < 64 * 1024, f"20 training steps kept {grown} more bytes"


def test_soak_samples_stay_flat():
    samples = bench.soak(6, names=("tiny_step",), every=2)["tiny_step"]
    assert [s["step"] for s in samples] == [1, 2, 4, 6]
    assert len({s["live_tensors"] for s in samples}) == 1


def test_w6_is_the_same_forward_on_both_sides():
    """Our encoder and transformers' BertModel get the same padded batch and give the same hidden states at
    every real token. Ours skips the padding (as PyTorch's TransformerEncoder does in inference), so it gives
    zeros there, where BertModel computes values that pooling and attention never read."""
    pytest.importorskip("transformers")
    try:
        ours = bench_workloads.WORKLOADS["bert_forward"].make("ours")
    except bench_workloads.Unavailable as e:
        pytest.skip(str(e))
    theirs = bench_workloads.WORKLOADS["bert_forward"].make("transformers")
    hidden, reference = ours().data, theirs().numpy()
    assert hidden.shape == (8, 24, 384)  # padded to the longest of the 8 sentences: 24 tokens
    model = pretrained.load(pretrained.find("all-MiniLM-L6-v2"))
    real = model.tokenize(bench_workloads.SENTENCES)["attention_mask"] == 1
    assert real.sum() == 123  # of 8 * 24 positions
    np.testing.assert_allclose(hidden[real], reference[real], atol=2e-4)
    assert not hidden[~real].any()
