"""Graph models for the ONNX and PyTorch export tests: a ResNet basic block, a MobileNetV2
inverted residual, a U-Net level, a model of every merge; and cnnumpy.models' builders
(ResNet-20, MobileNetV2, U-Net) at small sizes."""

from __future__ import annotations

import numpy as np

import cnnumpy
from cnnumpy import layers as L


def built_in(dtype: str, build, *args, **kwargs):
    """``build(*args, **kwargs)`` with ``dtype`` as the default float type."""
    old = cnnumpy.floatx()
    cnnumpy.set_floatx(dtype)
    try:
        return build(*args, **kwargs)
    finally:
        cnnumpy.set_floatx(old)


def builders(dtype: str = "float32", side: int = 32) -> dict:
    """cnnumpy.models' networks, small, with logits out (a saturated softmax would hide
    differences): name -> a function that builds one in ``dtype`` for images ``side``
    pixels on a side."""
    from cnnumpy import models

    return {name: lambda build=build: built_in(dtype, build) for name, build in {
        "resnet20": lambda: models.resnet(20, 10, (side, side, 3), classifier_activation=None),
        "mobilenet_v2": lambda: models.mobilenet_v2(0.35, 10, (side, side, 3),
                                                    classifier_activation=None),
        "unet_transpose": lambda: models.unet((side, side, 1), 3, base_filters=8, depth=3),
        "unet_bilinear": lambda: models.unet((side, side, 1), 3, base_filters=8, depth=3,
                                             upsampling="bilinear"),
    }.items()}


def randomize_batch_norms(model: cnnumpy.Model, seed: int = 0) -> None:
    """Batch-norm weights and statistics away from 1 and 0 (the initializers' kernels kept,
    so that deep networks stay in range)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights({k: rng.uniform(0.5, 1.5, v.shape) if k in ("gamma",
                               "moving_variance") else rng.uniform(-0.3, 0.3, v.shape)
                               for k, v in layer.get_weights().items()})


def randomize(model: cnnumpy.Model, seed: int = 0) -> None:
    """Every weight away from its initial value (batch-norm variances positive), so that
    each one is exercised."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for key, value in layer.params.items():
            if key in ("gamma", "moving_variance"):
                value[...] = rng.uniform(0.5, 1.5, value.shape)
            else:
                value[...] = rng.standard_normal(value.shape) * 0.5


def resnet_block(dtype: str = "float32", shape=(8, 8, 3)) -> cnnumpy.Model:
    """A stem, an identity basic block and one with a strided 1x1 projection shortcut."""
    x = cnnumpy.Input(shape, dtype=dtype)
    h = L.Activation("relu", name="stem_relu")(L.BatchNormalization(name="stem_bn")(
        L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)))
    for i, (filters, stride) in enumerate([(8, 1), (12, 2)]):
        r = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                     name=f"b{i}_conv1")(h)
        r = L.ReLU(name=f"b{i}_relu1")(L.BatchNormalization(name=f"b{i}_bn1")(r))
        r = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"b{i}_conv2")(r)
        r = L.BatchNormalization(name=f"b{i}_bn2")(r)
        s = h
        if stride != 1:
            s = L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"b{i}_down")(h)
            s = L.BatchNormalization(name=f"b{i}_down_bn")(s)
        h = L.Activation("relu", name=f"b{i}_out")(L.Add(name=f"b{i}_add")([r, s]))
    y = L.Dense(5, activation="softmax", name="fc")(L.GlobalAvgPool2D(name="pool")(h))
    return cnnumpy.Model(x, y, name="resnet_block")


