"""DepthwiseConv2D and SeparableConv2D: finite differences, PyTorch parity, the shared
grouped-convolution machinery, argument errors and the config."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from helpers import check_layer_gradients, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, oihw_to_hwio

from cnnumpy.layers import Conv2D, DepthwiseConv2D, SeparableConv2D

torch = pytest.importorskip("torch")
F = torch.nn.functional


def randn(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def with_random_bias(layer, seed=1):
    if "bias" in layer.params:
        layer.params["bias"] = randn(*layer.params["bias"].shape, seed=seed, dtype=layer.dtype)
    return layer


# ----- finite differences (float64) --------------------------------------------------------

GRADIENT_CASES = {
    "valid": dict(x=(2, 6, 5, 3), kernel_size=(3, 2)),
    "same_stride2_multiplier2": dict(x=(2, 7, 5, 2), kernel_size=3, strides=2, padding="same",
                                     depth_multiplier=2),
    "same_even_kernel_stride_2x1": dict(x=(1, 6, 5, 2), kernel_size=(2, 3), strides=(2, 1),
                                        padding="same"),
    "dilation2_pads": dict(x=(1, 7, 6, 2), kernel_size=(3, 2), padding=((1, 0), (2, 1)),
                           dilation_rate=2, depth_multiplier=3),
    "no_bias_tanh": dict(x=(2, 5, 5, 3), kernel_size=2, use_bias=False, activation="tanh"),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
@pytest.mark.parametrize("cls", [DepthwiseConv2D, SeparableConv2D])
def test_gradients_match_finite_differences(cls, case):
    kwargs = dict(GRADIENT_CASES[case])
    x = randn(*kwargs.pop("x"))
    layer = cls(**({"filters": 3} if cls is SeparableConv2D else {}), **kwargs, dtype="float64")
    layer.build(x.shape[1:])
    with_random_bias(layer)
    kernels = {"kernel"} if cls is DepthwiseConv2D else {"depthwise_kernel", "pointwise_kernel"}
    assert set(layer.params) == kernels | ({"bias"} if kwargs.get("use_bias", True) else set())
    check_layer_gradients(layer, x)


# ----- PyTorch parity ------------------------------------------------------------------------

STRIDES = [1, 2, (1, 2), (2, 1)]
PADDINGS = ["valid", "same", 1, ((0, 1), (2, 0))]
DILATIONS = [1, 2, (2, 1)]


def torch_config(index, separable):
    """A random configuration that fits; padding forms cycle with the index."""
    rng = np.random.default_rng(2000 + index)
    while True:
        kwargs = dict(
            kernel_size=(int(rng.integers(1, 5)), int(rng.integers(1, 5))),
            strides=STRIDES[rng.integers(len(STRIDES))],
            padding=PADDINGS[index % len(PADDINGS)],
            depth_multiplier=int(rng.integers(1, 4)),
            dilation_rate=DILATIONS[rng.integers(len(DILATIONS))],
            use_bias=bool(index % 3),
            activation=[None, "relu"][index % 2],
        )
        if separable:
            kwargs["filters"] = int(rng.integers(1, 5))
        x_shape = (int(rng.integers(1, 4)), int(rng.integers(4, 10)), int(rng.integers(4, 10)),
                   int(rng.integers(1, 4)))
        cls = SeparableConv2D if separable else DepthwiseConv2D
        try:
            cls(**kwargs).compute_output_shape(x_shape[1:])
        except ValueError:  # the kernel does not fit: draw again
            continue
        return kwargs, x_shape


def same_pads(size, kernel, stride, dilation):
    """TensorFlow's rule, restated so the test does not trust the library's version."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def torch_pad(padding, in_hw, kwargs):
    """The (left, right, top, bottom) tuple that F.pad takes."""
    k, s, d = (tuple(v) if isinstance(v, tuple) else (v, v)
               for v in (kwargs["kernel_size"], kwargs["strides"], kwargs["dilation_rate"]))
    if padding == "valid":
        pads = ((0, 0), (0, 0))
    elif padding == "same":
        pads = [same_pads(in_hw[a], k[a], s[a], d[a]) for a in (0, 1)]
    elif isinstance(padding, int):
        pads = ((padding, padding), (padding, padding))
    else:
        pads = padding
    return (*pads[1], *pads[0])


