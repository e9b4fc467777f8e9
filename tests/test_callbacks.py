"""Callbacks: each one on hand-fed logs and on small real training runs."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers
from cnnumpy.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from cnnumpy.optimizers import SGD, Adam
from cnnumpy.optimizers.schedules import StepDecay


def tiny_model(optimizer=None, dropout=0.0):
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.Dense(5, activation="tanh", input_shape=(4,)),
                                layers.Dropout(dropout),
                                layers.Dense(3, activation="softmax")], dtype="float64")
    model.compile(optimizer or SGD(0.1), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def weights(model):
    return [{k: v.copy() for k, v in layer.get_weights().items()} for layer in model.layers]


def assert_same_weights(a, b):
    for wa, wb in zip(a, b, strict=True):
        for key in wa:
            np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)


class Script(Callback):
    """Overwrites logs[key] with a scripted value each epoch (before the callbacks after it
    see the logs) and records the weights at each epoch's end."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values, self.weights = key, list(values), []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append(weights(self.model))


def fake_model(lr=0.1):
    return SimpleNamespace(stop_training=False, optimizer=SGD(lr), layers=[])


def feed(callback, values, key="val_loss", model=None):
    """Run the epoch hooks on scripted logs; return the epoch at which training stopped."""
    callback.set_model(model or fake_model())
    callback.on_train_begin()
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0, key: value})
        if callback.model.stop_training:
            return epoch
    return None


# ----- EarlyStopping ---------------------------------------------------------------------------
@pytest.mark.parametrize("values, patience, min_delta, stop", [
    ([1.0, 0.8, 0.9, 0.85, 0.7], 2, 0.0, 3),
    ([1.0, 0.8, 0.9, 0.85, 0.7], 3, 0.0, None),
    ([1.0, 0.8, 0.9, 0.7, 0.6], 0, 0.0, 2),
    ([1.0, 0.8, 0.9, 0.7, 0.6], 1, 0.0, 2),
    ([1.0, 0.95, 0.92, 0.5], 1, 0.1, 1),
    ([1.0, 0.95, 0.92, 0.5], 2, 0.1, 2),
])
def test_early_stopping_stops_at_the_right_epoch(values, patience, min_delta, stop):
    assert feed(EarlyStopping(patience=patience, min_delta=min_delta), values) == stop


def test_early_stopping_mode():
    rising = [0.5, 0.6, 0.7, 0.8]
    assert feed(EarlyStopping("val_accuracy"), rising, "val_accuracy") is None  # auto: max
    assert feed(EarlyStopping("val_accuracy", mode="min"), rising, "val_accuracy") == 1
    assert feed(EarlyStopping("val_loss"), rising) == 1  # auto: min
    assert feed(EarlyStopping("val_loss", mode="max"), rising) is None


def test_early_stopping_restores_the_best_weights_of_a_real_run():
    model = tiny_model()
    x, y = data()
    script = Script("val_loss", [0.9, 0.5, 0.6, 0.7, 0.4, 0.3])
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=6, batch_size=8, validation_split=0.25, verbose=0,
                        callbacks=[script, stop])
    assert history.epoch == [0, 1, 2, 3] and model.epoch == 4
    assert stop.stopped_epoch == 3 and stop.best_epoch == 1 and stop.best == 0.5
    assert_same_weights(weights(model), script.weights[1])
    with pytest.raises(AssertionError):
        assert_same_weights(script.weights[1], script.weights[3])


def test_early_stopping_without_restore_keeps_the_last_weights():
    model = tiny_model()
    script = Script("val_loss", [0.9, 0.5, 0.6, 0.7])
    model.fit(*data(), epochs=4, batch_size=8, validation_split=0.25, verbose=0,
              callbacks=[script, EarlyStopping(patience=2)])
    assert_same_weights(weights(model), script.weights[3])


def test_a_missing_monitor_is_a_clear_error():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"monitor='val_loss'.*\['accuracy', 'loss'\].*valid"):
        model.fit(*data(), epochs=2, verbose=0, callbacks=[EarlyStopping()])
    with pytest.raises(ValueError, match="val_acc"):
        feed(EarlyStopping("val_acc"), [1.0])


