"""The image encoder (`model.encoder='cnn'`) in the RNN model and the Transformer: grid shapes,
an all-real source mask, teacher-forced outputs equal to step-by-step decoding in both flows and
in the Transformer, and Xu et al.'s doubly stochastic penalty in the fused loss (value and
gradient) against plain autodiff."""

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.model import image, rnn
from attn_jax.model import loss as loss_lib
from attn_jax.model import transformer as tf

SIZE = 32  # Pixels per side: a 4 x 4 grid keeps the tests fast.


def _model(flow="bahdanau", scorer="additive", **image):
    config = rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=12, encoder="cnn", image_size=SIZE,
                             flow=flow, scorer=scorer, embed_size=8, encoder_hidden=16,
                             decoder_hidden=16, attention_size=8, output_size=16,
                             **image).validate()
    model = rnn.Seq2Seq(config)
    return model, rnn.init_params(model, jax.random.key(0), 1)


def _batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8)  # [B, H, W, 3]
    tgt_in = np.array([[1, 5, 6, 7, 0], [1, 8, 9, 0, 0]], np.int32)  # BOS = 1, PAD = 0
    tgt_out = np.array([[5, 6, 7, 2, 0], [8, 9, 2, 0, 0]], np.int32)  # EOS = 2
    return images, tgt_in, tgt_out


def test_grid_shape_and_errors():
    assert image.grid_shape(64) == (8, 8) and image.num_cells(32) == 16
    with pytest.raises(ValueError, match="multiple of 8"):
        image.grid_shape(60)
    with pytest.raises(ValueError, match="encoder=rnn"):
        rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=5, encoder="cnn").validate()
    with pytest.raises(ValueError, match="encoder=cnn"):
        rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=5, image_size=64).validate()
    for bad in (0, 2):
        with pytest.raises(ValueError, match="cell_kernel must be odd"):
            rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=5, encoder="cnn", image_size=64,
                            cell_kernel=bad).validate()
    with pytest.raises(ValueError, match="cell_kernel=1"):
        rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=5, cell_kernel=3).validate()
    with pytest.raises(ValueError, match="cell_kernel=3"):
        rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=5, encoder="cnn", image_size=64,
                        local_keys=True).validate()
    for field in ("grid_layers", "image_norm", "global_pool", "count_layers", "image_width"):
        with pytest.raises(ValueError, match="grid_layers=0 --config.model.image_norm=False"):
            rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=5, **{field: 1}).validate()
    for field in ("global_pool", "count_layers", "image_width"):
        with pytest.raises(ValueError, match=f"{field} must be >= 0"):
            rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=5, encoder="cnn", image_size=64,
                            **{field: -1}).validate()
    with pytest.raises(ValueError, match="num_heads"):
        rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=5, encoder="cnn", image_size=64,
                        encoder_hidden=30, grid_layers=1).validate()
    rnn.ModelConfig(src_vocab_size=1, tgt_vocab_size=5, encoder="cnn", image_size=64,
                    local_keys=True, grid_layers=1).validate()  # values see more: accepted


@pytest.mark.parametrize("cell_kernel,local_keys,norm",
                         [(1, False, False), (3, False, False), (3, True, False), (1, False, True)])
def test_each_annotation_sees_a_window_centred_on_its_cell(cell_kernel, local_keys, norm):
    """The pixels a cell's annotation depends on (its gradient's support) are the
    receptive_field(cell_kernel) square centred on the cell's own 8 x 8 pixels: 14 pixels
    (3 beyond the cell each side) for cell_kernel 1, 30 (11 each side) for 3; with local_keys the
    keys keep the 14 pixels while the values see the 30; a LayerNorm per pixel changes none."""
    size, row, col = 64, 3, 4
    encoder = image.ImageEncoder(8, cell_kernel=cell_kernel, local_keys=local_keys, norm=norm)
    pictures = jax.random.normal(jax.random.key(1), (1, size, size, 3))
    params = encoder.init(jax.random.key(0), pictures)
    cols = size // image.CELL
    for which, kernel in ((0, 1 if local_keys else cell_kernel), (1, cell_kernel)):
        grad = jax.grad(lambda x, which=which: encoder.apply(params, x)[which][
            0, row * cols + col].sum())(pictures)
        ys, xs = np.nonzero(np.abs(np.asarray(grad))[0].sum(-1))
        margin = (image.receptive_field(kernel) - image.CELL) // 2
        assert margin == {1: 3, 3: 11}[kernel]
        assert (ys.min(), ys.max()) == (row * 8 - margin, row * 8 + 7 + margin)
        assert (xs.min(), xs.max()) == (col * 8 - margin, col * 8 + 7 + margin)


