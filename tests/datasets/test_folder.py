"""load_image_folder on small folders of images made with Pillow in tmp_path."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest

from cnnumpy import backend
from cnnumpy.datasets import DatasetError, load_image_folder
from cnnumpy.datasets.split import in_test_split


@pytest.fixture
def pil():
    return pytest.importorskip("PIL.Image", reason="Pillow is needed to make test images")


def save(pil, path, value=51, size=(4, 6), mode="L", fmt=None):
    """Write a flat image of ``size`` (height, width) filled with ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.new(mode, (size[1], size[0]), value).save(path, format=fmt)
    return path


def digits(pil, root, per_class=2, classes=("seven", "one")):
    for c, name in enumerate(classes):
        for i in range(per_class):
            save(pil, root / name / f"{i}.png", value=10 * (c + 1) + i)
    return root


def test_classes_sorted_and_formats(tmp_path, pil):
    save(pil, tmp_path / "b" / "x.png", value=51)
    save(pil, tmp_path / "b" / "y.BMP", value=102)
    save(pil, tmp_path / "a" / "z.gif", value=255)
    save(pil, tmp_path / "a" / "w.jpg", value=0)
    save(pil, tmp_path / "a" / ".hidden.png", value=7)
    (tmp_path / "notes.txt").write_text("files beside the class folders are skipped")
    with pytest.warns(UserWarning, match="skipped 2 files .*: notes.txt, a/.hidden.png$"):
        x, y, names = load_image_folder(tmp_path)
    assert names == ["a", "b"] and y.dtype == np.int64 and list(y) == [0, 0, 1, 1]
    assert x.dtype == np.float32 and x.shape == (4, 4, 6, 1)
    # a/w.jpg, a/z.gif, b/x.png, b/y.BMP in that order; lossless formats are exact.
    np.testing.assert_array_equal(x[1:, 0, 0, 0], np.float32([255, 51, 102]) / np.float32(255))
    assert abs(float(x[0].max())) < 0.02


def test_color_modes(tmp_path, pil):
    save(pil, tmp_path / "c" / "rgb.png", value=(200, 100, 50), mode="RGB")
    save(pil, tmp_path / "c" / "gray.png", value=90)
    save(pil, tmp_path / "c" / "alpha.png", value=(0, 0, 255, 10), mode="RGBA")
    x, _, _ = load_image_folder(tmp_path, color_mode="rgb")
    assert x.shape == (3, 4, 6, 3)
    np.testing.assert_allclose(x[0, 0, 0], [0, 0, 1], atol=1e-7)  # alpha dropped
    np.testing.assert_allclose(x[1, 0, 0], [90 / 255] * 3, atol=1e-7)
    np.testing.assert_allclose(x[2, 0, 0], [200 / 255, 100 / 255, 50 / 255], atol=1e-7)
    g, _, _ = load_image_folder(tmp_path, color_mode="grayscale")
    luma = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    assert g.shape == (3, 4, 6, 1) and abs(g[2, 0, 0, 0] - luma) < 1.5 / 255


def test_sixteen_bit_and_palette_images(tmp_path, pil):
    (tmp_path / "k").mkdir()
    pil.fromarray(np.full((4, 6), 40000, np.uint16)).save(tmp_path / "k" / "a.png")
    palette = pil.new("P", (6, 4), 1)
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.save(tmp_path / "k" / "b.png", transparency=bytes([0, 128]))  # half see-through
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, _, _ = load_image_folder(tmp_path)
    np.testing.assert_allclose(x[:, 0, 0, 0], [40000 / 65535, 1.0], rtol=1e-6)


def test_resize_or_one_size(tmp_path, pil):
    save(pil, tmp_path / "a" / "1.png", size=(4, 6))
    odd = save(pil, tmp_path / "a" / "2.png", size=(5, 6))
    save(pil, tmp_path / "b" / "3.png", size=(9, 3))
    x, _, _ = load_image_folder(tmp_path, image_size=(8, 2))
    assert x.shape == (3, 8, 2, 1)
    np.testing.assert_allclose(x, 51 / 255, atol=1e-6)
    with pytest.raises(DatasetError, match="image_size") as info:
        load_image_folder(tmp_path)
    assert str(odd) in str(info.value) and "(5, 6)" in str(info.value)


