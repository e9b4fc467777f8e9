"""The command line, driven through real subprocesses."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

import cnnumpy

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


def test_resume_notes_the_settings_it_does_not_apply(trained):
    """The checkpoint's optimizer (its schedule) and loss go on: --lr and --label-smoothing
    given again with --resume are named on stderr, and change nothing."""
    folder, _, _ = trained
    checkpoint = folder / "ckpt" / "epoch-005.safetensors"
    runs = {}
    for extra in ([], ["--lr", "0.5", "--label-smoothing", "0.2", "--optimizer", "sgd"]):
        out = folder / f"resumed-{len(extra)}.safetensors"
        result = run("train", "--data", str(folder), "--epochs", "6", "--batch-size", "16",
                     "--resume", str(checkpoint), "--out", str(out), *extra)
        assert result.returncode == 0, result.stderr
        runs[len(extra)] = (result.stderr, _weights(out))
    (plain_err, (plain, plain_w)), (noted_err, (noted, noted_w)) = runs[0], runs[6]
    assert "not applied" not in plain_err
    assert "--optimizer, --lr, --label-smoothing not applied" in noted_err
    assert type(noted.optimizer) is type(plain.optimizer)
    assert noted.loss.get_config() == plain.loss.get_config()
    for a, b in zip(noted_w, plain_w, strict=True):
        np.testing.assert_array_equal(a, b)


def _weights(path):
    import cnnumpy

    model = cnnumpy.load_model(str(path))
    return model, [v for layer in model.layers for v in layer.get_weights().values()]


def test_extending_a_finished_cosine_run_replans_the_schedule(trained):
    """The finished 6-epoch run's schedule is at 0; --epochs 8 re-plans it over 8 epochs
    (6 steps each), keeping the 36 steps taken, so training goes on instead of standing."""
    folder, _, _ = trained
    out = folder / "extended.safetensors"
    checkpoint = folder / "ckpt" / "epoch-006.safetensors"
    result = run("train", "--data", str(folder), "--epochs", "8", "--batch-size", "16",
                 "--resume", str(checkpoint), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Cosine schedule re-planned to end at epoch 8" in result.stdout
    assert "0 after 12 more steps" in result.stdout
    model, weights = _weights(out)
    assert model.optimizer.learning_rate.decay_steps == 48
    assert model.optimizer.iterations == 48 and model.optimizer.current_learning_rate == 0
    _, before = _weights(checkpoint)
    assert any(not np.array_equal(a, b) for a, b in zip(weights, before, strict=True))


def test_resuming_an_interrupted_run_equals_the_unbroken_run(trained):
    """Epoch 3 of 6, resumed in a new process: same schedule, shuffles and weights."""
    folder, out, _ = trained
    resumed = folder / "resumed-3.safetensors"
    result = run("train", "--data", str(folder), "--epochs", "6", "--batch-size", "16",
                 "--resume", str(folder / "ckpt" / "epoch-003.safetensors"), "--out", str(resumed))
    assert result.returncode == 0, result.stderr
    assert "re-planned" not in result.stdout
    for a, b in zip(_weights(resumed)[1], _weights(out)[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_refuses_epochs_already_done(trained):
    folder, _, _ = trained
    result = run("train", "--data", str(folder), "--epochs", "6",
                 "--resume", str(folder / "ckpt" / "epoch-006.safetensors"),
                 "--out", str(folder / "never.safetensors"))
    assert result.returncode == 1
    assert "has trained 6 epochs already; --epochs is the run's total, so pass --epochs N " \
           "with N > 6 to train on" in result.stderr
    assert not (folder / "never.safetensors").exists()


def test_cosine_steps_count_global_batches_in_a_distributed_run(monkeypatch):
    import argparse

    from cnnumpy import cli_train, distributed

    args = argparse.Namespace(optimizer=None, lr=None, schedule="cosine", epochs=3,
                              batch_size=10, val_split=0.2, distributed=False, model="lenet")
    assert cli_train.make_optimizer(args, 100).learning_rate.decay_steps == 3 * 8  # 80 / 10
    monkeypatch.setattr(distributed, "size", lambda: 4)
    args.distributed = True
    assert cli_train.make_optimizer(args, 100).learning_rate.decay_steps == 3 * 2  # 80 / 40


def test_a_recipes_optimizer_and_learning_rate():
    """resnet20's recipe: SGD with its momentum and weight decay and its starting rate, unless
    another optimizer is asked for (which gets its own defaults, Adam 2e-3 under cosine)."""
    import argparse

    from cnnumpy import cli_train, models, optimizers

    def make(**given):
        args = argparse.Namespace(**{"optimizer": None, "lr": None, "schedule": "cosine",
                                     "epochs": 1, "batch_size": 10, "val_split": 0.0,
                                     "distributed": False, "model": "resnet20", **given})
        return cli_train.make_optimizer(args, 100)

    def first_lr(**given):
        lr = make(**given).learning_rate
        return getattr(lr, "initial_learning_rate", lr)

    recipe = models.TRAINING_DEFAULTS["resnet20"]
    sgd = make()
    assert type(sgd) is optimizers.SGD and recipe["optimizer"] == "sgd"
    assert (sgd.momentum, sgd.nesterov, sgd.weight_decay) == (0.9, True, 5e-4)
    assert first_lr() == first_lr(optimizer="sgd") == recipe["lr"]
    assert first_lr(lr=0.01) == 0.01  # --lr wins
    adam = make(optimizer="adam")
    assert type(adam) is optimizers.Adam and adam.weight_decay == 0  # not the recipe's
    assert first_lr(optimizer="adam") == first_lr(optimizer="adamw") == models.ADAM_LR
    assert first_lr(model="lenet") == models.ADAM_LR  # no optimizer in its recipe: Adam
    assert type(make(model="lenet")) is optimizers.Adam
    plain = make(model="lenet", optimizer="sgd")
    assert first_lr(model="lenet", optimizer="sgd") == optimizers.SGD().get_config()[
        "learning_rate"] and plain.momentum == 0  # never another optimizer's settings
    assert make(schedule="constant").learning_rate == optimizers.SGD().get_config()[
        "learning_rate"]


def test_a_recipes_shift_share_reaches_its_models_augmentation():
    """resnet20's recipe shifts by up to 5% (one pixel on 28x28), the others by 10%."""
    import argparse

    from cnnumpy import cli_train, models

    def front(model, augment, data="fashion-mnist"):
        args = argparse.Namespace(model=model, augment=augment, data=data)
        built = cli_train.augmented(models.get(model, (28, 28, 1), 10), args)
        return [(type(layer).__name__, getattr(layer, "height_factor", None))
                for layer in built.layers if "Random" in type(layer).__name__]

    assert models.TRAINING_DEFAULTS["resnet20"]["shift"] == 0.05
    assert front("resnet20", True) == [("RandomFlip", None), ("RandomTranslation", 0.05)]
    assert front("resnet20", ("shift",)) == [("RandomTranslation", 0.05)]
    assert front("vgg-small", True) == [("RandomFlip", None), ("RandomTranslation", 0.1)]
    assert front("lenet", True, data="mnist") == [("RandomTranslation", 0.1)]
    assert front("resnet20", ("flip",)) == [("RandomFlip", None)]
    assert front("resnet20", False) == []


