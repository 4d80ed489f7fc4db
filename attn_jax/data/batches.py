"""Data: splits tokenized into memory, fixed-shape length buckets and the batch streams.

Pipeline (``load(config.data, workdir)``):

  1. raw text pairs: ``sources.read_raw_splits`` (TFDS builders prepared as array_record);
  2. vocabularies: ``vocab.load_or_build_vocabs`` builds them on the train split and saves them
     under WORKDIR/vocab/; a resumed run reloads them from there, never retrains them;
  3. every split is tokenized into memory (``Data``); train pairs longer than ``data.max_len`` are
     filtered out and counted, valid/test pairs never are (an error names the fix instead);
  4. batches have one fixed shape per bucket in ``data.buckets`` so jitted steps never recompile:
     ``train_batches`` ([K, B, L], K seeded replicas) and ``eval_batches`` ([B, L]).

Supervised attention (``load(..., links=True)``, train.align_loss_weight > 0) adds the train
split's gold links as token links: 'links' [n_b, M_b, 3] per bucket (`add_links`), so train
batches also hold 'links' [K, B, M_b, 3]: (target token t, source token j, sure) triples, 0-based,
-1 rows padding, t the row of tgt_out, j the column of src, sure 1 for a sure link and 0 for a
possible-only one. The gold is the dataset's own (sure and
possible links of words) or a gold file's (``train_gold``). With one token per word (the word
vocabulary) word links are token links; otherwise each word is encoded on its own and a target
token is linked to every token of its word's linked source words, and a pair whose per-word
tokens differ from its sentence's tokens gets no links (counted in a log line).

Token layout (ids from ``attn_jax.data.tokens``):
  src     = [x1..xm, PAD...]
  tgt_in  = [BOS, y1..yn, PAD...]
  tgt_out = [y1..yn, EOS, PAD...]
A pair goes to the smallest bucket L with m <= L and n + 1 <= L; src, tgt_in, tgt_out are all
[.., L]. Image data (pairs with `image`: a caption's source is a picture): src is the image
[.., H, W, 3] uint8 and the bucket is the caption's (n + 1 <= L).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from absl import logging

from attn_jax.data import sources
from attn_jax.data import vocab as vocab_lib
from attn_jax.data.sources import SPLITS, Pair
from attn_jax.data.tokens import BOS, EOS, PAD
from attn_jax.data.vocab import Vocab

# ----------------------------------------------------------------------------------------------
# Tokenized in-memory data
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Split:
    """One tokenized split. Example i (the batch 'index') is src_text[i] / src_ids[i] / ... ."""

    name: str
    src_text: list[str]
    tgt_text: list[str]
    src_ids: list[np.ndarray]  # [m_i] int32, no BOS/EOS
    tgt_ids: list[np.ndarray]  # [n_i] int32, no BOS/EOS
    # Gold links of words, 0-based (src word, tgt word): the data's own (synthetic), or a gold
    # file's for the train split (`load`'s train_gold).
    sure: list[tuple[tuple[int, int], ...]] | None
    possible: list[tuple[tuple[int, int], ...]] | None
    boxes: list[np.ndarray] | None  # image data: each caption word's gold boxes [n_i, G, 4]
    bucket: np.ndarray  # [N] int32 index into Data.buckets
    raw_index: np.ndarray  # [N] int32 position in the raw split (differs only after filtering)
    filtered: dict[str, int]  # train: {'too_long': n, 'empty': n}; valid/test: zeros
    # Per bucket: padded arrays of that bucket's examples, ascending index.
    # {'src','tgt_in','tgt_out': [n_b, L_b] int32, 'index': [n_b] int32}; image data: 'src' is
    # [n_b, H, W, 3] uint8. With gold links (`add_links`): 'links' [n_b, M_b, 3] int32.
    bucket_arrays: tuple[dict[str, np.ndarray], ...]
    images: np.ndarray | None = None  # image data: [N, H, W, 3] uint8, example i's picture

    def __len__(self) -> int:
        return len(self.src_text)


@dataclasses.dataclass(frozen=True)
class Data:
    """Everything the trainer needs: vocabularies, buckets, and the three tokenized splits."""

    name: str
    src_vocab: Vocab
    tgt_vocab: Vocab
    buckets: tuple[int, ...]
    seed: int  # data.seed: the train bucket schedule's seed
    splits: dict[str, Split]

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]


def check_config(cfg: Any) -> None:
    """Clear errors for `config.data` values that cannot work, before any data is read."""
    sources.check_name(cfg.name)
    vocab_lib.check_config(cfg)
    buckets = tuple(cfg.buckets)
    if not buckets or any(int(b) < 2 for b in buckets) or list(buckets) != sorted(set(buckets)):
        raise ValueError(f"data.buckets={buckets} must be strictly increasing lengths >= 2")
    if not 2 <= cfg.max_len <= buckets[-1]:
        raise ValueError(
            f"data.max_len={cfg.max_len} must lie in [2, largest bucket {buckets[-1]}]; "
            "raise data.buckets or lower data.max_len")


def smallest_bucket(length: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket length L >= length, or None when none fits."""
    return next((b for b in buckets if length <= b), None)


