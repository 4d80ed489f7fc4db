"""Embedded image captioning ("scenes"): procedural 64x64 pictures of named shapes, a caption
that is a deterministic function of the picture, and gold grounding boxes for every caption word.

Everything is generated deterministically from a seed with numpy (no download); PIL is used only
by `load_image`, for a user's own image files.

Scenes
------
An RGB uint8 image of IMAGE_SIZE x IMAGE_SIZE pixels. The background is a low-saturation grey
with a fine texture, soft low-contrast colour blobs and pixel grain, varying per scene
(`background_seed`). On it lie 1-6 *named* objects (`Obj`): a shape (circle, square, triangle,
diamond) in a colour (red, green, blue, yellow, purple; each drawn colour jittered by up to
+-COLOUR_JITTER per channel) and a size (small: radius 4.5-5.5 px, large: 8-10 px), fully inside
the image. Objects are drawn in list order, later ones on top, and may overlap (occlusion), except
that objects of the same colour never touch (they would merge into one blob). Up to two
*distractors* (`Distractor`) are never named: unsaturated white or dark grey ellipses drawn behind
the objects and thin lines drawn over them. `random_scene` only keeps layouts in which every
named object has at least MIN_VISIBLE of its pixels visible and a visible box at least
MIN_BOX_SIDE pixels high and wide. `render` draws any hand-made object list without checks.

Captions
--------
Objects with the same (size, colour, shape) form a group, named by one phrase:
"a small red circle", "two large blue squares" (counts up to six). Groups are ordered left to
right by their leftmost member's centre x (different groups' centres are at least MIN_DX px apart
in x). Then:

  one group                 "a small red circle" / "three large green diamonds"
  two single objects A, B   "A to the left of B" when |dy| <= dx, else "A above B" (B lower) or
                            "A below B" (B higher); A is the left one, dx = xB - xA, dy = yB - yA
                            (the two are kept at least RELATION_MARGIN px from the diagonal)
  otherwise                 "A and B", "A , B and C", "A , B , C and D" ...

Lowercase, single spaces, the comma is a token. VOCABULARY lists all 29 words; a caption has at
most 29. Gold grounding: the count, size, colour and shape words of a phrase name all objects of
its group; "a", "and", ",", "to", "the", "left", "of", "above", "below" name none. A word's boxes
are the *visible* pixels' bounding boxes (y0, x0, y1, x1), half-open, of the objects it names.

Splits
------
`generate_splits` draws test, then valid, then train, each from its own random stream. Train and
valid follow OBJECT_COUNT_WEIGHTS; test is stratified: an equal number of scenes with 1..6
objects. The running example (`RUNNING_EXAMPLE`, "a large blue square and two small red
triangles") is test scene 0 (id 'running_example', one of the 3-object share); no train or valid
scene has its caption.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

# The identity of the data `generate_splits` returns: in every run's vocab meta and in the
# prepared data's folder name. Change it with any edit that changes the generated scenes.
GENERATOR_VERSION = "scenes-1"

IMAGE_SIZE = 64
MAX_OBJECTS = 6
MAX_GROUP = MAX_OBJECTS  # the most objects one word can name (all objects in one group)
MIN_VISIBLE = 0.75       # fraction of a named object's pixels left visible by occlusion
MIN_BOX_SIDE = 3         # px, height and width of a named object's visible box
MIN_DX = 3.0             # px in x between the centres of objects of different groups
RELATION_MARGIN = 4.0    # px: two-object scenes keep | |dy| - |dx| | at least this
COLOUR_JITTER = 18

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {"red": (215, 35, 35), "green": (40, 170, 55), "blue": (45, 75, 215),
           "yellow": (230, 205, 35), "purple": (145, 55, 190)}
SIZES = {"small": (4.5, 5.5), "large": (8.0, 10.0)}  # radius range, px
COUNT_WORDS = ("a", "two", "three", "four", "five", "six")
RELATIONS = ("to the left of", "above", "below")
FUNCTION_WORDS = ("a", "and", ",", "to", "the", "left", "of", "above", "below")
VOCABULARY = tuple(dict.fromkeys(
    [*COUNT_WORDS, *SIZES, *COLOURS, *SHAPES, *(s + "s" for s in SHAPES), *FUNCTION_WORDS]))
OBJECT_COUNT_WEIGHTS = {1: 0.1, 2: 0.2, 3: 0.2, 4: 0.2, 5: 0.15, 6: 0.15}  # train and valid
P_ALL_DISTINCT = 0.6  # chance that every object has its own kind (else 1..n-1 kinds)

S = IMAGE_SIZE


class Obj(NamedTuple):
    """A named object: its words, centre (px from the top-left corner) and drawn look."""

    shape: str
    colour: str
    size: str
    cy: float
    cx: float
    radius: float = 0.0                     # half extent, px; 0: the middle of the size's range
    rgb: tuple[int, int, int] | None = None  # drawn colour; None: the palette colour

    @property
    def kind(self) -> tuple[str, str, str]:
        """(size, colour, shape): objects of one kind form one caption phrase."""
        return self.size, self.colour, self.shape


class Distractor(NamedTuple):
    """Clutter never named: 'blob' (ellipse with centre p and radii q, drawn behind the objects)
    or 'line' (from p to q, about 1.5 px wide, drawn over them), in grey `level`."""

    kind: str
    p: tuple[float, float]
    q: tuple[float, float]
    level: int


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
    """A rendered scene, its caption and the gold grounding of every caption word."""

    image: np.ndarray                    # [S, S, 3] uint8
    caption: str
    boxes: np.ndarray                    # [n_words, MAX_GROUP, 4] int32 (y0, x0, y1, x1); -1 pad
    word_objects: tuple[tuple[int, ...], ...]  # per word: indices into `objects` it names
    objects: tuple[Obj, ...]             # named objects in drawing order (later on top)
    object_boxes: np.ndarray             # [n_objects, 4] int32 visible box of each object
    visible: np.ndarray                  # [n_objects] float32 visible fraction of its pixels
    distractors: tuple[Distractor, ...] = ()
    background_seed: int = 0
    masks: np.ndarray | None = None      # [n_objects, S, S] bool visible pixels (render(masks=))


def radius(obj: Obj) -> float:
    """The object's half extent in px (the middle of its size's range when not given)."""
    return obj.radius or sum(SIZES[obj.size]) / 2


class _Template(NamedTuple):
    """A drawable's pixels around its anchor pixel (floor of its position), cached and shared."""

    oy: int                          # the mask's top-left pixel, relative to the anchor pixel
    ox: int
    mask: np.ndarray                 # [h, w] bool, read-only
    area: int
    box: tuple[int, int, int, int]   # tight box of the mask's pixels, relative to the anchor