def inverted_residual(dtype: str = "float32", shape=(6, 6, 8)) -> cnnumpy.Model:
    """MobileNetV2's block: 1x1 expansion, ReLU6, depthwise 3x3, linear 1x1 projection,
    identity shortcut; then a strided block without one."""
    x = cnnumpy.Input(shape, dtype=dtype)
    h = L.Conv2D(24, 1, use_bias=False, name="expand")(x)
    h = L.ReLU(6.0, name="expand_relu")(L.BatchNormalization(name="expand_bn")(h))
    h = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    h = L.Activation("relu6", name="dw_relu")(L.BatchNormalization(name="dw_bn")(h))
    h = L.BatchNormalization(name="project_bn")(L.Conv2D(8, 1, use_bias=False,
                                                         name="project")(h))
    h = L.Add(name="add")([x, h])
    h = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw2",
                          activation="relu6")(h)
    y = L.Conv2D(4, 1, name="head")(h)
    return cnnumpy.Model(x, y, name="inverted_residual")


def unet_level(dtype: str = "float32", up: str = "transpose", shape=(8, 8, 2)) -> cnnumpy.Model:
    """Encoder convolutions, max pooling, a bottleneck, up again (Conv2DTranspose, or
    UpSampling2D and a 1x1 convolution), Concatenate with the skip, per-pixel softmax."""
    x = cnnumpy.Input(shape, dtype=dtype)
    c = L.Conv2D(4, 3, padding="same", activation="relu", name="enc1")(x)
    c = L.Conv2D(4, 3, padding="same", activation="relu", name="enc2")(c)
    b = L.Conv2D(6, 3, padding="same", activation="relu", name="mid")(
        L.MaxPool2D(2, name="pool")(c))
    if up == "transpose":
        u = L.Conv2DTranspose(4, 2, strides=2, name="up")(b)
    else:
        u = L.Conv2D(4, 1, name="up")(L.UpSampling2D(2, interpolation=up, name="upsample")(b))
    h = L.Concatenate(name="cat")([u, c])
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="dec")(h)
    y = L.Conv2D(3, 1, activation="softmax", name="head")(h)
    return cnnumpy.Model(x, y, name="unet_level")


def every_merge(dtype: str = "float32", shape=(5, 6, 3)) -> cnnumpy.Model:
    """Each merge layer, on images in both layouts (the input is NHWC in ONNX, a convolution's
    output NCHW), a shared layer called twice, Concatenate over rows, channels and features,
    and a tensor feeding several consumers."""
    x = cnnumpy.Input(shape, dtype=dtype)
    h = L.Conv2D(3, 3, padding="same", name="stem")(x)
    shared = L.Conv2D(3, 1, activation="tanh", name="shared")
    a = L.Add(name="add3")([x, h, shared(h)])
    s = L.Subtract(name="sub")([shared(a), x])
    m = L.Multiply(name="mul")([s, L.Activation("sigmoid", name="gate")(h), h])
    v = L.Average(name="avg")([m, a])
    rows = L.Concatenate(axis=1, name="cat_rows")([v, x])
    cols = L.Concatenate(axis=2, name="cat_cols")([rows, L.ZeroPadding2D(
        ((0, 5), (0, 0)), name="pad")(h)])
    chans = L.Concatenate(name="cat_chans")([cols, cols])
    f = L.Flatten(name="flat")(chans)
    g = L.Dense(6, name="dense")(f)
    fx, fh = L.Flatten(name="flat_x")(x), L.Flatten(name="flat_h")(h)
    k = L.Dense(2, name="dense2")(L.Concatenate(name="cat_flat")([fx, fh]))
    e = L.Add(name="add_flat")([L.Flatten(name="flat_v")(v), L.Flatten(name="flat_m")(m)])
    e = L.Dense(3, name="dense3")(L.BatchNormalization(name="bn_flat")(e))
    shared = L.Dense(2, activation="tanh", name="shared_dense")
    y = L.Concatenate(name="cat_features")([g, k, e, shared(fx), shared(fh), g])
    return cnnumpy.Model(x, y, name="every_merge")


ARCHITECTURES = {
    "resnet_basic_blocks": resnet_block,
    "mobilenet_v2_inverted_residual": inverted_residual,
    "unet_level_conv_transpose": unet_level,
    "unet_level_upsampling_nearest": lambda dtype="float32": unet_level(dtype, "nearest"),
    "unet_level_upsampling_bilinear": lambda dtype="float32": unet_level(dtype, "bilinear"),
    "every_merge": every_merge,
}
