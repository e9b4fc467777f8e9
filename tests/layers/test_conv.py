"""Conv2D: finite-difference gradients, PyTorch parity, argument errors and the config."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from helpers import check_layer_gradients, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, oihw_to_hwio

from cnnumpy.layers.conv import Conv2D

torch = pytest.importorskip("torch")
F = torch.nn.functional


def randn(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def with_random_bias(layer, seed=1):
    """Biases start at zero; give them values so that a wrong bias path shows."""
    if "bias" in layer.params:
        layer.params["bias"] = randn(layer.filters, seed=seed, dtype=layer.dtype)
    return layer


# ----- finite differences (float64) --------------------------------------------------------

GRADIENT_CASES = {
    "valid": dict(x=(2, 7, 5, 3), filters=2, kernel_size=(3, 2)),
    "stride2_same": dict(x=(2, 7, 5, 3), filters=2, kernel_size=3, strides=2, padding="same"),
    "stride2_same_even": dict(x=(1, 6, 4, 2), filters=2, kernel_size=(3, 2), strides=2,
                              padding="same"),
    "stride_2x1_int_pad": dict(x=(2, 7, 5, 2), filters=3, kernel_size=(3, 2), strides=(2, 1),
                               padding=1),
    "pair_pad_dilation2": dict(x=(1, 7, 5, 2), filters=2, kernel_size=(3, 2), padding=(1, 2),
                               dilation_rate=2),
    "nested_pad_stride2_dilation": dict(x=(2, 7, 5, 2), filters=2, kernel_size=(2, 3),
                                        strides=2, padding=((0, 1), (2, 0)),
                                        dilation_rate=(2, 1)),
    "pad_beyond_reach": dict(x=(1, 5, 4, 2), filters=2, kernel_size=(2, 1), padding=3),
    "groups2_same": dict(x=(2, 7, 5, 4), filters=4, kernel_size=(3, 2), padding="same",
                         groups=2),
    "groups2_stride2_valid": dict(x=(1, 7, 5, 4), filters=2, kernel_size=(3, 2), strides=2,
                                  groups=2),
    "depthwise_multiplier2_stride2": dict(x=(2, 7, 5, 3), filters=6, kernel_size=(3, 2),
                                          strides=2, padding="same", groups=3),
    "depthwise_dilation2": dict(x=(1, 7, 5, 3), filters=3, kernel_size=(3, 2), padding=1,
                                dilation_rate=2, groups=3),
    "depthwise_multiplier2_stride1": dict(x=(1, 7, 5, 2), filters=4, kernel_size=(2, 3),
                                          padding="same", groups=2),
    "batch1_no_bias_tanh": dict(x=(1, 7, 5, 2), filters=3, kernel_size=(3, 2), padding="same",
                                use_bias=False, activation="tanh"),
    "sigmoid_stride2_groups2": dict(x=(2, 5, 5, 2), filters=2, kernel_size=2, strides=2,
                                    groups=2, activation="sigmoid"),
    "one_by_one": dict(x=(2, 4, 3, 3), filters=2, kernel_size=1),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradients_match_finite_differences(case):
    kwargs = dict(GRADIENT_CASES[case])
    x = randn(*kwargs.pop("x"))
    layer = Conv2D(**kwargs, dtype="float64")
    layer.build(x.shape[1:])
    with_random_bias(layer)
    assert set(layer.params) == ({"kernel", "bias"} if kwargs.get("use_bias", True)
                                 else {"kernel"})
    check_layer_gradients(layer, x)


# ----- PyTorch parity ------------------------------------------------------------------------

STRIDES = [1, 2, (1, 2), (2, 1)]
PADDINGS = ["valid", "same", 0, 1, 2, (1, 0), (0, 2), ((0, 1), (2, 0)), ((2, 1), (1, 3))]
DILATIONS = [1, 2, (2, 1)]
ACTIVATIONS = [None, "relu", "tanh"]
TORCH_ACTIVATIONS = {None: lambda t: t, "relu": torch.relu, "tanh": torch.tanh}


def torch_config(index):
    """A random configuration that fits; padding forms and group kinds cycle with the index."""
    rng = np.random.default_rng(1000 + index)
    kind = ["plain", "grouped", "depthwise"][(index + index // len(PADDINGS)) % 3]
    while True:
        groups = 1 if kind == "plain" else int(rng.integers(2, 4))
        channels = groups * (1 if kind == "depthwise" else int(rng.integers(2, 4)))
        kwargs = dict(
            filters=groups * int(rng.integers(1, 3)),
            kernel_size=(int(rng.integers(1, 5)), int(rng.integers(1, 5))),
            strides=STRIDES[rng.integers(len(STRIDES))],
            padding=PADDINGS[index % len(PADDINGS)],
            dilation_rate=DILATIONS[rng.integers(len(DILATIONS))],
            groups=groups,
            use_bias=bool(rng.integers(2)),
            activation=ACTIVATIONS[rng.integers(len(ACTIVATIONS))],
        )
        x_shape = (int(rng.integers(1, 4)), int(rng.integers(4, 10)), int(rng.integers(4, 10)),
                   channels)
        try:
            Conv2D(**kwargs).compute_output_shape(x_shape[1:])
        except ValueError:  # the kernel does not fit: draw again
            continue
        return kwargs, x_shape


def same_pads(size, kernel, stride, dilation):
    """TensorFlow's rule, restated here so the test does not trust the library's version."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def torch_padding(padding, in_hw, kernel_hw, strides, dilation):
    """The (left, right, top, bottom) tuple that F.pad takes."""
    if padding == "valid":
        (top, bottom), (left, right) = (0, 0), (0, 0)
    elif padding == "same":
        k, s, d = pair(kernel_hw), pair(strides), pair(dilation)
        (top, bottom), (left, right) = [same_pads(in_hw[a], k[a], s[a], d[a]) for a in (0, 1)]
    elif isinstance(padding, int):
        top = bottom = left = right = padding
    elif isinstance(padding[0], int):
        (top, left), (bottom, right) = padding, padding
    else:
        (top, bottom), (left, right) = padding
    return left, right, top, bottom


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("index", range(20))
def test_matches_pytorch(index, dtype, tol):
    kwargs, x_shape = torch_config(index)
    x = randn(*x_shape, seed=index, dtype=dtype)
    layer = Conv2D(**kwargs, dtype=np.dtype(dtype).name)
    layer.build(x_shape[1:])
    with_random_bias(layer, seed=index)
    y = layer.forward(x)
    assert y.dtype == dtype
    dy = randn(*y.shape, seed=index + 1, dtype=dtype)
    dx = layer.backward(dy)

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    xt = torch.tensor(nhwc_to_nchw(x), dtype=tdtype, requires_grad=True)
    wt = torch.tensor(hwio_to_oihw(layer.params["kernel"]), dtype=tdtype, requires_grad=True)
    bt = (torch.tensor(layer.params["bias"], dtype=tdtype, requires_grad=True)
          if kwargs["use_bias"] else None)
    pad = torch_padding(kwargs["padding"], x_shape[1:3], kwargs["kernel_size"],
                        kwargs["strides"], kwargs["dilation_rate"])
    yt = F.conv2d(F.pad(xt, pad), wt, bt, stride=kwargs["strides"],
                  dilation=kwargs["dilation_rate"], groups=kwargs["groups"])
    yt = TORCH_ACTIVATIONS[kwargs["activation"]](yt)
    yt.backward(torch.tensor(nhwc_to_nchw(dy), dtype=tdtype))

    close = dict(rtol=tol, atol=tol, err_msg=str(kwargs))
    np.testing.assert_allclose(y, nchw_to_nhwc(yt.detach().numpy()), **close)
    np.testing.assert_allclose(dx, nchw_to_nhwc(xt.grad.numpy()), **close)
    np.testing.assert_allclose(layer.grads["kernel"], oihw_to_hwio(wt.grad.numpy()), **close)
    if bt is not None:
        np.testing.assert_allclose(layer.grads["bias"], bt.grad.numpy(), **close)
    for grad in layer.grads.values():
        assert grad.dtype == dtype


