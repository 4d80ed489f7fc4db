"""The image encoder (`model.encoder = "cnn"`): a picture as a grid of annotations h_j.

Show, Attend and Tell (Xu et al. 2015) replaces the source RNN's annotations by the feature grid
of a CNN: each of the S = H'·W' cells is one h_j, and the decoder, the scorers and both decoder
flows are the text model's, unchanged. Here a small CNN for the embedded 64 x 64 scenes
(attn_jax/data/scenes.py):

    x  = pixels / 127.5 - 1                               [B, H, W, 3]
    x  = relu(N(conv4x4 stride 2, padding 1)), twice      [B, H/4, W/4, D/4 -> D/2]
    x  = relu(N(conv2x2 stride 2))                        [B, H/8, W/8, D]
    x  = conv1x1(relu(convKxK(x, D)), D)                  [B, H/8, W/8, D]   (K = cell_kernel)
    h  = flatten(x) + P                                   [B, S, D], S = (H/8)(W/8)

With `global_pool` = n the per-cell layer's pre-activation also gets Dense(mean of x over the
grid), the same vector for every cell of a picture, and n - 1 more per-cell layers follow, each
with the mean of its own input added likewise: through the relus a cell can combine what it sees
with what the whole picture holds (how many objects of its kind), which softmax attention, whose
weights sum to one, cannot give a word that looks at one of them (what it changes on the
embedded scenes: experiments/scenes/README.md).

With `count_layers` = n, n `CountLayer`s follow h, before any grid layers (self-attention over
the cells with sigmoid weights: a cell reads a sum over the cells like it, not a mean, so it
can count them); `width` sets the first two convolutions' channels (default D/4 and D/2).

N is the identity, or with `norm` a LayerNorm over each pixel's channels (per picture and
position: nothing shared across a batch, so a caption never depends on its batch-mates).
P is a learned embedding of the S positions (row-major), so a scorer can tell where a cell is
(the captions say "to the left of"). Every cell is real: the source mask is all ones. The
decoder's initial state is the bridge of the mean annotation (Xu et al.'s `init` MLP of the mean).

Each annotation sees RECEPTIVE_FIELD = 14 pixels centred on its 8-pixel cell, no more: even
kernels with symmetric padding keep every receptive field centred on its cell (3 x 3 kernels of
stride 2 with 'SAME' padding shift it half a pixel per layer, 3.5 pixels in all, so a cell
looked at its lower-right neighbour's pixels), and the layers after the grid are per cell (a
3 x 3 'SAME' convolution there let a cell see 31 pixels, off centre). So looking at an object is
the way to see it, and the attention that reads an object lies on it
(experiments/scenes/README.md). `cell_kernel` K > 1 (odd) widens the first layer after the grid
to the K x K cells around each one, still centred: `receptive_field(K)` = 14 + 8 (K - 1) pixels
(30 for K = 3, a large object whole). With `local_keys` the attention scores the per-cell
annotations (14 pixels) while the context reads the K x K ones: a word must look at its object's
cells to be scored there, and what it reads there sees the object whole.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from attn_jax.model import transformer

GRID_HALVINGS = 3  # Stride-2 convolutions: a cell covers 2**3 = 8 x 8 pixels.
CELL = 2 ** GRID_HALVINGS
KERNELS = (4, 4, 2)  # Per stride-2 layer; (k - 2) / 2 padding each side centres the field.
RECEPTIVE_FIELD = 1 + sum((k - 1) * 2 ** i for i, k in enumerate(KERNELS))  # 14 px


def receptive_field(cell_kernel: int = 1) -> int:
    """Pixels per side an annotation sees, centred on its cell, with a cell_kernel neighbourhood."""
    return RECEPTIVE_FIELD + CELL * (cell_kernel - 1)


# What a family's sources come from (`model.encoder`): 'rnn' (source tokens) | 'cnn' (pictures
# [B, H, W, 3] through `ImageEncoder`, a grid of S cells).
ENCODERS = ("rnn", "cnn")


def check_source(encoder: str, image_size: int, family: str,
                 options: dict[str, tuple[Any, Any]]) -> None:
    """Both model families' source checks, a one-line ValueError naming the fix: `encoder` is a
    key of ENCODERS, 'cnn' exactly when the data holds pictures (image_size > 0) of a size the
    CNN can halve, and the image encoder's `options` (name -> (value, default)) at their defaults
    for text. `family` names the model in the message ("RNN encoder", "Transformer")."""
    if encoder not in ENCODERS:
        raise ValueError(f"Unknown model.encoder {encoder!r}; valid: {', '.join(ENCODERS)} "
                         "(--config.model.encoder=NAME).")
    if encoder == "cnn" and not image_size:
        raise ValueError("model.encoder='cnn' reads images, but the data is text: use "
                         "--config.model.encoder=rnn, or image data (--config.data.name="
                         "scenes or images:FOLDER).")
    if encoder == "rnn" and image_size:
        raise ValueError(f"The data holds images, which the {family} cannot read as tokens: "
                         "set --config.model.encoder=cnn.")
    if image_size:
        grid_shape(image_size)
    elif any(value != default for value, default in options.values()):
        names = list(options)
        raise ValueError(f"model.{', '.join(names[:-1])} and {names[-1]} are the image "
                         "encoder's; text runs take "
                         + " ".join(f"--config.model.{n}={d}" for n, (_, d) in options.items())
                         + ".")


def dummy_source(image_size: int, src_len: int) -> jax.Array:
    """The one-example source a family's `init_params` traces: a picture, or src_len tokens."""
    if image_size:
        return jnp.ones((1, image_size, image_size, 3), jnp.uint8)
    return jnp.ones((1, src_len), jnp.int32)