def test_validation_split_is_seeded(tmp_path, pil):
    digits(pil, tmp_path, per_class=10)
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    (xt, yt), (xv, yv), names = load_image_folder(tmp_path, validation_split=0.25, seed=3)
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert len(xv) == 5 and len(xt) == 15 and names == ["one", "seven"]
    values = np.concatenate([xt[:, 0, 0, 0], xv[:, 0, 0, 0]])
    assert len(np.unique(values)) == 20  # every image exactly once
    (xt2, _), (xv2, yv2), _ = load_image_folder(tmp_path, validation_split=0.25, seed=3)
    np.testing.assert_array_equal(xv, xv2)
    np.testing.assert_array_equal(yv, yv2)
    (_, _), (xv3, _), _ = load_image_folder(tmp_path, validation_split=0.25, seed=4)
    assert not np.array_equal(xv, xv3)


def test_split_without_seed_uses_the_library_generator(tmp_path, pil):
    digits(pil, tmp_path, per_class=10)
    saved = backend.rng_state()
    try:
        backend.set_seed(11)
        first = load_image_folder(tmp_path, validation_split=0.5)[1][0]
        backend.set_seed(11)
        again = load_image_folder(tmp_path, validation_split=0.5)[1][0]
    finally:
        backend.set_rng_state(saved)
    np.testing.assert_array_equal(first, again)
    with pytest.raises(DatasetError, match="validation"):
        load_image_folder(tmp_path, validation_split=0.01)


BAD = {"empty.png": "0 bytes", "cut.png": "not a readable image",
       "text.png": "not a readable image", "tiff.png": "TIFF",
       "nested": "folder inside", "link.png": "outside", "linked_class": "outside"}