def _template(oy: int, ox: int, mask: np.ndarray) -> _Template:
    mask.setflags(write=False)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = (oy + rows[0], ox + cols[0], oy + rows[-1] + 1, ox + cols[-1] + 1) if rows.size else (0,) * 4
    return _Template(oy, ox, mask, int(mask.sum()), tuple(int(b) for b in box))


@functools.lru_cache(maxsize=8192)
def _shape_template(shape: str, r: float, fy: float, fx: float) -> _Template:
    """A shape of radius r centred (fy, fx) px below and right of its anchor pixel's corner."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid: {SHAPES}")
    n = int(r) + 1
    dy = (np.arange(-n, n + 1) + 0.5 - fy)[:, None]  # [h, 1] pixel centres - shape centre
    dx = (np.arange(-n, n + 1) + 0.5 - fx)[None, :]  # [1, w]
    if shape == "circle":
        mask = dy * dy + dx * dx <= r * r
    elif shape == "square":
        mask = (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
    elif shape == "diamond":
        mask = np.abs(dy) + np.abs(dx) <= r
    else:  # triangle, pointing up: apex at cy - r, base at cy + 0.8 r
        mask = (dy <= 0.8 * r) & (1.8 * np.abs(dx) <= 0.95 * (dy + r))
    return _template(-n, -n, mask)


@functools.lru_cache(maxsize=8192)
def _distractor_template(kind: str, fy: float, fx: float, qy: float, qx: float) -> _Template:
    """A blob (radii qy, qx) centred, or a line from, (fy, fx) relative to its anchor pixel's
    corner; a line ends (qy, qx) further."""
    if kind == "blob":
        top, left, bottom, right = fy - qy, fx - qx, fy + qy, fx + qx
    elif kind == "line":
        top, left = min(fy, fy + qy) - 1, min(fx, fx + qx) - 1
        bottom, right = max(fy, fy + qy) + 1, max(fx, fx + qx) + 1
    else:
        raise ValueError(f"unknown distractor {kind!r}; valid: 'blob', 'line'")
    oy, ox = math.floor(top), math.floor(left)
    py = (np.arange(oy, math.floor(bottom) + 1) + 0.5 - fy)[:, None]  # [h, 1] from the start
    px = (np.arange(ox, math.floor(right) + 1) + 0.5 - fx)[None, :]   # [1, w]
    if kind == "blob":
        mask = (py / qy) ** 2 + (px / qx) ** 2 <= 1.0
    else:  # pixel centres within 0.75 px of the segment
        t = np.clip((py * qy + px * qx) / max(qy * qy + qx * qx, 1e-6), 0.0, 1.0)  # [h, w]
        mask = (py - t * qy) ** 2 + (px - t * qx) ** 2 <= 0.75 ** 2
    return _template(oy, ox, mask)


class _Stroke(NamedTuple):
    """A template placed in the image: its window, mask (cut to the image), colour, and area and
    tight box in image pixels (box None when the image cuts the template)."""

    span: tuple[int, int, int, int]  # (y0, x0, y1, x1)
    mask: np.ndarray                 # [y1 - y0, x1 - x0] bool
    colour: object
    area: int
    box: tuple[int, int, int, int] | None


def _stroke(t: _Template, iy: int, ix: int, colour) -> _Stroke:
    """Template `t` anchored at pixel (iy, ix)."""
    ty, tx = iy + t.oy, ix + t.ox
    h, w = t.mask.shape
    if ty >= 0 and tx >= 0 and ty + h <= S and tx + w <= S:  # inside: everything is cached
        b = t.box
        return _Stroke((ty, tx, ty + h, tx + w), t.mask, colour, t.area,
                       (iy + b[0], ix + b[1], iy + b[2], ix + b[3]))
    y0, x0 = min(S, max(0, ty)), min(S, max(0, tx))
    y1, x1 = max(y0, min(S, ty + h)), max(x0, min(S, tx + w))
    mask = t.mask[y0 - ty:y1 - ty, x0 - tx:x1 - tx]
    return _Stroke((y0, x0, y1, x1), mask, colour, int(np.count_nonzero(mask)), None)


def _object_stroke(obj: Obj) -> _Stroke:
    iy, ix = math.floor(obj.cy), math.floor(obj.cx)
    t = _shape_template(obj.shape, float(radius(obj)), obj.cy - iy, obj.cx - ix)
    return _stroke(t, iy, ix, obj.rgb or COLOURS[obj.colour])


def _distractor_stroke(d: Distractor) -> _Stroke:
    (py, px), (qy, qx) = d.p, d.q
    iy, ix = math.floor(py), math.floor(px)
    if d.kind == "line":  # the template is keyed by the offset (rounded: equal lines share one)
        qy, qx = round(qy - py, 4), round(qx - px, 4)
    return _stroke(_distractor_template(d.kind, py - iy, px - ix, qy, qx), iy, ix, d.level)


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """[n, n] periodic Gaussian-filtered white noise, unit standard deviation."""
    f = np.fft.fftfreq(n)
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    noise = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * kernel).real
    return ((noise - noise.mean()) / noise.std()).astype(np.float32)


# Fixed texture banks, [2S, 2S * 3] (a pixel's channels side by side, so that every array
# operation runs along contiguous rows); each scene crops them at its own offsets. _TEXTURE: a
# fine grey texture plus soft low-contrast colour blobs; _GRAIN: pixel noise.
_BANK = np.random.default_rng(64)
_TEXTURE = (np.repeat(_smooth_noise(_BANK, 2 * S, 3.0), 3, axis=1) + 1.5 * np.stack(
    [_smooth_noise(_BANK, 2 * S, 9.0) for _ in range(3)], -1).reshape(2 * S, 6 * S))
_GRAIN = _BANK.normal(0.0, 3.0, (2 * S, 6 * S)).astype(np.float32)
_ONES = np.ones((S, 1), np.float32)


def _background(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(canvas [S, S, 3] float32, grain [S, S * 3] float32 added after drawing) of one seed: a
    low-saturation grey base under a crop of _TEXTURE."""
    r = random.Random(seed)
    grey = r.uniform(90, 160)
    base = np.array([grey + r.uniform(-12, 12) for _ in range(3)], np.float32)  # [3]
    ty, tx, gy, gx = (r.randrange(S) for _ in range(4))
    canvas = r.uniform(3, 7) * _TEXTURE[ty:ty + S, 3 * tx:3 * (tx + S)]  # [S, 3S]
    canvas += (_ONES * base).reshape(3 * S)  # the base colour of every pixel, [3S]
    return canvas.reshape(S, S, 3), _GRAIN[gy:gy + S, 3 * gx:3 * (gx + S)]