# ----- ModelCheckpoint -------------------------------------------------------------------------
def test_checkpoints_are_named_from_the_logs_and_loadable(tmp_path):
    model = tiny_model(Adam(0.01))
    x, y = data()
    pattern = str(tmp_path / "ck" / "ckpt-{epoch:02d}-{val_loss:.3f}.safetensors")
    check = ModelCheckpoint(pattern)
    script = Script("unused", [0] * 3)
    history = model.fit(x, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0,
                        callbacks=[check, script])
    expected = [str(tmp_path / "ck" / f"ckpt-{e + 1:02d}-{v:.3f}.safetensors")
                for e, v in enumerate(history.history["val_loss"])]
    assert check.saved == expected
    assert sorted(os.listdir(tmp_path / "ck")) == sorted(os.path.basename(p) for p in expected)
    loaded = cnnumpy.load_model(expected[1])
    assert loaded.epoch == 2 and loaded.optimizer.iterations == 2 * 3
    assert_same_weights(weights(loaded), script.weights[1])


def test_save_best_only_saves_only_improvements(tmp_path):
    model = tiny_model()
    script = Script("val_accuracy", [0.5, 0.4, 0.7, 0.7, 0.6, 0.9])
    check = ModelCheckpoint(str(tmp_path / "best-{epoch}.safetensors"), "val_accuracy",
                            save_best_only=True)
    model.fit(*data(), epochs=6, batch_size=8, validation_split=0.25, verbose=0,
              callbacks=[script, check])
    assert [os.path.basename(p) for p in check.saved] == [
        "best-1.safetensors", "best-3.safetensors", "best-6.safetensors"]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in check.saved)
    assert check.best == 0.9


def test_save_best_only_to_one_path_keeps_the_best_weights(tmp_path):
    model = tiny_model()
    script = Script("val_loss", [0.5, 0.3, 0.4, 0.6])
    path = str(tmp_path / "best.safetensors")
    model.fit(*data(), epochs=4, batch_size=8, validation_split=0.25, verbose=0,
              callbacks=[script, ModelCheckpoint(path, save_best_only=True)])
    loaded = cnnumpy.load_model(path)
    assert loaded.epoch == 2
    assert_same_weights(weights(loaded), script.weights[1])


def test_resuming_from_a_checkpoint_equals_an_unbroken_run(tmp_path):
    """Shuffling, dropout and Adam's moments all continue exactly."""
    x, y = data(30)
    val = data(9, seed=1)
    model = tiny_model(Adam(0.02), dropout=0.3)
    model.fit(x, y, epochs=4, batch_size=7, validation_data=val, verbose=0,
              callbacks=[ModelCheckpoint(str(tmp_path / "ck-{epoch}.safetensors"))])
    cnnumpy.set_seed(123)  # a new process would start from anywhere
    resumed = cnnumpy.load_model(str(tmp_path / "ck-2.safetensors"))
    resumed.fit(x, y, epochs=4, batch_size=7, validation_data=val, verbose=0,
                initial_epoch=resumed.epoch)
    assert resumed.epoch == 4
    assert_same_weights(weights(resumed), weights(model))
    last = cnnumpy.load_model(str(tmp_path / "ck-4.safetensors"))
    assert_same_weights(weights(resumed), weights(last))


RESUME_SCRIPT = """
import sys, numpy as np, cnnumpy
from cnnumpy import layers
from cnnumpy.callbacks import ModelCheckpoint
mode, folder = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
x = rng.normal(size=(30, 8, 8, 1)).astype(np.float32); y = rng.integers(0, 3, 30)
options = dict(epochs=2, batch_size=6, validation_split=0.2, verbose=0)
if mode == "train":  # the run that never stops, saving a checkpoint after each epoch
    cnnumpy.set_seed(5)
    model = cnnumpy.Sequential([
        layers.RandomTranslation(0.2, 0.2, input_shape=(8, 8, 1)),
        layers.Conv2D(3, 3, activation="relu"), layers.Dropout(0.4), layers.Flatten(),
        layers.Dense(3, activation="softmax")])
    model.compile(cnnumpy.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x, y, callbacks=[ModelCheckpoint(folder + "/ck-{epoch}.safetensors")], **options)
else:  # a new process: the plain two lines
    model = cnnumpy.load_model(folder + "/ck-1.safetensors")
    model.fit(x, y, initial_epoch=model.epoch, **options)
np.save(f"{folder}/{mode}.npy", model.predict(x))
"""


def test_load_then_fit_in_a_new_process_continues_exactly(tmp_path):
    """Shuffling, augmentation and dropout after load_model + fit(initial_epoch=model.epoch)
    equal those of the uninterrupted run, with no set_rng_state call."""
    for mode in ("train", "resume"):
        subprocess.run([sys.executable, "-c", RESUME_SCRIPT, mode, str(tmp_path)], check=True)
    unbroken, resumed = np.load(tmp_path / "train.npy"), np.load(tmp_path / "resume.npy")
    np.testing.assert_array_equal(resumed, unbroken)


