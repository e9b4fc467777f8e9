"""Pure, stateless kernels: convolution, pooling, activations.

Every function here takes arrays and returns arrays; nothing holds weights or state. Layers
in :mod:`cnnumpy.layers` call these kernels. The modules at this level are the reference
math (``conv.py``, ``pooling.py``, ``activations.py``, ...); :mod:`cnnumpy.functional.fast`
holds the fused, Winograd and compiled paths that compute the same numbers faster.
"""