def describe(objects: Sequence[Obj]) -> tuple[list[str], list[tuple[int, ...]]]:
    """The caption's words and, per word, the indices of the objects it names (the grammar in
    the module docstring)."""
    groups: dict[tuple[str, str, str], list[int]] = {}  # (shape, colour, size) -> objects
    for i in sorted(range(len(objects)), key=lambda i: (objects[i].cx, objects[i].cy, objects[i][:3])):
        groups.setdefault(objects[i][:3], []).append(i)  # in the order of the leftmost members
    phrases = list(groups.items())
    relation = None
    if len(phrases) == 2 and len(objects) == 2:
        a, b = objects[phrases[0][1][0]], objects[phrases[1][1][0]]
        dx, dy = b.cx - a.cx, b.cy - a.cy
        relation = (RELATIONS[0] if abs(dy) <= dx else RELATIONS[1] if dy > 0 else RELATIONS[2]).split()
    words, named = [], []
    for j, ((shape, colour, size), idx) in enumerate(phrases):
        if j:
            glue = relation or ([","] if j < len(phrases) - 1 else ["and"])
            words += glue
            named += [()] * len(glue)
        idx = tuple(idx)
        words += [COUNT_WORDS[len(idx) - 1], size, colour, shape + "s" * (len(idx) > 1)]
        named += [idx if len(idx) > 1 else (), idx, idx, idx]
    return words, named