def test_torch_configs_cover_every_option():
    configs = [torch_config(i)[0] for i in range(20)]
    assert {str(c["padding"]) for c in configs} == {str(p) for p in PADDINGS}
    assert {str(c["strides"]) for c in configs} == {str(s) for s in STRIDES}
    assert {str(c["dilation_rate"]) for c in configs} == {str(d) for d in DILATIONS}
    assert {c["activation"] for c in configs} == set(ACTIVATIONS)
    assert {c["use_bias"] for c in configs} == {True, False}
    assert {c["groups"] > 1 for c in configs} == {True, False}


# ----- shapes, weights and dtypes ------------------------------------------------------------


def test_weights_shapes_and_initialization():
    layer = Conv2D(8, (3, 2), groups=2, input_shape=(9, 7, 4))
    layer.build(layer.input_shape)
    kernel, bias = layer.params["kernel"], layer.params["bias"]
    assert kernel.shape == (3, 2, 2, 8) and bias.shape == (8,)
    assert kernel.dtype == bias.dtype == np.float32
    limit = math.sqrt(6 / (3 * 2 * 2 + 3 * 2 * 8))  # glorot_uniform, fans from the kernel shape
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > limit / 2
    assert not bias.any()
    assert layer.count_params() == 3 * 2 * 2 * 8 + 8
    no_bias = Conv2D(8, 3, use_bias=False)
    no_bias.build((5, 5, 1))
    assert set(no_bias.params) == {"kernel"}


