"""Graph models against PyTorch twins in float64: forward, input and weight gradients at
1e-10, for a ResNet basic block with a projection shortcut, a MobileNetV2 inverted residual,
a U-Net level, a shared layer called twice and a tensor feeding several consumers.

The twins are plain torch functions reading the cnnumpy weights (converted inside torch, so
each weight's torch gradient is directly comparable with the layer's ``grads``). BatchNorm
runs in training mode (batch statistics), the harder case for gradients.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers

torch = pytest.importorskip("torch")
F = torch.nn.functional
CLOSE = dict(rtol=1e-10, atol=1e-10)


# ----- weights as torch tensors ---------------------------------------------------------------
def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for key, value in layer.params.items():
            if key == "gamma":
                value[...] = rng.uniform(0.5, 1.5, value.shape)
            else:
                value[...] = rng.standard_normal(value.shape) * 0.5


def torch_params(model):
    return {layer.name: {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
            for layer in model.layers}


def conv(p, x, stride=1, padding=0, same_stride2=False):
    if same_stride2:  # Keras' "same" at stride 2 on even sizes pads at the end only
        x = F.pad(x, (0, 1, 0, 1))
    return F.conv2d(x, p["kernel"].permute(3, 2, 0, 1), p.get("bias"), stride, padding)


def depthwise(p, x, padding):
    kh, kw, c, m = p["kernel"].shape
    w = p["kernel"].reshape(kh, kw, 1, c * m).permute(3, 2, 0, 1)
    return F.conv2d(x, w, p.get("bias"), 1, padding, groups=c)


def transpose(p, x, stride):
    return F.conv_transpose2d(x, p["kernel"].permute(3, 2, 0, 1), p.get("bias"), stride)


def bn(p, x):
    return F.batch_norm(x, None, None, p["gamma"], p["beta"], training=True, eps=1e-3)


# ----- the architectures: (cnnumpy model, torch twin) ----------------------------------------
def resnet_block():
    x = cnnumpy.Input((8, 8, 3), dtype="float64")
    h = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1")(x)
    h = layers.ReLU(name="relu1")(layers.BatchNormalization(name="bn1")(h))
    h = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv2")(h)
    h = layers.BatchNormalization(name="bn2")(h)
    s = layers.Conv2D(8, 1, strides=2, use_bias=False, name="down_conv")(x)
    s = layers.BatchNormalization(name="down_bn")(s)
    y = layers.Activation("relu", name="relu2")(layers.Add(name="add")([h, s]))

    def twin(P, x):
        h = F.relu(bn(P["bn1"], conv(P["conv1"], x, stride=2, same_stride2=True)))
        h = bn(P["bn2"], conv(P["conv2"], h, padding=1))
        s = bn(P["down_bn"], conv(P["down_conv"], x, stride=2))
        return F.relu(h + s)

    return cnnumpy.Model(x, y), twin


def inverted_residual():
    x = cnnumpy.Input((6, 6, 8), dtype="float64")
    h = layers.Conv2D(24, 1, use_bias=False, name="expand")(x)
    h = layers.ReLU(6.0, name="expand_relu")(layers.BatchNormalization(name="expand_bn")(h))
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    h = layers.Activation("relu6", name="dw_relu")(layers.BatchNormalization(name="dw_bn")(h))
    h = layers.Conv2D(8, 1, use_bias=False, name="project")(h)
    h = layers.BatchNormalization(name="project_bn")(h)
    y = layers.Add(name="add")([x, h])

    def twin(P, x):
        h = F.relu6(bn(P["expand_bn"], conv(P["expand"], x)))
        h = F.relu6(bn(P["dw_bn"], depthwise(P["dw"], h, padding=1)))
        return x + bn(P["project_bn"], conv(P["project"], h))

    return cnnumpy.Model(x, y), twin


def unet_level(up):
    x = cnnumpy.Input((8, 8, 2), dtype="float64")
    c = layers.Conv2D(4, 3, padding="same", activation="relu", name="enc1")(x)
    c = layers.Conv2D(4, 3, padding="same", activation="relu", name="enc2")(c)
    b = layers.Conv2D(6, 3, padding="same", activation="relu", name="mid")(
        layers.MaxPool2D(2, name="pool")(c))
    if up == "transpose":
        u = layers.Conv2DTranspose(4, 2, strides=2, name="up")(b)
    else:
        u = layers.Conv2D(4, 1, name="up")(layers.UpSampling2D(2, name="upsample")(b))
    h = layers.Concatenate(name="cat")([u, c])
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="dec")(h)
    y = layers.Conv2D(3, 1, name="head")(h)

    def twin(P, x):
        c = F.relu(conv(P["enc1"], x, padding=1))
        c = F.relu(conv(P["enc2"], c, padding=1))
        b = F.relu(conv(P["mid"], F.max_pool2d(c, 2), padding=1))
        if up == "transpose":
            u = transpose(P["up"], b, 2)
        else:
            u = conv(P["up"], F.interpolate(b, scale_factor=2, mode="nearest"))
        h = F.relu(conv(P["dec"], torch.cat([u, c], dim=1), padding=1))
        return conv(P["head"], h)

    return cnnumpy.Model(x, y), twin


def shared_layer():
    x = cnnumpy.Input((6, 6, 3), dtype="float64")
    shared = layers.Conv2D(3, 3, padding="same", activation="tanh", name="shared")
    norm = layers.BatchNormalization(name="norm")
    h1 = shared(x)
    h2 = shared(norm(h1))  # the same conv at two depths, its two calls' caches apart
    y = layers.Subtract(name="sub")([h2, norm(x)])

    def twin(P, x):
        h1 = torch.tanh(conv(P["shared"], x, padding=1))
        h2 = torch.tanh(conv(P["shared"], bn(P["norm"], h1), padding=1))
        return h2 - bn(P["norm"], x)

    return cnnumpy.Model(x, y), twin


def fan_out():
    x = cnnumpy.Input((5, 5, 2), dtype="float64")
    h = layers.Conv2D(4, 3, padding="same", name="stem")(x)
    a = layers.ReLU(name="relu")(h)  # four consumers of h
    b = layers.Conv2D(4, 1, name="side")(h)
    c = layers.Multiply(name="mul")([h, layers.Activation("sigmoid", name="gate")(h)])
    y = layers.Concatenate(name="cat")([layers.Add(name="add")([a, b]), c, h])

    def twin(P, x):
        h = conv(P["stem"], x, padding=1)
        a, b = F.relu(h), conv(P["side"], h)
        return torch.cat([a + b, h * torch.sigmoid(h), h], dim=1)

    return cnnumpy.Model(x, y), twin


ARCHITECTURES = {
    "resnet_basic_block_projection": resnet_block,
    "mobilenet_v2_inverted_residual": inverted_residual,
    "unet_level_conv_transpose": lambda: unet_level("transpose"),
    "unet_level_upsampling": lambda: unet_level("upsampling"),
    "shared_layer_called_twice": shared_layer,
    "tensor_feeding_several_consumers": fan_out,
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_forward_and_gradients_match_pytorch(name):
    model, twin = ARCHITECTURES[name]()
    randomize(model)
    x = np.random.default_rng(1).standard_normal((4, *model.input_shape))
    y = model.forward(x, training=True)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dx = model.backward(dy.copy())

    P = torch_params(model)
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    yt = twin(P, xt)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2).copy()))

    assert y.dtype == np.float64
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), **CLOSE)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), **CLOSE)
    for layer in model.layers:
        for key in layer.params:
            np.testing.assert_allclose(layer.grads[key], P[layer.name][key].grad.numpy(),
                                       err_msg=f"{layer.name}.{key}", **CLOSE)