class _Layout:
    """A scene being drawn: its strokes in painting order (blobs, objects, lines), a label map
    [S, S] (k + 1 where object k shows, else 0) and every object's visible pixel count."""

    def __init__(self):
        self.label = np.zeros((S, S), np.uint8)
        self.objects: list[Obj] = []
        self.object_strokes: list[_Stroke] = []
        self.distractors: list[Distractor] = []  # blobs first, as they are painted
        self.strokes: list[_Stroke] = []
        self.n_under = 0
        self.visible = [0] * (MAX_OBJECTS + 1)  # by label

    def add(self, st: _Stroke, label: int = 0, under: bool = False, check: bool = True) -> bool:
        """Draws `st` over everything, as object `label` - 1 (0: a distractor), or (under=True:
        a blob) under everything; with `check`, refuses (False) what would leave an object less
        than MIN_VISIBLE visible."""
        if under:  # the label map is unchanged: objects keep their pixels
            self.strokes.insert(self.n_under, st)
            self.n_under += 1
            return True
        y0, x0, y1, x1 = st.span
        window = self.label[y0:y1, x0:x1]  # a view
        overlaps = any(y0 < a1 and a0 < y1 and x0 < b1 and b0 < x1
                       for a0, b0, a1, b1 in (o.span for o in self.object_strokes))
        if overlaps:
            covered = window[st.mask]  # labels of the pixels it would cover
            if covered.any():
                lost = np.bincount(covered, minlength=MAX_OBJECTS + 1).tolist()
                left = [v - c for v, c in zip(self.visible, lost)]
                if check and any(v < MIN_VISIBLE * o.area
                                 for v, o in zip(left[1:], self.object_strokes)):
                    return False
                self.visible = left
        if label or overlaps:
            window[st.mask] = label
        if label:
            self.visible[label] = st.area
            self.object_strokes.append(st)
        self.strokes.append(st)
        return True


