"""Losses: finite differences, PyTorch parity, stability at extreme logits, validation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import ATOL, RTOL, numerical_grad

from cnnumpy import losses
from cnnumpy.functional.activations import sigmoid, softmax

torch = pytest.importorskip("torch")
F = torch.nn.functional

N, C = 4, 5


def _data(kind: str, from_logits: bool, dtype=np.float64, seed: int = 0):
    """Random ``(y_true, y_pred)`` suited to a loss kind, away from the clipping range."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((N, C)) * 2
    if kind == "mse":
        return rng.standard_normal((N, C)).astype(dtype), z.astype(dtype)
    if kind == "binary":
        y = rng.uniform(0, 1, (N, C))  # soft targets exercise the general formula
        pred = z if from_logits else rng.uniform(0.05, 0.95, (N, C))
        return y.astype(dtype), pred.astype(dtype)
    pred = z if from_logits else softmax(z)
    if kind == "categorical":
        y = rng.dirichlet(np.ones(C), size=N)
        return y.astype(dtype), pred.astype(dtype)
    return rng.integers(0, C, size=N), pred.astype(dtype)


CASES = [
    ("mse", losses.MeanSquaredError, False),
    ("binary", losses.BinaryCrossentropy, False),
    ("binary", losses.BinaryCrossentropy, True),
    ("categorical", losses.CategoricalCrossentropy, False),
    ("categorical", losses.CategoricalCrossentropy, True),
    ("sparse", losses.SparseCategoricalCrossentropy, False),
    ("sparse", losses.SparseCategoricalCrossentropy, True),
]
IDS = [f"{cls.__name__}-logits={lg}" for _, cls, lg in CASES]


def _make(cls, from_logits):
    return cls() if cls is losses.MeanSquaredError else cls(from_logits=from_logits)


# ----- gradients ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind, cls, from_logits", CASES, ids=IDS)
def test_gradient_matches_finite_differences(kind, cls, from_logits):
    loss = _make(cls, from_logits)
    y, pred = _data(kind, from_logits)
    value, grad = loss.value_and_grad(y, pred)
    assert isinstance(value, float) and value == loss(y, pred)
    assert grad.shape == pred.shape and grad.dtype == pred.dtype
    np.testing.assert_array_equal(grad, loss.backward(y, pred))
    expected = numerical_grad(lambda: loss(y, pred), pred)
    np.testing.assert_allclose(grad, expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind, cls, activation", [
    ("binary", losses.BinaryCrossentropy, sigmoid),
    ("categorical", losses.CategoricalCrossentropy, softmax),
    ("sparse", losses.SparseCategoricalCrossentropy, softmax),
])
def test_fused_path_matches_finite_differences_through_the_activation(kind, cls, activation):
    loss = cls()
    assert loss.fused_activation == activation.__name__
    fused = loss.with_logits()
    assert type(fused) is cls and fused.from_logits and not loss.from_logits
    y, _ = _data(kind, from_logits=False)
    z = np.random.default_rng(5).standard_normal((N, C))
    value, grad = fused.value_and_grad(y, z)
    assert value == pytest.approx(loss(y, activation(z)), rel=1e-12)
    expected = numerical_grad(lambda: loss(y, activation(z)), z)
    np.testing.assert_allclose(grad, expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_targets_that_do_not_sum_to_one(from_logits):
    """The gradient is exact for any target weights, not only for distributions."""
    loss = losses.CategoricalCrossentropy(from_logits=from_logits)
    y, pred = _data("categorical", from_logits)
    y = y * np.array([[0.5], [1.0], [2.0], [0.0]])
    expected = numerical_grad(lambda: loss(y, pred), pred)
    np.testing.assert_allclose(loss.backward(y, pred), expected, atol=ATOL, rtol=RTOL)


def test_mse_has_no_fused_activation():
    assert losses.MeanSquaredError().fused_activation is None
    with pytest.raises(ValueError, match="MeanSquaredError has no fused activation"):
        losses.MeanSquaredError().with_logits()


# ----- PyTorch parity -------------------------------------------------------------------------
def _torch_loss(kind: str, from_logits: bool, y, pred):
    if kind == "mse":
        return F.mse_loss(pred, y)
    if kind == "binary":
        if from_logits:
            return F.binary_cross_entropy_with_logits(pred, y)
        return F.binary_cross_entropy(pred, y)
    if kind == "categorical":
        if from_logits:
            return F.cross_entropy(pred, y)
        return -(y * torch.log(pred)).sum(-1).mean()
    if from_logits:
        return F.cross_entropy(pred, y)
    return F.nll_loss(torch.log(pred), y)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("kind, cls, from_logits", CASES, ids=IDS)
@pytest.mark.parametrize("seed", [1, 2])
def test_matches_torch(kind, cls, from_logits, dtype, tol, seed):
    loss = _make(cls, from_logits)
    y, pred = _data(kind, from_logits, dtype, seed)
    value, grad = loss.value_and_grad(y, pred)
    pred_t = torch.tensor(pred, requires_grad=True)
    y_t = torch.tensor(y)
    ref = _torch_loss(kind, from_logits, y_t, pred_t)
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=tol, abs=tol)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, pred_t.grad.numpy(), rtol=tol, atol=tol * 1e-2)


