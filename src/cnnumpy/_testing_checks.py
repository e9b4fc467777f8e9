"""The shape, config and file checks of :func:`cnnumpy.testing.check_layer`.

Each takes a layer (left unchanged: it works on copies) and a float64 test batch ``x``; it
returns a one-line description when the check passes and raises AssertionError, with what
disagrees and by how much, when it does not.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from cnnumpy.layers import LAYERS, Layer


def _built_copy(layer: Layer, shape: tuple[int, ...]) -> Layer:
    clone = copy.deepcopy(layer)
    if not clone.built:
        clone.build(shape)
    return clone


def shape_check(layer: Layer, x: np.ndarray, training: bool) -> str:
    shape = x.shape[1:]
    a = _built_copy(layer, shape)
    x = x.astype(a.dtype)
    expected = (len(x), *a.compute_output_shape(shape))
    y = a.forward(x, training=training)
    assert y.shape == expected, f"forward gave {y.shape}, compute_output_shape says {expected}"
    assert y.dtype == a.dtype, f"forward gave dtype {y.dtype}, the layer's dtype is {a.dtype}"
    dx = a.backward(np.ones_like(y))
    assert np.shape(dx) == x.shape, f"backward gave an input gradient of shape " \
                                    f"{np.shape(dx)}, the input is {x.shape}"
    assert set(a.grads) == set(a.params), f"grads has keys {sorted(a.grads)}, params " \
                                          f"{sorted(a.params)}"
    for k, v in a.params.items():
        assert np.shape(a.grads[k]) == v.shape, f"grads[{k!r}] has shape " \
                                                f"{np.shape(a.grads[k])}, the param {v.shape}"
    return f"{y.shape} from forward, as compute_output_shape says; gradients shaped right"


def config_check(layer: Layer, x: np.ndarray) -> str:
    a = _built_copy(layer, x.shape[1:])
    config = a.get_config()
    try:
        json.dumps(config)
    except TypeError as exc:
        raise AssertionError(f"get_config() is not JSON (model files need it): {exc}") from None
    clone = type(a).from_config(config)
    again = clone.get_config()
    diff = [f"{k}: {config.get(k, '(missing)')!r} became {again.get(k, '(missing)')!r}"
            for k in sorted(set(config) | set(again)) if config.get(k) != again.get(k)]
    assert not diff, "from_config(get_config()) differs: " + "; ".join(diff)
    if not clone.built:
        clone.build(x.shape[1:])
    clone.set_weights(a.get_weights())
    xa = x.astype(a.dtype)
    ya, yb = a.forward(xa), clone.forward(xa)
    if ya.shape != yb.shape or not np.array_equal(ya, yb):
        err = "shapes differ" if ya.shape != yb.shape else f"{np.max(np.abs(ya - yb)):.2g}"
        raise AssertionError(f"the rebuilt layer computes a different output (max abs "
                             f"difference {err}) with the same weights: does get_config() "
                             f"miss an argument of __init__?")
    return f"{len(config)} keys, same config and outputs after from_config"


@contextlib.contextmanager
def _registered(cls: type[Layer]) -> Iterator[None]:
    """Let model files name ``cls`` for the duration (a layer class not in ``LAYERS``)."""
    name, old = cls.__name__, LAYERS.get(cls.__name__)
    LAYERS[name] = cls
    try:
        yield
    finally:
        if old is None:
            del LAYERS[name]
        else:
            LAYERS[name] = old


def file_check(layer: Layer, x: np.ndarray) -> str:
    from cnnumpy.io import load_model
    from cnnumpy.model import Sequential

    model = Sequential([copy.deepcopy(layer)])
    model.build(x.shape[1:])
    # Distinctive values for every array, so that a swapped or dropped array is noticed.
    rng = np.random.default_rng(1)
    for a in model.layers:
        a.set_weights({k: rng.uniform(0.5, 1.5, v.shape) for k, v in a.get_weights().items()})
    with tempfile.TemporaryDirectory() as folder, _registered(type(layer)):
        path = os.path.join(folder, "layer.safetensors")
        model.save(path)
        loaded = load_model(path)
    xs = x.astype(model.layers[0].dtype)
    want, got = model.predict(xs), loaded.predict(xs)
    if want.shape != got.shape or not np.array_equal(want, got):
        err = "shapes differ" if want.shape != got.shape else f"{np.max(np.abs(want - got)):.2g}"
        raise AssertionError(f"the loaded model predicts differently (max abs difference {err})")
    assert loaded.get_config() == model.get_config(), "the loaded model's config differs"
    return "saved and loaded: bit-identical predictions, same config"