def test_a_loaded_model_predicts_without_moving_the_generator(tmp_path):
    model = tiny_model(Adam(0.01), dropout=0.5)
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(str(tmp_path / "m.safetensors"))
    loaded = cnnumpy.load_model(str(tmp_path / "m.safetensors"))
    state = cnnumpy.backend.rng_state()
    loaded.predict(x)
    loaded.evaluate(x, y)
    assert cnnumpy.backend.rng_state() == state
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0)  # not a resume: no rewinding ...
    assert loaded.rng_state is None  # ... and the checkpoint's state is dropped


def test_checkpoint_path_errors(tmp_path):
    for bad in ("ckpt-{}.safetensors", "ckpt-{0}.safetensors", "ckpt-{epoch.safetensors"):
        with pytest.raises(ValueError, match="ModelCheckpoint: path"):
            ModelCheckpoint(bad)
    check = ModelCheckpoint(str(tmp_path / "{val_acc}.safetensors"))
    with pytest.raises(ValueError, match=r"\{val_acc\}.*'epoch', 'loss'"):
        check.format_path(0, {"loss": 1.0})


# ----- ReduceLROnPlateau and LearningRateScheduler ---------------------------------------------
def test_reduce_lr_on_plateau_with_scripted_logs():
    model = fake_model(0.1)
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.02)
    lrs = []
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, value in enumerate([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]):
        cb.on_epoch_end(epoch, {"val_loss": value})
        lrs.append(model.optimizer.learning_rate)
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02]


def test_reduce_lr_min_delta_and_cooldown():
    model = fake_model(1.0)
    cb = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.1, cooldown=1)
    cb.set_model(model)
    cb.on_train_begin()
    lrs = []
    for epoch, value in enumerate([1.0, 0.95, 0.95, 0.95, 0.95, 0.8, 0.75, 0.75]):
        cb.on_epoch_end(epoch, {"val_loss": value})
        lrs.append(model.optimizer.learning_rate)
    # 0.95 is no improvement on 1.0 (min_delta); the epoch after each cut is ignored;
    # 0.8 is one (best becomes 0.8), 0.75 is not.
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125]


def test_reduce_lr_on_plateau_in_a_real_run():
    model = tiny_model(SGD(0.2))
    cb = ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=100.0)
    model.fit(*data(), epochs=4, batch_size=8, verbose=0, callbacks=[cb])
    assert model.optimizer.learning_rate == pytest.approx(0.2 * 0.5 ** 3)


class LrRecorder(Callback):
    def __init__(self):
        super().__init__()
        self.lrs = {}

    def on_batch_end(self, batch, logs=None):
        self.lrs.setdefault(self.model.epoch, set()).add(self.model.optimizer.current_learning_rate)


def test_scheduler_sets_the_learning_rate_before_each_epoch():
    model = tiny_model(SGD(0.5))
    seen = []

    def fn(epoch, lr):
        seen.append((epoch, lr))
        return 0.1 / (epoch + 1)

    record = LrRecorder()
    model.fit(*data(), epochs=3, batch_size=8, verbose=0,
              callbacks=[LearningRateScheduler(fn), record])
    assert seen == [(0, 0.5), (1, 0.1), (2, 0.05)]
    assert record.lrs == {0: {0.1}, 1: {0.05}, 2: {0.1 / 3}}
    model.fit(*data(), epochs=5, batch_size=8, verbose=0, initial_epoch=3,
              callbacks=[LearningRateScheduler(fn)])
    assert seen[-1] == (4, 0.025) and model.optimizer.learning_rate == 0.02


def test_learning_rate_callbacks_refuse_schedules_and_bad_values():
    for cb in (ReduceLROnPlateau("loss"), LearningRateScheduler(lambda e, lr: lr)):
        model = tiny_model(SGD(StepDecay(0.1, 2)))
        with pytest.raises(TypeError, match=f"{type(cb).__name__}.*StepDecay.*schedule"):
            model.fit(*data(), epochs=1, verbose=0, callbacks=[cb])
    for bad in (math.nan, -1.0, 0.0, "0.1", None):
        with pytest.raises(ValueError, match=rf"fn\(0, 0.1\) must be.*{bad!r}"):
            tiny_model().fit(*data(), epochs=1, verbose=0,
                             callbacks=[LearningRateScheduler(lambda e, lr, b=bad: b)])