def add_bad(pil, tmp_path, root, name):
    """Add to ``root`` the bad entry ``name`` of BAD."""
    folder = root / "one"
    if name == "empty.png":
        (folder / name).write_bytes(b"")
    elif name == "cut.png":
        good = (folder / "0.png").read_bytes()
        (folder / name).write_bytes(good[: len(good) // 2])
    elif name == "text.png":
        (folder / name).write_text("this is not an image at all")
    elif name == "tiff.png":
        save(pil, folder / name, fmt="TIFF")
    elif name == "nested":
        (folder / name).mkdir()
    else:
        outside = save(pil, tmp_path / "elsewhere" / "secret.png")
        target = outside if name == "link.png" else outside.parent
        os.symlink(target, (folder if name == "link.png" else root) / name)


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_entry_is_named(tmp_path, pil, name):
    root = digits(pil, tmp_path / "root")
    add_bad(pil, tmp_path, root, name)
    with pytest.raises(DatasetError, match=BAD[name]) as info:
        load_image_folder(root)
    assert name in str(info.value)


def test_skip_warns_and_keeps_the_good_images(tmp_path, pil):
    root = digits(pil, tmp_path / "root")
    for name in BAD:
        add_bad(pil, tmp_path, root, name)
    (root / "one" / "notes.txt").write_text("skipped, not an error")
    with pytest.warns(UserWarning) as record:
        x, y, names = load_image_folder(root, on_error="skip")
    messages = [str(w.message) for w in record]
    assert len(messages) == len(BAD) + 1 and "skipped 1 file " in messages[-1]
    assert all(any(name in m and BAD[name] in m for m in messages) for name in BAD)
    assert names == ["one", "seven"] and x.shape == (4, 4, 6, 1)


def test_folder_errors(tmp_path, pil):
    with pytest.raises(DatasetError, match="no such folder"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    save(pil, tmp_path / "flat" / "a.png")
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_image_folder(tmp_path / "flat")
    root = digits(pil, tmp_path / "root")
    (root / "zero").mkdir()
    with pytest.raises(DatasetError, match="'zero' holds no readable images") as info:
        load_image_folder(root)
    assert str(root / "zero") in str(info.value)
    (root / "zero" / "bad.png").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="'zero'"):
        load_image_folder(root, on_error="skip")


def test_symlink_inside_root_is_fine(tmp_path, pil):
    root = digits(pil, tmp_path)
    os.symlink(root / "one" / "0.png", root / "seven" / "alias.png")
    x, y, _ = load_image_folder(root)
    assert len(x) == 5 and list(y) == [0, 0, 1, 1, 1]


@pytest.mark.parametrize("kwargs, match", [
    ({"image_size": (0, 4)}, "image_size"), ({"image_size": 28}, "image_size"),
    ({"color_mode": "cmyk"}, "color_mode"), ({"validation_split": 1.0}, "validation_split"),
    ({"on_error": "ignore"}, "on_error"), ({"seed": -1}, "seed"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_image_folder(tmp_path, **kwargs)


def test_missing_pillow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.delitem(sys.modules, "PIL.Image", raising=False)
    with pytest.raises(ImportError, match=r'pip install pillow'):
        load_image_folder(tmp_path)


def test_hidden_and_non_image_files_are_skipped_in_one_warning(tmp_path, pil):
    root = digits(pil, tmp_path / "root", per_class=2)
    (root / "README.txt").write_text("about these images")
    (root / ".git").mkdir()
    (root / "one" / "notes.txt").write_text("a note")
    (root / "one" / "Thumbs.db").write_bytes(b"\x00" * 10)
    (root / "seven" / ".DS_Store").write_bytes(b"\x00" * 10)
    save(pil, root / "seven" / "._0.png")  # a macOS resource fork, hidden
    save(pil, root / "seven" / ".ipynb_checkpoints" / "0.png")  # a hidden folder
    with pytest.warns(UserWarning) as record:
        x, y, names = load_image_folder(root)
    (message,) = [str(w.message) for w in record]
    assert "skipped 7 files that are hidden or not images" in message
    assert ".git, README.txt, one/Thumbs.db, ..." in message
    assert names == ["one", "seven"] and list(y) == [0, 0, 1, 1]
    (root / "seven" / "broken.png").write_text("named as an image: still an error")
    with pytest.raises(DatasetError, match="broken.png: not a readable image"):
        load_image_folder(root)


def test_a_folder_without_extra_files_loads_without_warnings(tmp_path, pil):
    root = digits(pil, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, _, _ = load_image_folder(root)
    assert len(x) == 4


def classes_of_sizes(pil, root, sizes):
    for c, size in enumerate(sizes):
        for i in range(size):
            save(pil, root / f"c{c}" / f"img{i:03d}.png", value=(7 * c + i) % 256)
    return root


def test_test_split_is_stratified_fixed_and_mixes_the_classes(tmp_path, pil):
    root = classes_of_sizes(pil, tmp_path / "root", [30, 12, 5])
    everything, labels, _ = load_image_folder(root)
    saved = backend.rng_state()
    try:
        backend.set_seed(1)
        (x, y), (x_test, y_test), names = load_image_folder(root, test_split=True)
        backend.set_seed(2)  # another seed, another folder with the same files: the same split
        copy = classes_of_sizes(pil, tmp_path / "copy", [30, 12, 5])
        (x2, y2), (x_test2, y_test2), _ = load_image_folder(copy, test_split=True)
    finally:
        backend.set_rng_state(saved)
    assert names == ["c0", "c1", "c2"]
    assert np.bincount(y_test, minlength=3).tolist() == [5, 2, 0]  # a sixth, rounded down
    assert np.bincount(y, minlength=3).tolist() == [25, 10, 5]
    assert len(set(y[-10:])) > 1  # a tail taken for validation is not one class
    pixels = {tuple(a.ravel()) for a in everything}
    assert {tuple(a.ravel()) for a in np.concatenate([x, x_test])} == pixels
    np.testing.assert_array_equal(x_test, x_test2)
    np.testing.assert_array_equal(x, x2)


def test_test_split_does_not_follow_the_file_names_order():
    paths = [f"a/{i:03d}.png" for i in range(60)]
    mask = in_test_split(paths, np.zeros(60, np.int64))
    assert mask.sum() == 10 and not mask[-10:].all() and not mask[:10].all()
    np.testing.assert_array_equal(in_test_split(paths[::-1], np.zeros(60))[::-1], mask)


def test_adding_an_image_moves_at_most_one_other_between_the_parts():
    paths = [f"a/{i:03d}.png" for i in range(61)]
    before = in_test_split(paths[:60], np.zeros(60, np.int64))
    after = in_test_split(paths, np.zeros(61, np.int64))[:60]
    assert (before != after).sum() <= 1


def test_test_split_arguments(tmp_path, pil):
    root = digits(pil, tmp_path)
    with pytest.raises(ValueError, match="test_split"):
        load_image_folder(root, test_split="yes")
    with pytest.raises(ValueError, match="cannot be combined"):
        load_image_folder(root, test_split=True, validation_split=0.5)
    with pytest.raises(ValueError, match="3 paths but 2 labels"):
        in_test_split(["a", "b", "c"], np.zeros(2))
