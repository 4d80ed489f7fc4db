r"""Caption image files with a trained image run (`model.encoder='cnn'`): `translate` for pictures.

    python -m attn_jax.caption --workdir=runs/scenes picture.png [more.png FOLDER ...] \
        [--beam_size=5] [--heatmaps=strips/] [--output=captions.tsv]

One line out per image, "path<TAB>caption", in the order given (a FOLDER's image files sorted by
name), written and flushed batch by batch (--batch_size images). Images are read as the run's
data are (`attn_jax.data.scenes.load_image`): other modes (grayscale, RGBA, palette) are converted
to RGB and other sizes resized to the run's, each with a note on stderr. A file that cannot be
read as an image never stops the others: it gets a note naming it and the fix, no output line,
and the command ends with exit status 1 after captioning the rest. --heatmaps writes each
caption's attention over the picture as a strip of panels, one per word (Xu et al. 2015, Fig. 3).
Bad settings (no such workdir, a run trained on text, no image given) end with a one-line error
naming the fix and exit status 1.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

import numpy as np
from absl import flags

from attn_jax.data import scenes, sources
from attn_jax.eval import evaluate, plots
from attn_jax.model import image as image_lib
from attn_jax.run import cli
from attn_jax.translate import TranslateError, Translator

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")


def image_paths(args: Sequence[str]) -> list[str]:
    """The image files named by `args`: files as given, folders as their image files (by suffix)
    sorted by name. Raises TranslateError when nothing is given, a path does not exist or a
    folder holds no image file."""
    if not args:
        raise TranslateError("no image given: pass image files or folders after the flags, e.g. "
                             "python -m attn_jax.caption --workdir=runs/scenes picture.png")
    paths = []
    for arg in args:
        if os.path.isdir(arg):
            found = sorted(os.path.join(arg, f) for f in os.listdir(arg)
                           if f.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise TranslateError(f"{arg} holds no image file ({', '.join(IMAGE_SUFFIXES)}); "
                                     "pass a folder of images or the files themselves.")
            paths.extend(found)
        elif os.path.exists(arg):
            paths.append(arg)
        else:
            raise TranslateError(f"{arg} does not exist; pass image files or folders.")
    return paths


class Captioner:
    """A finished (or checkpointed) image run loaded for inference: replica 0 of its best
    checkpoint, its caption vocabulary and its decoder (greedy or beam search)."""

    def __init__(self, workdir: str, beam_size: int = 1, length_penalty: float = 0.6,
                 batch_size: int = 16):
        self.runner = Translator(workdir, beam_size, length_penalty, batch_size)
        size = sources.image_size(self.runner.config.data.name)
        if not size:
            raise TranslateError(f"{workdir} holds a run trained on text "
                                 f"(data.name={self.runner.config.data.name!r}); caption with a "
                                 "run of image data (configs/scenes.py), or translate text with "
                                 "python -m attn_jax.translate.")
        self.grid = image_lib.grid_shape(size)
        self.notes: list[str] = []

    @property
    def warnings(self) -> list[str]:
        return self.runner.warnings

    def read(self, path: str) -> np.ndarray | None:
        """The picture at `path` as the run reads pictures, or None (with a note) if it is none."""
        try:
            picture, done = scenes.load_image(path)
        except ValueError as e:
            self.notes.append(f"{e}; skipped (convert it to PNG or JPEG, or leave it out)")
            return None
        if done:
            self.notes.append(f"{path}: {done}")
        return picture

    def caption(self, pictures: np.ndarray) -> list[tuple[str, list[str], np.ndarray]]:
        """pictures [N, H, W, 3] uint8 -> (caption, its tokens, attention [T, H', W']) per
        picture, decoded as the run's evaluation decodes (`evaluate.caption_images`)."""
        runner = self.runner
        captions = evaluate.caption_images(runner.decode, runner.params, pictures,
                                           runner.batch_size)[0]  # replica 0
        return [(runner.tgt_vocab.decode(ids), runner.tgt_vocab.pieces(ids),
                 attention.reshape(len(ids), *self.grid)) for ids, attention in captions]


def _batches(captioner: Captioner, paths: Iterable[str]) -> Iterator[list[tuple[str, np.ndarray]]]:
    """(path, picture) of the readable files, `batch_size` at a time."""
    batch = []
    for path in paths:
        picture = captioner.read(path)
        if picture is not None:
            batch.append((path, picture))
        if len(batch) == captioner.runner.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(captioner: Captioner, paths: Sequence[str], out: IO[str], heatmaps: str | None,
        err: IO[str]) -> tuple[int, int]:
    """Captions `paths` batch by batch, writing and flushing each batch's lines (and the notes,
    to `err`); returns (captioned, skipped)."""
    done = 0
    for batch in _batches(captioner, paths):
        results = captioner.caption(np.stack([picture for _, picture in batch]))
        out.write("".join(f"{path}\t{text}\n" for (path, _), (text, _, _) in zip(batch, results)))
        out.flush()
        if heatmaps:
            for (path, picture), (text, words, attention) in zip(batch, results):
                name = os.path.splitext(os.path.basename(path))[0]
                plots.caption_strip(picture, words, attention,
                                    os.path.join(heatmaps, f"{name}.png"), title=text)
        for note in captioner.notes:
            print(f"note: {note}", file=err, flush=True)
        captioner.notes.clear()
        done += len(batch)
    for note in captioner.notes:  # A last batch of unreadable files only.
        print(f"note: {note}", file=err, flush=True)
    return done, len(paths) - done


FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Flags exist only when run as a program, so importing this module defines none."""
    flags.DEFINE_string("workdir", None, "A finished (or checkpointed) run of image data.")
    flags.DEFINE_string("output", "-", "Output file of 'path<TAB>caption' lines ('-' = stdout).")
    flags.DEFINE_integer("beam_size", 1, "1 = greedy; > 1 = beam search.")
    flags.DEFINE_float("length_penalty", 0.6, "Beam search GNMT length penalty alpha (>= 0).")
    flags.DEFINE_integer("batch_size", 16, "Images per batch (read, captioned, written).")
    flags.DEFINE_string("heatmaps", None, "Write one attention strip PNG per image here.")


def _caption_all(args: Sequence[str]) -> int:
    if not FLAGS.workdir:
        raise TranslateError("--workdir is required: the --workdir of a run on image data.")
    paths = image_paths(args)
    captioner = Captioner(FLAGS.workdir, FLAGS.beam_size, FLAGS.length_penalty, FLAGS.batch_size)
    for warning in captioner.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if FLAGS.heatmaps:
        try:
            os.makedirs(FLAGS.heatmaps, exist_ok=True)
        except OSError as e:
            raise TranslateError(f"cannot create --heatmaps={FLAGS.heatmaps}: {e.strerror}.") \
                from None
    with contextlib.ExitStack() as stack:
        if FLAGS.output == "-":
            out = sys.stdout
        else:
            try:
                out = stack.enter_context(open(FLAGS.output, "w", encoding="utf-8"))
            except OSError as e:
                raise TranslateError(f"cannot open --output={FLAGS.output}: {e.strerror}.") \
                    from None
        done, skipped = run(captioner, paths, out, FLAGS.heatmaps, sys.stderr)
    print(f"captioned {done} images ({skipped} skipped)", file=sys.stderr)
    return 1 if skipped else 0


def main(argv):
    status = cli.one_line_errors(lambda: _caption_all(argv[1:]), (TranslateError,))
    sys.exit(status)


if __name__ == "__main__":
    cli.start(_define_flags, main)
