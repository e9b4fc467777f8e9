"""prepare_image, the one conversion of an image to a model's input, and its saved settings."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers
from cnnumpy.datasets import folder_settings, image_settings, load_image_folder, prepare_image
from cnnumpy.datasets.folder import image_files
from cnnumpy.io import ModelFormatError

PIL = pytest.importorskip("PIL.Image")


def paper_with_a_square(h=40, w=80):
    """Light paper (230) with a dark 20x20 square (20) in the middle."""
    img = np.full((h, w), 230, np.uint8)
    img[h // 2 - 10:h // 2 + 10, w // 2 - 10:w // 2 + 10] = 20
    return img


def png_bytes(array):
    buffer = io.BytesIO()
    PIL.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bytes_path_and_pillow_image_give_the_same_input(tmp_path):
    img = paper_with_a_square()
    PIL.fromarray(img).save(tmp_path / "a.png")
    settings = {"color_mode": "rgb", "image_size": [16, 16], "background": None}
    x = prepare_image(png_bytes(img), settings)
    assert x.shape == (16, 16, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(prepare_image(tmp_path / "a.png", settings), x)
    np.testing.assert_array_equal(prepare_image(PIL.fromarray(img), settings), x)


def test_the_aspect_ratio_is_kept_by_padding_with_the_background():
    settings = {"color_mode": "grayscale", "image_size": [16, 16], "background": None}
    x = prepare_image(png_bytes(paper_with_a_square()), settings)[..., 0]
    # 40x80 padded to 80x80 with the paper's colour, then 16x16: the square stays square
    # (4x4 in the middle), the padding is paper, not black.
    dark = x < 0.5
    assert dark.sum() == 16 and dark[6:10, 6:10].all()
    np.testing.assert_allclose(x[0], 230 / 255, atol=1e-5)
    np.testing.assert_allclose(x, x.T, atol=1e-5)


def test_the_polarity_follows_the_training_images():
    img = png_bytes(paper_with_a_square())
    dark = {"color_mode": "grayscale", "image_size": [20, 40], "background": 0.0}
    own = prepare_image(img, dark, invert=False)
    np.testing.assert_allclose(own[0, 0], 230 / 255, atol=1e-6)
    np.testing.assert_allclose(prepare_image(img, dark), 1 - own, atol=1e-6)
    for background in (0.9, None, 0.4):  # light like it, unknown, or no clear background
        np.testing.assert_array_equal(prepare_image(img, {**dark, "background": background}),
                                      own)


def test_match_polarity_of_a_batch_is_each_images_own():
    from cnnumpy.datasets.images import match_polarity

    rng = np.random.default_rng(0)
    batch = rng.uniform(0.0, 0.2, (5, 8, 8, 1)).astype(np.float32)  # dark backgrounds
    batch[[1, 3]] = 1.0 - batch[[1, 3]]  # light ones: inverted for a dark-trained model
    got = match_polarity(batch, 0.05)
    np.testing.assert_array_equal(got, np.stack([match_polarity(x, 0.05) for x in batch]))
    np.testing.assert_array_equal(got[[1, 3]], 1.0 - batch[[1, 3]])
    np.testing.assert_array_equal(got[[0, 2, 4]], batch[[0, 2, 4]])
    assert got.dtype == np.float32
    assert match_polarity(batch, 0.5) is batch and match_polarity(batch, None) is batch


def test_a_folder_padded_to_its_size_is_converted_as_prepare_image(tmp_path):
    (tmp_path / "a").mkdir()
    PIL.fromarray(paper_with_a_square()).save(tmp_path / "a" / "wide.png")
    PIL.fromarray(paper_with_a_square(60, 30)).save(tmp_path / "a" / "tall.png")
    x, _, _ = load_image_folder(tmp_path, image_size=(16, 16), pad_to_aspect_ratio=True)
    settings = {"color_mode": "grayscale", "image_size": [16, 16], "background": None}
    for i, name in enumerate(["tall.png", "wide.png"]):
        np.testing.assert_array_equal(x[i], prepare_image(tmp_path / "a" / name, settings))


def test_folder_settings_find_colour_and_the_most_common_size(tmp_path):
    for i, size in enumerate([(6, 4), (6, 4), (5, 5)]):
        (tmp_path / "g").mkdir(exist_ok=True)
        PIL.new("RGB", size[::-1], (90, 90, 90)).save(tmp_path / "g" / f"{i}.png")
    mode, size, note = folder_settings(tmp_path)
    assert (mode, size) == ("grayscale", (6, 4)) and "1 other images padded" in note
    (tmp_path / "c").mkdir()
    PIL.new("RGB", (3, 3), (90, 100, 90)).save(tmp_path / "c" / "x.png")
    assert folder_settings(tmp_path)[0] == "rgb"
    assert folder_settings(tmp_path, "grayscale", (2, 3))[:2] == ("grayscale", (2, 3))


def test_folder_settings_look_only_at_the_files_load_image_folder_reads(tmp_path):
    """One listing decides which files are a folder's images: a colour image that loading
    leaves out (a symlink leading outside, a hidden file) cannot make the folder rgb."""
    PIL.new("RGB", (5, 5), (200, 0, 0)).save(tmp_path / "red.png")
    root = tmp_path / "root"
    (root / "g").mkdir(parents=True)
    PIL.new("L", (4, 6), 90).save(root / "g" / "a.png")
    PIL.new("RGB", (5, 5), (200, 0, 0)).save(root / "g" / ".hidden.png")
    os.symlink(tmp_path / "red.png", root / "g" / "link.png")
    with pytest.warns(UserWarning) as record:
        x, _, _ = load_image_folder(root, on_error="skip")
    messages = [str(w.message) for w in record]
    assert len(messages) == 2 and "outside the root folder" in messages[0]
    assert "skipped 1 file " in messages[1] and "g/.hidden.png" in messages[1]
    assert len(x) == 1 and image_files(root, on_error="skip") == [str(root / "g" / "a.png")]
    assert folder_settings(root)[:2] == ("grayscale", (6, 4))
    with pytest.raises(ValueError, match="outside the root folder"):
        image_files(root)  # as load_image_folder(root) refuses it


def small_model():
    model = cnnumpy.Sequential([layers.Conv2D(2, 3, input_shape=(8, 6, 3)), layers.Flatten(),
                                layers.Dense(2, activation="softmax")])
    model.build()
    return model


def test_settings_are_saved_with_the_model_and_checked(tmp_path):
    model = small_model()
    path = str(tmp_path / "m.safetensors")
    model.save(path)
    assert cnnumpy.load_model(path).preprocessing is None  # a file without them still loads
    assert image_settings(cnnumpy.load_model(path)) == {
        "color_mode": "rgb", "image_size": [8, 6], "background": None}
    model.preprocessing = {"color_mode": "rgb", "image_size": [8, 6], "background": 0.25}
    model.save(path)
    assert cnnumpy.load_model(path).preprocessing == model.preprocessing
    model.preprocessing = {"color_mode": "grayscale", "image_size": [8, 6], "background": 0.0}
    with pytest.raises(ValueError, match="do not fit the model's input shape"):
        model.save(path)  # refused before writing: the saved file is intact
    assert cnnumpy.load_model(path).preprocessing["background"] == 0.25
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(path, "numpy") as f:
        meta = f.metadata()
    meta["preprocessing"] = '{"color_mode": "rgb", "image_size": [8, 6], "background": 7}'
    save_file(load_file(path), path, metadata=meta)
    with pytest.raises(ModelFormatError, match="preprocessing: expected"):
        cnnumpy.load_model(path)
