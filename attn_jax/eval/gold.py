"""Gold word-alignment files: the Pharaoh format, reading and checking them, and scoring links.

A gold file has one line per sentence pair of 1-based "i-j" sure links and "ipj" possible links,
the source word first (`reverse`: the target word first); word i of a line is word i of the
pair's text split at spaces. The possible set is taken as P ∪ S, so S ⊆ P holds whether or not
the file repeats its sure links as possible ones. An empty line is a pair with no links.

Links in memory are 0-based (src_idx, tgt_idx) pairs (`Link`), as in `metrics`. Predicted links
are written 0-based ("i-j", `format_links`). Every refusal is an `InputError` whose one-line
message names the file, the line and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from attn_jax.eval import metrics

Link = tuple[int, int]  # (src_idx, tgt_idx), 0-based

_GOLD_LINK = re.compile(r"(\d+)([-p])(\d+)")


class InputError(Exception):
    """Input that cannot be used (a text or gold file, a flag); the message names the fix."""


def parse_gold(line: str, src_len: int, tgt_len: int, reverse: bool = False,
               where: str = "gold") -> tuple[set[Link], set[Link]]:
    """(sure, possible) 0-based (src, tgt) links of one gold line of 1-based "i-j" / "ipj" links.

    possible is P ∪ S. `reverse`: the line names the target word first. Raises InputError
    (prefixed by `where`, e.g. "test.gold:3") for a malformed link or one outside the sentence.
    """
    sure: set[Link] = set()
    possible: set[Link] = set()
    for token in line.split():
        m = _GOLD_LINK.fullmatch(token)
        if not m:
            raise InputError(f"{where}: {token!r} is not a link; gold links are 1-based 'i-j' "
                             "(sure) or 'ipj' (possible), separated by spaces.")
        first, second = int(m.group(1)), int(m.group(3))
        src, tgt = (second, first) if reverse else (first, second)
        if not (1 <= src <= src_len and 1 <= tgt <= tgt_len):
            order = "target-source (--reverse)" if reverse else "source-target"
            raise InputError(
                f"{where}: link {token!r} ({order}) is outside the pair of {src_len} source and "
                f"{tgt_len} target words (1-based indices); the gold must index the words of "
                "--src/--tgt split at spaces" + ("" if reverse else
                                                 ", or pass --reverse for target-first links")
                + ".")
        link = (src - 1, tgt - 1)
        possible.add(link)
        if m.group(2) == "-":
            sure.add(link)
    return sure, possible


def format_gold(sure: Sequence[Link], possible: Sequence[Link], reverse: bool = False) -> str:
    """One gold line from 0-based (src, tgt) links: 1-based "i-j" for sure links, "ipj" for the
    possible links that are not sure ones, sorted; the target word first if `reverse`."""
    sure_set = {(int(i), int(j)) for i, j in sure}
    links = sorted(sure_set | {(int(i), int(j)) for i, j in possible})
    out = []
    for i, j in links:
        a, b = (j, i) if reverse else (i, j)
        out.append(f"{a + 1}{'-' if (i, j) in sure_set else 'p'}{b + 1}")
    return " ".join(out)


def format_links(links: set[Link], reverse: bool = False) -> str:
    """Pharaoh "i-j" with 0-based indices, source first (target first if `reverse`), sorted."""
    pairs = sorted((j, i) if reverse else (i, j) for i, j in links)
    return " ".join(f"{a}-{b}" for a, b in pairs)


def score(predicted: Sequence[set[Link]], sure: Sequence[set[Link]],
          possible: Sequence[set[Link]]) -> dict[str, Any]:
    """AER (`metrics.aer`) and the counts behind it, summed over the corpus."""
    possible = [p | s for p, s in zip(possible, sure)]
    return {"aer": metrics.aer(predicted, sure, possible), "sentences": len(predicted),
            "links": sum(map(len, predicted)), "sure": sum(map(len, sure)),
            "possible": sum(map(len, possible)),
            "sure_hits": sum(len(a & s) for a, s in zip(predicted, sure)),
            "possible_hits": sum(len(a & p) for a, p in zip(predicted, possible))}


def read_lines(path: str, flag: str) -> list[str]:
    """The lines of a UTF-8 text file (a final newline ends the last line, not a new one); `flag`
    names the file in errors (--FLAG=PATH)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except OSError as e:
        raise InputError(f"cannot read --{flag}={path}: {e.strerror}.") from None
    except UnicodeDecodeError as e:
        raise InputError(f"--{flag}={path} is not UTF-8 text ({e.reason} at byte {e.start}).") \
            from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_gold(path: str, src_lines: Sequence[str], tgt_lines: Sequence[str],
              reverse: bool = False) -> tuple[list[set[Link]], list[set[Link]]]:
    """(sure, possible) 0-based links per pair of a gold file, checked against the sentences."""
    lines = read_lines(path, "gold")
    if len(lines) != len(src_lines):
        raise InputError(f"--gold={path} has {len(lines)} lines but --src has {len(src_lines)}; "
                         "the gold needs one line per sentence pair (an empty line: no links).")
    parsed = [parse_gold(line, len(s.split()), len(t.split()), reverse, f"{path}:{n}")
              for n, (line, s, t) in enumerate(zip(lines, src_lines, tgt_lines), 1)]
    return [s for s, _ in parsed], [p for _, p in parsed]