@pytest.mark.parametrize("kwargs, in_shape, out_shape", [
    (dict(filters=4, kernel_size=3), (7, 5, 2), (5, 3, 4)),
    (dict(filters=4, kernel_size=3, padding="same", strides=2), (7, 6, 2), (4, 3, 4)),
    (dict(filters=4, kernel_size=(3, 2), padding=((0, 1), (2, 0)), dilation_rate=2),
     (7, 5, 2), (4, 5, 4)),
    (dict(filters=6, kernel_size=3, padding=(1, 0), groups=3), (7, 5, 3), (7, 3, 6)),
])
def test_output_shapes(kwargs, in_shape, out_shape):
    layer = Conv2D(**kwargs)
    assert layer.compute_output_shape(in_shape) == out_shape
    assert layer.compute_output_shape((None, *in_shape)) == (None, *out_shape)
    assert layer.forward(np.zeros((2, *in_shape), np.float32)).shape == (2, *out_shape)


def test_float64_input_builds_float64_and_float32_stays_float32():
    assert Conv2D(2, 3)(np.zeros((1, 5, 5, 1))).dtype == np.float64
    layer = Conv2D(2, 3, padding="same")
    y = layer(np.zeros((1, 5, 5, 1), np.float32))
    dx = layer.backward(np.ones(y.shape))  # a float64 gradient does not upcast the layer
    assert y.dtype == dx.dtype == layer.grads["kernel"].dtype == np.float32


def test_backward_fills_grads_and_leaves_weights_alone():
    layer = Conv2D(3, 2, strides=2, dtype="float64")
    x = randn(2, 6, 6, 2)
    y = layer.forward(x)
    before = {k: v.copy() for k, v in layer.params.items()}
    layer.backward(np.ones_like(y))
    assert set(layer.grads) == set(layer.params)
    for k, v in layer.params.items():
        np.testing.assert_array_equal(v, before[k])
        assert layer.grads[k].shape == v.shape


def test_backward_before_forward_raises():
    layer = Conv2D(3, 2, input_shape=(4, 4, 1), name="early")
    layer.build(layer.input_shape)
    with pytest.raises(ValueError, match="'early'"):
        layer.backward(np.zeros((1, 3, 3, 3)))


# ----- errors --------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    (dict(filters=0), "filters=0"),
    (dict(filters=2.5), "filters=2.5"),
    (dict(filters=True), "filters=True"),
    (dict(kernel_size=0), "kernel_size=0"),
    (dict(kernel_size=(3,)), "kernel_size=(3,)"),
    (dict(kernel_size=(3, 0)), "kernel_size=(3, 0)"),
    (dict(strides=-1), "strides=-1"),
    (dict(strides="2"), "strides='2'"),
    (dict(dilation_rate=0), "dilation_rate=0"),
    (dict(dilation_rate=(1, 2, 3)), "dilation_rate=(1, 2, 3)"),
    (dict(padding="full"), "padding='full'"),
    (dict(padding=-1), "padding=-1"),
    (dict(padding=(1, 2, 3)), "padding=(1, 2, 3)"),
    (dict(padding=((1, 2), (3,))), "padding=((1, 2), (3,))"),
    (dict(groups=0), "groups=0"),
    (dict(groups=1.0), "groups=1.0"),
    (dict(use_bias="yes"), "use_bias='yes'"),
    (dict(kernel_initializer="nope"), "'nope'"),
    (dict(activation="nope"), "'nope'"),
]


@pytest.mark.parametrize("kwargs, quoted", BAD_ARGUMENTS, ids=[q for _, q in BAD_ARGUMENTS])
def test_bad_constructor_arguments_raise_quoting_the_value(kwargs, quoted):
    args = dict(filters=4, kernel_size=3) | kwargs
    with pytest.raises(ValueError, match=re.escape(quoted)) as info:
        Conv2D(**args)
    assert "Conv2D" in str(info.value)


