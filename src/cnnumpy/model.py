"""``Sequential``: a stack of layers with Keras' ``compile``/``fit``/``evaluate``/``predict``.

The model owns the order of layers and the training loop; layers own their math and
gradients; the optimizer owns its state and updates ``params`` from ``grads``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import backend, losses, optimizers, shards
from cnnumpy import metrics as metrics_module
from cnnumpy.backend import xp
from cnnumpy.callbacks import Callback, History
from cnnumpy.functional import activations
from cnnumpy.layers import Layer, layer_from_config
from cnnumpy.passes import Passes
from cnnumpy.summary import summary_table
from cnnumpy.training import check_arrays, iterate_batches, run_evaluate, run_fit


class Sequential:
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
    """

    def __init__(self, layers: list[Layer] | None = None, name: str = "sequential",
                 dtype: str | None = None) -> None:
        self.name = name
        self.dtype = None if dtype is None else backend.as_float_dtype(dtype, "Sequential")
        self.layers: list[Layer] = []
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: losses.Loss | None = None
        self.metrics: list[str] = []
        self.stop_training = False
        self.epoch = 0  # epochs completed; saved in checkpoints so training can resume
        self.class_names: list[str] | None = None  # optional, saved with the model
        self.preprocessing: dict | None = None  # optional: how images become inputs, saved
        # The generator state a loaded checkpoint held; the first fit(initial_epoch=epoch)
        # restores it (and any fit drops it), so load-then-fit continues exactly.
        self.rng_state: dict | None = None
        self._passes = Passes()
        self._shards: list[shards.Shard] | None = None  # the last training forward's slices
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer) -> None:
        """Append a layer; only the first layer needs ``input_shape``.

        When the first layer has ``input_shape``, the model is built at once (as in Keras):
        a layer that does not fit the output of the layers before it is refused here.
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a cnnumpy Layer, received {layer!r}")
        if any(layer is other for other in self.layers):
            raise ValueError(f"Sequential.add: {layer.label} is already in the model")
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
        return bool(self.layers) and all(layer.built for layer in self.layers)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self.layers[0].input_shape if self.layers else None

    @property
    def output_shape(self) -> tuple[int, ...]:
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

    def count_params(self) -> int:
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    # ----- compile and the forward/backward passes -------------------------------------------
    def compile(self, optimizer: Any = "adam", loss: Any = None,
                metrics: Any = ("accuracy",)) -> None:
        """Choose the optimizer, the loss and the metrics reported by ``fit``/``evaluate``."""
        if loss is None:
            raise ValueError("Sequential.compile: loss is required, e.g. "
                             "loss='sparse_categorical_crossentropy'")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        if isinstance(metrics, str):
            metrics = [metrics]
        self.metrics = list(metrics or [])
        self.stop_training = False

    @property
    def _fused(self) -> bool:
        """True when the last activation is folded into the loss (softmax/sigmoid + CE)."""
        return (self.loss is not None and not getattr(self.loss, "from_logits", True)
                and self.loss.fused_activation is not None
                and self.layers[-1].activation == self.loss.fused_activation)

    def forward(self, x: Any, training: bool = False) -> Any:
        """Run every layer on a batch (no batching, no checks beyond the layers' own)."""
        return self._passes.forward(self.layers, x, training)

    def _forward_loss(self, x: Any, y: Any, training: bool,
                      sample_weight: Any = None) -> tuple[Any, float, Any]:
        """Return ``(predictions, loss, d loss / d last output)`` for one batch, which may
        go through one slice per thread (:mod:`cnnumpy.shards`)."""
        parts = shards.split(self.layers, len(x), training)
        if training:
            self._shards = parts  # for _backward
        last = self.layers[-1]
        if parts is not None:
            z = shards.forward(parts, x, self._fused, training)
        else:
            x = self._passes.forward(self.layers, x, training, stop=len(self.layers) - 1)
            z = last.forward_logits(x, training) if self._fused else last.forward(x, training)
        if self._fused:
            value, grad = self.loss.with_logits().value_and_grad(y, z, sample_weight)
            return activations.get(last.activation).forward(z), value, grad
        value, grad = self.loss.value_and_grad(y, z, sample_weight)
        return z, value, grad

    def _backward(self, grad: Any) -> None:
        # A layer's input gradient is needed only if some layer before it has weights: the
        # first convolution (after any augmentation layers) may skip its input gradient.
        needed = False
        for layer in self.layers:
            layer.needs_input_grad = needed
            needed = needed or bool(layer.params)
        if self._shards is not None:
            shards.backward(self._shards, self.layers, grad, logits=self._fused)
            return
        last = self.layers[-1]
        grad = last.call_backward(grad) if self._fused else last.backward(grad)
        self._passes.backward(grad, stop=len(self.layers) - 1)

    def trainable_weights(self) -> tuple[list, list]:
        """``(params, grads)``: parallel lists over every layer's trainable arrays."""
        params, grads = [], []
        for layer in self.layers:
            for key, value in layer.params.items():
                params.append(value)
                grads.append(layer.grads[key])
        return params, grads

    def train_step(self, x: Any, y: Any, sample_weight: Any = None) -> tuple[Any, float]:
        """One update on one batch: forward, loss, backward, optimizer step."""
        with backend.single_threaded_blas():  # the kernels' own threads use the cores
            y_pred, value, grad = self._forward_loss(x, y, True, sample_weight)
            self._backward(grad)
            self.optimizer.apply(*self.trainable_weights())
        return y_pred, value

    def _metric_fns(self, y_pred_shape: tuple) -> dict:
        loss_name = losses.serialize(self.loss)["name"] if self.loss is not None else None
        return {m: metrics_module.resolve(m, loss_name, y_pred_shape) for m in self.metrics}

    def _require_compiled(self, what: str) -> None:
        if self.loss is None or self.optimizer is None:
            raise ValueError(f"Sequential.{what}: call compile(optimizer, loss) first")

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None) -> dict[str, float]:
        """One update on one batch; returns the batch's loss and metrics."""
        self._require_compiled("train_on_batch")
        x, y = check_arrays(self, x, y, "train_on_batch")
        y_pred, value = self.train_step(x, y, sample_weight)
        logs = {"loss": value}
        logs.update({k: f(y, y_pred) for k, f in self._metric_fns(y_pred.shape).items()})
        return logs

    # ----- the loops -------------------------------------------------------------------------
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32,
            validation_split: float = 0.0, validation_data: tuple | None = None,
            shuffle: bool = True, verbose: int = 1, callbacks: list[Callback] | None = None,
            initial_epoch: int = 0, class_weight: dict | None = None,
            sample_weight: Any = None, distributed: bool = False) -> History:
        """Train for ``epochs`` passes over ``(x, y)``; return the per-epoch History.

        ``sample_weight`` (one non-negative weight per sample) or ``class_weight`` (a dict
        from class index to weight; float labels are rounded) scale each sample's
        contribution to the loss. As in Keras, ``validation_split=v`` trains on the first
        ``floor(n * (1 - v))`` samples and validates on the rest, whose ``sample_weight``
        weighs ``val_loss``; ``validation_data`` may be ``(x, y)`` or ``(x, y, weights)``.

        A model loaded from a checkpoint continues exactly, with the same shuffles, dropout
        masks and augmentations as a run that never stopped, when ``initial_epoch`` is
        ``model.epoch``: that fit restores the generator state the checkpoint saved.

        ``distributed=True`` under ``mpirun -n K`` trains data-parallel (every rank passes
        the same data and seed): ``batch_size`` is per rank, each global batch of
        ``K * batch_size`` samples is split across ranks, gradients are averaged by one
        allreduce per step, logs are global, and only rank 0 prints and writes files. Without
        MPI it is ordinary training. See :mod:`cnnumpy.distributed` and docs/distributed.md.
        """
        self._require_compiled("fit")
        return run_fit(self, x, y, epochs=epochs, batch_size=batch_size,
                       validation_split=validation_split, validation_data=validation_data,
                       shuffle=shuffle, verbose=verbose, callbacks=callbacks,
                       initial_epoch=initial_epoch, class_weight=class_weight,
                       sample_weight=sample_weight, distributed=distributed)

    def evaluate(self, x: Any, y: Any, batch_size: int = 32, verbose: int = 0,
                 sample_weight: Any = None) -> dict:
        """Loss and metrics over ``(x, y)`` in inference mode, as a dict.

        With ``sample_weight`` (one weight >= 0 per sample) the loss is
        ``sum(weight * per-sample loss) / N``, as in ``fit``; the metrics are unweighted
        (Keras' ``metrics``).
        """
        self._require_compiled("evaluate")
        return run_evaluate(self, x, y, batch_size, verbose, sample_weight)

    def predict(self, x: Any, batch_size: int = 32) -> Any:
        """Outputs for ``x`` in inference mode, computed ``batch_size`` images at a time."""
        x, _ = check_arrays(self, x, None, "predict")
        out = xp.empty((len(x), *self.output_shape), dtype=self.layers[-1].dtype)
        with backend.single_threaded_blas():
            for idx in iterate_batches(len(x), batch_size, "predict"):
                out[idx] = shards.infer(self.layers, x[idx])
        return out

    # ----- description and files -------------------------------------------------------------
    def summary(self, print_fn: Any = print) -> str:
        """Print (and return) a table: each layer, its output shape and parameter count."""
        self._require_built("summary")
        text = summary_table(self)
        if print_fn is not None:
            print_fn(text)
        return text

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "layers": [
            {"class_name": type(layer).__name__, "config": layer.get_config()}
            for layer in self.layers]}
        if self.dtype is not None:
            config["dtype"] = np.dtype(self.dtype).name
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        layers = [layer_from_config(item) for item in config.get("layers", [])]
        return cls(layers, name=config.get("name", "sequential"), dtype=config.get("dtype"))

    def save(self, path: str, include_optimizer: bool = True) -> None:
        """Write the model to one ``.safetensors`` file (see :mod:`cnnumpy.io`)."""
        from cnnumpy import io

        io.save_model(self, path, include_optimizer=include_optimizer)