def grid_shape(image_size: int) -> tuple[int, int]:
    """(H', W') of the annotation grid of a square image of `image_size` pixels."""
    if image_size <= 0 or image_size % CELL:
        raise ValueError(f"image size {image_size} must be a positive multiple of {CELL} (the "
                         f"CNN halves it {GRID_HALVINGS} times).")
    return image_size // CELL, image_size // CELL


def num_cells(image_size: int) -> int:
    """S: annotations per image."""
    h, w = grid_shape(image_size)
    return h * w


def patches(x: jax.Array, size: int, stride: int, pad: int) -> jax.Array:
    """[B, H, W, C] -> [B, H', W', size·size·C]: each output position's size x size window
    (zero-padded by `pad`), flattened in (dy, dx, c) order, the layout of a conv kernel's
    (size, size, C) axes."""
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, w = (x.shape[1] - size) // stride + 1, (x.shape[2] - size) // stride + 1
    return jnp.concatenate([x[:, dy:dy + stride * (h - 1) + 1:stride,
                              dx:dx + stride * (w - 1) + 1:stride]
                            for dy in range(size) for dx in range(size)], -1)


class PatchConv(nn.Module):
    """nn.Conv's function and parameters (kernel [size, size, C, features], bias), computed as
    one matmul over `patches`. For the first layer, whose input (the pixels) needs no gradient:
    there the kernel's gradient is one matmul too, where XLA's CPU backend computes a
    convolution's kernel gradient with a slower backward convolution."""

    features: int
    size: int
    stride: int
    pad: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (self.size, self.size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.linear.default_kernel_init, shape)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        y = patches(x, self.size, self.stride, self.pad) @ kernel.reshape(-1, self.features)
        return y + bias.astype(y.dtype)