SMOOTHED = [case for case in CASES if case[0] != "mse"]


@pytest.mark.parametrize("kind, cls, from_logits", SMOOTHED,
                         ids=[f"{cls.__name__}-logits={lg}" for _, cls, lg in SMOOTHED])
def test_label_smoothing_matches_finite_differences_and_torch(kind, cls, from_logits):
    """Targets ``y * (1 - s) + s / classes`` (two classes for binary cross-entropy), as
    PyTorch's cross-entropy computes them for class indices and soft targets."""
    s = 0.2
    loss = cls(from_logits=from_logits, label_smoothing=s)
    y, pred = _data(kind, from_logits, seed=3)
    value, grad = loss.value_and_grad(y, pred)
    np.testing.assert_allclose(grad, numerical_grad(lambda: loss(y, pred), pred),
                               atol=ATOL, rtol=RTOL)
    pred_t = torch.tensor(pred, requires_grad=True)
    if kind == "sparse" and from_logits:
        ref = F.cross_entropy(pred_t, torch.tensor(y), label_smoothing=s)
    else:
        dense = np.eye(C)[y] if kind == "sparse" else y
        classes = 2 if kind == "binary" else C
        ref = _torch_loss("categorical" if kind == "sparse" else kind, from_logits,
                          torch.tensor(dense * (1 - s) + s / classes), pred_t)
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-10)
    np.testing.assert_allclose(grad, pred_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert value != pytest.approx(cls(from_logits=from_logits)(y, pred), rel=1e-3)


def test_label_smoothing_is_kept_by_the_fused_path_and_the_config():
    loss = losses.SparseCategoricalCrossentropy(label_smoothing=0.1)
    assert loss.with_logits().label_smoothing == 0.1
    again = losses.deserialize(losses.serialize(loss))
    assert type(again) is type(loss) and again.label_smoothing == 0.1
    assert losses.BinaryCrossentropy.from_config({"from_logits": False}).label_smoothing == 0


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.1", True, None])
def test_label_smoothing_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match=r"CategoricalCrossentropy: label_smoothing must be "
                                         r"a number in \[0, 1\], received"):
        losses.CategoricalCrossentropy(label_smoothing=bad)


def test_sparse_labels_of_shape_n_1_and_integral_floats_agree():
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    labels, z = _data("sparse", True)
    value, grad = loss.value_and_grad(labels, z)
    for variant in (labels[:, None], labels.astype(np.float32), labels.astype(np.uint8)):
        v2, g2 = loss.value_and_grad(variant, z)
        assert v2 == value
        np.testing.assert_array_equal(g2, grad)


def test_binary_accepts_flat_targets_for_a_single_output():
    loss = losses.BinaryCrossentropy(from_logits=True)
    z = np.array([[0.3], [-1.2], [2.0]])
    y = np.array([1.0, 0.0, 1.0])
    assert loss(y, z) == loss(y[:, None], z)


# ----- stability ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls", [losses.CategoricalCrossentropy,
                                 losses.SparseCategoricalCrossentropy])
