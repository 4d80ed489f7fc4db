"""What a scenes run's wrong captions get wrong: a count of error kinds over the test split.

    python experiments/scenes/errors.py runs/scenes [--every=1] [--out=FILE.json]

Captions the test pictures with the run's best checkpoint (replica 0, greedy: what evaluation
decodes) and sorts each wrong caption into the first kind that fits:

  shape       the same words as the reference except shape words (circle/square/...: the object
              is found, counted, sized and coloured, and misnamed)
  colour      the same except colour words
  size        the same except size words (small/large)
  count       the same except count words and plurals ("a X and a X" for "two Xs" included:
              the same set of object words once counts, plural endings, "and" and commas
              are dropped)
  order       the same words in another order
  other       anything else (missing or extra objects, several kinds of error at once)

Prints and writes (--out) the counts with a few examples of each kind.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys

import numpy as np

from attn_jax.caption import Captioner
from attn_jax.data import batches, scenes

WORD_CLASSES = {
    "shape": set(scenes.SHAPES) | {s + "s" for s in scenes.SHAPES},
    "colour": set(scenes.COLOURS),
    "size": set(scenes.SIZES),
}


def _singular(word: str) -> str:
    return word[:-1] if word[:-1] in scenes.SHAPES else word


def kind(hyp: str, ref: str) -> str:
    """The error kind of caption `hyp` against reference `ref` (module docstring); 'ok' if equal."""
    if hyp == ref:
        return "ok"
    h, r = hyp.split(), ref.split()
    if len(h) == len(r):
        differ = [(a, b) for a, b in zip(h, r) if a != b]
        for name, words in WORD_CLASSES.items():
            if all(a in words and b in words for a, b in differ):
                return name
    drop = set(scenes.COUNT_WORDS) | {"and", ","}
    objects = lambda ws: {_singular(w) for w in ws if w not in drop}  # noqa: E731
    if sorted(h) == sorted(r):
        return "order"
    if objects(h) == objects(r):
        return "count"
    return "other"


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--every", type=int, default=1, help="caption every N-th test picture")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    captioner = Captioner(args.workdir, batch_size=64)
    data = batches.load(captioner.runner.config.data, args.workdir)
    split = data["test"]
    index = list(range(0, len(split), args.every))
    captions = captioner.caption(np.stack([split.images[i] for i in index]))
    counts, examples = collections.Counter(), collections.defaultdict(list)
    for i, (hyp, _, _) in zip(index, captions):
        k = kind(hyp, split.tgt_text[i])
        counts[k] += 1
        if k != "ok" and len(examples[k]) < 3:
            examples[k].append({"index": i, "reference": split.tgt_text[i], "caption": hyp})
    result = {"workdir": args.workdir, "pictures": len(index), "every": args.every,
              "kinds": dict(counts.most_common()), "examples": examples}
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