def test_threads_flag_sets_the_threads_for_the_command(trained, capsys):
    from cnnumpy import backend, cli

    _, out, _ = trained
    threadpoolctl = pytest.importorskip("threadpoolctl")
    try:
        assert cli.main(["--threads", "1", "summary", str(out)]) == 0
        assert backend.get_num_threads() == 1
        blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
        assert all(lib.get_num_threads() == 1 for lib in blas.lib_controllers)
    finally:
        backend.set_num_threads(None)
    assert "Total params" in capsys.readouterr().out
    result = run("--threads", "0", "summary", str(out))
    assert result.returncode == 2
    assert "argument --threads: expected an integer >= 1, received '0'" in result.stderr


def test_label_smoothing_flag_reaches_the_saved_models_loss(trained, tmp_path):
    folder, out, _ = trained
    assert cnnumpy.load_model(str(out)).loss.label_smoothing == 0  # simple's recipe: none
    smoothed = tmp_path / "s.safetensors"
    result = run("train", "--data", str(folder), "--model", "simple", "--epochs", "1",
                 "--label-smoothing", "0.2", "--out", str(smoothed))
    assert result.returncode == 0, result.stderr
    assert cnnumpy.load_model(str(smoothed)).loss.label_smoothing == 0.2
    result = run("train", "--data", str(folder), "--label-smoothing", "1.5")
    assert result.returncode == 2 and "--label-smoothing" in result.stderr


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