# ----- CSVLogger -------------------------------------------------------------------------------
class RowCounter(Callback):
    def __init__(self, path):
        super().__init__()
        self.path, self.counts = path, []

    def on_epoch_end(self, epoch, logs=None):
        with open(self.path) as f:
            self.counts.append(len(f.read().splitlines()))


def test_csv_logger_writes_one_flushed_row_per_epoch(tmp_path):
    path = str(tmp_path / "log.csv")
    model = tiny_model()
    counter = RowCounter(path)
    history = model.fit(*data(), epochs=3, batch_size=8, validation_split=0.25, verbose=0,
                        callbacks=[CSVLogger(path), counter])
    assert counter.counts == [2, 3, 4]  # header + rows, readable while training runs
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    for epoch, row in enumerate(rows[1:]):
        assert int(row[0]) == epoch
        for key, text in zip(rows[0][1:], row[1:], strict=True):
            assert float(text) == history.history[key][epoch]
    model.fit(*data(), epochs=5, initial_epoch=3, batch_size=8, validation_split=0.25,
              verbose=0, callbacks=[CSVLogger(path, append=True)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 6 and [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4"]
    model.fit(*data(), epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";")])
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0] == "epoch;accuracy;loss" and len(lines) == 2


# ----- TerminateOnNaN --------------------------------------------------------------------------
def test_terminate_on_nan_with_batch_logs(capsys):
    cb = TerminateOnNaN()
    cb.set_model(fake_model())
    cb.on_batch_end(0, {"loss": 0.3})
    assert not cb.model.stop_training
    for value in (math.nan, math.inf):
        cb.model.stop_training = False
        cb.on_batch_end(4, {"loss": value})
        assert cb.model.stop_training
    assert "batch 5 has loss inf" in capsys.readouterr().out


def test_terminate_on_nan_ends_a_real_run():
    x, y = data(12)
    x[5] = np.nan
    model = tiny_model()
    history = model.fit(x, y, epochs=3, batch_size=2, shuffle=False, verbose=0,
                        callbacks=[TerminateOnNaN()])
    assert history.epoch == [0] and model.epoch == 1 and model.optimizer.iterations == 3


# ----- constructor checks ----------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: EarlyStopping(patience=-1), "EarlyStopping: patience.*patience=-1"),
    (lambda: EarlyStopping(patience=1.5), "patience=1.5"),
    (lambda: EarlyStopping(min_delta=-0.1), "min_delta=-0.1"),
    (lambda: EarlyStopping(mode="up"), "mode='up'"),
    (lambda: EarlyStopping(monitor=""), "monitor=''"),
    (lambda: EarlyStopping(restore_best_weights="yes"), "restore_best_weights='yes'"),
    (lambda: ModelCheckpoint(3), "ModelCheckpoint: path.*path=3"),
    (lambda: ModelCheckpoint("a", mode="best"), "mode='best'"),
    (lambda: ModelCheckpoint("a", save_best_only=1), "save_best_only=1"),
    (lambda: ReduceLROnPlateau(factor=1.0), "ReduceLROnPlateau: factor.*factor=1.0"),
    (lambda: ReduceLROnPlateau(factor=0), "factor=0"),
    (lambda: ReduceLROnPlateau(min_lr=-1), "min_lr=-1"),
    (lambda: ReduceLROnPlateau(cooldown=-2), "cooldown=-2"),
    (lambda: LearningRateScheduler(0.1), "fn=0.1"),
    (lambda: CSVLogger(""), "CSVLogger: path.*path=''"),
    (lambda: CSVLogger("a.csv", append="no"), "append='no'"),
    (lambda: CSVLogger("a.csv", separator=";;"), "separator=';;'"),
])
def test_bad_arguments_quote_the_value(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_early_stopping_never_stops_at_the_first_epoch_and_keeps_weights_to_restore():
    """A first value of NaN (never an improvement) does not end training at epoch 0 (Keras);
    with restore_best_weights, the first epoch's weights are kept until one improves."""
    assert feed(EarlyStopping(patience=0), [float("nan"), 0.5, 0.6]) == 2
    assert feed(EarlyStopping(patience=1), [float("nan"), float("nan")]) == 1
    model = tiny_model()
    script = Script("val_loss", [float("nan"), float("nan"), float("nan")])
    stop = EarlyStopping(patience=1, restore_best_weights=True)
    history = model.fit(*data(), epochs=3, batch_size=8, validation_split=0.25, verbose=0,
                        callbacks=[script, stop])
    assert history.epoch == [0, 1] and stop.stopped_epoch == 1 and stop.best_epoch == 0
    assert_same_weights(weights(model), script.weights[0])