@pytest.mark.parametrize("local_keys", [False, True])
def test_grid_layers_let_every_annotation_see_the_whole_picture(local_keys):
    """With grid_layers a cell's value depends on every pixel (self-attention over all cells);
    with local_keys its key still sees only its 14 pixels."""
    size, row, col = 32, 1, 2
    encoder = image.ImageEncoder(8, local_keys=local_keys, grid_layers=1, num_heads=2)
    pictures = jax.random.uniform(jax.random.key(1), (1, size, size, 3)) * 255.0
    params = encoder.init(jax.random.key(0), pictures)
    assert "grid_0" in params["params"] and "grid_norm" in params["params"]
    probe = jax.random.normal(jax.random.key(2), (8,))  # (a LayerNorm output's sum is constant)
    spans = []
    for which in (0, 1):
        grad = jax.grad(lambda x, which=which: encoder.apply(params, x)[which][
            0, row * (size // image.CELL) + col] @ probe)(pictures)
        ys, xs = np.nonzero(np.abs(np.asarray(grad))[0].sum(-1))
        spans.append((ys.min(), ys.max(), xs.min(), xs.max()))
    assert spans[1] == (0, size - 1, 0, size - 1)  # the value: the whole picture
    window = (row * 8 - 3, row * 8 + 10, col * 8 - 3, col * 8 + 10)  # the cell's 14 pixels
    assert spans[0] == (window if local_keys else spans[1])  # the key


@pytest.mark.parametrize("layers", [1, 2])
def test_global_pool_adds_the_grid_mean_to_every_cell(layers):
    """global_pool: a cell's annotation depends on every pixel (the mean of the grid); with one
    pooled layer and its projection zeroed it is the annotation without the pool, exactly; with
    two, a second per-cell layer reads the first's output and its mean."""
    size, row, col = 32, 1, 2
    pictures = jax.random.uniform(jax.random.key(1), (1, size, size, 3)) * 255.0
    pooled = image.ImageEncoder(8, global_pool=layers)
    params = pooled.init(jax.random.key(0), pictures)
    names = {k for k in params["params"] if k.startswith(("pool", "cell"))}
    assert names == ({"cell", "pool"} if layers == 1 else {"cell", "pool", "cell_1", "pool_1"})
    grad = jax.grad(lambda x: pooled.apply(params, x)[0][0, row * (size // 8) + col].sum())(
        pictures)
    ys, xs = np.nonzero(np.abs(np.asarray(grad))[0].sum(-1))
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (0, size - 1, 0, size - 1)  # all of it
    if layers == 1:
        zeroed = jax.tree.map(jnp.zeros_like, params["params"]["pool"])
        without = {"params": {k: v for k, v in params["params"].items() if k != "pool"}}
        np.testing.assert_array_equal(
            pooled.apply({"params": {**params["params"], "pool": zeroed}}, pictures)[0],
            image.ImageEncoder(8).apply(without, pictures)[0])


def test_count_layer_against_numpy():
    """CountLayer: x + W_o Σ_k σ(q_j·k_k / √A + b) v_k + b_o, the weights not normalised; at
    initialisation (W_o = 0) the identity."""
    x = jax.random.normal(jax.random.key(1), (2, 5, 8))
    layer = image.CountLayer()
    params = layer.init(jax.random.key(0), x)
    np.testing.assert_array_equal(layer.apply(params, x), x)  # W_o starts at zero
    p = jax.tree.map(np.asarray, params["params"])
    p["out"]["kernel"] = np.asarray(jax.random.normal(jax.random.key(2), (2, 8)))
    p["out"]["bias"] = np.full(8, 0.1, np.float32)
    proj = lambda name: np.asarray(x) @ p[name]["kernel"] + p[name]["bias"]  # noqa: E731
    q, k, v = proj("query"), proj("key"), proj("value")  # [B, S, A], A = 8 // 4
    weights = 1 / (1 + np.exp(-(q @ k.transpose(0, 2, 1) / np.sqrt(2) + p["bias"])))
    want = np.asarray(x) + (weights @ v) @ p["out"]["kernel"] + p["out"]["bias"]
    np.testing.assert_allclose(layer.apply({"params": p}, x), want, rtol=1e-5, atol=1e-5)


def test_count_layer_sums_where_softmax_averages():
    """A cell that matches n like cells reads n times their value: two copies of a kind give
    twice one copy's reading, where a softmax (a mean) would give the same."""
    kind = np.array([1.0, 0, 0, 0])
    other = np.array([0.0, 1, 0, 0])
    layer = image.CountLayer()
    params = layer.init(jax.random.key(0), jnp.zeros((1, 4, 4)))["params"]
    big = 50.0  # q·k / √A = 50 for like cells (weight 1), 0 for unlike (weight σ(-50) = 0)
    params = {"query": {"kernel": np.eye(4)[:, :1] * np.sqrt(big), "bias": np.zeros(1)},
              "key": {"kernel": np.eye(4)[:, :1] * np.sqrt(big), "bias": np.zeros(1)},
              "value": {"kernel": np.eye(4)[:, :1], "bias": np.zeros(1)},
              "out": {"kernel": np.eye(4)[:1], "bias": np.zeros(4)},
              "bias": np.float32(-big / 2)}  # like: σ(25) ≈ 1; unlike: σ(-25) ≈ 0
    one = np.stack([kind, other, other, other])[None]
    two = np.stack([kind, kind, other, other])[None]
    read = lambda x: np.asarray(layer.apply({"params": params}, jnp.asarray(x)))[0, 0, 0] - 1.0  # noqa: E731
    assert read(one) == pytest.approx(1.0, abs=1e-6)
    assert read(two) == pytest.approx(2.0, abs=1e-6)


def test_image_width_sets_the_first_two_convolutions():
    pictures = jnp.zeros((1, 32, 32, 3))
    params = image.ImageEncoder(16, width=3).init(jax.random.key(0), pictures)["params"]
    assert params["down_0"]["kernel"].shape == (4, 4, 3, 3)
    assert params["down_1"]["kernel"].shape == (4, 4, 3, 6)
    assert params["down_2"]["kernel"].shape == (2, 2, 6, 16)
    default = image.ImageEncoder(16).init(jax.random.key(0), pictures)["params"]
    assert default["down_0"]["kernel"].shape[-1] == 4  # 16 // 4


@pytest.mark.parametrize("size,stride,pad", [(4, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_patch_conv_is_nn_conv(size, stride, pad):
    """PatchConv (the first layer, one matmul over patches) has nn.Conv's parameters, initial
    values, output and kernel gradient."""
    x = jax.random.normal(jax.random.key(1), (2, 12, 12, 3))
    ours = image.PatchConv(5, size, stride, pad)
    conv = flax.linen.Conv(5, (size, size), strides=stride, padding=((pad, pad), (pad, pad)))
    params = ours.init(jax.random.key(0), x)
    want = conv.init(jax.random.key(0), x)
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, want)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(ours.apply(params, x), conv.apply(params, x), atol=1e-5)
    loss = lambda module: lambda p: (module.apply(p, x) ** 2).sum()  # noqa: E731
    np.testing.assert_allclose(jax.grad(loss(ours))(params)["params"]["kernel"],
                               jax.grad(loss(conv))(params)["params"]["kernel"], rtol=1e-4)


def test_encode_gives_one_real_annotation_per_cell():
    model, params = _model()
    images, _, _ = _batch()
    memory, _ = model.apply({"params": params}, images, method="encode")
    assert memory.mask.shape == (2, image.num_cells(SIZE)) and bool(memory.mask.all())
    assert "src_embed" not in params and "image" in params  # no token path at all


@pytest.mark.parametrize("flow,scorer,encoder", [
    ("bahdanau", "additive", {}), ("luong", "general", {}), ("bahdanau", "location", {}),
    ("luong", "multihead", {"cell_kernel": 3, "local_keys": True}),
    ("bahdanau", "additive", {"grid_layers": 1, "local_keys": True, "image_norm": True}),
    ("bahdanau", "additive", {"global_pool": 2, "image_norm": True}),
    ("luong", "scaled_dot", {"count_layers": 1, "image_width": 4, "global_pool": 1})])
def test_teacher_forced_equals_step_by_step(flow, scorer, encoder):
    model, params = _model(flow, scorer, **encoder)
    images, tgt_in, _ = _batch()
    logits, aux = model.apply({"params": params}, images, tgt_in)
    ref_logits, ref_attention = rnn.step_by_step(model, params, images, tgt_in)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    np.testing.assert_allclose(aux["attention"], ref_attention, atol=1e-6)
    np.testing.assert_allclose(aux["attention"].sum(-1), 1.0, atol=1e-5)


def _transformer(scorer="additive", **image_options):
    config = tf.TransformerConfig(src_vocab_size=1, tgt_vocab_size=12, layers=2, num_heads=2,
                                  d_model=16, d_ff=32, scorer=scorer, encoder="cnn",
                                  image_size=SIZE, **image_options).validate()
    model = tf.Transformer(config)
    return model, tf.init_params(model, jax.random.key(0), 1)


@pytest.mark.parametrize("scorer,image_options", [
    ("additive", {}), ("scaled_dot", {"image_norm": True, "global_pool": 1, "image_width": 4})])
def test_transformer_reads_pictures(scorer, image_options):
    """The Transformer's source is the CNN's grid: every cell real, no token embedding, and its
    teacher-forced logits and per-layer, per-head cross-attention equal step-by-step decoding."""
    model, params = _transformer(scorer, **image_options)
    assert "src_embed" not in params and "image" in params
    images, tgt_in, _ = _batch()
    memory, _ = model.apply({"params": params}, images, method="encode")
    cells = image.num_cells(SIZE)
    assert all(m.mask.shape == (2, cells) and bool(m.mask.all()) for m in memory)
    logits, aux = model.apply({"params": params}, images, tgt_in, all_heads=True)
    ref_logits, ref_attention = tf.step_by_step(model, params, images, tgt_in)  # [B, T, L, H, S]
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    np.testing.assert_allclose(aux["heads"], jnp.moveaxis(ref_attention, 1, 3), atol=1e-6)
    assert aux["attention"].shape == (2, tgt_in.shape[1], cells)


def test_doubly_stochastic_penalty_matches_autodiff():
    model, params = _model()
    images, tgt_in, tgt_out = _batch()
    lam = 0.7

    def fused(p):
        return model.apply({"params": p}, images, tgt_in, tgt_out, attention_penalty=lam,
                           method="loss")[0]

    def reference(p):
        _, attention = rnn.step_by_step(model, p, images, tgt_in)  # [B, T, S]
        mass = (attention * (tgt_out != 0)[..., None]).sum(1)  # [B, S]
        return (rnn.step_by_step_loss(model, p, images, tgt_in, tgt_out)
                + lam * jnp.sum((1.0 - mass) ** 2))

    np.testing.assert_allclose(fused(params), reference(params), rtol=1e-5)
    got, want = jax.grad(fused)(params), jax.grad(reference)(params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_doubly_stochastic_by_hand():
    attention = jnp.array([[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])  # [1, 3, 3]
    target = jnp.array([[True, True, False]])  # the third row is padding
    source = jnp.array([[True, True, False]])  # the third position is padding
    # Σ_t α over real rows: [0.5, 1.5, 0]; real positions only: (0.5)² + (-0.5)² = 0.5.
    assert float(loss_lib.doubly_stochastic(attention, target, source)) == pytest.approx(0.5)


@pytest.mark.parametrize("overrides,match", [
    ({"model.encoder": "cnn"}, "the data is text"),  # configs/default.py: text
    ({"data.name": "scenes"}, "encoder=cnn"),  # pictures need the CNN
    ({"data.name": "scenes", "model.arch": "transformer"}, "set --config.model.encoder=cnn"),
    ({"model.encoder": "cnn", "model.arch": "transformer"}, "the data is text"),
    ({"model.image_norm": True, "model.arch": "transformer"}, "image_norm=False"),
    ({"data.name": "scenes", "model.encoder": "cnn", "model.arch": "transformer",
      "model.count_layers": 1}, "does not read count_layers"),
    ({"model.encoder": "grid"}, "valid: rnn, cnn"),
    ({"train.attention_penalty": 0.5, "model.arch": "transformer"}, "attention_penalty=0"),
    ({"train.attention_penalty": -1.0}, "must be >= 0"),
])
def test_config_checks_name_the_fix(overrides, match):
    """Bad image settings fail in `config.validate`, before any data is read or compiled."""
    from attn_jax.run import config as config_lib

    config = config_lib.load_config_file("configs/default.py")
    for key, value in overrides.items():
        config_lib.override(config, key, value)
    with pytest.raises(ValueError, match=match):
        config_lib.validate(config)