@pytest.mark.parametrize("kwargs, x_shape, message", [
    (dict(filters=4, kernel_size=3), (2, 5, 5), "(height, width, channels)"),
    (dict(filters=4, kernel_size=3), (2, 5, 5, 2, 1), "(height, width, channels)"),
    (dict(filters=4, kernel_size=3, groups=2), (2, 5, 5, 3), "divisible by groups=2"),
    (dict(filters=3, kernel_size=3, groups=2), (2, 5, 5, 4), "filters=3"),
    (dict(filters=3, kernel_size=(3, 6)), (2, 5, 5, 1), "does not fit"),
    (dict(filters=3, kernel_size=3, dilation_rate=3), (2, 6, 6, 1), "does not fit"),
])
def test_impossible_inputs_raise_naming_the_layer(kwargs, x_shape, message):
    layer = Conv2D(**kwargs, name="c1")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        layer.forward(np.zeros(x_shape, np.float32))
    assert "Conv2D 'c1'" in str(info.value)
    assert not layer.built


def test_wrong_channel_count_after_building_names_the_layer():
    layer = Conv2D(4, 3, name="c2")
    layer.forward(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="Conv2D 'c2'"):
        layer.forward(np.zeros((1, 5, 5, 2), np.float32))


# ----- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    dict(filters=4, kernel_size=3),
    dict(filters=6, kernel_size=(3, 2), strides=(2, 1), padding="same", dilation_rate=(1, 2),
         groups=3, use_bias=False, activation="relu", kernel_initializer="he_normal",
         input_shape=(9, 8, 3), name="conv_cfg", dtype="float64"),
    dict(filters=2, kernel_size=2, padding=1),
    dict(filters=2, kernel_size=2, padding=(1, 2)),
    dict(filters=2, kernel_size=2, padding=((0, 1), (2, 0))),
])
def test_config_round_trip(kwargs):
    layer = Conv2D(**kwargs)
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = Conv2D.from_config(config)
    assert clone.get_config() == config
    for key, value in kwargs.items():
        expected = json.loads(json.dumps(value))  # tuples become lists
        assert config[key] == (expected if key != "kernel_size" or isinstance(value, tuple)
                               else [value, value])
    x = randn(1, 9, 8, 3, dtype=np.float32)
    layer.build(x.shape[1:])
    clone.build(x.shape[1:])
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))


def test_first_layer_skips_the_input_gradient_but_not_the_weight_gradients():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7, 6, 2))
    layer = Conv2D(4, 3, padding="same", activation="relu")
    dy = rng.standard_normal(layer(x).shape)
    dx = layer.backward(dy)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    layer.needs_input_grad = False
    assert layer.backward(dy) is None
    for key, value in grads.items():
        np.testing.assert_array_equal(layer.grads[key], value)
    assert dx.shape == x.shape


@pytest.mark.parametrize("kwargs, x_shape", [
    (dict(filters=6, kernel_size=3, padding="same"), (5, 9, 8, 4)),
    (dict(filters=4, kernel_size=3, strides=2, padding="same"), (3, 9, 8, 2)),
    (dict(filters=6, kernel_size=(3, 2), padding=1, groups=2), (3, 7, 6, 4)),
    (dict(filters=40, kernel_size=3, padding="same"), (4, 6, 6, 36)),  # input grad as a conv
])
def test_relu_inside_the_convolution_equals_a_separate_relu_exactly(kwargs, x_shape):
    fused = with_random_bias(Conv2D(activation="relu", **kwargs, dtype="float32"))
    plain = Conv2D(**kwargs, dtype="float32")
    x = randn(*x_shape, seed=3, dtype=np.float32)
    y = fused.forward(x, training=True)
    plain.build(x.shape[1:])
    plain.params = {k: v.copy() for k, v in fused.params.items()}
    z = plain.forward(x, training=True)
    assert (z < 0).any() and (z > 0).any()  # the ReLU has work to do
    np.testing.assert_array_equal(y, np.maximum(z, 0))
    dy = randn(*y.shape, seed=4, dtype=np.float32)
    dx = fused.backward(dy)
    dx_ref = plain.backward(dy * (z > 0))
    np.testing.assert_array_equal(dx, dx_ref)
    for key in fused.grads:
        np.testing.assert_array_equal(fused.grads[key], plain.grads[key])
    # forward_logits (as when a ReLU is moved after max pooling) gives the logits, and the
    # backward that follows it leaves the gradient unmasked
    np.testing.assert_array_equal(fused.forward_logits(x, training=True), z)
    np.testing.assert_array_equal(fused.call_backward(dy), plain.backward(dy))
