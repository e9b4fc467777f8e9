"""Conv2DTranspose: finite differences, PyTorch parity, Keras' output sizes, the adjoint of
Conv2D, argument errors and the config."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import check_layer_gradients, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, oihw_to_hwio

from cnnumpy.layers import Conv2D, Conv2DTranspose

torch = pytest.importorskip("torch")
F = torch.nn.functional


def randn(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def with_random_bias(layer, seed=1):
    if "bias" in layer.params:
        layer.params["bias"] = randn(layer.filters, seed=seed, dtype=layer.dtype)
    return layer


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def keras_length(size, kernel, padding, output_padding, stride, dilation):
    """Keras' ``deconv_output_length``, restated so the test does not trust the library."""
    kernel = kernel + (kernel - 1) * (dilation - 1)
    if output_padding is None:
        if padding == "valid":
            return size * stride + max(kernel - stride, 0)
        return size * stride
    pad = kernel // 2 if padding == "same" else 0
    return (size - 1) * stride + kernel - 2 * pad + output_padding


def keras_crop(size, kernel, padding, output_padding, stride, dilation):
    """Where the output starts in PyTorch's full (unpadded) transposed output: Keras' JAX
    backend pads the stride-dilated input by ``left_pad`` and convolves with the flipped
    kernel; the full output has ``span - 1`` on the left."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        return 0
    pad_len = (stride + span - 2 if output_padding is None
               else span + span % 2 - 2 + output_padding)
    left_pad = min(pad_len // 2 + pad_len % 2, span - 1)
    return span - 1 - left_pad


# ----- finite differences (float64) --------------------------------------------------------

GRADIENT_CASES = {
    "valid": dict(x=(2, 4, 3, 3), filters=2, kernel_size=(3, 2)),
    "valid_stride2": dict(x=(1, 3, 4, 2), filters=2, kernel_size=3, strides=2),
    "valid_stride3_small_kernel": dict(x=(1, 3, 2, 2), filters=2, kernel_size=2, strides=3),
    "same_stride2": dict(x=(2, 3, 4, 2), filters=3, kernel_size=3, strides=2, padding="same"),
    "same_even_kernel_output_padding": dict(x=(1, 3, 3, 2), filters=2, kernel_size=(4, 2),
                                            strides=(2, 3), padding="same",
                                            output_padding=(1, 0)),
    "valid_output_padding_dilation": dict(x=(1, 3, 3, 2), filters=2, kernel_size=2, strides=2,
                                          padding="valid", output_padding=1, dilation_rate=2),
    "same_dilation_no_bias_tanh": dict(x=(2, 4, 3, 2), filters=2, kernel_size=(2, 3),
                                       padding="same", dilation_rate=(2, 1), use_bias=False,
                                       activation="tanh"),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradients_match_finite_differences(case):
    kwargs = dict(GRADIENT_CASES[case])
    x = randn(*kwargs.pop("x"))
    layer = Conv2DTranspose(**kwargs, dtype="float64")
    layer.build(x.shape[1:])
    with_random_bias(layer)
    assert set(layer.params) == ({"kernel", "bias"} if kwargs.get("use_bias", True)
                                 else {"kernel"})
    check_layer_gradients(layer, x)


# ----- PyTorch parity ------------------------------------------------------------------------

STRIDES = [1, 2, 3, (1, 2), (3, 2)]
DILATIONS = [1, 2, (2, 1)]


def torch_config(index):
    """A random configuration; padding and whether output_padding is given cycle."""
    rng = np.random.default_rng(3000 + index)
    while True:
        strides = STRIDES[rng.integers(len(STRIDES))]
        kwargs = dict(
            filters=int(rng.integers(1, 4)),
            kernel_size=(int(rng.integers(1, 5)), int(rng.integers(1, 5))),
            strides=strides,
            padding=["valid", "same"][index % 2],
            output_padding=(None if index % 4 < 2
                            else tuple(int(rng.integers(0, s)) for s in pair(strides))),
            dilation_rate=DILATIONS[rng.integers(len(DILATIONS))],
            use_bias=bool(index % 3),
            activation=[None, "relu"][index % 5 == 0],
        )
        x_shape = (int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(rng.integers(1, 6)),
                   int(rng.integers(1, 4)))
        try:
            Conv2DTranspose(**kwargs).compute_output_shape(x_shape[1:])
        except ValueError:  # an empty output: draw again
            continue
        return kwargs, x_shape


@pytest.mark.parametrize("index", range(24))
def test_matches_pytorch(index):
    kwargs, x_shape = torch_config(index)
    x = randn(*x_shape, seed=index)
    layer = with_random_bias(Conv2DTranspose(**kwargs, dtype="float64"), seed=index)
    layer.build(x_shape[1:])
    with_random_bias(layer, seed=index)
    y = layer.forward(x)
    dy = randn(*y.shape, seed=index + 1)
    dx = layer.backward(dy)

    # PyTorch's full transposed output (no padding), cropped where Keras' output starts.
    ks, ss, ds = pair(kwargs["kernel_size"]), pair(kwargs["strides"]), pair(kwargs["dilation_rate"])
    ops = kwargs["output_padding"] or (None, None)
    lengths = [keras_length(x_shape[1 + a], ks[a], kwargs["padding"], ops[a], ss[a], ds[a])
               for a in (0, 1)]
    crops = [keras_crop(x_shape[1 + a], ks[a], kwargs["padding"], ops[a], ss[a], ds[a])
             for a in (0, 1)]
    full = [(x_shape[1 + a] - 1) * ss[a] + (ks[a] - 1) * ds[a] + 1 for a in (0, 1)]
    extra = tuple(max(crops[a] + lengths[a] - full[a], 0) for a in (0, 1))
    assert y.shape == (x_shape[0], *lengths, kwargs["filters"])

    xt = torch.tensor(nhwc_to_nchw(x), requires_grad=True)
    wt = torch.tensor(hwio_to_oihw(layer.params["kernel"]), requires_grad=True)  # (C, F, kh, kw)
    bt = torch.tensor(layer.params["bias"], requires_grad=True) if kwargs["use_bias"] else None
    yt = F.conv_transpose2d(xt, wt, bt, stride=ss, dilation=ds, output_padding=extra)
    yt = yt[:, :, crops[0]:crops[0] + lengths[0], crops[1]:crops[1] + lengths[1]]
    if kwargs["activation"] == "relu":
        yt = torch.relu(yt)
    yt.backward(torch.tensor(nhwc_to_nchw(dy)))

    close = dict(rtol=1e-10, atol=1e-10, err_msg=str(kwargs))
    np.testing.assert_allclose(y, nchw_to_nhwc(yt.detach().numpy()), **close)
    np.testing.assert_allclose(dx, nchw_to_nhwc(xt.grad.numpy()), **close)
    np.testing.assert_allclose(layer.grads["kernel"], oihw_to_hwio(wt.grad.numpy()), **close)
    if bt is not None:
        np.testing.assert_allclose(layer.grads["bias"], bt.grad.numpy(), **close)


def test_torch_configs_cover_every_option():
    configs = [torch_config(i)[0] for i in range(24)]
    assert {str(c["strides"]) for c in configs} == {str(s) for s in STRIDES}
    assert {str(c["dilation_rate"]) for c in configs} == {str(d) for d in DILATIONS}
    assert {(c["padding"], c["output_padding"] is None) for c in configs} == {
        ("valid", True), ("valid", False), ("same", True), ("same", False)}
    assert any(c["output_padding"] and max(c["output_padding"]) > 0 for c in configs)


def test_the_input_gradient_path_by_convolution_matches_pytorch():
    """Stride 1 with many input channels takes the convolution path of the kernels."""
    x = randn(2, 5, 4, 33, seed=3)
    layer = with_random_bias(Conv2DTranspose(3, 3, padding="same", dtype="float64"))
    layer.build(x.shape[1:])
    with_random_bias(layer)
    xt = torch.tensor(nhwc_to_nchw(x))
    wt = torch.tensor(hwio_to_oihw(layer.params["kernel"]))
    expected = F.conv_transpose2d(xt, wt, torch.tensor(layer.params["bias"]), padding=1)
    np.testing.assert_allclose(layer.forward(x), nchw_to_nhwc(expected.numpy()), rtol=1e-10,
                               atol=1e-10)


# ----- sizes and the adjoint of Conv2D -------------------------------------------------------


@pytest.mark.parametrize("kwargs, in_hw, out_hw", [
    (dict(kernel_size=3, strides=2), (5, 4), (11, 9)),
    (dict(kernel_size=3, strides=2, padding="same"), (5, 4), (10, 8)),
    (dict(kernel_size=3, strides=2, output_padding=1), (5, 4), (12, 10)),
    (dict(kernel_size=3, strides=2, padding="same", output_padding=1), (5, 4), (10, 8)),
    (dict(kernel_size=4, strides=2, padding="same", output_padding=0), (5, 4), (8, 6)),
    (dict(kernel_size=1, strides=3), (2, 3), (6, 9)),
    (dict(kernel_size=(3, 2), dilation_rate=2), (4, 4), (8, 6)),
])
def test_output_sizes_are_keras(kwargs, in_hw, out_hw):
    layer = Conv2DTranspose(2, **kwargs)
    assert layer.compute_output_shape((*in_hw, 3)) == (*out_hw, 2)
    assert layer.forward(np.zeros((1, *in_hw, 3), np.float32)).shape == (1, *out_hw, 2)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, strides=2, padding="same"),
    dict(kernel_size=4, strides=2, padding="same"),
    dict(kernel_size=(3, 2), strides=(2, 3), padding="valid", dilation_rate=(1, 2)),
    dict(kernel_size=5, strides=3, padding="same", output_padding=2),
])
def test_is_the_transpose_of_conv2d_with_the_same_arguments(kwargs):
    """<T x, z> == <x, C z> where C is Conv2D with the same kernel on inputs of T's output
    size: the definition (TensorFlow's), which fixes where "same" drops its rows."""
    x = randn(2, 4, 5, 3, seed=1)
    transpose = Conv2DTranspose(2, use_bias=False, dtype="float64", **kwargs)
    y = transpose.forward(x)
    z = randn(*y.shape, seed=2)
    conv_kwargs = {k: v for k, v in kwargs.items() if k != "output_padding"}
    conv = Conv2D(3, use_bias=False, dtype="float64", **conv_kwargs)
    conv.build(z.shape[1:])
    conv.set_weights({"kernel": transpose.params["kernel"]})  # (kh, kw, F, C) either way
    cz = conv.forward(z)
    assert cz.shape == x.shape
    np.testing.assert_allclose(np.vdot(y, z), np.vdot(x, cz), rtol=1e-12)


# ----- errors and config ---------------------------------------------------------------------

BAD_ARGUMENTS = [
    (dict(filters=0), "filters=0"),
    (dict(kernel_size=(3,)), "kernel_size=(3,)"),
    (dict(strides=0), "strides=0"),
    (dict(padding="full"), "padding='full'"),
    (dict(padding=1), "padding=1"),
    (dict(output_padding=-1), "output_padding=-1"),
    (dict(output_padding=(1, 2, 3)), "output_padding=(1, 2, 3)"),
    (dict(output_padding=1), "output_padding=1"),  # not below strides=1
    (dict(strides=(2, 1), output_padding=(1, 1)), "output_padding=(1, 1)"),
    (dict(dilation_rate=(1, 0)), "dilation_rate=(1, 0)"),
    (dict(use_bias=1), "use_bias=1"),
    (dict(kernel_initializer="nope"), "'nope'"),
    (dict(activation="nope"), "'nope'"),
]


@pytest.mark.parametrize("kwargs, quoted", BAD_ARGUMENTS, ids=[q for _, q in BAD_ARGUMENTS])
def test_bad_constructor_arguments_raise_quoting_the_value(kwargs, quoted):
    with pytest.raises(ValueError, match=re.escape(quoted)) as info:
        Conv2DTranspose(**(dict(filters=2, kernel_size=3) | kwargs))
    assert "Conv2DTranspose" in str(info.value)


def test_impossible_inputs_raise_naming_the_layer():
    layer = Conv2DTranspose(2, 2, padding="same", output_padding=0, name="up")
    with pytest.raises(ValueError, match=r"Conv2DTranspose 'up'.*empty output"):
        layer.forward(np.zeros((1, 1, 3, 1), np.float32))
    with pytest.raises(ValueError, match=r"'up'.*\(height, width, channels\)"):
        layer.forward(np.zeros((1, 3, 3), np.float32))
    assert not layer.built


def test_weights_default_name_and_first_layer():
    layer = Conv2DTranspose(4, (3, 2), input_shape=(5, 5, 3))
    assert layer.name.startswith("conv2d_transpose")
    layer.build(layer.input_shape)
    assert layer.params["kernel"].shape == (3, 2, 4, 3) and layer.params["bias"].shape == (4,)
    assert layer.count_params() == 3 * 2 * 4 * 3 + 4
    x = randn(2, 5, 5, 3, dtype=np.float32)
    dy = randn(*layer(x).shape, seed=2, dtype=np.float32)
    layer.backward(dy)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    layer.needs_input_grad = False
    assert layer.backward(dy) is None
    for key, value in grads.items():
        np.testing.assert_array_equal(layer.grads[key], value)
        assert value.dtype == np.float32


@pytest.mark.parametrize("kwargs", [
    dict(filters=4, kernel_size=3),
    dict(filters=2, kernel_size=(3, 2), strides=(2, 3), padding="same", output_padding=(1, 2),
         dilation_rate=1, use_bias=False, activation="relu", kernel_initializer="he_normal",
         input_shape=(4, 5, 3), name="up_cfg", dtype="float64"),
    dict(filters=2, kernel_size=2, strides=2, output_padding=1, dilation_rate=(2, 1)),
])
def test_config_round_trip(kwargs):
    layer = Conv2DTranspose(**kwargs)
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = Conv2DTranspose.from_config(config)
    assert clone.get_config() == config
    assert config["output_padding"] == (None if "output_padding" not in kwargs
                                        else list(pair(kwargs["output_padding"])))
    x = randn(1, 4, 5, 3, dtype=np.float32)
    layer.build(x.shape[1:])
    clone.build(x.shape[1:])
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))
