"""``tinygrad-attn attention CHECKPOINT "input"``: translate the input with a trained model and draw
where every head of every layer looked (rows: the output tokens, columns: the input tokens).

    tinygrad-attn train dates --out runs/dates
    tinygrad-attn attention runs/dates/checkpoint.npz "3rd of May 1999" -o dates.png
"""


def add_arguments(parser):
    parser.add_argument("checkpoint", help="a checkpoint.npz written by `tinygrad-attn train --out DIR`")
    parser.add_argument("input", help="the source text to translate")
    parser.add_argument("-o", "--out", default="attention.png", help="image file (default: attention.png)")
    parser.add_argument("--heads", default=None, help="comma-separated heads to draw (default: all)")
    parser.add_argument(
        "--masks",
        default=None,
        metavar="FILE",
        help="also draw the decoder's masks (padding, causal, combined) to FILE",
    )


def run(args):
    import matplotlib

    matplotlib.use("Agg")
    from ..train import load_model
    from ..viz.attention import plot_layers, plot_masks, translate

    model, task, _ = load_model(args.checkpoint)
    output, src_tokens, tgt_tokens = translate(model, task, args.input)
    heads = [int(h) for h in args.heads.split(",")] if args.heads else None
    plot_layers(
        model,
        src_tokens,
        tgt_tokens,
        heads=heads,
        path=args.out,
        title=f"{args.input!r} -> {output!r}: rows are queries, columns are keys",
    )
    print(f"{args.input!r} -> {output!r}; wrote {args.out}")
    if args.masks:
        plot_masks(tgt_tokens + ["<pad>"], path=args.masks, title="decoder self-attention masks")
        print(f"wrote {args.masks}")
    return 0
