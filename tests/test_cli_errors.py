"""Every mistake reachable from the command line, through real subprocesses: exit status 1
(a failure) or 2 (a usage error), exactly one line on stderr naming the file or argument, no
traceback, and no training started.

The cases run concurrently in one fixture (each is a fresh interpreter that stops early), so
the whole table costs a few seconds; each case is still its own test.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers

PIL = pytest.importorskip("PIL.Image")

MODEL = "m.safetensors"  # a 3-class model for 12x12 grey images, in the fixture's folder

# (arguments, exit status, what stderr must name); paths are relative to the fixture folder.
CASES = [
    # --- usage errors: argparse, one line
    ([], 2, "required: command"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    (["train", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["train", "--epochs", "0"], 2, "--epochs: expected an integer >= 1, received '0'"),
    (["train", "--batch-size", "0"], 2, "--batch-size: expected an integer >= 1"),
    (["train", "--lr", "nan"], 2, "--lr: expected a finite number > 0, received 'nan'"),
    (["train", "--val-split", "1.5"], 2, "--val-split: expected a number in [0, 1)"),
    (["train", "--optimizer", "adagrad"], 2, "--optimizer: invalid choice: 'adagrad'"),
    (["predict", MODEL, "ok.png", "--top-k", "0"], 2, "--top-k: expected an integer >= 1"),
    (["export", MODEL], 2, "required: --onnx"),
    (["train", "--augment", "rotate"], 2, "--augment: expected names among shift, flip"),
    (["train", "--image-size", "0", "4"], 2, "--image-size: expected an integer >= 1"),
    (["train", "--color-mode", "cmyk"], 2, "--color-mode: invalid choice: 'cmyk'"),
    # --- bad data folders and files
    (["train", "--data", "missing"], 1, "--data 'missing': expected mnist-sample"),
    (["train", "--data", "empty"], 1, "empty: no class sub-folders"),
    (["train", "--data", "emptyclass"], 1, "class folder 'b' holds no readable images"),
    (["train", "--data", "badimages"], 1, "badimages/a/x.png: not a readable image"),
    (["train", "--data", "badmagic"], 1, "badmagic/train-images-idx3-ubyte: bad magic"),
    (["train", "--data", "badgzip"], 1, "badgzip/train-images-idx3-ubyte.gz"),
    (["train", "--data", "mismatch"], 1, "holds 20 images but mismatch/train-labels"),
    (["train", "--data", "t10konly"], 1, "--data 't10konly': only t10k-* (test) IDX files"),
    (["evaluate", MODEL, "--data", "partial"], 1,
     "--data 'partial': holds train-images-idx3-ubyte but no complete IDX pair"),
    (["train", "--data", "idxnames"], 1, "idxnames/classes.txt: names 2 classes, but the "
                                         "labels need 3"),
    (["train", "--data", "idx", "--class-names", "a,b"], 1,
     "--class-names 'a,b': names 2 classes, but the labels need 3"),
    (["evaluate", MODEL, "--data", "tiny"], 1, "--data 'tiny': no test images"),
    (["train", "--data", "idx", "--image-size", "8", "8"], 1,
     "--image-size: applies to a folder of class sub-folders of images; --data 'idx'"),
    (["train", "--color-mode", "rgb"], 1, "--color-mode rgb: applies to a folder of class"),
    (["train", "--data", "t10konly", "--image-size", "8", "8"], 1,
     "--image-size: applies to a folder of class sub-folders of images; --data 't10konly'"),
    # --- bad models and model configs
    (["train", "--data", "idx", "--model", "resnet"], 1, "unknown model 'resnet'"),
    (["train", "--data", "idx", "--model", "missing.json"], 1, "'missing.json' not found"),
    (["train", "--data", "idx", "--model", "bad.json"], 1, "'bad.json' is not valid JSON"),
    (["train", "--data", "idx", "--model", "list.json"], 1, "must be a JSON object"),
    (["train", "--data", "idx", "--model", "unknown.json"], 1, "unknown layer class 'Nope'"),
    (["train", "--data", "idx", "--model", "units.json"], 1, "units must be a positive int"),
    (["train", "--data", "idx", "--model", "five.json"], 1, "outputs (5,), but the data has 3"),
    (["train", "--data", "idx", "--val-split", "0.95"], 1,  # 20 images, 3 held out (no t10k)
     "validation_split=0.95 of 17 samples leaves no samples for validation or for training"),
    # --- resuming from a file that does not fit
    (["train", "--data", "idx", "--resume", "missing.safetensors"], 1, "no model file"),
    (["train", "--data", "idx", "--resume", "pickle.safetensors"], 1, "this is a pickle"),
    (["train", "--data", "idx", "--resume", "bare.safetensors"], 1, "no optimizer state"),
    (["train", "--data", "idx9", "--resume", MODEL], 1,
     "--data 'idx9': labels from 0 to 8, but the model 'm.safetensors' has 3 classes"),
    (["train", "--data", "idx28", "--resume", MODEL], 1,
     "--data 'idx28': images of shape (28, 28, 1), but the model 'm.safetensors' takes"),
    # --- outputs that cannot be written (read-only and full folders: test_output_folder.py)
    (["train", "--data", "idx", "--out", "missing/m.safetensors"], 1,
     "--out 'missing/m.safetensors': cannot write to folder"),
    (["train", "--data", "idx", "--out", "afile/m.safetensors"], 1, "(Not a directory)"),
    (["train", "--data", "idx", "--out", "empty"], 1, "--out 'empty': 'empty' is a folder"),
    (["train", "--data", "idx", "--checkpoint-dir", "afile"], 1,
     "--checkpoint-dir 'afile': cannot create the folder"),
    (["train", "--data", "idx", "--plot", "missing/c.png"], 1, "--plot 'missing/c.png'"),
    # --- evaluate, predict, summary, visualize, export
    (["evaluate", "garbage.safetensors"], 1, "garbage.safetensors: not a cnnumpy model file"),
    (["evaluate", "short.safetensors"], 1, "short.safetensors: tensor 'layers.2.kernel'"),
    (["evaluate", MODEL, "--data", "idx9"], 1, "labels from 0 to 8, but the model"),
    (["evaluate", MODEL, "--data", "idx", "--plot", "missing/cm.png"], 1, "--plot"),
    (["predict", MODEL, "missing.png"], 1, "missing.png: no such image file"),
    (["predict", MODEL, "bad.png"], 1, "bad.png: not a readable image"),
    (["predict", "names.safetensors", "ok.png"], 1, "names 2 classes but the model outputs 3"),
    (["summary", "empty.safetensors"], 1, "empty.safetensors: too short to be a model file"),
    (["summary", "empty"], 1, "no model file at 'empty'"),
    (["visualize", MODEL, "bad.png", "--out", "v.png"], 1, "bad.png: not a readable image"),
    (["export", MODEL, "--onnx", "o.onnx", "--opset", "2"], 1, "opset must be an int"),
    (["export", MODEL, "--onnx", "missing/o.onnx"], 1, "--onnx 'missing/o.onnx'"),
]


def write_idx(folder, prefix, images, labels, compress=False):
    folder.mkdir(exist_ok=True)
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
        data = header + b"".join(struct.pack(">I", d) for d in array.shape)
        data += array.astype(np.uint8).tobytes()
        name = f"{prefix}-{kind}-ubyte"
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data)[:-8])  # cut short
        else:
            (folder / name).write_bytes(data)


def make_files(root):
    """Every bad (and the few good) inputs the cases name."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 12, 12))
    write_idx(root / "idx", "train", images, rng.integers(0, 3, 20))
    write_idx(root / "idx9", "train", images, np.arange(20) % 9)
    write_idx(root / "idx28", "train", rng.integers(0, 255, (20, 28, 28)), np.arange(20) % 3)
    write_idx(root / "mismatch", "train", images, rng.integers(0, 3, 19))
    write_idx(root / "t10konly", "t10k", images, np.arange(20) % 3)
    write_idx(root / "partial", "train", images, np.arange(20) % 3)
    (root / "partial" / "train-labels-idx1-ubyte").unlink()
    write_idx(root / "idxnames", "train", images, np.arange(20) % 3)
    (root / "idxnames" / "classes.txt").write_text("zero\none\n")
    for name in ("a", "b", "c"):  # 2 images a class: too few for a test split
        (root / "tiny" / name).mkdir(parents=True)
        for i in range(2):
            PIL.fromarray(images[i].astype(np.uint8)).save(root / "tiny" / name / f"{i}.png")
    write_idx(root / "badgzip", "train", images, rng.integers(0, 3, 20), compress=True)
    write_idx(root / "badmagic", "train", images, rng.integers(0, 3, 20))
    (root / "badmagic" / "train-images-idx3-ubyte").write_bytes(b"\x01\x02" + bytes(30))
    for folder in ("empty", "emptyclass/a", "emptyclass/b", "badimages/a"):
        (root / folder).mkdir(parents=True)
    PIL.fromarray(np.zeros((12, 12), np.uint8)).save(root / "emptyclass" / "a" / "0.png")
    (root / "badimages" / "a" / "x.png").write_bytes(b"not a png")
    PIL.fromarray(images[0].astype(np.uint8)).save(root / "ok.png")
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    (root / "afile").write_text("a file, not a folder")
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.Conv2D(2, 3, input_shape=(12, 12, 1)), layers.Flatten(),
                                layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.build()
    model.save(str(root / MODEL))
    data = (root / MODEL).read_bytes()
    (root / "short.safetensors").write_bytes(data[: len(data) // 2])
    (root / "garbage.safetensors").write_bytes(bytes(range(256)) * 2)
    (root / "empty.safetensors").write_bytes(b"")
    (root / "pickle.safetensors").write_bytes(pickle.dumps({"a": 1}))
    model.class_names = ["cat", "dog"]  # one name short
    model.save(str(root / "names.safetensors"))
    bare = cnnumpy.Sequential.from_config(model.get_config())
    bare.build()
    bare.save(str(root / "bare.safetensors"))
    five = cnnumpy.Sequential([layers.Flatten(input_shape=(12, 12, 1)), layers.Dense(5)])
    configs = {"bad.json": "{not json", "list.json": "[1, 2]",
               "unknown.json": json.dumps({"layers": [{"class_name": "Nope", "config": {}}]}),
               "units.json": json.dumps({"layers": [{"class_name": "Dense",
                                                     "config": {"units": -1}}]}),
               "five.json": json.dumps(five.get_config())}
    for name, text in configs.items():
        (root / name).write_text(text)


def run_cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "cnnumpy", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-errors")
    make_files(root)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        done = list(pool.map(lambda case: run_cli(case[0], root), CASES))
    return dict(zip(range(len(CASES)), done, strict=True)), root


@pytest.mark.parametrize("index", range(len(CASES)),
                         ids=[" ".join(args) or "(none)" for args, _, _ in CASES])
def test_one_line_on_stderr_and_the_documented_status(results, index):
    args, code, message = CASES[index]
    result = results[0][index]
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("cnnumpy") and ": error: " in lines[0]
    assert message in lines[0]
    assert "Epoch" not in result.stdout  # nothing was trained


def test_nothing_was_written_beside_the_inputs(results):
    _, root = results
    leftovers = [p.name for p in root.iterdir() if p.name.endswith((".part", ".onnx", ".png"))
                 and p.name not in ("ok.png", "bad.png")]
    assert leftovers == []
    assert not (root / "model.safetensors").exists()
