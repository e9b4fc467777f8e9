"""The graph builders of ``cnnumpy.models``: output shapes, parameter counts, bit-identical
file round trips for every builder, ``--model`` names and configs, augmentation of graphs,
and a U-Net that learns to segment bright shapes on noise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnnumpy
from cnnumpy import models


def trainable_count(model) -> int:
    return sum(int(np.prod(p.shape)) for p in model.trainable_weights()[0])


def output_shape(model, name):
    layer = model.get_layer(name)
    return layer.compute_output_shape(layer.input_shape)


def images(shape, n=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


# small inputs and tiny widths, so that every builder runs in well under a second
BUILDERS = {
    "resnet": lambda: models.resnet(8, num_classes=4, input_shape=(12, 12, 3), width=4),
    "resnet18": lambda: models.resnet18(num_classes=5, input_shape=(32, 32, 3)),
    "mobilenet_v2": lambda: models.mobilenet_v2(0.35, num_classes=3, input_shape=(16, 16, 2)),
    "unet": lambda: models.unet((16, 16, 1), 3, base_filters=4, depth=2),
    "unet_bilinear": lambda: models.unet((8, 12, 2), 2, base_filters=2, depth=2,
                                         upsampling="bilinear"),
    "resnet20": lambda: models.get("resnet20", (28, 28, 1), 10),
    "mobilenet-v2-small": lambda: models.get("mobilenet-v2-small", (28, 28, 1), 10),
}
OUTPUTS = {"resnet": (4,), "resnet18": (5,), "mobilenet_v2": (3,), "unet": (16, 16, 3),
           "unet_bilinear": (8, 12, 2), "resnet20": (10,), "mobilenet-v2-small": (10,)}


@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_saves_loads_and_predicts_bit_identically(name, tmp_path):
    cnnumpy.set_seed(0)
    model = BUILDERS[name]()
    assert isinstance(model, cnnumpy.Model) and model.output_shape == OUTPUTS[name]
    rng = np.random.default_rng(1)
    for layer in model.layers:  # every weight and BN statistic away from its initial value
        layer.set_weights({k: (np.abs(v) + rng.uniform(0.5, 1.5, v.shape)).astype(v.dtype)
                           if k == "moving_variance" else v + rng.normal(0, 0.1, v.shape)
                           .astype(v.dtype) for k, v in layer.get_weights().items()})
    x = images(model.input_shape)
    path = tmp_path / f"{name}.safetensors"
    model.save(path)
    loaded = cnnumpy.load_model(str(path))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    expected = model.predict(x)
    assert expected.shape == (len(x), *OUTPUTS[name])
    np.testing.assert_array_equal(loaded.predict(x), expected)
    if len(OUTPUTS[name]) == 3:  # a U-Net: probabilities per pixel
        np.testing.assert_allclose(expected.sum(-1), 1, rtol=1e-5)


def test_mobilenet_v2_has_keras_counts_names_and_residuals():
    model = models.mobilenet_v2()  # Keras' MobileNetV2(): 3,538,984 params, 34,112 of them BN's
    assert model.count_params() == 3_538_984 and trainable_count(model) == 3_504_872
    assert model.output_shape == (1000,) and model.input_shape == (224, 224, 3)
    assert model.get_layer("Conv1").strides == (2, 2)
    assert model.get_layer("block_16_project").filters == 320
    assert model.get_layer("Conv_1").filters == 1280
    adds = [layer.name for layer in model.layers if isinstance(layer, cnnumpy.layers.Add)]
    assert adds == [f"block_{i}_add" for i in (2, 4, 5, 7, 8, 9, 11, 12, 14, 15)]
    assert model.get_layer("block_1_depthwise").strides == (2, 2)
    assert "block_1_expand" in {layer.name for layer in model.layers}
    assert "block_0_expand" not in {layer.name for layer in model.layers}  # no expansion
    relu6 = model.get_layer("block_3_depthwise_relu")
    assert isinstance(relu6, cnnumpy.layers.ReLU) and relu6.max_value == 6.0


@pytest.mark.parametrize("alpha, channels", [(0.35, [16, 8, 8, 16, 24, 32, 56, 112, 1280]),
                                             (1.4, [48, 24, 32, 48, 88, 136, 224, 448, 1792])])
def test_mobilenet_v2_width_rounds_to_multiples_of_8_as_keras(alpha, channels):
    model = models.mobilenet_v2(alpha, num_classes=2, input_shape=(32, 32, 3))
    names = ["Conv1", "expanded_conv_project", "block_2_project", "block_5_project",
             "block_9_project", "block_12_project", "block_15_project", "block_16_project",
             "Conv_1"]
    assert [model.get_layer(n).filters for n in names] == channels


@pytest.mark.parametrize("shape, small, size", [((32, 32, 3), True, 4), ((28, 28, 1), True, 4),
                                                ((64, 64, 3), False, 2),
                                                ((96, 96, 3), False, 3)])
def test_mobilenet_v2_reduces_the_early_strides_on_small_images(shape, small, size):
    model = models.mobilenet_v2(0.35, num_classes=2, input_shape=shape)
    assert (model.get_layer("Conv1").strides == (1, 1)) == small
    assert (model.get_layer("block_1_depthwise").strides == (1, 1)) == small
    assert output_shape(model, "out_relu")[:2] == (size, size)


def test_mobilenet_v2_small_input_can_be_forced_either_way():
    big = models.mobilenet_v2(0.35, 2, (32, 32, 3), small_input=False)
    assert output_shape(big, "out_relu")[:2] == (1, 1)
    small = models.mobilenet_v2(0.35, 2, (96, 96, 3), small_input=True)
    assert output_shape(small, "out_relu")[:2] == (12, 12)


def test_unet_levels_skips_and_output_shape():
    model = models.unet((32, 48, 3), num_classes=4, base_filters=8, depth=3)
    assert model.output_shape == (32, 48, 4)
    assert output_shape(model, "bottleneck_conv2") == (4, 6, 64)
    for level, (h, w, c) in enumerate([(32, 48, 8), (16, 24, 16), (8, 12, 32)]):
        concat = model.get_layer(f"up{level}_concat")
        assert concat.input_shape == [(h, w, c), (h, w, c)]
        assert output_shape(model, f"up{level}_conv2") == (h, w, c)
        assert isinstance(model.get_layer(f"up{level}_upsample"), cnnumpy.layers.Conv2DTranspose)
    up = models.unet((16, 16, 1), 2, base_filters=4, depth=1, upsampling="nearest")
    assert isinstance(up.get_layer("up0_upsample"), cnnumpy.layers.UpSampling2D)
    assert up.get_layer("up0_upconv").filters == 4


@pytest.mark.parametrize("args, kwargs, match", [
    (((30, 32, 1), 2), {}, "multiples of 2\\*\\*depth = 8"),
    (((32, 32), 2), {}, "\\(H, W, C\\)"),
    (((32, 32, 1), 0), {}, "num_classes"),
    (((32, 32, 1), 2), {"depth": 0}, "depth"),
    (((32, 32, 1), 2), {"upsampling": "cubic"}, "upsampling"),
])
def test_unet_refuses_bad_arguments_by_name(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.unet(*args, **kwargs)


def test_mobilenet_v2_refuses_bad_arguments_by_name():
    with pytest.raises(ValueError, match="alpha"):
        models.mobilenet_v2(0)
    with pytest.raises(ValueError, match="num_classes"):
        models.mobilenet_v2(num_classes=-1)


# ----- --model names, configs and augmentation ------------------------------------------------
def test_cli_names_build_the_graph_models():
    resnet20 = models.get("resnet20", (32, 32, 3), 10)
    assert resnet20.name == "resnet20" and trainable_count(resnet20) == 272_474
    small = models.get("mobilenet-v2-small", (28, 28, 1), 7)
    assert small.output_shape == (7,) and small.get_layer("Conv1").filters == 16
    for name in ("resnet20", "mobilenet-v2-small"):
        assert models.training_defaults(name) == models.TRAINING_DEFAULTS[name]


def test_a_saved_graph_config_builds_with_model_and_must_fit_the_data(tmp_path):
    model = models.resnet(8, num_classes=3, input_shape=(8, 8, 1), width=2)
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(model.get_config()))
    again = models.get(str(path), (8, 8, 1), 3)
    assert isinstance(again, cnnumpy.Model) and again.get_config() == model.get_config()
    with pytest.raises(ValueError, match=r"inputs of shape \(8, 8, 1\).*\(9, 9, 1\)"):
        models.get(str(path), (9, 9, 1), 3)
    with pytest.raises(ValueError, match="outputs \\(3,\\).* 4 classes"):
        models.get(str(path), (8, 8, 1), 4)
    config = model.get_config()
    config["layers"][1]["inbound_nodes"] = [[["nowhere", 0, 0]]]
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing layer 'nowhere'"):
        models.get(str(path), (8, 8, 1), 3)


def test_a_stack_config_still_builds_with_model(tmp_path):
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(models.get("simple", (28, 28, 1), 10).get_config()))
    model = models.get(str(path), (28, 28, 1), 10)
    assert isinstance(model, cnnumpy.Sequential) and model.output_shape == (10,)


@pytest.mark.parametrize("flip, shift, erase", [(True, True, False), (False, True, False),
                                               (True, False, False), (True, True, True)])
def test_augmenting_a_graph_puts_the_layers_in_front_and_shares_the_weights(flip, shift, erase):
    model = models.resnet(8, num_classes=3, input_shape=(8, 8, 1), width=2)
    augmented = models.with_augmentation(model, flip=flip, shift=shift, erase=erase)
    assert isinstance(augmented, cnnumpy.Model) and augmented.name == model.name
    front = ["RandomFlip"] * flip + ["RandomTranslation"] * shift + ["RandomErasing"] * erase
    kinds = [type(layer).__name__ for layer in augmented.layers]
    assert kinds[:1 + len(front)] == ["InputLayer", *front]
    assert augmented.layers[1 + len(front):] == model.layers[1:]  # the same layer objects
    x = images((8, 8, 1))
    np.testing.assert_array_equal(augmented.predict(x), model.predict(x))
    assert augmented.count_params() == model.count_params()


# ----- learning ---------------------------------------------------------------------------
def shapes_on_noise(n: int, size: int, rng: np.random.Generator):
    """Images of one or two bright filled discs or squares on Gaussian noise (std 0.5, the
    shapes 1 brighter); the mask marks the shapes' pixels (class 1)."""
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), np.int64)
    for mask in masks:
        for _ in range(rng.integers(1, 3)):
            cy, cx = rng.integers(2, size - 2, 2)
            r = rng.integers(2, size // 4 + 1)
            if rng.random() < 0.5:
                mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
            else:
                mask[(abs(yy - cy) <= r) & (abs(xx - cx) <= r)] = 1
    x = rng.normal(0, 0.5, (n, size, size, 1)) + masks[..., None]
    return x.astype(np.float32), masks


def test_a_unet_learns_to_segment_bright_shapes_on_noise():
    x, y = shapes_on_noise(320, 16, np.random.default_rng(0))
    (x, y), (x_test, y_test) = (x[:256], y[:256]), (x[256:], y[256:])
    threshold = ((x_test[..., 0] > 0.5) == y_test).mean()  # the best single-pixel rule
    assert 0.75 < 1 - y_test.mean() < 0.85 and threshold < 0.87  # background share; a hard task
    cnnumpy.set_seed(0)
    model = models.unet((16, 16, 1), 2, base_filters=8, depth=2)
    model.compile(cnnumpy.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    accuracy = (model.predict(x_test).argmax(-1) == y_test).mean()
    assert accuracy >= 0.96, accuracy  # per pixel, on 64 images it never saw
