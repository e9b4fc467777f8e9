"""PyTorch weights in and out: :func:`from_torch` and :func:`to_torch`.

    from cnnumpy.torch import from_torch, to_torch     # needs PyTorch

    net = to_torch(model)                    # torch.nn.Sequential, NCHW input, same weights
                                             # (a GraphModule for a graph cnnumpy.Model)
    from_torch(net, model)                   # or a state_dict, or a .safetensors/.pt file

PyTorch images are NCHW and cnnumpy's NHWC, so the conversions reorder weights:

- ``Conv2d.weight`` (out, in/groups, kh, kw) is the transpose of ``Conv2D``'s kernel
  (kh, kw, in/groups, out); ``Linear.weight`` (out, in) is the transpose of ``Dense``'s.
- ``DepthwiseConv2D`` is a ``Conv2d`` with ``groups`` = channels (its kernel (kh, kw, C, M) is
  the weight (C * M, 1, kh, kw)); ``SeparableConv2D`` that, then a 1x1 ``Conv2d``;
  ``Conv2DTranspose`` a ``ConvTranspose2d`` (weight (C, filters, kh, kw)), followed by a crop
  where Keras' "same" cuts rows that symmetric padding cannot.
- A ``Flatten`` of an (H, W, C) image yields features in (H, W, C) order here and (C, H, W)
  order in PyTorch, so the first ``Dense`` after it (and any ``BatchNormalization`` between)
  has its inputs permuted.
- ``BatchNorm2d``/``BatchNorm1d`` carry the moving statistics; ``eps`` must equal
  ``epsilon``. PyTorch's ``momentum`` is ``1 - momentum`` here (it only matters for training
  and is not checked on import).

Only the convolutions, ``Dense`` and ``BatchNormalization`` hold weights; weight-free modules
(activations, pooling, padding, Flatten, Dropout) are not needed by :func:`from_torch`, which
matches the layers with weights to the PyTorch modules with weights in order (for a graph
model: by layer name where the names are the modules' paths, e.g. torchvision's
``layer1.0.conv1``, else in the order of the nodes).
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("cnnumpy.torch needs PyTorch: pip install torch") from exc

from cnnumpy.torch._export import to_torch
from cnnumpy.torch._graph import GraphModule
from cnnumpy.torch._import import from_torch
from cnnumpy.torch._modules import AvgPool2dSame

__all__ = ["AvgPool2dSame", "GraphModule", "from_torch", "to_torch"]
