"""Bad input to ``Sequential.fit``, ``evaluate``, ``predict`` and ``train_on_batch``: each
mistake is a ValueError or TypeError that names the method and argument, what was expected
and what came, raised before a single batch is trained. A batch of one works, and ``predict``
on zero images returns an empty array of the right shape."""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers

X = np.zeros((4, 8, 8, 1), np.float32)
Y = np.array([0, 1, 2, 0])


def small_cnn(loss="sparse_categorical_crossentropy", lazy=False, extra=()):
    cnnumpy.set_seed(0)
    first = {} if lazy else {"input_shape": (8, 8, 1)}
    model = cnnumpy.Sequential([
        layers.Conv2D(4, 3, padding="same", activation="relu", **first), *extra,
        layers.MaxPool2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile("adam", loss)
    return model


def call(model, method, x, y=Y):
    if method == "predict":
        return model.predict(x)
    if method == "fit":
        return model.fit(x, y, batch_size=2, verbose=0)
    return getattr(model, method)(x, y)


METHODS = ["fit", "evaluate", "predict", "train_on_batch"]

BAD_X = {
    "rank 3": (np.zeros((4, 8, 8)), ValueError, r"x must have shape \(N, 8, 8, 1\), "
               r"received \(4, 8, 8\)"),
    "rank 5": (np.zeros((4, 8, 8, 1, 1)), ValueError, r"received \(4, 8, 8, 1, 1\)"),
    "rank 1": (np.zeros(4), ValueError, r"x must be a batch \(N, \.\.\.\), received shape \(4,"),
    "scalar": (3.0, ValueError, r"x must be a batch .*received shape \(\)"),
    "channels": (np.zeros((4, 8, 8, 3)), ValueError, r"\(N, 8, 8, 1\), received \(4, 8, 8, 3\)"),
    "height": (np.zeros((4, 9, 8, 1)), ValueError, r"\(N, 8, 8, 1\), received \(4, 9, 8, 1\)"),
    "width": (np.zeros((4, 8, 2, 1)), ValueError, r"\(N, 8, 8, 1\), received \(4, 8, 2, 1\)"),
    "object": (X.astype(object), TypeError, "x must be a real-valued array, received dtype "
               "'object'"),
    "complex": (X.astype(complex), TypeError, "x must be a real-valued.*'complex128'"),
    "strings": (np.full((4, 8, 8, 1), "a"), TypeError, "x must be a real-valued.*'str"),
    "None": (None, TypeError, "x must be a real-valued array"),
    "ragged": ([np.zeros((8, 8, 1)), np.zeros((7, 8, 1))], ValueError,
               "x must be an array .*ragged list"),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", sorted(BAD_X))
def test_bad_images_name_the_method_the_expected_and_the_received(method, case):
    x, error, match = BAD_X[case]
    model = small_cnn()
    with pytest.raises(error, match=rf"Sequential\.{method}: .*{match}"):
        call(model, method, x)
    assert model.optimizer.iterations == 0


@pytest.mark.parametrize("case", ["rank 3", "object", "ragged", "None"])
def test_bad_images_for_an_unbuilt_model_are_named_too(case):
    x, error, _ = BAD_X[case]
    with pytest.raises(error, match=r"Sequential\.fit|Conv2D 'conv2d"):
        small_cnn(lazy=True).fit(x, Y, verbose=0)


BAD_Y = {
    "shorter": (Y[:3], ValueError, "x and y must have the same number of samples, received 4 "
                "images and 3 labels"),
    "longer": (np.zeros(5, int), ValueError, "received 4 images and 5 labels"),
    "scalar": (1, ValueError, "received 4 images and 0 labels"),
    "label = classes": (np.array([0, 1, 3, 0]), ValueError,
                        r"labels must be in \[0, 3\) .*received label 3"),
    "negative label": (np.array([0, -1, 2, 0]), ValueError, "received label -1"),
    "float label": (np.array([0, 1.5, 2, 0]), TypeError,
                    "labels must be integer class indices, received 1.5"),
    "nan label": (np.array([0, np.nan, 2, 0]), TypeError, "received nan"),
    "bool labels": (np.array([True, False, True, False]), TypeError, "dtype 'bool'"),
    "one-hot for sparse": (np.eye(3)[[0, 1, 2, 0]], ValueError,
                           r"y_true must have shape \(4,\) or \(4, 1\).*received \(4, 3\)"),
    "object": (Y.astype(object), TypeError, "y must be a real-valued array, received dtype "
               "'object'"),
    "strings": (np.array(list("abca")), TypeError, "y must be a real-valued array"),
    "complex": (Y.astype(complex), TypeError, "y must be a real-valued.*'complex128'"),
    "None": (None, TypeError, r"y \(the labels or targets for x\) is required"),
    "ragged": ([[0], [1, 2], [0], [1]], ValueError, "y must be an array .*ragged list"),
}


@pytest.mark.parametrize("method", ["fit", "evaluate", "train_on_batch"])
@pytest.mark.parametrize("case", sorted(BAD_Y))
def test_bad_labels_name_the_method_the_expected_and_the_received(method, case):
    y, error, match = BAD_Y[case]
    model = small_cnn()
    with pytest.raises(error, match=rf"Sequential\.{method}: .*{match}"):
        call(model, method, X, y)
    assert model.optimizer.iterations == 0


@pytest.mark.parametrize("loss, y, error, match", [
    ("categorical_crossentropy", Y, ValueError, "use SparseCategoricalCrossentropy"),
    ("categorical_crossentropy", np.eye(4)[Y], ValueError, "4 classes .* y_pred has 3"),
    ("binary_crossentropy", np.full((4, 3), 2.0), ValueError, r"targets must be in \[0, 1\]"),
    ("mse", np.zeros((4, 2)), ValueError, r"y_true \(4, 2\) and y_pred \(4, 3\)"),
])
def test_targets_that_do_not_fit_the_loss(loss, y, error, match):
    model = small_cnn(loss)
    with pytest.raises(error, match=rf"Sequential\.fit: y does not fit the loss: .*{match}"):
        model.fit(X, y, verbose=0)


def test_a_bad_label_in_the_last_batch_stops_fit_before_the_first():
    y = np.zeros(40, int)
    y[-1] = 7
    model = small_cnn()
    with pytest.raises(ValueError, match="received label 7"):
        model.fit(np.zeros((40, 8, 8, 1)), y, batch_size=4, shuffle=False, verbose=0)
    assert model.optimizer.iterations == 0


@pytest.mark.parametrize("kwargs, error, match", [
    ({"epochs": "3"}, ValueError, "epochs must be an int >= 0, received epochs='3'"),
    ({"epochs": -1}, ValueError, "epochs=-1"),
    ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, received batch_size=0"),
    ({"batch_size": 2.5}, ValueError, "batch_size=2.5"),
    ({"initial_epoch": -1}, ValueError, "initial_epoch=-1"),
    ({"validation_split": "0.1"}, ValueError, r"validation_split must be in \[0, 1\)"),
    ({"validation_split": 1.0}, ValueError, "validation_split=1.0"),
    ({"validation_split": 0.8}, ValueError, "leaves no samples for validation or for training"),
    ({"validation_data": (X, Y, Y, Y)}, ValueError, "validation_data must be a pair"),
    ({"validation_data": (X, Y, np.ones(3))}, ValueError,
     r"\(validation_data\): sample_weight must hold one number per sample \(4\)"),
    ({"validation_data": (X[:2], np.array([0, 5]))}, ValueError,
     r"\(validation_data\): y does not fit the loss: .*received label 5"),
    ({"validation_data": (X[:0], Y[:0])}, ValueError, r"\(validation_data\): .*empty"),
    ({"verbose": "yes"}, ValueError, "verbose must be 0, 1 or 2, received verbose='yes'"),
    ({"shuffle": "no"}, TypeError, "shuffle must be True or False, received shuffle='no'"),
    ({"callbacks": 3}, TypeError, "callbacks must be a list of Callback instances"),
    ({"callbacks": [print]}, TypeError, "callbacks must be Callback instances"),
    ({"class_weight": [1, 2]}, TypeError, "class_weight must be a dict"),
    ({"class_weight": {0: 1.0}}, ValueError, r"class_weight has no weight for classes \[1, 2\]"),
    ({"sample_weight": np.ones(3)}, ValueError, r"sample_weight must hold one number per "
                                                r"sample \(4\), received shape \(3,\)"),
])
def test_bad_fit_arguments_are_named(kwargs, error, match):
    model = small_cnn()
    options = {"verbose": 0, **kwargs}
    with pytest.raises(error, match=rf"Sequential\.fit.*{match}"):
        model.fit(X, Y, **options)
    assert model.optimizer.iterations == 0


@pytest.mark.parametrize("method", ["fit", "evaluate", "train_on_batch"])
def test_an_empty_dataset_is_named(method):
    with pytest.raises(ValueError, match=rf"Sequential\.{method}: received an empty dataset"):
        call(small_cnn(), method, X[:0], Y[:0])


def test_a_batch_of_one_works_everywhere():
    """One sample, through batch normalization and dropout in training mode."""
    model = small_cnn(extra=[layers.BatchNormalization(), layers.Dropout(0.5)])
    history = model.fit(X[:1], Y[:1], epochs=2, batch_size=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    model.fit(np.ones((5, 8, 8, 1)), np.arange(5) % 3, batch_size=4, verbose=0)  # 4 + 1
    assert model.optimizer.iterations == 2 + 2
    assert np.isfinite(model.train_on_batch(X[:1], Y[:1])["loss"])
    assert set(model.evaluate(X[:1], Y[:1])) == {"loss", "accuracy"}
    assert model.predict(X[:1]).shape == (1, 3)


@pytest.mark.parametrize("lazy", [False, True])
def test_predict_on_zero_images_is_an_empty_array_of_the_right_shape(lazy):
    model = small_cnn(lazy=lazy)
    out = model.predict(np.zeros((0, 8, 8, 1), np.float32))
    assert out.shape == (0, 3) and out.dtype == np.float32
    assert model.predict(np.zeros((0, 8, 8, 1))).shape == (0, 3)
    with pytest.raises(ValueError, match=r"Sequential\.predict: x must have shape"):
        model.predict(np.zeros((0, 8, 8, 2)))
