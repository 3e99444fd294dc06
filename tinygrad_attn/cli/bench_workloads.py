"""The benchmark's workloads: each builds a ``step()`` for us and one for its reference (PyTorch, micrograd for
the scalar engine, transformers for the pretrained encoder), which the harness in bench.py times against each other.
"""

from collections import namedtuple

import numpy as np

from ..rng import manual_seed
from .bench_reference import our_seq2seq, seq2seq_config, seq2seq_data, torch_greedy_decode, torch_seq2seq

Workload = namedtuple("Workload", "description make reference backward_too")
WORKLOADS = {}  # name -> Workload


class Unavailable(Exception):
    """A workload cannot be built on this machine (a package or a model's files are missing); the message says
    what is missing and how to get it."""


def workload(name, description, reference="torch", backward_too=True):
    """Register ``make(framework)``, which returns a step function; framework is 'ours' or the reference.
    make raises Unavailable when the framework or the files it needs are not installed."""

    def register(make):
        WORKLOADS[name] = Workload(description, make, reference, backward_too)
        return make

    return register


def need(module, install):
    """Import ``module`` or raise Unavailable saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise Unavailable(f"{module} is not installed ({install})") from None


@workload("mha", "W1 multi-head self-attention, B=16 T=64 d_model=256 h=8, forward + backward")
def _mha(framework):
    B, T, d, h = 16, 64, 256, 8
    x = np.random.default_rng(0).standard_normal((B, T, d)).astype(np.float32)
    if framework == "torch":
        torch = need("torch", "pip install torch")

        attn = torch.nn.MultiheadAttention(d, h, batch_first=True)
        xt = torch.tensor(x, requires_grad=True)

        def step():
            out, _ = attn(xt, xt, xt, need_weights=False)
            out.backward(torch.ones_like(out))

        return step
    from ..nn import MultiheadAttention
    from ..tensor import Tensor

    attn = MultiheadAttention(d, h)
    xt = Tensor(x, requires_grad=True)
    g = np.ones((B, T, d), np.float32)

    def step():
        out, _ = attn(xt, xt, xt, need_weights=False)
        out.backward(g)

    return step


def _train_step(size, framework):
    c = seq2seq_config(size)
    src, tgt_in, tgt_out = seq2seq_data(c)
    if framework == "torch":
        torch = need("torch", "pip install torch")

        model = torch_seq2seq(c)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        src, tgt_in, tgt_out = (torch.tensor(a) for a in (src, tgt_in, tgt_out))

        def step():
            logits = model(src, tgt_in)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, c["vocab"]), tgt_out.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step
    from ..functional import cross_entropy
    from ..optim import Adam

    model = our_seq2seq(c)
    opt = Adam(model.parameters(), lr=1e-3)

    def step():
        logits = model(src, tgt_in)  # tgt_mask=None: causal
        loss = cross_entropy(logits.reshape(-1, c["vocab"]), tgt_out.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


@workload("train_step", "W2 encoder-decoder train step, d_model=128 h=4 2+2 layers d_ff=512 vocab=64 B=32 T=32")
def _w2(framework):
    return _train_step("full", framework)


@workload("tiny_step", "W3 the same at copy-task size, d_model=32 h=4 1+1 layers d_ff=64 vocab=11 B=8 T=10")
def _w3(framework):
    return _train_step("tiny", framework)


@workload("greedy_decode", "W4 W2's model, no grad, 32 new tokens for 32 sources of length 32",
          backward_too=False)
def _w4(framework):
    c = seq2seq_config("full")
    src, _, _ = seq2seq_data(c)
    bos = 1
    if framework == "torch":
        torch = need("torch", "pip install torch")

        model = torch_seq2seq(c).eval()
        src = torch.tensor(src)

        return lambda: torch_greedy_decode(model, src, 32, bos)
    from ..decoding import greedy_decode

    model = our_seq2seq(c)
    model.eval()

    def step():
        return greedy_decode(model, src, max_len=32, bos=bos, eos=None)

    return step


@workload("scalar_mlp", "W5 micrograd's demo on the scalar engine: MLP 2-16-16-1, 100 points, hinge + L2, SGD",
          reference="micrograd")
def _w5(framework):
    X, y = _moons(100)
    rows = [[float(a) for a in row] for row in X]  # plain floats for both engines
    labels = [float(t) for t in y]
    if framework == "micrograd":
        import random

        need("micrograd", "pip install micrograd")
        from micrograd.engine import Value
        from micrograd.nn import MLP

        random.seed(1)
    else:
        from ..scalar import MLP, Value

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
        torch = need("torch", "pip install torch")

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
    from ..tensor import Tensor

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


# W6: eight sentences of different lengths, so the batch is padded (10 to 25 tokens with [CLS] and [SEP])
SENTENCES = [
    "The cat sat quietly on the warm mat.",
    "Stock markets fell sharply after the central bank raised interest rates again.",
    "A transformer attends to every token at once.",
    "She walked along the river at dawn, counting the herons standing in the shallow water near the old bridge.",
    "Heavy rain is expected across the north tomorrow.",
    "Gradient descent follows the slope of the loss downhill, one small step at a time.",
    "The library opens at nine and closes at six on weekdays, but stays shut on public holidays.",
    "Fresh bread smells wonderful in the morning.",
]


@workload("bert_forward", "W6 all-MiniLM-L6-v2, no grad: one forward of 8 padded sentences of 10-25 tokens",
          reference="transformers", backward_too=False)
def _w6(framework):
    from .. import pretrained

    need("tokenizers", 'pip install "tinygrad_attn[pretrained]"')
    need("safetensors", 'pip install "tinygrad_attn[pretrained]"')
    try:
        folder = pretrained.find("all-MiniLM-L6-v2")
    except FileNotFoundError as e:
        raise Unavailable(str(e)) from None
    ours = pretrained.load(folder)
    batch = ours.tokenize(SENTENCES)
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    if framework == "transformers":
        torch = need("torch", "pip install torch")
        transformers = need("transformers", "pip install transformers")
        del ours
        transformers.logging.set_verbosity_error()  # this process only: no load report, no progress bar
        transformers.logging.disable_progress_bar()
        model = transformers.BertModel.from_pretrained(folder, attn_implementation="eager", add_pooling_layer=False)
        model.eval()
        ids, mask, types = (torch.tensor(a) for a in (ids, mask, types))

        def step():
            with torch.no_grad():
                return model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

        return step
    from ..tensor import no_grad

    def step():
        with no_grad():
            return ours(ids, attention_mask=mask, token_type_ids=types)

    return step