def test_evaluate_scores_a_folder_of_t10k_files_only(trained, tmp_path):
    _, out, _ = trained
    images, labels = striped_images(30, seed=2)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    result = run("evaluate", str(out), "--data", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("30 images - loss: ")


def image_folder(root, per_class=(18, 13, 7), size=12):
    """Class sub-folders of striped PNGs, beside the files people's folders hold."""
    images, labels = striped_images(3 * max(per_class), size=size, seed=3)
    for c, count in enumerate(per_class):
        (root / f"band{c}").mkdir(parents=True)
        for i, img in enumerate(images[labels == c][:count]):
            PIL.fromarray(img.astype(np.uint8)).save(root / f"band{c}" / f"{i:02d}.png")
    (root / "README.txt").write_text("three bands")
    (root / "band0" / ".DS_Store").write_bytes(bytes(8))
    (root / "band1" / "Thumbs.db").write_bytes(bytes(8))
    return root


def test_an_image_folder_trains_reports_test_accuracy_and_evaluate_scores_that_split(tmp_path):
    folder = image_folder(tmp_path / "bands", per_class=(18, 13, 7))  # 3 + 2 + 1 test images
    out = tmp_path / "m.safetensors"
    result = run("train", "--data", str(folder), "--model", "simple", "--epochs", "2",
                 "--batch-size", "8", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "skipped 3 files that are hidden or not images" in result.stdout
    assert "Holding out 6 images as the test set" in result.stdout
    assert "Training on 32 images" in result.stdout
    assert "test accuracy: " in result.stdout and "(6 images)" in result.stdout
    result = run("evaluate", str(out), "--data", str(folder))
    assert result.returncode == 0, result.stderr
    assert "\n6 images - loss: " in result.stdout
    assert "(3 images)" in result.stdout and "(2 images)" in result.stdout
    result = run("evaluate", str(out), "--data", str(folder), "--all-images")
    assert result.returncode == 0 and "\n38 images - loss: " in result.stdout
    help_text = " ".join(run("train", "--help").stdout.split())
    assert "holds out a sixth of each class (rounded down) as its test set" in help_text


def test_augmentations_and_class_names_never_come_from_a_folder_name(tmp_path):
    import cnnumpy

    images, labels = striped_images(24)
    folder = tmp_path / "fashion_data"  # digits, whatever the name says
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", images)
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    common = ["train", "--data", str(folder), "--model", "simple", "--epochs", "1"]
    plain, named = tmp_path / "plain.safetensors", tmp_path / "named.safetensors"
    result = run(*common, "--augment", "--out", str(plain))
    assert result.returncode == 0, result.stderr
    model = cnnumpy.load_model(str(plain))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert "RandomTranslation" in kinds and "RandomFlip" not in kinds
    assert model.class_names == ["0", "1", "2"]
    (folder / "classes.txt").write_text("top\nmiddle\nbottom\n")
    result = run(*common, "--augment", "flip,shift,erase", "--out", str(named))
    assert result.returncode == 0, result.stderr
    model = cnnumpy.load_model(str(named))
    assert [type(layer).__name__ for layer in model.layers][:3] == [
        "RandomFlip", "RandomTranslation", "RandomErasing"]
    assert model.class_names == ["top", "middle", "bottom"]
    result = run(*common, "--no-augment", "--class-names", "a,b,c", "--out", str(named))
    assert result.returncode == 0, result.stderr
    model = cnnumpy.load_model(str(named))
    assert not any("Random" in type(layer).__name__ for layer in model.layers)
    assert model.class_names == ["a", "b", "c"]


def test_class_names_from_a_file_or_commas_and_default_augmentations(tmp_path):
    from cnnumpy import cli_data

    path = tmp_path / "names.txt"
    path.write_text("T-shirt/top\nTrouser\nBag\n")
    assert cli_data.parse_class_names(str(path), 3) == ["T-shirt/top", "Trouser", "Bag"]
    assert cli_data.parse_class_names(" cat, dog ", 2) == ["cat", "dog"]
    for text, message in (("cat,,dog", "empty class name"), ("cat,cat", "more than once"),
                          ("cat", "names 1 classes, but the labels need 2")):
        with pytest.raises(cli_data.CLIError, match=message):
            cli_data.parse_class_names(text, 2)
    assert cli_data.default_augmentations("fashion-mnist") == ("shift", "flip")
    assert cli_data.default_augmentations(str(tmp_path / "fashion-mnist")) == ("shift",)


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