class CountLayer(nn.Module):
    """x [B, S, D] -> x + W_o Σ_k σ(q_j·k_k / √A + b) v_k: self-attention over the cells whose
    weights are sigmoids, not a softmax, so they do not sum to one and the output is a sum, not
    a mean: a cell whose query matches the keys of n cells reads n times their value, so it can
    tell how many cells look like it (what a count needs, and what softmax attention, over the
    grid or in the decoder, cannot give). A = D/4 query, key and value sizes; b starts at -2
    (weights near 0.12) and W_o at zero, so the layer starts as the identity."""

    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        a = max(x.shape[-1] // 4, 1)
        dense = lambda n, name, **kw: nn.Dense(n, dtype=self.dtype, name=name, **kw)  # noqa: E731
        q, k, v = (dense(a, n)(x) for n in ("query", "key", "value"))  # [B, S, A] each
        bias = self.param("bias", nn.initializers.constant(-2.0), ())
        weights = nn.sigmoid(jnp.einsum("bja,bka->bjk", q, k) / jnp.sqrt(a).astype(q.dtype)
                             + bias.astype(q.dtype))  # [B, S, S]
        summed = jnp.einsum("bjk,bka->bja", weights, v)  # [B, S, A]
        out = dense(x.shape[-1], "out", kernel_init=nn.initializers.zeros_init())(summed)
        return x + out.astype(x.dtype)


class ImageEncoder(nn.Module):
    """images [B, H, W, 3] (uint8 or float in 0..255) -> annotations [B, S, features]."""

    features: int  # D: the annotation size the scorers read.
    dtype: Any = None  # Matmul dtype (None: float32).
    cell_kernel: int = 1  # Odd: the cells (K x K, centred) the first layer after the grid reads.
    # True: the keys (what attention scores) come from per-cell layers (each cell's 14 pixels)
    # and only the values (what the context reads) from the cell_kernel neighbourhood and the
    # grid layers.
    local_keys: bool = False
    grid_layers: int = 0  # Self-attention layers over the cells (0: none).
    num_heads: int = 4  # Heads of those layers (divides features).
    norm: bool = False  # LayerNorm over channels after each stride-2 convolution (before relu).
    # Per-cell layers that also read a projection of their input's mean over the whole grid (0:
    # none; 1: the first layer after the grid; n: and n - 1 more per-cell layers), so that each
    # cell can tell how many others look like it (what a count needs).
    global_pool: int = 0
    # Unnormalised self-attention layers over the cells (`CountLayer`: sums, not means, so a
    # cell can count the cells like it; 0: none).
    count_layers: int = 0
    width: int = 0  # Channels of the first stride-2 convolution, twice that the second (0: D/4).

    def _context(self, x: jax.Array) -> jax.Array:
        """[B, S, D] -> [B, S, D] through count_layers `CountLayer`s, then grid_layers encoder
        layers (no mask: every cell real)."""
        for i in range(self.count_layers):
            x = CountLayer(self.dtype, name=f"count_{i}")(x)
        if not self.grid_layers:
            return x
        d = self.features
        config = transformer.TransformerConfig(
            src_vocab_size=1, tgt_vocab_size=1, layers=self.grid_layers, num_heads=self.num_heads,
            d_model=d, d_ff=2 * d, dtype="bfloat16" if self.dtype == jnp.bfloat16 else "float32")
        mask = jnp.ones((x.shape[0], 1, x.shape[1]), bool)  # [B, 1, S]: every cell, every query
        for i in range(self.grid_layers):
            x = transformer.EncoderLayer(config, name=f"grid_{i}")(x, mask)
        return nn.LayerNorm(name="grid_norm")(x)

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """-> (keys, values) annotations, each [B, S, D]: the same array unless local_keys."""
        d = self.features
        first, second = ((self.width, 2 * self.width) if self.width
                         else (max(d // 4, 1), max(d // 2, 1)))
        widths = [first, second, d][-GRID_HALVINGS:]
        def conv(width, size, stride, name, on_pixels=False):
            pad = (size - stride) // 2  # Symmetric: the field stays centred on its cell.
            # (An odd size at stride 1 pads (size - 1) / 2 each side: centred as well.)
            if on_pixels:  # no gradient to the input: one matmul over patches, same parameters
                return PatchConv(width, size, stride, pad, self.dtype, name=name)
            return nn.Conv(width, (size, size), strides=stride, padding=((pad, pad), (pad, pad)),
                           dtype=self.dtype, name=name)

        x = images.astype(jnp.float32) / 127.5 - 1.0  # [B, H, W, 3]
        for i, (width, size) in enumerate(zip(widths, KERNELS)):
            x = conv(width, size, 2, f"down_{i}", on_pixels=i == 0)(x)  # halves H and W
            if self.norm:  # per pixel over channels: no statistics shared across a batch
                x = nn.LayerNorm(name=f"down_{i}_norm")(x.astype(jnp.float32))
            x = nn.relu(x)
        b, h, w, _ = x.shape
        positions = self.param("positions", nn.initializers.normal(0.02), (h * w, d))  # [S, D]

        def head(kernel, prefix):  # [B, H', W', D] -> [B, S, D]; per cell after the first layer
            y, z = conv(d, kernel, 1, f"{prefix}cell")(x), x  # pre-activation, its input
            for i in range(self.global_pool):
                if i:  # one more per-cell layer, over the previous one's output
                    z = nn.relu(y)
                    y = nn.Dense(d, dtype=self.dtype, name=f"{prefix}cell_{i}")(z)
                # the summary of the layer's input over the picture, the same for every cell
                y = y + nn.Dense(d, dtype=self.dtype, name=f"{prefix}pool" + (f"_{i}" if i else ""))(
                    z.mean((1, 2), keepdims=True))
            y = nn.relu(y)
            y = conv(d, 1, 1, f"{prefix}out")(y).astype(jnp.float32)
            return y.reshape(b, h * w, d) + positions

        if not self.local_keys:
            annotations = self._context(head(self.cell_kernel, ""))
            return annotations, annotations
        return head(1, ""), self._context(head(self.cell_kernel, "wide_"))
