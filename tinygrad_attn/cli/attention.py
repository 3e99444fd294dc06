"""``tinygrad-attn attention``: draw where every head of every layer looked.

With a checkpoint: translate the input with the trained model (rows: the output tokens, columns: the input
tokens). With --pretrained: run a pretrained encoder on the sentence (rows and columns: its WordPiece tokens).

    tinygrad-attn train dates --out runs/dates
    tinygrad-attn attention runs/dates/checkpoint.npz "3rd of May 1999" -o dates.png
    tinygrad-attn attention --pretrained all-MiniLM-L6-v2 "The animal was too tired." -o minilm.png
    tinygrad-attn attention --pretrained all-MiniLM-L6-v2 "The animal was too tired." -o minilm.html
"""

import os

from .options import int_list


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", metavar="CHECKPOINT INPUT",
                        help="a checkpoint.npz written by `tinygrad-attn train --out DIR` and the source text to "
                        "translate; with --pretrained, only the sentence")
    parser.add_argument("--pretrained", default=None, metavar="NAME",
                        help="a pretrained encoder instead of a checkpoint: all-MiniLM-L6-v2, a name in the "
                        "Hugging Face cache, or an HF-layout folder")
    parser.add_argument("-o", "--out", default="attention.png",
                        help="image file, or .html for the interactive head and model view (default: attention.png)")
    parser.add_argument("--heads", type=int_list, default=None,
                        help="comma-separated heads to draw, counting from 0 (default: all)")
    parser.add_argument(
        "--masks",
        default=None,
        metavar="FILE",
        help="also draw the decoder's masks (padding, causal, combined) to FILE",
    )


def run(args):
    expected = 1 if args.pretrained else 2
    if len(args.inputs) != expected:
        raise ValueError("attention: give " + ("one sentence (quoted) with --pretrained" if args.pretrained else
                         "a checkpoint and one input (quoted), or --pretrained NAME and a sentence")
                         + f"; got {len(args.inputs)} arguments")
    if args.out.endswith(".html"):  # the interactive view: no matplotlib needed
        return _page(args)
    args.out = _image_path(args.out, "-o")
    args.masks = args.masks and _image_path(args.masks, "--masks")
    try:
        import matplotlib
    except ImportError:
        raise ImportError("attention: drawing needs matplotlib: pip install matplotlib "
                          '(or pip install "tinygrad_attn[viz]")') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz.attention import plot_layers, plot_masks

    if args.pretrained:
        if args.masks:
            raise ValueError("attention: --masks draws a decoder's masks; a pretrained encoder has none")
        model, src, tgt, title = _pretrained(args.pretrained, args.inputs[0])
    else:
        model, src, tgt, title = _checkpoint(*args.inputs)
    # each figure is closed once written: a run in-process (a notebook, a test) keeps none open
    title_rows = f"{title}: rows are queries, columns are keys"
    plt.close(plot_layers(model, src, tgt, heads=args.heads, path=args.out, title=title_rows))
    print(f"{title}; wrote {args.out}")
    if args.masks:
        # the decoder's input in a batch where a longer example pads it: </s>, then padding
        plt.close(plot_masks(tgt + ["</s>", "<pad>"], path=args.masks, title="decoder self-attention masks"))
        print(f"wrote {args.masks}")
    return 0


def _page(args):
    from ..viz.attention_view import attention_view

    if args.masks:
        raise ValueError("attention: --masks draws a PNG; the .html page shows masked positions itself")
    if args.pretrained:
        model, src, tgt, title = _pretrained(args.pretrained, args.inputs[0])
    else:
        model, src, tgt, title = _checkpoint(*args.inputs)
    attention_view(model, src, tgt, path=args.out, title=title)
    print(f"{title}; wrote {args.out}")
    return 0


IMAGE_FORMATS = (".png", ".svg", ".pdf", ".jpg")


def _image_path(path, option):
    """The file an image will really be written to (.png when ``path`` has no extension), or a ValueError."""
    if os.path.isdir(path):
        raise ValueError(f"attention: {option} {path} is a directory; give an image file such as attention.png")
    suffix = os.path.splitext(path)[1].lower()
    if not suffix:
        return path + ".png"
    if suffix not in IMAGE_FORMATS:
        raise ValueError(f"attention: {option}: unknown image format {suffix!r}; use "
                         f"{', '.join(IMAGE_FORMATS[:-1])} or {IMAGE_FORMATS[-1]}")
    return path


def _checkpoint(path, text):
    from ..train import load_model
    from ..viz.attention import translate

    if not os.path.isfile(path):
        inside = os.path.join(path, "checkpoint.npz")
        raise FileNotFoundError(f"attention: there is no checkpoint file {path}; " + (
            f"did you mean {inside}?" if os.path.isfile(inside) else
            "train a model first (tinygrad-attn train copy --out runs/copy) and give its runs/copy/checkpoint.npz"))
    model, task, _ = load_model(path)
    output, src_tokens, tgt_tokens = translate(model, task, text)
    return model, src_tokens, tgt_tokens, f"{text!r} -> {output!r}"


def _pretrained(name, sentence):
    from ..pretrained import load
    from ..tensor import no_grad

    model = load(name)
    batch = model.tokenize([sentence])
    with no_grad():
        model(batch["input_ids"], attention_mask=batch["attention_mask"])
    return model, batch["tokens"][0], None, f"{name}: {sentence!r}"
