"""Pure, stateless kernels: convolution, pooling, activations.

Every function here takes arrays and returns arrays; nothing holds weights or state. Layers
in :mod:`cnnumpy.layers` call these kernels.
"""
