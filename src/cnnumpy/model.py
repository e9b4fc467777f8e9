"""``Sequential``: a stack of layers with Keras' ``compile``/``fit``/``evaluate``/``predict``.

The model owns the order of layers; layers own their math and gradients; the optimizer owns
its state and updates ``params`` from ``grads``. The training surface (``compile``, ``fit``,
``evaluate``, ``predict``, ``save``...) is :class:`cnnumpy.model_base.BaseModel`'s, shared
with the graph ``Model``; this class runs the stack's passes (:mod:`cnnumpy.passes`, one batch
slice per thread by :mod:`cnnumpy.shards`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import backend, shards
from cnnumpy.graph import InputLayer, SymbolicTensor
from cnnumpy.layers import Layer, layer_from_config
from cnnumpy.model_base import BaseModel
from cnnumpy.passes import Passes
from cnnumpy.summary import summary_table


class Sequential(BaseModel):
    """A linear stack of layers.

    Args:
        layers: layers to add, in order.
        name: the model's name.
        dtype: "float32" or "float64" for every layer that does not set its own; by default
            ``backend.floatx()``, or, for a model built by its first batch (no
            ``input_shape``), that batch's dtype if it is float64.

    A model whose first layer has ``input_shape`` is built as soon as its layers are given
    (or added), so ``save``, ``summary``, ``count_params`` and the ONNX and PyTorch
    converters work before any training; otherwise ``build(input_shape)`` or the first
    batch builds it.

    Shape:
        Input ``(N, *input_shape)``, output ``(N, *output_shape)``; images are NHWC.

    Example:
        >>> from cnnumpy import layers
        >>> model = cnnumpy.Sequential([
        ...     layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        ...     layers.MaxPool2D(), layers.Flatten(), layers.Dense(10, activation="softmax")])
        >>> model.compile("adam", "sparse_categorical_crossentropy")
        >>> model.output_shape
        (10,)
        >>> model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0).shape
        (2, 10)
    """

    def __init__(self, layers: list[Layer] | None = None, name: str = "sequential",
                 dtype: str | None = None) -> None:
        super().__init__(name)
        self.dtype = None if dtype is None else backend.as_float_dtype(dtype, "Sequential")
        self.layers: list[Layer] = []
        self._input: SymbolicTensor | None = None  # a cnnumpy.Input given before the layers
        self._passes = Passes()
        self._shards: list[shards.Shard] | None = None  # the last training forward's slices
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer | SymbolicTensor) -> None:
        """Append a layer; only the first layer needs ``input_shape``.

        As in Keras, the first item may instead be ``cnnumpy.Input(shape)``, which gives the
        first layer its ``input_shape``. When the first layer has ``input_shape``, the model is
        built at once (as in Keras): a layer that does not fit the output of the layers before
        it is refused here.
        """
        if isinstance(layer, SymbolicTensor) and isinstance(layer.layer, InputLayer):
            if self.layers or self._input is not None:
                raise ValueError("Sequential.add: cnnumpy.Input may only come first, "
                                 f"received it after {len(self.layers)} layer(s)")
            self._input = layer
            if self.dtype is None and layer.layer.dtype is not None:
                self.dtype = layer.layer.dtype
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a cnnumpy Layer, received {layer!r}")
        if any(layer is other for other in self.layers):
            raise ValueError(f"Sequential.add: {layer.label} is already in the model")
        if not self.layers and self._input is not None:
            if layer.input_shape is None:
                layer.input_shape = self._input.shape
            elif layer.input_shape != self._input.shape:
                raise ValueError(f"Sequential.add: {layer.label} has input_shape "
                                 f"{layer.input_shape}, but the Input before it has shape "
                                 f"{self._input.shape}")
        self.layers.append(layer)
        if self.layers[0].input_shape is None:
            return  # built by build(input_shape), or by the first batch
        dtype = layer.dtype
        try:
            self.build()
        except ValueError as exc:
            self.layers.pop()
            layer.dtype = dtype
            raise ValueError(f"Sequential.add: {layer.label} does not fit after the layers "
                             f"before it: {exc}") from None

    # ----- building --------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        """Whether the layers have their weights (after the first call, ``build`` or loading)."""
        return bool(self.layers) and all(layer.built for layer in self.layers)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """One sample's input shape, without the batch axis (``None`` before it is known)."""
        return self.layers[0].input_shape if self.layers else None

    @property
    def output_shape(self) -> tuple[int, ...]:
        """One sample's output shape, without the batch axis."""
        self._require_built("output_shape")
        return self.layers[-1].compute_output_shape(self.layers[-1].input_shape)

    def build(self, input_shape: Any = None, dtype: Any = None) -> None:
        """Build every layer, inferring each input shape from the previous layer's output."""
        if not self.layers:
            raise ValueError("Sequential: the model has no layers; add some first")
        shape = input_shape if input_shape is not None else self.layers[0].input_shape
        if shape is None:
            raise ValueError("Sequential: cannot build without an input shape; give the first "
                             "layer input_shape=..., or call build(input_shape), fit or predict")
        first = self.layers[0]
        if first.built and input_shape is not None \
                and first._split_batch(input_shape)[1] != first.input_shape:
            raise ValueError(f"Sequential: the model is built for inputs {first.input_shape}, "
                             f"received build(input_shape={tuple(input_shape)})")
        dtype = self.dtype or dtype or backend.floatx()
        for i, layer in enumerate(self.layers):
            if not layer.built:
                if i > 0 and layer.input_shape is not None and layer.input_shape != tuple(shape):
                    raise ValueError(f"Sequential: {layer.label} was given input_shape="
                                     f"{layer.input_shape}, but the layer before it outputs "
                                     f"{tuple(shape)}")
                layer.dtype = layer.dtype or dtype
                layer.build(shape)
            elif i > 0 and layer.input_shape != tuple(shape):  # built elsewhere
                raise ValueError(f"Sequential: {layer.label} is already built for input shape "
                                 f"{layer.input_shape} (in another model?), but the layer "
                                 f"before it outputs {tuple(shape)}")
            shape = layer.compute_output_shape(layer.input_shape)

    def _ensure_built(self, x: Any) -> None:
        if not self.built:
            shape = self.layers[0].input_shape if self.layers and self.layers[0].input_shape \
                else tuple(np.shape(x)[1:])
            self.build(shape, np.float64 if getattr(x, "dtype", None) == np.float64 else None)

    def _require_built(self, what: str) -> None:
        if not self.built and self.layers and self.layers[0].input_shape is not None:
            self.build()
        if not self.built:
            raise ValueError(f"Sequential.{what}: the model is not built yet; give the first "
                             "layer input_shape=..., or call build(input_shape), fit or predict")

    # ----- the passes (BaseModel's hooks) ----------------------------------------------------
    @property
    def _output_layer(self) -> Layer:
        return self.layers[-1]

    def forward(self, x: Any, training: bool = False) -> Any:
        """Run every layer on a batch (no batching, no checks beyond the layers' own)."""
        return self._passes.forward(self.layers, x, training)

    def _outputs(self, x: Any, training: bool, logits: bool) -> Any:
        """The output of one batch (before the last activation when ``logits``), which may
        go through one slice per thread (:mod:`cnnumpy.shards`)."""
        parts = shards.split(self.layers, len(x), training)
        if training:
            self._shards = parts  # for _backward_outputs
        last = self.layers[-1]
        if parts is not None:
            return shards.forward(parts, x, logits, training)
        x = self._passes.forward(self.layers, x, training, stop=len(self.layers) - 1)
        return last.forward_logits(x, training) if logits else last.forward(x, training)

    def _backward_outputs(self, grad: Any, logits: bool) -> None:
        # A layer's input gradient is needed only if some layer before it has weights: the
        # first convolution (after any augmentation layers) may skip its input gradient.
        needed = False
        for layer in self.layers:
            layer.needs_input_grad = needed
            needed = needed or bool(layer.params)
        if self._shards is not None:
            shards.backward(self._shards, self.layers, grad, logits=logits)
            self._shards = None  # their layers' copies hold the forward caches
            return
        last = self.layers[-1]
        grad = last.call_backward(grad) if logits else last.backward(grad)
        self._passes.backward(grad, stop=len(self.layers) - 1)
        self._passes.release()  # the forward caches: not held into the next step's forward
        for layer in self.layers:
            layer.release()

    def _infer(self, x: Any) -> Any:
        return shards.infer(self.layers, x)

    # ----- description and files -------------------------------------------------------------
    def _summary_text(self) -> str:
        return summary_table(self)

    def get_config(self) -> dict[str, Any]:
        """The layers' configs, JSON-ready: what a model file stores beside the weights."""
        config: dict[str, Any] = {"name": self.name, "layers": [
            {"class_name": type(layer).__name__, "config": layer.get_config()}
            for layer in self.layers]}
        if self.dtype is not None:
            config["dtype"] = np.dtype(self.dtype).name
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """The model that ``get_config`` describes, built, with fresh weights."""
        layers = [layer_from_config(item) for item in config.get("layers", [])]
        return cls(layers, name=config.get("name", "sequential"), dtype=config.get("dtype"))
