"""The command line, driven through real subprocesses."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

PIL = pytest.importorskip("PIL.Image")


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cnnumpy", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def striped_images(n=96, size=12, seed=0):
    """Three easy classes: a bright band at the top, middle or bottom."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, size, size))
    band = size // 3
    for c in range(3):
        images[labels == c, band * c: band * (c + 1), :] = 255
    return images, labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An IDX folder, a model trained on it by the CLI, and the CLI's output."""
    folder = tmp_path_factory.mktemp("idx")
    images, labels = striped_images()
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    out = folder / "m.safetensors"
    result = run("train", "--data", str(folder), "--model", "simple", "--epochs", "6",
                 "--batch-size", "16", "--lr", "0.01", "--out", str(out),
                 "--checkpoint-dir", str(folder / "ckpt"), "--plot", str(folder / "curves.png"))
    return folder, out, result


def assert_png(path, min_size=(100, 100)):
    with PIL.open(path) as img:
        assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1]
        pixels = np.asarray(img.convert("L"))
    assert pixels.std() > 5  # not blank


def test_train_reports_accuracy_saves_model_checkpoints_and_curves(trained):
    folder, out, result = trained
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.9
    assert out.is_file()
    assert sorted(p.name for p in (folder / "ckpt").iterdir()) == [
        f"epoch-{e:03d}.safetensors" for e in range(1, 7)]
    assert_png(folder / "curves.png")


