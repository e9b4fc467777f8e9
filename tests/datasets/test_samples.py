"""The bundled samples load without a network, as documented, and ship with the package."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

from cnnumpy import datasets

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "src" / "cnnumpy" / "datasets"


def test_the_fashion_sample_has_2500_train_and_500_test_images_of_ten_classes():
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist_sample()
    assert x_train.shape == (2500, 28, 28, 1) and y_train.shape == (2500,)
    assert x_test.shape == (500, 28, 28, 1) and y_test.shape == (500,)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    for y in (y_train, y_test):  # every class, none far from a tenth
        counts = np.bincount(y, minlength=10)
        assert len(counts) == 10 and counts.min() > 0.06 * len(y), counts
    names = datasets.FASHION_MNIST_CLASS_NAMES
    assert len(names) == 10 and names[0] == "T-shirt/top" and names[9] == "Ankle boot"


def test_the_fashion_sample_is_not_the_digits_and_its_splits_do_not_overlap():
    (fashion, _), (fashion_test, _) = datasets.load_fashion_mnist_sample()
    (digits, _), _ = datasets.load_mnist_sample()
    assert not np.array_equal(fashion[:100], digits[:100])
    train = {image.tobytes() for image in fashion}
    assert not any(image.tobytes() in train for image in fashion_test)


def test_the_fashion_files_are_the_ones_their_licence_note_lists():
    folder = DATA / "data" / "fashion"
    note = (folder / "LICENSE.md").read_text()
    listed = dict((name, digest) for digest, name in re.findall(r"([0-9a-f]{64})  (\S+)", note))
    files = sorted(p.name for p in folder.glob("*.gz"))
    assert sorted(listed) == files and len(files) == 4
    for name in files:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == listed[name], name
    assert sum((folder / name).stat().st_size for name in files) < 2_000_000


def test_every_bundled_data_file_is_declared_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["cnnumpy.datasets"]
    declared = {path for pattern in patterns for path in DATA.glob(pattern)}  # as setuptools
    files = [path for path in (DATA / "data").rglob("*") if path.is_file()]
    assert any(path.parent.name == "fashion" for path in files)
    assert set(files) <= declared, sorted(str(p) for p in set(files) - declared)
