"""The benchmark harness runs end to end, its workloads are what they claim, and steps leave nothing behind.

No timing is asserted here (the machines are shared); the figures live in docs/benchmarks.md.
"""

import gc
import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from tinygrad_attn import no_grad
from tinygrad_attn.cli import bench, bench_reference
from tinygrad_attn.decoding import greedy_decode
from tinygrad_attn.env import set_blas_threads
from tinygrad_attn.functional import cross_entropy
from tinygrad_attn.rng import manual_seed
from tinygrad_attn.tensor import Tensor


def _live_tensors(with_graph=False):
    gc.collect()
    return sum(issubclass(type(o), Tensor) and (not with_graph or bool(o._parents)) for o in gc.get_objects())


# ---------------------------------------------------------------- the harness runs


def test_command_writes_json_with_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "tinygrad_attn", "bench", "tensor_mlp", "--repeats", "1", "--warmup", "0",
         "--no-memory", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "tensor_mlp" in done.stdout and "GEMM floor" in done.stdout and "machine: cores" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["threads"] == 1 and figures["gemm_gflops"] > 0
    assert {"cores", "numpy", "blas"} <= set(figures["machine"])
    (result,) = figures["results"]
    assert result["workload"] == "tensor_mlp" and result["repeats"] == 1
    ours = result["ours"]
    assert set(ours) == {"median_ms", "min_ms", "max_ms"}
    assert 0 < ours["min_ms"] <= ours["median_ms"] <= ours["max_ms"]
    if "reference" in result:  # torch installed
        assert result["ratio"] == pytest.approx(ours["median_ms"] / result["reference"]["median_ms"])


def test_time_workload_reports_medians_for_both_frameworks():
    result = bench.time_workload("tiny_step", repeats=2, warmup=0, threads=1)
    assert result["workload"] == "tiny_step" and result["matmul_gflop"] > 0
    for key in ("ours",) + (("reference",) if "reference" in result else ()):
        r = result[key]
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    table = bench.report([result], rate=1e11)
    assert table.splitlines()[2].startswith("tiny_step")


def test_memory_probe_runs_in_a_fresh_process():
    mb = bench.peak_memory_mb("tensor_mlp", "ours", steps=1, threads=1)
    assert isinstance(mb, float) and mb >= 0


def test_matmul_flops_counts_linear_and_matmul():
    """W1: four projections (B*T, E) x (E, E) and two batched products (B*h, T, d_k) x (d_k, T)."""
    b, t, e, h = 16, 64, 256, 8
    step = bench.WORKLOADS["mha"][1]("ours")
    expected = 4 * 2 * (b * t) * e * e + 2 * 2 * (b * h) * t * t * (e // h)
    assert bench.matmul_flops(step) == expected


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
    step = bench.WORKLOADS["tiny_step"][1]("ours")
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
