"""Regenerate the generated parts of docs/: the API reference and the paper-to-code table.

    python docs/make_docs.py           # rewrite docs/api.md and the table in docs/transformer.md
    python docs/make_docs.py --check   # exit 1 if either is out of date (the test suite runs this)

The API reference lists every public name with its signature and the first paragraph of its
docstring, so it cannot drift from the code. The table in transformer.md finds each equation's
line by searching the source for a fragment of it, so its line numbers follow the code.
"""

import argparse
import importlib
import inspect
import sys
from pathlib import Path

DOCS = Path(__file__).parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

# module: what it is, for the reference's headings
MODULES = {
    "tinygrad_attn": "the package: Tensor, constructors, no_grad, gradcheck, manual_seed",
    "tinygrad_attn.tensor": "the Tensor, its graph and backward",
    "tinygrad_attn.creation": "constructors: zeros, ones, randn, uniform, arange, cat, stack, where",
    "tinygrad_attn.tensor_methods": "the Tensor's operators and methods, dtype promotion, error messages",
    "tinygrad_attn.ops": "the primitives: NumPy forward passes beside their vector-Jacobian products",
    "tinygrad_attn.scalar": "the scalar engine: Value and a tiny MLP",
    "tinygrad_attn.gradcheck": "checking gradients against central differences",
    "tinygrad_attn.functional": "composites on Tensor: attention, losses, masks",
    "tinygrad_attn.nn": "modules with PyTorch's names and semantics",
    "tinygrad_attn.optim": "optimisers, schedules, gradient clipping",
    "tinygrad_attn.data": "tasks generated in code: copy, reverse, sort, dates",
    "tinygrad_attn.decoding": "greedy and beam-search decoding with the KV cache",
    "tinygrad_attn.train": "the training loop, checkpoints, exact resume",
    "tinygrad_attn.serialization": "save and load state dicts as .npz or .safetensors, atomically, never pickled",
    "tinygrad_attn.pretrained": "BERT-family pretrained encoders (all-MiniLM-L6-v2) loaded into our modules",
    "tinygrad_attn.interop": "weights to and from PyTorch's modules",
    "tinygrad_attn.viz": "computation graphs, attention heatmaps, mask pictures",
    "tinygrad_attn.viz.examples": "the example computations the graph command, the demos and the docs draw",
    "tinygrad_attn.env": "BLAS threads, the demos' quick mode and glibc's malloc thresholds",
    "tinygrad_attn.cli": "the tinygrad-attn command",
    "tinygrad_attn.cli.tour": "the tour",
    "tinygrad_attn.cli.demo": "the demo runner",
    "tinygrad_attn.cli.bench": "the benchmark harness",
    "tinygrad_attn.cli.bench_workloads": "the benchmark's workloads",
    "tinygrad_attn.cli.bench_reference": "the benchmark's models in PyTorch and in ours, from one configuration",
}

# (equation or step of the paper, file, a fragment of the line that implements it)
EQUATIONS = [
    ("Input embedding, scaled: Embedding(x) * sqrt(d_model)", "tinygrad_attn/nn/model.py", "self.scale"),
    ("PE(pos, 2i) = sin(pos / 10000^(2i/d_model))", "tinygrad_attn/nn/layers.py", "pe[:, 0::2] = np.sin"),
    ("PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))", "tinygrad_attn/nn/layers.py", "pe[:, 1::2] = np.cos"),
    ("Q = X W^Q, split into h heads of d_k = d_model / h", "tinygrad_attn/nn/attention.py",
     "q = self._heads(self.w_q(query), b)"),
    ("K = X W^K, V = X W^V", "tinygrad_attn/nn/attention.py", "k = self._heads(self.w_k(key), b)"),
    ("Q K^T", "tinygrad_attn/functional.py", "scores = q @ k.transpose(-2, -1)"),
    ("softmax(Q K^T / sqrt(d_k) + mask)", "tinygrad_attn/functional.py",
     "weights = masked_softmax(scores, bias, scale)"),
    ("softmax, stable, with its VJP dz = z * (g - sum(g z))", "tinygrad_attn/ops.py", "def masked_softmax"),
    ("... V", "tinygrad_attn/functional.py", "return dropped @ v"),
    ("MultiHead = Concat(head_1, ..., head_h) W^O", "tinygrad_attn/nn/attention.py", "out = self.w_o("),
    ("The fast path: W^Q, W^K, W^V (or W^K, W^V for a memory) as one packed product",
     "tinygrad_attn/nn/attention.py", "weight = cat([lin.weight for lin in linears])"),
    ("... and all of the attention above in one op, with its VJP", "tinygrad_attn/ops.py", "def _attend("),
    ("Masks: padding and causal merged into one additive bias", "tinygrad_attn/functional.py", "def merge_masks"),
    ("FFN(x) = max(0, x W_1 + b_1) W_2 + b_2", "tinygrad_attn/nn/layers.py",
     "return self.w_2(self.dropout(self.activation(self.w_1(x))))"),
    ("LayerNorm(x + Sublayer(x)), encoder self-attention", "tinygrad_attn/nn/transformer.py",
     "x = self.norm1(x + self._sa_block(x"),
    ("LayerNorm(x + FFN(x)), encoder", "tinygrad_attn/nn/transformer.py",
     "return self.norm2(x + self._ff_block(x))"),
    ("Pre-norm variant x + Sublayer(LayerNorm(x)) (norm_first=True)", "tinygrad_attn/nn/transformer.py",
     "x = x + self._sa_block(self.norm1(x)"),
    ("LayerNorm: (x - mean) / sqrt(var + eps) * gamma + beta", "tinygrad_attn/ops.py", "def layer_norm"),
    ("Decoder: masked self-attention over the target so far", "tinygrad_attn/nn/transformer.py",
     "x = self.norm1(x + self._sa_block(x, tgt_mask"),
    ("Decoder: attention whose keys and values are the encoder's output", "tinygrad_attn/nn/transformer.py",
     "x = self.norm2(x + self._mha_block(x, memory"),
    ("Stack of N identical layers", "tinygrad_attn/nn/transformer.py", "class TransformerEncoder("),
    ("Output: softmax(decoder output W_vocab), trained with cross-entropy", "tinygrad_attn/ops.py",
     "def cross_entropy"),
    ("Label smoothing epsilon_ls", "tinygrad_attn/ops.py", "if label_smoothing:"),
    ("lrate = d_model^-0.5 min(step^-0.5, step warmup^-1.5)", "tinygrad_attn/optim.py", "def noam_rate"),
    ("Adam with beta1 = 0.9, beta2 = 0.98, eps = 1e-9", "tinygrad_attn/train.py", "betas=(0.9, 0.98)"),
]

