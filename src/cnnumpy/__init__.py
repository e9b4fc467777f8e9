"""cnnumpy: convolutional neural networks in NumPy."""

from cnnumpy.backend import set_seed

__version__ = "0.1.0"

__all__ = ["set_seed", "__version__"]