def read_inputs(src_path: str, tgt_path: str, gold_path: str | None = None,
                reverse: bool = False) -> tuple[list[str], list[str], tuple | None]:
    """(source lines, target lines, (sure, possible) or None): a source, a target and a gold file,
    checked against each other (line counts, links inside their sentences)."""
    src_lines = read_lines(src_path, "src")
    tgt_lines = read_lines(tgt_path, "tgt")
    if len(src_lines) != len(tgt_lines):
        raise InputError(f"--src={src_path} has {len(src_lines)} lines but --tgt={tgt_path} has "
                         f"{len(tgt_lines)}; give one sentence per line, pair by pair.")
    gold = read_gold(gold_path, src_lines, tgt_lines, reverse) if gold_path else None
    return src_lines, tgt_lines, gold


def read_split_gold(path: str, pairs: Sequence[tuple[str, str]], flag: str,
                    split: str = "train") -> tuple[list[set[Link]], list[set[Link]]]:
    """(sure, possible) 0-based links per pair of a gold file for a corpus split: line n holds
    pair n's links, `pairs` its (source, target) texts. As `read_gold`, with messages for a
    config flag rather than --src/--tgt files: `flag` names the file (--FLAG=PATH); a line count
    other than len(pairs), a malformed link or one outside its pair raise InputError naming the
    file, the line and the fix."""
    lines = read_lines(path, flag)
    if len(lines) != len(pairs):
        raise InputError(
            f"--{flag}={path} has {len(lines)} lines but the raw {split} split has {len(pairs)} "
            f"pairs; the gold needs one line per {split} pair, in the split's order (an empty "
            "line: no links).")
    sure: list[set[Link]] = []
    possible: list[set[Link]] = []
    for n, (line, (src, tgt)) in enumerate(zip(lines, pairs), 1):
        where = f"{path}:{n}"
        src_len, tgt_len = len(src.split()), len(tgt.split())
        for token in line.split():
            m = _GOLD_LINK.fullmatch(token)
            if m and not (1 <= int(m.group(1)) <= src_len and 1 <= int(m.group(3)) <= tgt_len):
                raise InputError(
                    f"{where}: link {token!r} is outside {split} pair {n} of {src_len} source and "
                    f"{tgt_len} target words; links are 1-based indices of the pair's words "
                    f"(its texts split at spaces), source word first: fix the line of --{flag}.")
        s, p = parse_gold(line, src_len, tgt_len, where=where)  # A malformed link raises here.
        sure.append(s)
        possible.append(p)
    return sure, possible
