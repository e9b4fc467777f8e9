"""The CLI's ``--model`` with the graph builders and with saved graph configs."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

import cnnumpy
from cnnumpy import cli_data, models


def run(*args):
    return subprocess.run([sys.executable, "-m", "cnnumpy", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An IDX folder of 48 12x12 images of three classes (a bright band at the top, middle
    or bottom), the same images as training and test set."""
    folder = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 48)
    images = rng.integers(0, 60, (48, 12, 12))
    for c in range(3):
        images[labels == c, 4 * c: 4 * (c + 1), :] = 255
    for prefix in ("train", "t10k"):
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
            header += b"".join(struct.pack(">I", d) for d in array.shape)
            (folder / f"{prefix}-{kind}-ubyte").write_bytes(header
                                                            + array.astype(np.uint8).tobytes())
    return folder


def test_train_resnet20_with_augmentation_then_evaluate(folder, tmp_path):
    out = tmp_path / "r.safetensors"
    result = run("train", "--data", str(folder), "--model", "resnet20", "--epochs", "1",
                 "--augment", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "layer3.2.relu_2" in result.stdout  # the graph's summary
    model = cnnumpy.load_model(str(out))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert isinstance(model, cnnumpy.Model) and kinds[:2] == ["InputLayer", "RandomTranslation"]
    assert model.name == "resnet20" and model.output_shape == (3,)
    assert "mirrored" not in result.stdout  # the recipe's tta needs flips: none here
    recipe = cnnumpy.models.TRAINING_DEFAULTS["resnet20"]  # its optimizer and loss were used
    assert type(model.optimizer).__name__ == "SGD" and model.optimizer.nesterov
    assert model.loss.label_smoothing == recipe["label_smoothing"] > 0
    result = run("evaluate", "--data", str(folder), str(out))
    assert result.returncode == 0 and "accuracy" in result.stdout, result.stderr
    result = run("evaluate", "--data", str(folder), str(out), "--tta")
    assert result.returncode == 1 and "was not trained with flips" in result.stderr


def test_the_recipes_test_time_flips_score_what_evaluate_scores(folder, tmp_path):
    out = tmp_path / "f.safetensors"  # --lr 0.01: the recipe's 0.1 can saturate every
    # prediction of a model this small on 48 images, leaving nothing for the mirrors to change
    result = run("train", "--data", str(folder), "--model", "resnet20", "--epochs", "1",
                 "--augment", "shift,flip", "--lr", "0.01", "--out", str(out))
    assert result.returncode == 0, result.stderr
    line = next(t for t in result.stdout.splitlines() if "mirrored images averaged" in t)
    model = cnnumpy.load_model(str(out))
    x, y = cli_data.load_data(str(folder), model.input_shape).test
    probs = models.predict_mirrored(model, x)
    assert not np.allclose(probs, model.predict(x))  # the mirrors changed the predictions
    accuracy = np.mean(probs.argmax(axis=1) == y)
    assert line.endswith(f"{accuracy:.4f}")
    result = run("evaluate", "--data", str(folder), str(out), "--tta")
    assert result.returncode == 0, result.stderr
    assert f"accuracy: {accuracy:.4f} (mirrored images averaged)" in result.stdout


def test_tta_without_flips_fails_before_training(folder, tmp_path):
    result = run("train", "--data", str(folder), "--model", "resnet20", "--epochs", "1",
                 "--no-augment", "--tta", "--out", str(tmp_path / "n.safetensors"))
    assert result.returncode == 1 and "must be trained with flips" in result.stderr
    assert "Epoch" not in result.stdout and not (tmp_path / "n.safetensors").exists()


def test_train_from_a_saved_graph_config_keeps_its_layers(folder, tmp_path):
    config = models.resnet(8, num_classes=3, input_shape=(12, 12, 1), width=2).get_config()
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "g.safetensors"
    result = run("train", "--data", str(folder), "--model", str(path), "--epochs", "1",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    trained = cnnumpy.load_model(str(out)).get_config()
    assert [item["name"] for item in trained["layers"]] == [
        item["name"] for item in config["layers"]]  # lenet's recipe: no augmentation added
    path.write_text(json.dumps(models.unet((16, 16, 1), 3, 4, 1).get_config()))
    result = run("train", "--data", str(folder), "--model", str(path), "--epochs", "1")
    assert result.returncode == 1
    assert "takes inputs of shape (16, 16, 1), but the data's are (12, 12, 1)" in result.stderr


def test_help_lists_the_graph_models():
    result = run("train", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "mobilenet-v2-small, resnet20" in text
    recipe = cnnumpy.models.TRAINING_DEFAULTS["resnet20"]
    assert (f"resnet20: {recipe['epochs']} epochs, batch size {recipe['batch_size']}, "
            f"val-split {recipe['val_split']}, augment on, shifts up to 5%, SGD (Nesterov "
            f"momentum 0.9, weight "
            f"decay 0.0005) lr {recipe['lr']:g}, label smoothing "
            f"{recipe['label_smoothing']:g}, tta with flips") in text
