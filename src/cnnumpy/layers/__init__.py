"""Layers: parameter handling around the kernels of :mod:`cnnumpy.functional`."""

from cnnumpy.layers.base import Layer

__all__ = ["Layer"]
