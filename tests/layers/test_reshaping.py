"""UpSampling2D, ZeroPadding2D, Cropping2D and Reshape: gradients, PyTorch parity, errors."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_layer_gradients, nchw_to_nhwc, nhwc_to_nchw

import cnnumpy
from cnnumpy.functional import resize
from cnnumpy.layers import Cropping2D, Reshape, UpSampling2D, ZeroPadding2D

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = {np.float64: 1e-10, np.float32: 1e-5}


def randn(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def torch_parity(layer, torch_fn, x, nchw=True):
    """Forward and input gradient of ``layer`` against ``torch_fn`` (on NCHW if ``nchw``)."""
    y = layer(x)
    dy = randn(y.shape, seed=7, dtype=x.dtype)
    dx = layer.backward(dy)
    xt = torch.from_numpy(nhwc_to_nchw(x) if nchw else x.copy()).requires_grad_(True)
    yt = torch_fn(xt)
    yt.backward(torch.from_numpy(nhwc_to_nchw(dy) if nchw else dy))
    y_ref = yt.detach().numpy()
    dx_ref = xt.grad.numpy()
    if nchw:
        y_ref, dx_ref = nchw_to_nhwc(y_ref), nchw_to_nhwc(dx_ref)
    tol = TOL[x.dtype.type]
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=tol, err_msg=f"{layer.label} forward")
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=tol, err_msg=f"{layer.label} backward")


# ----- UpSampling2D ----------------------------------------------------------------------------
SIZES = [2, (1, 3), (3, 2), (4, 4)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_upsampling_matches_torch_interpolate(size, interpolation, dtype):
    x = randn((2, 5, 4, 3), seed=1, dtype=dtype)
    sh, sw = (size, size) if isinstance(size, int) else size
    kwargs = {"align_corners": False} if interpolation == "bilinear" else {}
    torch_parity(UpSampling2D(size, interpolation=interpolation),
                 lambda t: TF.interpolate(t, size=(5 * sh, 4 * sw), mode=interpolation,
                                          **kwargs), x)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling_of_one_pixel_and_a_big_batch(interpolation):
    kwargs = {"align_corners": False} if interpolation == "bilinear" else {}
    torch_parity(UpSampling2D(3, interpolation=interpolation),
                 lambda t: TF.interpolate(t, scale_factor=3, mode=interpolation, **kwargs),
                 randn((1, 1, 1, 2), seed=2))
    torch_parity(UpSampling2D((2, 1), interpolation=interpolation),
                 lambda t: TF.interpolate(t, size=(6, 7), mode=interpolation, **kwargs),
                 randn((33, 3, 7, 1), seed=3))


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("size", [2, (3, 2)], ids=str)
def test_upsampling_gradients(size, interpolation):
    check_layer_gradients(UpSampling2D(size, interpolation=interpolation),
                          randn((2, 3, 4, 2), seed=4))


def test_nearest_repeats_and_bilinear_weights_by_hand():
    x = np.arange(4.0).reshape(1, 2, 2, 1)
    y = UpSampling2D(2)(x)[0, :, :, 0]
    np.testing.assert_array_equal(y, [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    # 1-D, factor 2: outputs sit at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped) in input
    # pixels, so the weights are [1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1].
    np.testing.assert_array_equal(resize.linear_map(2, 2, np.float64),
                                  [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    row = UpSampling2D((1, 2), interpolation="bilinear")(np.array([[[[0.0], [4.0]]]]))
    np.testing.assert_array_equal(row.ravel(), [0, 1, 3, 4])


# ----- ZeroPadding2D and Cropping2D ------------------------------------------------------------
MARGINS = [1, (2, 0), ((1, 2), (0, 3)), ((0, 0), (0, 0))]


def _as_lrtb(margins):
    """Keras' forms to torch's (left, right, top, bottom)."""
    if isinstance(margins, int):
        return (margins,) * 4
    if isinstance(margins[0], int):
        return (margins[1], margins[1], margins[0], margins[0])
    (top, bottom), (left, right) = margins
    return (left, right, top, bottom)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("padding", MARGINS, ids=str)
def test_zero_padding_matches_torch_pad(padding, dtype):
    torch_parity(ZeroPadding2D(padding), lambda t: TF.pad(t, _as_lrtb(padding)),
                 randn((3, 4, 5, 2), seed=5, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cropping", MARGINS, ids=str)
def test_cropping_matches_torch_slicing(cropping, dtype):
    left, right, top, bottom = _as_lrtb(cropping)
    torch_parity(Cropping2D(cropping),
                 lambda t: t[:, :, top:t.shape[2] - bottom, left:t.shape[3] - right],
                 randn((3, 6, 7, 2), seed=6, dtype=dtype))


@pytest.mark.parametrize("make", [lambda: ZeroPadding2D(((1, 2), (0, 3))),
                                  lambda: Cropping2D(((1, 2), (0, 3)))])
def test_padding_and_cropping_gradients(make):
    check_layer_gradients(make(), randn((2, 5, 6, 2), seed=7))


def test_padding_then_cropping_is_the_identity_and_shapes():
    x = randn((2, 3, 4, 5), seed=8)
    pad, crop = ZeroPadding2D(((1, 2), (3, 4))), Cropping2D(((1, 2), (3, 4)))
    padded = pad(x)
    assert padded.shape == (2, 6, 11, 5) == (2, *pad.compute_output_shape((3, 4, 5)))
    np.testing.assert_array_equal(crop(padded), x)
    assert padded.sum() == x.sum() and np.count_nonzero(padded) == x.size
    assert ZeroPadding2D(2).padding == ((2, 2), (2, 2))
    assert Cropping2D((1, 3)).cropping == ((1, 1), (3, 3))


# ----- Reshape -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("in_shape, target", [
    ((4, 3, 2), (6, 4)), ((4, 3, 2), (-1, 2)), ((24,), (2, 3, 4)), ((6, 4), (2, -1, 3)),
])
def test_reshape_matches_torch(in_shape, target, dtype):
    x = randn((3, *in_shape), seed=9, dtype=dtype)
    layer = Reshape(target)
    torch_parity(layer, lambda t: t.reshape(3, *target), x, nchw=False)
    check_layer_gradients(Reshape(target), randn((2, *in_shape), seed=10))


def test_reshape_shapes():
    assert Reshape((-1, 4)).compute_output_shape((None, 3, 2, 4)) == (None, 6, 4)
    assert Reshape((7, 7, 16)).compute_output_shape((784,)) == (7, 7, 16)


# ----- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make, bad", [
    (lambda: UpSampling2D(0), "size=0"),
    (lambda: UpSampling2D((2, 2, 2)), "size=(2, 2, 2)"),
    (lambda: UpSampling2D(2.0), "size=2.0"),
    (lambda: UpSampling2D(2, interpolation="bicubic"), "interpolation='bicubic'"),
    (lambda: ZeroPadding2D(-1), "padding=-1"),
    (lambda: ZeroPadding2D((1, 2, 3)), "padding=(1, 2, 3)"),
    (lambda: ZeroPadding2D(((1, 2), 3)), "padding=((1, 2), 3)"),
    (lambda: ZeroPadding2D(True), "padding=True"),
    (lambda: Cropping2D("same"), "cropping='same'"),
    (lambda: Cropping2D(((1, -1), (0, 0))), "cropping=((1, -1), (0, 0))"),
    (lambda: Reshape((2, -1, -1)), "target_shape=(2, -1, -1)"),
    (lambda: Reshape((2, 0)), "target_shape=(2, 0)"),
    (lambda: Reshape(12), "target_shape=12"),
    (lambda: Reshape(()), "target_shape=()"),
])
def test_bad_arguments_name_the_layer(make, bad):
    with pytest.raises(ValueError) as info:
        make()
    assert bad in str(info.value)
    assert str(info.value).split(":")[0] in ("UpSampling2D", "ZeroPadding2D", "Cropping2D",
                                             "Reshape")


@pytest.mark.parametrize("layer, shape, message", [
    (Cropping2D(((2, 2), (0, 0)), name="crop"), (4, 5, 1), r"Cropping2D 'crop'.*\(4, 5\)"),
    (Reshape((5, -1), name="re"), (3, 4), r"Reshape 're'.*\(3, 4\).*12 elements"),
    (Reshape((5, 3), name="re2"), (3, 4), r"Reshape 're2'.*target_shape=\(5, 3\)"),
    (UpSampling2D(name="up"), (3, 4), r"UpSampling2D 'up'.*\(3, 4\)"),
    (ZeroPadding2D(name="pad"), (3,), r"ZeroPadding2D 'pad'.*\(3,\)"),
])
def test_shapes_that_do_not_fit_name_the_layer(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer.build(shape)
    with pytest.raises(ValueError, match=message):
        layer.forward(np.zeros((2, *shape)))


# ----- in a model: an encoder-decoder stack --------------------------------------------------
def encoder_decoder(interpolation="nearest"):
    from cnnumpy import layers as L

    return cnnumpy.Sequential([
        L.ZeroPadding2D(((1, 0), (1, 0)), input_shape=(7, 7, 1)),       # 8 x 8
        L.Conv2D(4, 3, padding="same", activation="relu"),
        L.MaxPool2D(2),                                                 # 4 x 4
        L.Reshape((4, 4, 4)),
        L.UpSampling2D(2, interpolation=interpolation),                 # 8 x 8
        L.Cropping2D(((1, 0), (1, 0))),                                 # 7 x 7
        L.ReLU(max_value=6.0),
        L.Conv2D(2, 3, padding="same", activation="softmax"),
    ])


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_encoder_decoder_saves_and_loads_bit_identically(interpolation, tmp_path):
    cnnumpy.set_seed(0)
    model = encoder_decoder(interpolation)
    model.build()
    path = str(tmp_path / "seg.safetensors")
    model.save(path)
    loaded = cnnumpy.load_model(path)
    x = randn((5, 7, 7, 1), seed=11, dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.get_config() == model.get_config()
    assert [type(la).__name__ for la in loaded.layers] == [
        type(la).__name__ for la in model.layers]


def test_encoder_decoder_predicts_the_same_split_across_threads():
    """Inference splits a large batch into one slice per thread (cnnumpy.shards): each layer's
    copy must give what the whole batch gives."""
    from cnnumpy import backend, shards

    cnnumpy.set_seed(0)
    model = encoder_decoder("bilinear")
    model.build()
    x = randn((256, 7, 7, 1), seed=12, dtype=np.float32)
    if shards.split(model.layers, len(x), training=False) is None or backend.get_num_threads() < 2:
        pytest.skip("one thread: no split to compare")
    np.testing.assert_allclose(model.predict(x, batch_size=256), model.predict(x, batch_size=1),
                               rtol=0, atol=1e-6)
