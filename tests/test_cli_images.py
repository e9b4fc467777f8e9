"""The command line's image conversion: colour mode, size and polarity, driven through real
subprocesses (see tests/test_cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

PIL = pytest.importorskip("PIL.Image")


def run(*args):
    return subprocess.run([sys.executable, "-m", "cnnumpy", *args], capture_output=True,
                          text=True, timeout=300)


def test_ink_on_paper_digits_are_predicted_as_the_light_on_dark_originals(tmp_path):
    import cnnumpy

    out = tmp_path / "digits.safetensors"
    result = run("train", "--model", "simple", "--epochs", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert cnnumpy.load_model(str(out)).preprocessing == {
        "color_mode": "grayscale", "image_size": [28, 28], "background": 0.0}  # MNIST: dark
    x_test, y_test = cnnumpy.datasets.load_mnist_sample()[1]
    digits, labels = np.round(x_test[:30, ..., 0] * 255), y_test[:30]
    originals, paper = [], []
    for i, (digit, label) in enumerate(zip(digits.astype(np.uint8), labels, strict=True)):
        originals.append(str(tmp_path / f"o{i}.png"))
        paper.append(str(tmp_path / "paper" / str(label) / f"p{i}.png"))  # a class folder
        (tmp_path / "paper" / str(label)).mkdir(parents=True, exist_ok=True)
        PIL.fromarray(digit).save(originals[-1])
        PIL.fromarray(255 - digit).save(paper[-1])  # dark ink on light paper

    def top(paths, *flags):
        result = run("predict", str(out), *paths, "--json", *flags)
        assert result.returncode == 0, result.stderr
        return np.array([p["top"][0]["index"] for p in json.loads(result.stdout)])

    expected = top(originals)
    assert np.mean(top(paper) == expected) >= 0.9
    assert np.mean(top(paper, "--no-invert") == expected) < 0.5  # inverting is what matters

    def evaluated(*flags):  # evaluate converts a folder's images as predict converts each
        result = run("evaluate", str(out), "--data", str(tmp_path / "paper"), "--all-images",
                     *flags)
        assert result.returncode == 0, result.stderr
        return float(result.stdout.split("accuracy: ")[1].split()[0])

    assert evaluated() == pytest.approx(np.mean(top(paper) == labels), abs=1e-4)
    assert evaluated("--no-invert") == pytest.approx(
        np.mean(top(paper, "--no-invert") == labels), abs=1e-4)


def colour_folder(root, sizes=((12, 12), (12, 12), (12, 12), (10, 16))):
    """Flat red, green and blue images of the same grey level (29 of 255), of mixed sizes."""
    for name, colour in {"blue": (0, 0, 255), "green": (0, 49, 0), "red": (97, 0, 0)}.items():
        (root / name).mkdir(parents=True)
        for i in range(16):
            h, w = sizes[i % len(sizes)]
            PIL.new("RGB", (w, h), colour).save(root / name / f"{i}.png")
    return root


def test_a_colour_folder_of_mixed_sizes_trains_in_rgb_by_default(tmp_path):
    import cnnumpy

    folder, out = colour_folder(tmp_path / "colours"), tmp_path / "c.safetensors"
    args = ["--data", str(folder), "--model", "simple", "--epochs", "5", "--batch-size", "8",
            "--lr", "0.01", "--val-split", "0"]
    result = run("train", *args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Images: rgb (colour found" in result.stdout
    assert "12x12 (the most common size; 12 other images padded and resized" in result.stdout
    assert "Holding out 6 images as the test set" in result.stdout  # 16 // 6 of each colour
    assert "Training on 42 images" in result.stdout and "(6 images)" in result.stdout
    model = cnnumpy.load_model(str(out))
    assert model.input_shape == (12, 12, 3)
    assert model.preprocessing["color_mode"] == "rgb"
    assert model.preprocessing["image_size"] == [12, 12]
    evaluated = run("evaluate", str(out), "--data", str(folder))
    assert evaluated.returncode == 0, evaluated.stderr
    assert float(evaluated.stdout.split("accuracy: ")[1].split()[0]) > 0.9  # grey: 1/3
    assert evaluated.stdout.startswith("6 images - loss: ")  # the split train held out
    evaluated = run("evaluate", str(out), "--data", str(folder), "--all-images")
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.startswith("48 images - loss: ")  # mixed sizes, as trained
    wide = str(folder / "red" / "3.png")  # 10x16: padded and resized
    result = run("predict", str(out), wide, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["top"][0]["class"] == "red"
    result = run("visualize", str(out), wide, "--out", str(tmp_path / "maps.png"))
    assert result.returncode == 0, result.stderr
    result = run("train", *args, "--color-mode", "grayscale", "--image-size", "14", "12",
                 "--epochs", "1", "--out", str(tmp_path / "g.safetensors"))
    assert result.returncode == 0, result.stderr
    assert "Images: grayscale, 14x12" in result.stdout
    assert cnnumpy.load_model(str(tmp_path / "g.safetensors")).input_shape == (14, 12, 1)
    result = run("train", *args, "--epochs", "2", "--resume", str(tmp_path / "g.safetensors"),
                 "--out", str(tmp_path / "g2.safetensors"))  # converted as the checkpoint was
    assert result.returncode == 0, result.stderr
    assert "Images:" not in result.stdout and "Holding out 6 images" in result.stdout
    assert cnnumpy.load_model(str(tmp_path / "g2.safetensors")).preprocessing["image_size"] \
        == [14, 12]