def _visible_boxes(layout: _Layout) -> list[tuple[int, int, int, int]]:
    """Each object's visible box: its template's box unless partly hidden or cut by the image."""
    boxes = []
    for k, st in enumerate(layout.object_strokes):
        if st.box is not None and layout.visible[k + 1] == st.area:
            boxes.append(st.box)
            continue
        y0, x0, y1, x1 = st.span
        window = layout.label[y0:y1, x0:x1] == k + 1  # [h, w]
        ys, xs = np.flatnonzero(window.any(1)), np.flatnonzero(window.any(0))
        boxes.append((y0 + int(ys[0]), x0 + int(xs[0]), y0 + int(ys[-1]) + 1,
                      x0 + int(xs[-1]) + 1) if ys.size else (-1,) * 4)
    return boxes


def _finish(layout: _Layout, background_seed: int, boxes: list[tuple[int, int, int, int]],
            masks: bool = False) -> Scene:
    """The Scene of a finished layout: image, caption and word boxes."""
    objects, n = tuple(layout.objects), len(layout.objects)
    canvas, grain = _background(background_seed)  # [S, S, 3], [S, 3S] float32
    for st in layout.strokes:
        y0, x0, y1, x1 = st.span
        np.copyto(canvas[y0:y1, x0:x1], st.colour, where=st.mask[:, :, None])
    flat = canvas.reshape(S, 3 * S)
    flat += grain
    image = np.empty((S, S, 3), np.uint8)
    np.clip(flat, 0, 255, out=image.reshape(S, 3 * S), casting="unsafe")
    words, named = describe(objects) if objects else ([], [])
    padded = np.array(boxes + [(-1,) * 4], np.int32)  # [n + 1, 4]: row n is the padding
    index = np.array([i + (n,) * (MAX_GROUP - len(i)) for i in named], np.intp)  # [W, G]
    visible = [v / max(st.area, 1) for v, st in zip(layout.visible[1:], layout.object_strokes)]
    return Scene(image=image, caption=" ".join(words),
                 boxes=padded[index.reshape(-1, MAX_GROUP)], word_objects=tuple(named),
                 objects=objects, object_boxes=padded[:n],
                 visible=np.array(visible, np.float32).reshape(n),
                 distractors=tuple(layout.distractors), background_seed=background_seed,
                 masks=(layout.label == np.arange(1, n + 1, dtype=np.uint8)[:, None, None])
                 if masks else None)


def render(objects: Sequence[Obj], background_seed: int = 0,
           distractors: Sequence[Distractor] = (), *, masks: bool = False) -> Scene:
    """The scene of `objects` (drawn in order, later on top) over `background_seed`'s background,
    blob distractors behind and line distractors over them (each in order); no visibility
    checks. `masks=True` keeps each object's visible pixels ([n, S, S] bool) in `Scene.masks`."""
    if len(objects) > MAX_OBJECTS:
        raise ValueError(f"{len(objects)} objects: at most {MAX_OBJECTS}")
    layout = _Layout()
    for k, obj in enumerate(objects):
        obj = Obj(*obj)
        layout.add(_object_stroke(obj), k + 1, check=False)
        layout.objects.append(obj)
    for d in sorted(distractors, key=lambda d: d.kind != "blob"):  # stable: blobs, then lines
        layout.add(_distractor_stroke(d), under=d.kind == "blob", check=False)
        layout.distractors.append(d)
    return _finish(layout, background_seed, _visible_boxes(layout), masks)


_KINDS = [(size, colour, shape) for size in SIZES for colour in COLOURS for shape in SHAPES]
_COUNTS, _COUNT_WEIGHTS = list(OBJECT_COUNT_WEIGHTS), list(OBJECT_COUNT_WEIGHTS.values())