def _bucket_of(src_len: int, tgt_len: int, buckets: Sequence[int]) -> int:
    """Index of the smallest bucket L with src_len <= L and tgt_len + 1 <= L (EOS), or -1."""
    length = smallest_bucket(max(src_len, tgt_len + 1), buckets)
    return -1 if length is None else list(buckets).index(length)


def _bucket_arrays(src_ids, tgt_ids, bucket, buckets,
                   images: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], ...]:
    out = []
    for b, length in enumerate(buckets):
        rows = np.flatnonzero(bucket == b).astype(np.int32)  # [n_b]
        src = np.full((len(rows), length), PAD, np.int32)  # [n_b, L]
        tgt_in = np.full((len(rows), length), PAD, np.int32)  # [n_b, L]
        tgt_out = np.full((len(rows), length), PAD, np.int32)  # [n_b, L]
        for r, i in enumerate(rows):
            s, t = src_ids[i], tgt_ids[i]
            src[r, :len(s)] = s
            tgt_in[r, 0] = BOS
            tgt_in[r, 1:len(t) + 1] = t
            tgt_out[r, :len(t)] = t
            tgt_out[r, len(t)] = EOS
        if images is not None:
            src = images[rows]  # [n_b, H, W, 3]
        out.append({"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out, "index": rows})
    return tuple(out)


def tokenize_split(name: str, pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab,
                   buckets: Sequence[int], max_len: int) -> Split:
    """Tokenizes and buckets `pairs`. Train drops (and counts) pairs over max_len or empty;
    valid/test raise instead, since an evaluation set must never shrink silently. Image pairs
    (`Pair.image`) have no source tokens: only the caption is tokenized."""
    has_images = bool(pairs) and pairs[0].image is not None
    no_tokens = np.zeros(0, np.int32)
    src_ids = [no_tokens if has_images else np.asarray(src_vocab.encode(p.src), np.int32)
               for p in pairs]
    tgt_ids = [np.asarray(tgt_vocab.encode(p.tgt), np.int32) for p in pairs]
    keep, filtered = [], {"too_long": 0, "empty": 0}
    for i, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        empty = (len(s) == 0 and not has_images) or len(t) == 0
        if name == "train":
            if empty:
                filtered["empty"] += 1
            elif max(len(s), len(t) + 1) > max_len:
                filtered["too_long"] += 1
            else:
                keep.append(i)
            continue
        if empty:
            raise ValueError(
                f"{name} example {i} has an empty source or target after tokenization "
                f"(src={pairs[i].src!r}, tgt={pairs[i].tgt!r}); fix the data")
        if _bucket_of(len(s), len(t), buckets) < 0:
            need = max(len(s), len(t) + 1)
            raise ValueError(
                f"{name} example {i} has {len(s)} source and {len(t)}+1 (EOS) target tokens, "
                f"more than the largest bucket {buckets[-1]} of data.buckets={tuple(buckets)}. "
                f"Raise data.buckets (e.g. add {16 * math.ceil(need / 16)}); evaluation "
                "examples are never dropped.")
        keep.append(i)
    if name == "train" and (filtered["too_long"] or filtered["empty"]):
        logging.warning("train: filtered %d pairs longer than data.max_len=%d and %d empty pairs "
                        "(of %d)", filtered["too_long"], max_len, filtered["empty"], len(pairs))
    if not keep:
        raise ValueError(f"{name} split is empty after filtering ({filtered}); check data.max_len")
    src_ids = [src_ids[i] for i in keep]
    tgt_ids = [tgt_ids[i] for i in keep]
    bucket = np.array([_bucket_of(len(s), len(t), buckets) for s, t in zip(src_ids, tgt_ids)],
                      np.int32)
    has_links = pairs[0].sure is not None
    has_boxes = has_images and pairs[0].boxes is not None
    images = np.stack([pairs[i].image for i in keep]) if has_images else None  # [N, H, W, 3]
    return Split(
        name=name,
        src_text=[pairs[i].src for i in keep],
        tgt_text=[pairs[i].tgt for i in keep],
        src_ids=src_ids,
        tgt_ids=tgt_ids,
        sure=[pairs[i].sure for i in keep] if has_links else None,
        possible=[pairs[i].possible for i in keep] if has_links else None,
        boxes=[pairs[i].boxes for i in keep] if has_boxes else None,
        bucket=bucket,
        raw_index=np.asarray(keep, np.int32),
        filtered=filtered,
        bucket_arrays=_bucket_arrays(src_ids, tgt_ids, bucket, buckets, images),
        images=images,
    )


GoldReader = Callable[[Sequence[Pair]], tuple[Sequence[Any], Sequence[Any]]]


def load(cfg: Any, workdir: str, *, links: bool = False,
         train_gold: GoldReader | None = None) -> Data:
    """Reads `config.data` `cfg`, prepares/reads the dataset, loads or builds the vocabularies
    (WORKDIR/vocab/) and returns every split tokenized and bucketed in memory.

    links: the train split's bucket arrays also hold its gold 'links' (`add_links`; supervised
    attention); ValueError when the train pairs have no gold. train_gold: raw train pairs ->
    their (sure, possible) 0-based (src word, tgt word) links, replacing the data's own (a gold
    file's reader; it raises ValueError for a file that does not fit the pairs)."""
    check_config(cfg)
    start = time.perf_counter()
    raw = sources.read_raw_splits(cfg)
    if train_gold is not None:
        sure, possible = train_gold(raw["train"])
        raw = dict(raw, train=[
            dataclasses.replace(p, sure=tuple(sorted(s)), possible=tuple(sorted(set(q) | set(s))))
            for p, s, q in zip(raw["train"], sure, possible)])
    read_s = time.perf_counter() - start
    src_vocab, tgt_vocab = vocab_lib.load_or_build_vocabs(cfg, workdir, raw["train"],
                                                          sources.dataset_meta(cfg))
    vocab_s = time.perf_counter() - start - read_s
    buckets = tuple(int(b) for b in cfg.buckets)
    splits = {name: tokenize_split(name, raw[name], src_vocab, tgt_vocab, buckets, cfg.max_len)
              for name in SPLITS}
    if links:
        splits["train"] = add_links(splits["train"], src_vocab, tgt_vocab)
    tokenize_s = time.perf_counter() - start - read_s - vocab_s
    data = Data(name=cfg.name, src_vocab=src_vocab, tgt_vocab=tgt_vocab, buckets=buckets,
                seed=int(cfg.seed), splits=splits)
    logging.info("data %s: %s; vocab src %d tgt %d; prepare+read %.1fs, vocab %.1fs, tokenize "
                 "%.1fs", cfg.name, describe(data), src_vocab.size, tgt_vocab.size, read_s, vocab_s,
                 tokenize_s)
    return data


def word_index(vocab: Vocab, text: str, ids: Sequence[int] | None = None) -> np.ndarray | None:
    """The whitespace word of each token of `ids` (default vocab.encode(text)) ([N] int), each
    word encoded on its own; None when those tokens are not `ids` (a token spanning two words, a
    word of no tokens). Evaluation's AER maps attention to words by it too."""
    words = text.split()
    ids = list(vocab.encode(text)) if ids is None else [int(i) for i in ids]
    if isinstance(vocab, vocab_lib.WordVocab):  # One token per word.
        return np.arange(len(words)) if len(words) == len(ids) else None
    pieces = [vocab.encode(word) for word in words]
    if not all(pieces) or [t for w in pieces for t in w] != ids:
        return None
    return np.repeat(np.arange(len(words)), [len(w) for w in pieces])


def token_links(sure, possible, src_words: np.ndarray, tgt_words: np.ndarray) -> np.ndarray:
    """[M, 3] int32 (target token, source token, sure) links, sorted, from one pair's 0-based
    (src word, tgt word) links (sure ∪ possible): each target token is linked to every token of
    the source words its word links to; sure is 1 where the word link is sure, else 0.
    src_words / tgt_words: the word of each token."""
    src_tokens, tgt_tokens = collections.defaultdict(list), collections.defaultdict(list)
    for j, word in enumerate(src_words):
        src_tokens[int(word)].append(j)
    for t, word in enumerate(tgt_words):
        tgt_tokens[int(word)].append(t)
    sure = set(sure)
    out: dict[tuple[int, int], int] = {}
    for sw, tw in sure | set(possible):
        for t in tgt_tokens[tw]:
            for j in src_tokens[sw]:
                out[t, j] = max(out.get((t, j), 0), int((sw, tw) in sure))
    return np.asarray([(t, j, s) for (t, j), s in sorted(out.items())], np.int32).reshape(-1, 3)


def add_links(split: Split, src_vocab: Vocab, tgt_vocab: Vocab) -> Split:
    """`split` with 'links' [n_b, M_b, 3] int32 in every bucket array (module docstring): row r
    holds example index[r]'s `token_links`, padded with -1 rows to the bucket's most links M_b
    (at least 1). ValueError when the split has no gold links."""
    if split.sure is None or split.possible is None:
        raise ValueError(f"the {split.name} split has no gold alignments for supervised "
                         "attention; use data with gold or give a gold file "
                         "(--config.train.align_gold=PATH).")
    per_example, unmapped = [], 0
    for i in range(len(split)):
        src = word_index(src_vocab, split.src_text[i], split.src_ids[i])
        tgt = word_index(tgt_vocab, split.tgt_text[i], split.tgt_ids[i])
        if src is None or tgt is None:
            unmapped += 1
            per_example.append(np.zeros((0, 3), np.int32))
        else:
            per_example.append(token_links(split.sure[i], split.possible[i], src, tgt))
    if unmapped:
        logging.warning("supervised attention: %d of %d %s pairs have no gold links, since their "
                        "words encode to other tokens one by one than in the sentence.",
                        unmapped, len(split), split.name)
    arrays = []
    for b in split.bucket_arrays:
        rows = [per_example[i] for i in b["index"]]
        most = max([1] + [len(r) for r in rows])
        links = np.full((len(rows), most, 3), -1, np.int32)  # [n_b, M_b, 3]
        for r, row in enumerate(rows):
            links[r, :len(row)] = row
        arrays.append({**b, "links": links})
    return dataclasses.replace(split, bucket_arrays=tuple(arrays))


def describe(data: Data) -> str:
    """One line: examples per split and bucket, and the train filter counts."""
    parts = []
    for name, split in data.splits.items():
        per_bucket = np.bincount(split.bucket, minlength=len(data.buckets)).tolist()
        parts.append(f"{name} {len(split)} (per bucket {dict(zip(data.buckets, per_bucket))})")
    return "; ".join(parts) + f"; train filtered {data.splits['train'].filtered}"


# ----------------------------------------------------------------------------------------------
# Batching: one fixed shape per bucket
# ----------------------------------------------------------------------------------------------


def batch_sizes(cfg: Any, buckets: Sequence[int]) -> tuple[int, ...]:
    """Sentences per train batch in each bucket: data.batch_size everywhere, or with
    data.batch_tokens > 0 about batch_tokens / L sentences in the bucket of padded length L (a
    multiple of 8 once at least 8), so every batch holds about the same number of tokens."""
    if cfg.batch_tokens <= 0:
        return tuple(int(cfg.batch_size) for _ in buckets)
    sizes = []
    for length in buckets:
        size = max(1, cfg.batch_tokens // length)
        sizes.append(size // 8 * 8 if size >= 8 else size)
    return tuple(sizes)


def _per_bucket(sizes: int | Sequence[int], n: int) -> tuple[int, ...]:
    sizes = (sizes,) * n if isinstance(sizes, (int, np.integer)) else tuple(sizes)
    if len(sizes) != n or min(sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, one per bucket ({n}), got {sizes}")
    return sizes


def _batches_per_bucket(split: Split, sizes: int | Sequence[int]) -> list[int]:
    """ceil(n_b / B_b): the last batch of a bucket is filled by wrap-around (see train_batches)."""
    sizes = _per_bucket(sizes, len(split.bucket_arrays))
    return [math.ceil(len(a["index"]) / size) for a, size in zip(split.bucket_arrays, sizes)]


def steps_per_epoch(data: Data, sizes: int | Sequence[int]) -> int:
    """Train steps per epoch: sum over buckets of ceil(n_b / B_b) (`batch_sizes`, or one int)."""
    return sum(_batches_per_bucket(data.splits["train"], sizes))


def _bucket_schedule(counts: Sequence[int], data_seed: int,
                     epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Which bucket each step of `epoch` uses, and the how-many-th use of that bucket it is.

    A shuffle of [b] * counts[b] seeded by (data_seed, epoch) only: identical for every replica.
    """
    order = np.repeat(np.arange(len(counts)), counts)  # [steps_per_epoch]
    np.random.default_rng([0, data_seed, epoch]).shuffle(order)
    occurrence = np.zeros_like(order)
    seen = collections.Counter()
    for step, b in enumerate(order):
        occurrence[step] = seen[b]
        seen[b] += 1
    return order, occurrence


def _replica_permutation(n: int, seed: int, epoch: int, bucket: int) -> np.ndarray:
    """The order in which replica `seed` visits bucket `bucket` in `epoch`."""
    return np.random.default_rng([1, seed, epoch, bucket]).permutation(n)


def train_batches(data: Data, sizes: int | Sequence[int], seeds: Sequence[int],
                  start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Endless train batches for K = len(seeds) replicas: {'src','tgt_in','tgt_out': [K, B, L],
    'index': [K, B]} (+ 'links' [K, B, M_b, 3] when the split has them, `add_links`), with L one
    of data.buckets and B its batch size (`batch_sizes`; an int: the same in every bucket).

    Step k is a pure function of (data, sizes, seeds, data.seed, k):
      epoch, j = divmod(k, steps_per_epoch)
      bucket   = schedule(data.seed, epoch)[j]         (same for all replicas, so shapes match)
      rows     = permutation(seed_i, epoch, bucket)    (each replica its own order)
    so replica i of seeds (s0, s1, ...) sees exactly the batches of a run with seeds (s_i,), and
    start_step=k continues a run exactly. Each epoch every train example appears once; a bucket's
    last batch is completed by wrapping around to the start of that replica's permutation of the
    bucket (so a few examples appear twice per epoch; a bucket smaller than B repeats its examples).
    """
    split = data.splits["train"]
    sizes = _per_bucket(sizes, len(split.bucket_arrays))
    counts = _batches_per_bucket(split, sizes)
    per_epoch = sum(counts)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("train_batches needs at least one seed")
    epoch = None
    for step in itertools.count(start_step):
        step_epoch, j = divmod(step, per_epoch)
        if step_epoch != epoch:
            epoch = step_epoch
            order, occurrence = _bucket_schedule(counts, data.seed, epoch)
            perms: dict[tuple[int, int], np.ndarray] = {}
        b = int(order[j])
        arrays = split.bucket_arrays[b]
        n_b = len(arrays["index"])
        size = sizes[b]
        positions = (occurrence[j] * size + np.arange(size)) % n_b  # [B]
        rows = []
        for seed in seeds:
            if (seed, b) not in perms:
                perms[seed, b] = _replica_permutation(n_b, seed, epoch, b)
            rows.append(perms[seed, b][positions])
        rows = np.stack(rows)  # [K, B]
        yield {key: value[rows] for key, value in arrays.items()}  # [K, B, L] / index [K, B]


def _filler(key: str, rows: int, like: np.ndarray) -> np.ndarray:
    """Filler rows shaped and typed like `like`'s rows: index and links -1, everything else PAD
    (images: black pictures)."""
    return np.full((rows,) + like.shape[1:], -1 if key in ("index", "links") else PAD, like.dtype)


def eval_batches(data: Data, split: str, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Every example of `split` exactly once: {'src','tgt_in','tgt_out': [B, L], 'index': [B]}.

    Bucket by bucket (ascending L), ascending index within a bucket; the last batch of a bucket is
    padded with filler rows (all PAD, index -1).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for arrays in data.splits[split].bucket_arrays:
        n_b = len(arrays["index"])
        for start in range(0, n_b, batch_size):
            batch = {key: value[start:start + batch_size] for key, value in arrays.items()}
            filler = batch_size - len(batch["index"])
            if filler:
                batch = {key: np.concatenate([value, _filler(key, filler, value)])
                         for key, value in batch.items()}
            yield batch