def test_extreme_logits_are_finite_without_warnings(cls, dtype):
    z = np.array([[1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0]], dtype=dtype)
    labels = np.array([2, 0])  # confidently wrong, then confidently right
    y = labels if cls is losses.SparseCategoricalCrossentropy else np.eye(3)[labels]
    loss = cls(from_logits=True)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        value, grad = loss.value_and_grad(y, z)
    assert np.isfinite(grad).all()
    assert value == pytest.approx(2000.0 / 2, rel=1e-6)  # 2000 for the wrong one, 0 else
    np.testing.assert_allclose(grad, [[0.5, 0, -0.5], [0, 0, 0]], atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_binary_extreme_logits_and_saturated_probabilities(dtype):
    z = np.array([[1000.0, -1000.0, 1000.0, -1000.0]], dtype=dtype)
    y = np.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    p = np.array([[1.0, 0.0, 1.0, 0.0]], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        v_logits, g_logits = losses.BinaryCrossentropy(from_logits=True).value_and_grad(y, z)
        v_probs, g_probs = losses.BinaryCrossentropy().value_and_grad(y, p)
        v_cat, g_cat = losses.CategoricalCrossentropy().value_and_grad(np.eye(2), np.eye(2)[::-1])
        v_sparse, g_sparse = losses.SparseCategoricalCrossentropy().value_and_grad(
            np.array([1, 0]), np.eye(2, dtype=dtype))
    assert v_logits == pytest.approx(500.0, rel=1e-6)  # 1000 for each of the two wrong ones
    np.testing.assert_allclose(g_logits, [[0.25, -0.25, 0, 0]], atol=1e-12)
    assert np.isfinite(v_probs) and np.isfinite(g_probs).all() and np.isfinite(g_cat).all()
    assert v_probs == pytest.approx(-np.log(1e-7) / 2, rel=1e-2)  # clipped, like Keras
    assert g_probs[0, 0] > 0 > g_probs[0, 1]  # still pushed back towards the target
    assert v_cat == pytest.approx(-np.log(1e-7), rel=1e-6)
    assert v_sparse == pytest.approx(-np.log(1e-7), rel=1e-6)
    assert np.isfinite(g_sparse).all() and (g_sparse[[0, 1], [1, 0]] < 0).all()


# ----- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("labels, error, match", [
    ([0.0, 1.5, 2.0], TypeError, "integer class indices, received 1.5"),
    ([0.0, np.nan, 2.0], TypeError, "received nan"),
    (np.array(["a", "b", "c"]), TypeError, "dtype '<U1'|dtype 'str"),
    ([True, False, True], TypeError, "dtype 'bool'"),
    ([0, -1, 2], ValueError, "received label -1"),
    ([0, 3, 2], ValueError, r"in \[0, 3\).*received label 3"),
    ([0, 1], ValueError, r"shape \(3,\) or \(3, 1\).*received \(2,\)"),
])
def test_sparse_rejects_bad_labels(labels, error, match):
    z = np.zeros((3, 3))
    with pytest.raises(error, match=f"SparseCategoricalCrossentropy: .*(?:{match})"):
        losses.SparseCategoricalCrossentropy()(np.asarray(labels), z)


def test_categorical_rejects_mismatched_targets():
    cce = losses.CategoricalCrossentropy()
    with pytest.raises(ValueError, match="one-hot targets have 4 classes .* y_pred has 3"):
        cce(np.eye(4)[:2], np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="use SparseCategoricalCrossentropy"):
        cce(np.array([0, 2]), np.full((2, 3), 1 / 3))


@pytest.mark.parametrize("cls", [losses.MeanSquaredError, losses.BinaryCrossentropy])
def test_elementwise_losses_reject_mismatched_shapes(cls):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: .*same shape.*\(2, 3\).*\(2, 4\)"):
        cls()(np.zeros((2, 3)), np.full((2, 4), 0.5))


def test_bad_arguments_and_dtypes():
    with pytest.raises(TypeError, match="from_logits must be True or False.*'yes'"):
        losses.BinaryCrossentropy(from_logits="yes")
    with pytest.raises(TypeError, match="MeanSquaredError: y_pred must be a real-valued"):
        losses.MeanSquaredError()(np.zeros(2), np.array(["a", "b"]))


# ----- registry and config --------------------------------------------------------------------
def test_get_serialize_deserialize():
    loss = losses.CategoricalCrossentropy(from_logits=True)
    assert losses.get(loss) is loss
    for name, cls in [("mse", losses.MeanSquaredError),
                      ("mean_squared_error", losses.MeanSquaredError),
                      ("binary_crossentropy", losses.BinaryCrossentropy),
                      ("categorical_crossentropy", losses.CategoricalCrossentropy),
                      ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy)]:
        assert type(losses.get(name)) is cls
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*'binary_crossentropy'"):
        losses.get("hinge")
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get(None)
    data = losses.serialize(loss)
    assert data == {"name": "categorical_crossentropy", "config": {"from_logits": True,
                                                               "label_smoothing": 0.0}}
    again = losses.deserialize(data)
    assert type(again) is losses.CategoricalCrossentropy and again.from_logits
    assert type(losses.deserialize(losses.serialize(losses.MeanSquaredError()))) \
        is losses.MeanSquaredError
    assert losses.serialize(losses.MeanSquaredError())["name"] == "mean_squared_error"
    with pytest.raises(TypeError, match="can only serialize the built-in losses"):
        losses.serialize(type("Custom", (losses.MeanSquaredError,), {})())
    with pytest.raises(ValueError, match="deserialize: expected"):
        losses.deserialize({"name": "os.system", "config": {}})
    copy = type(loss).from_config(loss.get_config())
    assert copy.get_config() == loss.get_config()
