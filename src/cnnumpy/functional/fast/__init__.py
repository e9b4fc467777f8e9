"""Fast paths: kernels that exist only for speed, each equal to a reference kernel of
:mod:`cnnumpy.functional` within float rounding (and checked against it by a test).

The reference kernels (``conv.py``, ``pooling.py``, ``activations.py``, ...) hold the math a
reader should start from; the modules here compute the same numbers another way:

* :mod:`~cnnumpy.functional.fast.conv_pool`: a convolution and the max pooling after it,
  computed together (window-order patches), choosing one of:
  :mod:`~cnnumpy.functional.fast.winograd` (F(2x2, 3x3)),
  :mod:`~cnnumpy.functional.fast.winograd5` (F(2x2, 5x5)),
  :mod:`~cnnumpy.functional.fast.window_fields` (each pooling window's receptive field) and
  :mod:`~cnnumpy.functional.fast.compiled_conv_pool` (backward from each window's maximum),
  pooling the blocks by :mod:`~cnnumpy.functional.fast.compiled_pool` (one compiled pass);
* :mod:`~cnnumpy.functional.fast.winograd_conv`: a plain 3x3 stride-1 convolution by
  :mod:`~cnnumpy.functional.fast.winograd43` (F(4x4, 3x3);
  :mod:`~cnnumpy.functional.fast.compiled_winograd43`: its transforms compiled) or by the
  F(2x2, 3x3) transforms (:mod:`~cnnumpy.functional.fast.compiled_winograd_plain`: their
  output transforms compiled), chosen by :func:`cnnumpy.functional.conv.conv2d_forward`;
* :mod:`~cnnumpy.functional.fast.compiled`: the Numba switch (``CNNUMPY_COMPILED=0`` turns it
  off) and small compiled kernels; :mod:`~cnnumpy.functional.fast.compiled_winograd`: the
  Winograd transforms compiled;
* :mod:`~cnnumpy.functional.fast.compiled_im2col`: an ungrouped convolution's patches
  gathered in one compiled pass, and their adjoint for its input gradient;
* :mod:`~cnnumpy.functional.fast.fused`: a convolution's bias and ReLU in one pass.
* :mod:`~cnnumpy.functional.fast.pointwise`: 1x1 convolutions as plain matrix products;
  :mod:`~cnnumpy.functional.fast.depthwise`: depthwise convolutions directly, tap by tap
  (both chosen by :func:`cnnumpy.functional.conv.conv2d_forward`);
  :mod:`~cnnumpy.functional.fast.compiled_depthwise`: the depthwise convolution compiled
  (:mod:`~cnnumpy.functional.fast.compiled_depthwise_rows`: stride 1, whole rows at a time);
* :mod:`~cnnumpy.functional.fast.compiled_adam`: Adam's update of a parameter in one pass
  (chosen by :func:`cnnumpy.optimizers.adam.adam_update`).

Each module's docstring names the reference it must equal and the test that checks it; the
tests are in ``tests/functional/fast/``.
"""
