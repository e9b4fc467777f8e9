"""The model's passes (ReLU moved after max pooling, convolution and pooling fused) equal
running the layers one by one."""

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers
from cnnumpy import passes as passes_module
from cnnumpy.functional.fast import compiled, compiled_conv_pool, conv_pool
from cnnumpy.passes import Passes, conv_pool_fused, relu_moved_after_pool


def _stack(padding: str) -> list:
    return [
        layers.Conv2D(4, 3, padding="same", activation="relu", input_shape=(9, 9, 2)),
        layers.MaxPool2D(2, padding=padding),
        layers.Activation("relu"),
        layers.MaxPool2D(2, strides=1),  # overlapping windows
        layers.Conv2D(3, 2, activation="tanh"),
        layers.MaxPool2D(2, padding="same"),  # after tanh: left alone
        layers.Flatten(),
        layers.Dense(5, activation="relu"),
    ]


def _layer_by_layer(stack: list, x: np.ndarray, dy: np.ndarray) -> tuple:
    """The reference: every layer's own forward and backward, in order."""
    for layer in stack:
        x = layer.forward(x, training=True)
    g = dy
    for layer in reversed(stack):
        g = layer.backward(g)
    return x, g, [dict(layer.grads) for layer in stack]


def test_which_pools_take_the_relu() -> None:
    assert relu_moved_after_pool(_stack("valid")) == {1, 3}


def test_which_pools_are_computed_with_their_convolution() -> None:
    stack = _stack("valid")
    assert conv_pool_fused(stack) == frozenset()  # not built yet
    for layer, shape in zip(stack[:3], [(9, 9, 2), (9, 9, 4), (4, 4, 4)], strict=True):
        layer.build(shape)
    assert conv_pool_fused(stack) == {1}  # not after an activation layer, nor after tanh
    same = [layers.Conv2D(2, 3, padding="same"), layers.MaxPool2D(2, padding="same")]
    same[0].build((8, 7, 1))
    same[1].build((8, 7, 2))
    assert conv_pool_fused(same) == frozenset()  # "same" pads the odd width: not a tiling
    same[0].build((8, 6, 1))
    same[1].build((8, 6, 2))
    assert conv_pool_fused(same) == {1}

    class MyConv(layers.Conv2D):  # a subclass may compute something else: left alone
        pass

    mine = [MyConv(2, 3, padding="same"), same[1]]
    mine[0].build((8, 6, 1))
    assert conv_pool_fused(mine) == frozenset()


@pytest.mark.parametrize("use_compiled", [True, False])
@pytest.mark.parametrize("channels, fused", [((16, 32), True), ((32, 32), False),
                                             ((32, 8), True), ((64, 64), False)])
def test_wide_winograd_convolutions_pool_on_their_own(channels, fused, use_compiled,
                                                      monkeypatch) -> None:
    """From ``UNFUSED_FROM`` channels in and out, a 3x3 stride-1 convolution runs by F(4x4)
    Winograd and its pooling after it, where the compiled kernels run; narrower, another
    kernel size, or by NumPy's transforms, they run together."""
    monkeypatch.setattr(compiled, "ENABLED", use_compiled and compiled.AVAILABLE)
    fused = fused or not compiled.ENABLED
    c, f = channels
    stack = [layers.Conv2D(f, 3, padding="same", activation="relu"), layers.MaxPool2D(2)]
    stack[0].build((8, 8, c))
    stack[1].build((8, 8, f))
    assert conv_pool_fused(stack) == ({1} if fused else frozenset())
    five = [layers.Conv2D(f, 5, padding="same"), stack[1]]
    five[0].build((8, 8, c))
    assert conv_pool_fused(five) == {1}  # no F(4x4) for 5x5: together


@pytest.mark.parametrize("fuse, path", [(False, None), (True, "window order"),
                                        (True, "compiled"), (True, "window fields")])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_passes_equal_the_layers(dtype: str, padding: str, fuse: bool, path: str | None,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit for bit without the fused convolution and pooling; with it, values and input
    gradients too, and kernel gradients up to the order their float sums are added in. The
    compiled backward pass adds the input gradient's terms in another order too; the
    2-channel convolution may go by each pooling window's receptive field instead
    (``window fields``), whose products add the same terms in another order: then values
    and gradients agree up to that rounding, except where it breaks exact ties."""
    if path == "compiled" and not compiled.AVAILABLE:
        pytest.skip("Numba is not installed")
    monkeypatch.setattr(passes_module, "FUSE_CONV_POOL", fuse)
    monkeypatch.setattr(conv_pool, "WINDOW_PATCHES", path == "window fields")
    if path != "compiled":
        monkeypatch.setattr(compiled_conv_pool, "MAX_CHANNELS", 0)
    window_fields = path == "window fields"
    cnnumpy.set_seed(3)
    stack = _stack(padding)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 9, 9, 2)).astype(dtype)
    if not window_fields:  # (whose sums could round this image's exact ties apart)
        x[0] = -1.0  # windows whose pre-activations are all <= 0: zero gradient either way
    passes = Passes()
    passes.forward(stack, x, training=False)  # builds the layers: only built ones are fused
    y = passes.forward(stack, x, training=True)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = passes.backward(dy)
    grads = [dict(layer.grads) for layer in stack]

    assert bool(passes._fused) == (fuse and padding == "valid")  # "same" pads 9 x 9
    y_ref, dx_ref, grads_ref = _layer_by_layer(stack, x, dy)
    tol = 0 if not fuse else 1e-5 if dtype == "float32" else 1e-12
    if window_fields and passes._fused:
        np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(y, y_ref)
    if path in ("compiled", "window fields") and passes._fused:
        np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(dx, dx_ref)
    for got, want in zip(grads, grads_ref, strict=True):
        assert got.keys() == want.keys()
        for key in got:
            np.testing.assert_allclose(got[key], want[key], rtol=tol, atol=tol)


def test_sequential_uses_the_passes_and_stops_before_the_last_layer() -> None:
    cnnumpy.set_seed(1)
    model = cnnumpy.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.random.default_rng(1).standard_normal((5, 8, 8, 1)).astype("float32")
    reference = x
    for layer in model.layers:
        reference = layer.forward(reference)
    # inference fuses the convolution and pooling (for one channel by each window's whole
    # receptive field: other products, so equal within rounding)
    np.testing.assert_allclose(model.predict(x), reference, rtol=1e-5, atol=1e-6)


def test_backward_before_a_training_forward_is_an_error() -> None:
    stack = _stack("valid")
    passes = Passes()
    y = passes.forward(stack, np.zeros((1, 9, 9, 2), "float32"), training=False)
    with pytest.raises(ValueError, match="backward called before"):
        passes.backward(np.ones_like(y))