def torch_tensor(a, grad=True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


@pytest.mark.parametrize("separable", [False, True], ids=["depthwise", "separable"])
@pytest.mark.parametrize("index", range(12))
def test_matches_pytorch(index, separable):
    kwargs, x_shape = torch_config(index, separable)
    x = randn(*x_shape, seed=index)
    layer = (SeparableConv2D if separable else DepthwiseConv2D)(**kwargs, dtype="float64")
    layer.build(x_shape[1:])
    with_random_bias(layer, seed=index)
    y = layer.forward(x)
    dy = randn(*y.shape, seed=index + 1)
    dx = layer.backward(dy)

    channels, multiplier = x_shape[3], kwargs["depth_multiplier"]
    depthwise = layer.params["depthwise_kernel" if separable else "kernel"]
    # torch's depthwise weight (C * M, 1, kh, kw): output channel c * M + m reads channel c
    kh, kw = depthwise.shape[:2]
    wt = torch_tensor(hwio_to_oihw(depthwise.reshape(kh, kw, 1, channels * multiplier)))
    xt = torch_tensor(nhwc_to_nchw(x))
    bt = torch_tensor(layer.params["bias"]) if kwargs["use_bias"] else None
    pad = torch_pad(kwargs["padding"], x_shape[1:3], kwargs)
    yt = F.conv2d(F.pad(xt, pad), wt, None if separable else bt, stride=kwargs["strides"],
                  dilation=kwargs["dilation_rate"], groups=channels)
    if separable:
        pt = torch_tensor(hwio_to_oihw(layer.params["pointwise_kernel"]))
        yt = F.conv2d(yt, pt, bt)
    if kwargs["activation"] == "relu":
        yt = torch.relu(yt)
    yt.backward(torch.tensor(nhwc_to_nchw(dy)))

    close = dict(rtol=1e-10, atol=1e-10, err_msg=str(kwargs))
    np.testing.assert_allclose(y, nchw_to_nhwc(yt.detach().numpy()), **close)
    np.testing.assert_allclose(dx, nchw_to_nhwc(xt.grad.numpy()), **close)
    dk = oihw_to_hwio(wt.grad.numpy()).reshape(depthwise.shape)
    np.testing.assert_allclose(layer.grads["depthwise_kernel" if separable else "kernel"], dk,
                               **close)
    if separable:
        np.testing.assert_allclose(layer.grads["pointwise_kernel"],
                                   oihw_to_hwio(pt.grad.numpy()), **close)
    if bt is not None:
        np.testing.assert_allclose(layer.grads["bias"], bt.grad.numpy(), **close)


def test_torch_configs_cover_every_option():
    configs = [torch_config(i, s)[0] for i in range(12) for s in (False, True)]
    assert {str(c["padding"]) for c in configs} == {str(p) for p in PADDINGS}
    assert {str(c["strides"]) for c in configs} == {str(s) for s in STRIDES}
    assert {str(c["dilation_rate"]) for c in configs} == {str(d) for d in DILATIONS}
    assert {c["depth_multiplier"] for c in configs} == {1, 2, 3}
    assert {c["use_bias"] for c in configs} == {True, False}


# ----- the Conv2D machinery, shapes and weights -----------------------------------------------


def test_depthwise_is_conv2d_with_one_group_per_channel_exactly():
    """Same numbers as Conv2D(groups=C) with the kernel reshaped: the Keras layout
    (kh, kw, C, M) is Conv2D's (kh, kw, 1, C * M) in the same memory order."""
    x = randn(4, 9, 8, 3, seed=5, dtype=np.float32)
    depthwise = with_random_bias(DepthwiseConv2D(3, strides=2, padding="same",
                                                 depth_multiplier=2, dtype="float32"))
    y = depthwise.forward(x)
    grouped = Conv2D(6, 3, strides=2, padding="same", groups=3, dtype="float32")
    grouped.build(x.shape[1:])
    grouped.set_weights({"kernel": depthwise.params["kernel"].reshape(3, 3, 1, 6),
                         "bias": depthwise.params["bias"]})
    np.testing.assert_array_equal(y, grouped.forward(x))
    dy = randn(*y.shape, seed=6, dtype=np.float32)
    np.testing.assert_array_equal(depthwise.backward(dy), grouped.backward(dy))
    np.testing.assert_array_equal(depthwise.grads["kernel"],
                                  grouped.grads["kernel"].reshape(3, 3, 3, 2))
    np.testing.assert_array_equal(depthwise.grads["bias"], grouped.grads["bias"])


def test_weight_shapes_and_output_shapes():
    depthwise = DepthwiseConv2D((3, 2), depth_multiplier=2, input_shape=(9, 7, 4))
    depthwise.build(depthwise.input_shape)
    assert depthwise.params["kernel"].shape == (3, 2, 4, 2)
    assert depthwise.params["bias"].shape == (8,) and not depthwise.params["bias"].any()
    assert depthwise.compute_output_shape((None, 9, 7, 4)) == (None, 7, 6, 8)
    separable = SeparableConv2D(5, 3, strides=2, padding="same", depth_multiplier=3)
    separable.build((9, 7, 4))
    assert {k: v.shape for k, v in separable.params.items()} == {
        "depthwise_kernel": (3, 3, 4, 3), "pointwise_kernel": (1, 1, 12, 5), "bias": (5,)}
    assert separable.compute_output_shape((9, 7, 4)) == (5, 4, 5)
    assert separable.count_params() == 3 * 3 * 4 * 3 + 12 * 5 + 5
    assert separable.params["depthwise_kernel"].dtype == np.float32
    assert SeparableConv2D(2, 1, use_bias=False).forward(np.ones((1, 2, 2, 1))).shape \
        == (1, 2, 2, 2)


def test_first_layer_skips_the_input_gradient_only():
    x = randn(2, 6, 6, 2)
    for layer in (DepthwiseConv2D(3, depth_multiplier=2), SeparableConv2D(3, 3)):
        dy = randn(*layer(x).shape, seed=2)
        layer.backward(dy)
        grads = {k: v.copy() for k, v in layer.grads.items()}
        layer.needs_input_grad = False
        assert layer.backward(dy) is None
        for key, value in grads.items():
            np.testing.assert_array_equal(layer.grads[key], value)


# ----- errors and config ---------------------------------------------------------------------

BAD_ARGUMENTS = [
    (dict(kernel_size=0), "kernel_size=0"),
    (dict(strides=(1, 2, 3)), "strides=(1, 2, 3)"),
    (dict(padding="full"), "padding='full'"),
    (dict(depth_multiplier=0), "depth_multiplier=0"),
    (dict(depth_multiplier=1.5), "depth_multiplier=1.5"),
    (dict(dilation_rate=-1), "dilation_rate=-1"),
    (dict(use_bias="no"), "use_bias='no'"),
    (dict(activation="nope"), "'nope'"),
    (dict(depthwise_initializer="nope"), "'nope'"),
]


@pytest.mark.parametrize("kwargs, quoted", BAD_ARGUMENTS, ids=[q for _, q in BAD_ARGUMENTS])
@pytest.mark.parametrize("cls", [DepthwiseConv2D, SeparableConv2D])
def test_bad_constructor_arguments_raise_quoting_the_value(cls, kwargs, quoted):
    args = ({"filters": 2} if cls is SeparableConv2D else {}) | dict(kernel_size=3) | kwargs
    with pytest.raises(ValueError, match=re.escape(quoted)) as info:
        cls(**args)
    assert cls.__name__ in str(info.value)


@pytest.mark.parametrize("kwargs, quoted", [
    (dict(filters=0), "filters=0"), (dict(pointwise_initializer="nope"), "'nope'")])
def test_separable_bad_arguments(kwargs, quoted):
    with pytest.raises(ValueError, match=re.escape(quoted)) as info:
        SeparableConv2D(**(dict(filters=2, kernel_size=3) | kwargs))
    assert "SeparableConv2D" in str(info.value)


@pytest.mark.parametrize("cls", [DepthwiseConv2D, SeparableConv2D])
def test_impossible_inputs_raise_naming_the_layer(cls):
    extra = {"filters": 2} if cls is SeparableConv2D else {}
    layer = cls(**extra, kernel_size=(3, 6), name="dw1")
    with pytest.raises(ValueError, match=r"'dw1'.*does not fit"):
        layer.forward(np.zeros((1, 5, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"'dw1'.*\(height, width, channels\)"):
        layer.forward(np.zeros((1, 5, 5), np.float32))
    assert not layer.built


@pytest.mark.parametrize("cls, kwargs", [
    (DepthwiseConv2D, dict(kernel_size=3)),
    (DepthwiseConv2D, dict(kernel_size=(3, 2), strides=(2, 1), padding="same", depth_multiplier=2,
                           dilation_rate=(1, 2), use_bias=False, activation="relu",
                           depthwise_initializer="he_normal", input_shape=(9, 8, 3),
                           name="dw_cfg", dtype="float64")),
    (SeparableConv2D, dict(filters=4, kernel_size=2, padding=((0, 1), (2, 0)))),
    (SeparableConv2D, dict(filters=4, kernel_size=3, strides=2, padding="same",
                           depth_multiplier=3, pointwise_initializer="he_uniform",
                           activation="tanh")),
])
def test_config_round_trip(cls, kwargs):
    layer = cls(**kwargs)
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = cls.from_config(config)
    assert clone.get_config() == config
    for key, value in kwargs.items():
        pairs = ("kernel_size", "strides", "dilation_rate")
        expected = [value, value] if key in pairs and isinstance(value, int) else value
        assert config[key] == json.loads(json.dumps(expected)), key
    x = randn(1, 9, 8, 3, dtype=np.float32)
    layer.build(x.shape[1:])
    clone.build(x.shape[1:])
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))