def _kinds(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """n object kinds in drawing order: all distinct (P_ALL_DISTINCT) or 1..n-1 distinct ones."""
    n_kinds = n if n == 1 or rng.random() < P_ALL_DISTINCT else rng.randint(1, n - 1)
    kinds = rng.sample(_KINDS, n_kinds)
    out = kinds + [rng.choice(kinds) for _ in range(n - n_kinds)]
    rng.shuffle(out)
    return out


def _fits(obj: Obj, placed: Sequence[Obj], relation: bool) -> bool:
    """The geometric rules against the objects already placed."""
    for other in placed:
        if other.colour == obj.colour:  # never touch: they would merge into one blob
            gap = obj.radius + other.radius + 2
            if (obj.cy - other.cy) ** 2 + (obj.cx - other.cx) ** 2 < gap * gap:
                return False
        if other[:3] != obj[:3] and abs(obj.cx - other.cx) < MIN_DX:  # another kind
            return False
        if relation and abs(abs(obj.cy - other.cy) - abs(obj.cx - other.cx)) < RELATION_MARGIN:
            return False
    return True


def _place(rng: random.Random, kinds: Sequence[tuple[str, str, str]]) -> _Layout | None:
    """Objects of `kinds` (drawing order) placed keeping every rule, or None if one did not fit."""
    relation = len(kinds) == 2 and kinds[0] != kinds[1]
    layout = _Layout()
    for size, colour, shape in kinds:
        lo, hi = SIZES[size]
        r = (math.ceil(4 * lo) + int(rng.random() * (4 * (hi - lo) + 1))) / 4  # a 0.25 px grid
        red, green, blue = COLOURS[colour]  # +- COLOUR_JITTER stays inside 0..255
        jitter = 2 * COLOUR_JITTER + 1
        rgb = (red - COLOUR_JITTER + int(rng.random() * jitter),
               green - COLOUR_JITTER + int(rng.random() * jitter),
               blue - COLOUR_JITTER + int(rng.random() * jitter))
        first, steps = math.ceil(2 * r + 2), math.floor(2 * (S - r - 1)) - math.ceil(2 * r + 2) + 1
        for _ in range(50):  # centres on a 0.5 px grid, the whole object inside the image
            obj = Obj(shape, colour, size, (first + int(rng.random() * steps)) / 2,
                      (first + int(rng.random() * steps)) / 2, r, rgb)
            if _fits(obj, layout.objects, relation) and layout.add(
                    _object_stroke(obj), len(layout.objects) + 1):
                layout.objects.append(obj)
                break
        else:
            return None
    return layout


def _add_distractors(rng: random.Random, layout: _Layout) -> None:
    """0-2 distractors: blobs under the objects, lines over them (a line that would hide too
    much of an object is dropped)."""
    drawn = []
    for _ in range(rng.randint(0, 2)):
        level = rng.randint(205, 240) if rng.random() < 0.5 else rng.randint(20, 55)
        p = (rng.randrange(S) + 0.5, rng.randrange(S) + 0.5)  # pixel centres: cached templates
        if rng.random() < 0.5:  # radii 3..8 px in 0.5 px steps
            radii = ((6 + rng.randrange(11)) / 2, (6 + rng.randrange(11)) / 2)
            drawn.append(Distractor("blob", p, radii, level))
        else:  # 32 directions, 8 lengths
            angle, length = 2 * math.pi * rng.randrange(32) / 32, 12 + 4 * rng.randrange(8)
            q = (p[0] + length * math.sin(angle), p[1] + length * math.cos(angle))
            drawn.append(Distractor("line", p, q, level))
    for d in sorted(drawn, key=lambda d: d.kind != "blob"):  # the order `render` draws them in
        if layout.add(_distractor_stroke(d), under=d.kind == "blob"):
            layout.distractors.append(d)


def random_scene(rng: random.Random, n_objects: int | None = None) -> Scene:
    """One scene with `n_objects` named objects (default: drawn from OBJECT_COUNT_WEIGHTS),
    keeping every rule of the module docstring; layouts that break one are redrawn."""
    n = n_objects or rng.choices(_COUNTS, _COUNT_WEIGHTS)[0]
    if not 1 <= n <= MAX_OBJECTS:
        raise ValueError(f"n_objects={n}: must be 1..{MAX_OBJECTS}")
    for _ in range(1000):
        layout = _place(rng, _kinds(rng, n))
        if layout is None:
            continue
        _add_distractors(rng, layout)
        boxes = _visible_boxes(layout)
        if all(min(y1 - y0, x1 - x0) >= MIN_BOX_SIDE for y0, x0, y1, x1 in boxes):
            return _finish(layout, rng.getrandbits(32), boxes)
    raise RuntimeError(f"no valid layout of {n} objects in 1000 tries")


RUNNING_EXAMPLE = render(
    [Obj("square", "blue", "large", 36, 17, 9.0), Obj("triangle", "red", "small", 18, 40, 5.0),
     Obj("triangle", "red", "small", 44, 49, 5.0)],
    background_seed=2026, distractors=[Distractor("line", (6, 24), (24, 60), 225)])
RUNNING_EXAMPLE_ID = "running_example"
for _array in (RUNNING_EXAMPLE.image, RUNNING_EXAMPLE.boxes, RUNNING_EXAMPLE.object_boxes):
    _array.setflags(write=False)  # shared by every test split


def object_count(scene: Scene | str) -> int:
    """Named objects in a scene, or read off its caption (the sum of the phrases' counts)."""
    if isinstance(scene, Scene):
        return len(scene.objects)
    return sum(COUNT_WORDS.index(w) + 1 for w in scene.split() if w in COUNT_WORDS)


def generate(n: int, seed: int, n_objects: int | None = None) -> list[Scene]:
    """`n` scenes, deterministic in (n, seed, n_objects); the train distribution by default."""
    rng = random.Random(f"attn_jax.scenes/{seed}")
    return [random_scene(rng, n_objects) for _ in range(n)]


def generate_splits(sizes: Mapping[str, int], seed: int) -> dict[str, list[Scene]]:
    """Splits 'train', 'valid', 'test', deterministic in (sizes, seed), each from its own stream.

    test: equal numbers of scenes with 1..6 objects, the running example first (it takes one of
    the 3-object share); valid, train: OBJECT_COUNT_WEIGHTS, never the running example's caption.
    """
    out = {}
    for split in ("test", "valid", "train"):
        rng = random.Random(f"attn_jax.scenes/{seed}/{split}")
        size = sizes.get(split, 0)
        if split == "test":
            counts = [i % MAX_OBJECTS + 1 for i in range(size)]  # 1..6 in turn: equal shares
            if counts:
                counts.remove(3 if 3 in counts else counts[-1])
            out[split] = [RUNNING_EXAMPLE] * (size > 0) + [random_scene(rng, c) for c in counts]
            continue
        scenes: list[Scene] = []
        while len(scenes) < size:
            scene = random_scene(rng)
            if scene.caption != RUNNING_EXAMPLE.caption:
                scenes.append(scene)
        out[split] = scenes
    return {k: out[k] for k in ("train", "valid", "test")}


def scene_id(split: str, index: int, scene: Scene) -> str:
    """The `Pair.src` of a generated scene: 'running_example' or '<split>_<index>'."""
    return RUNNING_EXAMPLE_ID if scene is RUNNING_EXAMPLE else f"{split}_{index}"


def load_image(path: str) -> tuple[np.ndarray, str]:
    """A user's image file as [S, S, 3] uint8 RGB, and what was done to it ('' when nothing):
    other modes are converted to RGB, other sizes resized (bilinear, aspect not kept).
    Raises ValueError when PIL cannot read the file as an image."""
    from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top

    try:
        with Image.open(path) as img:
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e
    done = []
    if img.mode != "RGB":
        done.append(f"converted {img.mode} to RGB")
        img = img.convert("RGB")
    if img.size != (S, S):
        done.append(f"resized {img.size[0]}x{img.size[1]} to {S}x{S}")
        img = img.resize((S, S), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8), ", ".join(done)