TABLE_START, TABLE_END = "<!-- equations:start -->", "<!-- equations:end -->"


CLI_PLUMBING = {"add_arguments", "run"}  # every command module has them; the CLI's --help documents the commands


def public_names(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, obj in vars(module).items() if not n.startswith("_")
                 and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__]
    return sorted((n for n in names if n not in CLI_PLUMBING), key=str.lower)


def summary(obj):
    doc = inspect.cleandoc(obj.__doc__ or "")  # its own docstring, not one inherited from a base class
    return " ".join(doc.split("\n\n")[0].split())


def signature(obj):
    try:
        text = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    return text.replace("<class 'numpy.", "np.").replace("'>", "")


def api_reference():
    lines = ["# API reference", "",
             "Every public name, with its signature and the first paragraph of its docstring. Generated by",
             "`python docs/make_docs.py` from the code itself; the test suite fails if it is out of date.", ""]
    for name, what in MODULES.items():
        module = importlib.import_module(name)
        lines += [f"## `{name}`", "", f"{what[0].upper()}{what[1:]}.", ""]
        for public in public_names(module):
            obj = getattr(module, public)
            if inspect.ismodule(obj):
                continue
            kind = "class" if inspect.isclass(obj) else ""
            lines.append(f"- **`{public}{signature(obj)}`**" + (f" ({kind})" if kind else "")
                         + (f": {summary(obj)}" if summary(obj) else ""))
            if inspect.isclass(obj):
                for method, fn in sorted(vars(obj).items()):
                    if method.startswith("_") and method != "__call__" or not callable(fn):
                        continue
                    fn = fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn
                    if inspect.isfunction(fn):
                        lines.append(f"  - `{method}{signature(fn)}`" + (f": {summary(fn)}" if summary(fn) else ""))
        lines.append("")
    return "\n".join(lines)


def equation_table():
    rows = ["| the paper | where | the line |", "|---|---|---|"]
    for equation, path, fragment in EQUATIONS:
        source = (ROOT / path).read_text().splitlines()
        hits = [i for i, line in enumerate(source, 1) if fragment in line]
        if not hits:
            raise SystemExit(f"make_docs: {fragment!r} is no longer in {path}; update EQUATIONS in docs/make_docs.py")
        line = hits[0]
        code = source[line - 1].strip().replace("|", "\\|")
        rows.append(f"| {equation} | [{path.split('/', 1)[1]}:{line}](../{path}#L{line}) | `{code}` |")
    return "\n".join(rows)


def with_table(text):
    head, rest = text.split(TABLE_START)
    _, tail = rest.split(TABLE_END)
    return f"{head}{TABLE_START}\n{equation_table()}\n{TABLE_END}{tail}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the docs are up to date")
    args = parser.parse_args()
    transformer = DOCS / "transformer.md"
    wanted = {DOCS / "api.md": api_reference() + "\n", transformer: with_table(transformer.read_text())}
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python docs/make_docs.py")
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
