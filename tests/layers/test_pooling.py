"""Pooling layers: gradients, PyTorch parity, shapes, errors and config round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import check_layer_gradients, nchw_to_nhwc, nhwc_to_nchw

from cnnumpy.layers import pooling as L

torch = pytest.importorskip("torch")
TF = torch.nn.functional

WINDOWED = [L.MaxPool2D, L.AvgPool2D]
GLOBAL = [L.GlobalAvgPool2D, L.GlobalMaxPool2D]


def random_input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("cls", WINDOWED)
@pytest.mark.parametrize("pool, strides", [(2, None), (2, 1), (3, 1), (3, 2), (3, 3), (2, 3),
                                           ((3, 2), (1, 2))])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_windowed_gradients(cls, pool, strides, padding):
    check_layer_gradients(cls(pool, strides, padding), random_input((2, 7, 5, 2)))


@pytest.mark.parametrize("cls", WINDOWED + GLOBAL)
def test_batch_of_one_gradients(cls):
    layer = cls(3, 2, "same") if cls in WINDOWED else cls()
    check_layer_gradients(layer, random_input((1, 5, 4, 3), seed=1))


@pytest.mark.parametrize("cls", GLOBAL)
def test_global_gradients(cls):
    check_layer_gradients(cls(), random_input((2, 7, 5, 3), seed=2))


def tf_pads(size, k, s):
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("cls", WINDOWED)
def test_layers_match_torch_modules(cls, dtype, tol):
    g = np.random.default_rng(5)
    for _ in range(12):
        shape = (int(g.integers(1, 4)), int(g.integers(4, 10)), int(g.integers(4, 10)), 2)
        pool, stride = int(g.integers(1, 4)), int(g.integers(1, 4))
        padding = str(g.choice(["valid", "same"]))
        layer = cls(pool, stride, padding)
        x = g.standard_normal(shape).astype(dtype)
        y = layer(x)
        dy = g.standard_normal(y.shape).astype(dtype)
        dx = layer.backward(dy)
        top, bottom = tf_pads(shape[1], pool, stride) if padding == "same" else (0, 0)
        left, right = tf_pads(shape[2], pool, stride) if padding == "same" else (0, 0)
        xt = torch.from_numpy(nhwc_to_nchw(x)).requires_grad_(True)
        if cls is L.MaxPool2D:
            padded = TF.pad(xt, (left, right, top, bottom), value=-math.inf)
            yt = torch.nn.MaxPool2d(pool, stride)(padded)
        else:
            mask = TF.pad(torch.ones_like(xt), (left, right, top, bottom))
            pooler = torch.nn.AvgPool2d(pool, stride, divisor_override=1)
            yt = pooler(TF.pad(xt, (left, right, top, bottom))) / pooler(mask)
        yt.backward(torch.from_numpy(nhwc_to_nchw(dy)))
        assert y.dtype == dtype and layer.compute_output_shape(shape[1:]) == y.shape[1:]
        np.testing.assert_allclose(y, nchw_to_nhwc(yt.detach().numpy()), atol=tol)
        np.testing.assert_allclose(dx, nchw_to_nhwc(xt.grad.numpy()), atol=tol)


def test_avg_pool_same_matches_torch_count_include_pad_false():
    # With a symmetric padding PyTorch can pad by itself: 5x5 input, pool 3, stride 1.
    x = random_input((2, 5, 5, 3), seed=9)
    y = L.AvgPool2D(3, 1, "same")(x)
    ref = TF.avg_pool2d(torch.from_numpy(nhwc_to_nchw(x)), 3, 1, padding=1,
                        count_include_pad=False)
    np.testing.assert_allclose(y, nchw_to_nhwc(ref.numpy()), atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_global_layers_match_torch(dtype, tol):
    x = random_input((3, 6, 4, 5), seed=4).astype(dtype)
    dy = random_input((3, 5), seed=6).astype(dtype)
    for cls, ref in ((L.GlobalAvgPool2D, TF.avg_pool2d), (L.GlobalMaxPool2D, TF.max_pool2d)):
        layer = cls()
        y = layer(x)
        dx = layer.backward(dy)
        xt = torch.from_numpy(nhwc_to_nchw(x)).requires_grad_(True)
        yt = ref(xt, kernel_size=(6, 4)).flatten(1)
        yt.backward(torch.from_numpy(dy))
        assert y.shape == (3, 5) and y.dtype == dtype
        np.testing.assert_allclose(y, yt.detach().numpy(), atol=tol)
        np.testing.assert_allclose(dx, nchw_to_nhwc(xt.grad.numpy()), atol=tol)


def test_all_equal_input_routes_gradient_to_first_element_like_torch():
    x = np.zeros((1, 4, 4, 1))
    for layer, ref in ((L.MaxPool2D(2, 1), lambda t: TF.max_pool2d(t, 2, 1)),
                       (L.MaxPool2D(3, 2, "same"),
                        lambda t: TF.max_pool2d(TF.pad(t, (0, 1, 0, 1), value=-math.inf), 3, 2)),
                       (L.GlobalMaxPool2D(), lambda t: TF.max_pool2d(t, (4, 4)).flatten(1))):
        y = layer(x)
        dx = layer.backward(np.ones_like(y))
        xt = torch.from_numpy(nhwc_to_nchw(x)).requires_grad_(True)
        ref(xt).sum().backward()
        np.testing.assert_array_equal(dx, nchw_to_nhwc(xt.grad.numpy()), err_msg=layer.label)


def test_output_shapes_and_defaults():
    layer = L.MaxPool2D()
    assert layer.pool_size == (2, 2) and layer.strides == (2, 2) and layer.padding == "valid"
    assert L.MaxPool2D((3, 2)).strides == (3, 2)
    assert L.AvgPool2D(2, padding="SAME").padding == "same"
    assert L.MaxPool2D(2).compute_output_shape((7, 5, 3)) == (3, 2, 3)
    assert L.MaxPool2D(2, padding="same").compute_output_shape((None, 7, 5, 3)) == (None, 4, 3, 3)
    assert L.AvgPool2D(3, 1).compute_output_shape((7, 5, 1)) == (5, 3, 1)
    assert L.MaxPool2D(5, padding="same").compute_output_shape((3, 3, 2)) == (1, 1, 2)
    assert L.GlobalMaxPool2D().compute_output_shape((7, 5, 3)) == (3,)
    x = np.ones((2, 7, 5, 3), np.float32)
    assert L.GlobalAvgPool2D()(x).shape == (2, 3)
    assert L.MaxPool2D(2)(x).dtype == np.float32
    assert L.MaxPool2D(2)(x.astype(np.float64)).dtype == np.float64
    layer = L.MaxPool2D(2)
    layer.build((4, 4, 1))
    assert layer.count_params() == 0 and layer.params == {} and layer.grads == {}


def test_aliases():
    assert L.MaxPooling2D is L.MaxPool2D and L.AveragePooling2D is L.AvgPool2D
    assert L.GlobalAveragePooling2D is L.GlobalAvgPool2D
    assert L.GlobalMaxPooling2D is L.GlobalMaxPool2D


@pytest.mark.parametrize("kwargs, bad", [
    ({"pool_size": 0}, "pool_size=0"),
    ({"pool_size": (2, 0)}, "pool_size=(2, 0)"),
    ({"pool_size": (2, 2, 2)}, "pool_size=(2, 2, 2)"),
    ({"pool_size": 2.0}, "pool_size=2.0"),
    ({"pool_size": True}, "pool_size=True"),
    ({"strides": -1}, "strides=-1"),
    ({"strides": "2"}, "strides='2'"),
    ({"padding": "full"}, "padding='full'"),
    ({"padding": None}, "padding=None"),
])
@pytest.mark.parametrize("cls", WINDOWED)
def test_bad_arguments(cls, kwargs, bad):
    with pytest.raises(ValueError, match=cls.__name__) as info:
        cls(**kwargs)
    assert bad in str(info.value)


@pytest.mark.parametrize("layer", [L.MaxPool2D(), L.AvgPool2D(), L.GlobalAvgPool2D(),
                                   L.GlobalMaxPool2D()], ids=lambda la: type(la).__name__)
def test_wrong_input_rank(layer):
    with pytest.raises(ValueError, match=layer.name):
        layer(np.ones((2, 8)))
    with pytest.raises(ValueError, match=layer.name):
        layer.compute_output_shape((4, 4, 4, 1))


def test_pool_larger_than_image_with_valid_padding():
    layer = L.MaxPool2D(5, name="big_pool")
    with pytest.raises(ValueError, match="MaxPool2D 'big_pool'.*pool_size"):
        layer(np.ones((1, 3, 8, 1)))
    with pytest.raises(ValueError, match="big_pool"):
        L.AvgPool2D((2, 9), name="big_pool").compute_output_shape((8, 8, 1))


def test_wrong_shape_after_build():
    layer = L.AvgPool2D(2, name="avg")
    layer(np.ones((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="avg"):
        layer(np.ones((1, 4, 4, 3)))


@pytest.mark.parametrize("layer", [
    L.MaxPool2D((3, 2), (1, 2), "same", input_shape=(7, 5, 2), name="mp"),
    L.AvgPool2D(3, dtype="float64"), L.MaxPool2D(), L.GlobalAvgPool2D(name="gap"),
    L.GlobalMaxPool2D(input_shape=(4, 4, 3)),
], ids=lambda la: type(la).__name__)
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    if isinstance(layer, L.MaxPool2D | L.AvgPool2D):
        assert config["pool_size"] == list(layer.pool_size)
        assert isinstance(config["strides"], list)