def test_resume_continues_from_the_checkpoint_epoch(trained):
    folder, _, _ = trained
    out = folder / "resumed.safetensors"
    result = run("train", "--data", str(folder), "--epochs", "7", "--batch-size", "16",
                 "--resume", str(folder / "ckpt" / "epoch-006.safetensors"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "after epoch 6" in result.stdout
    assert "Epoch 7/7" in result.stdout and "Epoch 6/7" not in result.stdout


def test_evaluate_prints_per_class_accuracy_and_confusion_matrix(trained):
    folder, out, _ = trained
    result = run("evaluate", str(out), "--data", str(folder), "--plot", str(folder / "cm.png"))
    assert result.returncode == 0, result.stderr
    assert "Per-class accuracy" in result.stdout and "Confusion matrix" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("  ") and
            len(line.split()) == 4 and "(" not in line]
    assert sum(int(v) for row in rows for v in row.split()[1:]) == 96
    assert_png(folder / "cm.png")


def test_predict_and_visualize_an_image_file(trained, tmp_path):
    folder, out, _ = trained
    images, labels = striped_images(3, size=24, seed=1)  # another size: the CLI resizes
    paths = []
    for i, img in enumerate(images):
        path = tmp_path / f"img{i}.png"
        PIL.fromarray(img.astype(np.uint8)).convert("RGB").save(path)
        paths.append(str(path))
    result = run("predict", str(out), *paths, "--top-k", "2", "--json")
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert [p["top"][0]["index"] for p in predictions] == labels.tolist()
    assert all(len(p["top"]) == 2 for p in predictions)
    maps = tmp_path / "maps.png"
    result = run("visualize", str(out), paths[0], "--out", str(maps))
    assert result.returncode == 0, result.stderr
    assert_png(maps)
    summary = run("summary", str(out))
    assert summary.returncode == 0 and "Conv2D" in summary.stdout


def test_a_folder_without_t10k_files_holds_out_its_last_images_as_the_test_set(tmp_path,
                                                                             monkeypatch):
    from cnnumpy import cli_data

    images, labels = striped_images(60)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    data = cli_data.load_data(str(tmp_path))
    assert data.held_out and len(data.train[0]) == 50  # at most a sixth: 10 of 60
    np.testing.assert_array_equal(data.test[1], labels[50:])
    np.testing.assert_array_equal(np.round(data.test[0][..., 0] * 255), images[50:])
    monkeypatch.setattr(cli_data, "HELD_OUT", 4)
    (x, y), (x_test, y_test) = cli_data.load_data(str(tmp_path))[:2]
    assert len(x) == 56 and np.array_equal(y_test, labels[56:])
    help_text = " ".join(run("train", "--help").stdout.split())
    assert "train-* files only has its last 10,000 images" in help_text


def test_a_pickle_is_refused_by_every_command(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04K\x01.")
    result = run("summary", str(path))
    assert result.returncode == 1 and "this is a pickle" in result.stderr


@pytest.mark.slow
def test_the_main_job_reaches_98_percent_on_the_bundled_digits(tmp_path):
    """The README's first command: `cnnumpy train` with no arguments (about 45 s on 2 cores)."""
    result = run("train", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy: ")[1].split()[0])
    assert accuracy >= 0.98, result.stdout[-2000:]
    assert (tmp_path / "model.safetensors").is_file()
    assert "Saved model to model.safetensors" in result.stdout


def test_model_from_a_json_config_and_resume_needs_optimizer_state(trained, tmp_path):
    folder, out, _ = trained
    import cnnumpy
    from cnnumpy import layers

    config = cnnumpy.Sequential([layers.Conv2D(4, 3, input_shape=(12, 12, 1)), layers.Flatten(),
                                 layers.Dense(3, activation="softmax")]).get_config()
    path = tmp_path / "net.json"
    path.write_text(json.dumps(config))
    result = run("train", "--data", str(folder), "--model", str(path), "--epochs", "1",
                 "--out", str(tmp_path / "j.safetensors"))
    assert result.returncode == 0, result.stderr
    trained_config = cnnumpy.load_model(str(tmp_path / "j.safetensors")).get_config()
    def names(cfg):
        return [(item["class_name"], item["config"]["name"]) for item in cfg["layers"]]

    assert names(trained_config) == names(config)  # the JSON's layers, names included
    # A file without optimizer state (here: a model never compiled) cannot be resumed from.
    bare = cnnumpy.Sequential.from_config(cnnumpy.load_model(str(out)).get_config())
    bare.build()
    bare.save(str(tmp_path / "bare.safetensors"))
    result = run("train", "--data", str(folder), "--resume", str(tmp_path / "bare.safetensors"),
                 "--out", str(tmp_path / "r.safetensors"))
    assert result.returncode == 1 and "no optimizer state" in result.stderr


def test_ink_on_paper_digits_are_predicted_as_the_light_on_dark_originals(tmp_path):
    import cnnumpy

    out = tmp_path / "digits.safetensors"
    result = run("train", "--model", "simple", "--epochs", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert cnnumpy.load_model(str(out)).preprocessing == {
        "color_mode": "grayscale", "image_size": [28, 28], "background": 0.0}  # MNIST: dark
    digits = np.round(cnnumpy.datasets.load_mnist_sample()[1][0][:30, ..., 0] * 255)
    originals, paper = [], []
    for i, digit in enumerate(digits.astype(np.uint8)):
        originals.append(str(tmp_path / f"o{i}.png"))
        paper.append(str(tmp_path / f"p{i}.png"))
        PIL.fromarray(digit).save(originals[-1])
        PIL.fromarray(255 - digit).save(paper[-1])  # dark ink on light paper

    def top(paths, *flags):
        result = run("predict", str(out), *paths, "--json", *flags)
        assert result.returncode == 0, result.stderr
        return np.array([p["top"][0]["index"] for p in json.loads(result.stdout)])

    expected = top(originals)
    assert np.mean(top(paper) == expected) >= 0.9
    assert np.mean(top(paper, "--no-invert") == expected) < 0.5  # inverting is what matters


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
    model = cnnumpy.load_model(str(out))
    assert model.input_shape == (12, 12, 3)
    assert model.preprocessing["color_mode"] == "rgb"
    assert model.preprocessing["image_size"] == [12, 12]
    evaluated = run("evaluate", str(out), "--data", str(folder))
    assert evaluated.returncode == 0, evaluated.stderr
    assert float(evaluated.stdout.split("accuracy: ")[1].split()[0]) > 0.9  # grey: 1/3
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


def test_predict_with_a_model_file_without_conversion_settings(trained, tmp_path):
    import cnnumpy

    folder, out, _ = trained
    old = cnnumpy.load_model(str(out))
    old.preprocessing = None  # as a file from before, or a model built in Python
    old.save(str(tmp_path / "old.safetensors"))
    images, labels = striped_images(3, size=24, seed=1)
    paths = [str(tmp_path / f"s{i}.png") for i in range(3)]
    for img, path in zip(images, paths, strict=True):
        PIL.fromarray(255 - img.astype(np.uint8)).save(path)  # opposite polarity: kept as is
    for model in (out, tmp_path / "old.safetensors"):
        result = run("predict", str(model), *paths, "--json", "--no-invert")
        assert result.returncode == 0, result.stderr
        first = [p["top"][0] for p in json.loads(result.stdout)]
        if model == out:
            expected = first
    assert first == expected  # the same conversion, from the input shape alone
