"""``BaseModel``: the training surface ``Sequential`` and ``Model`` share.

``compile``, ``fit`` (through :func:`cnnumpy.training.run_fit`), ``evaluate``, ``predict``,
``train_on_batch``, ``train_step``, ``trainable_weights``, ``count_params``, ``get_layer``,
``summary`` and ``save`` are written once, here. A subclass provides what differs between a
stack and a graph:

* ``layers`` (each layer once), ``input_shape``, ``output_shape``, ``built``, ``build``,
  ``_ensure_built(x)`` and ``_require_built(what)``;
* ``_output_layer``: the layer that computes the model's output;
* ``_outputs(x, training, logits)``: the forward pass of one training or evaluation batch
  (the output layer's values before its activation when ``logits``), remembering what
  ``_backward_outputs(grad, logits)`` needs to fill every layer's ``grads``;
* ``_infer(x)``: the inference output of one batch;
* ``_summary_text()``, ``get_config`` and ``from_config``.
"""

from __future__ import annotations

from typing import Any

from cnnumpy import backend, losses, optimizers
from cnnumpy import metrics as metrics_module
from cnnumpy.backend import xp
from cnnumpy.callbacks.base import Callback, History
from cnnumpy.functional import activations
from cnnumpy.inputs import check_arrays
from cnnumpy.layers import Layer
from cnnumpy.training import iterate_batches, run_evaluate, run_fit


class BaseModel:
    """What every cnnumpy model has: the training state and the loops (see the module
    docstring for what a subclass adds)."""

    layers: list[Layer]

    def __init__(self, name: str) -> None:
        self.name = name
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

    # ----- what a subclass provides (see the module docstring) -------------------------------
    @property
    def output_shape(self) -> tuple[int, ...]:
        """One sample's output shape, without the batch axis."""
        raise NotImplementedError

    @property
    def _output_layer(self) -> Layer:
        """The layer that computes the model's output."""
        raise NotImplementedError

    def _require_built(self, what: str) -> None:
        """A ValueError naming ``what`` when the model has no weights yet."""
        raise NotImplementedError

    def _outputs(self, x: Any, training: bool, logits: bool) -> Any:
        """The forward pass of one training or evaluation batch."""
        raise NotImplementedError

    def _backward_outputs(self, grad: Any, logits: bool) -> None:
        """Fill every layer's ``grads`` from the gradient of ``_outputs``' result."""
        raise NotImplementedError

    def _infer(self, x: Any) -> Any:
        """The inference output of one batch."""
        raise NotImplementedError

    def _summary_text(self) -> str:
        """The table ``summary`` prints."""
        raise NotImplementedError

    def _where(self, method: str) -> str:
        """``Class.method``, as error messages name it."""
        return f"{type(self).__name__}.{method}"

    # ----- layers ----------------------------------------------------------------------------
    def get_layer(self, name: str) -> Layer:
        """The model's layer called ``name``; a ValueError lists the names there are."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self._where('get_layer')}: no layer named {name!r}; the layers "
                         f"are {[layer.name for layer in self.layers]}")

    def count_params(self) -> int:
        """Number of weights in every layer, trainable and not."""
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    def trainable_weights(self) -> tuple[list, list]:
        """``(params, grads)``: parallel lists over every layer's trainable arrays."""
        params, grads = [], []
        for layer in self.layers:
            for key, value in layer.params.items():
                params.append(value)
                grads.append(layer.grads[key])
        return params, grads

    # ----- compile, loss and the passes ------------------------------------------------------
    def compile(self, optimizer: Any = "adam", loss: Any = None,
                metrics: Any = ("accuracy",)) -> None:
        """Choose the optimizer, the loss and the metrics reported by ``fit``/``evaluate``."""
        if loss is None:
            raise ValueError(f"{self._where('compile')}: loss is required, e.g. "
                             "loss='sparse_categorical_crossentropy'")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        if isinstance(metrics, str):
            metrics = [metrics]
        self.metrics = list(metrics or [])
        self.stop_training = False

    def _require_compiled(self, what: str) -> None:
        self._compiled(what)

    def _compiled(self, what: str) -> tuple[losses.Loss, optimizers.Optimizer]:
        """The loss and the optimizer; a ValueError naming ``what`` before ``compile``."""
        if self.loss is None or self.optimizer is None:
            raise ValueError(f"{self._where(what)}: call compile(optimizer, loss) first")
        return self.loss, self.optimizer

    @property
    def _fused(self) -> bool:
        """True when the output layer's activation is folded into the loss (softmax/sigmoid
        + cross-entropy)."""
        return (self.loss is not None and not getattr(self.loss, "from_logits", True)
                and self.loss.fused_activation is not None
                and self._output_layer.activation == self.loss.fused_activation)

    def _forward_loss(self, x: Any, y: Any, training: bool,
                      sample_weight: Any = None) -> tuple[Any, float, Any]:
        """``(predictions, loss, d loss / d output)`` for one batch (the gradient of the
        output before its activation when that is folded into the loss)."""
        loss, _ = self._compiled("train_step")
        fused = loss.fused_activation if self._fused else None  # the output's activation
        z = self._outputs(x, training, fused is not None)
        if fused is not None:
            value, grad = loss.with_logits().value_and_grad(y, z, sample_weight)
            return activations.ACTIVATIONS[fused].forward(z), value, grad
        value, grad = loss.value_and_grad(y, z, sample_weight)
        return z, value, grad

    def _backward(self, grad: Any) -> None:
        """Fill every layer's ``grads`` from ``_forward_loss``'s gradient."""
        self._backward_outputs(grad, self._fused)

    def train_step(self, x: Any, y: Any, sample_weight: Any = None) -> tuple[Any, float]:
        """One update on one batch: forward, loss, backward, optimizer step."""
        _, optimizer = self._compiled("train_step")
        with backend.single_threaded_blas():  # the kernels' own threads use the cores
            y_pred, value, grad = self._forward_loss(x, y, True, sample_weight)
            self._backward(grad)
            optimizer.apply(*self.trainable_weights())
        return y_pred, value

    def _metric_fns(self, y_pred_shape: tuple) -> dict:
        loss_name = losses.serialize(self.loss)["name"] if self.loss is not None else None
        return {m: metrics_module.resolve(m, loss_name, y_pred_shape) for m in self.metrics}

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
        from class index to weight; float labels are rounded; one label per sample, not per
        pixel) scale each sample's contribution to the loss. As in Keras,
        ``validation_split=v`` trains on the first ``floor(n * (1 - v))`` samples and
        validates on the rest, whose ``sample_weight`` weighs ``val_loss``;
        ``validation_data`` may be ``(x, y)`` or ``(x, y, weights)``.

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

    def predict(self, x: Any, batch_size: int = 32, verbose: Any = 0) -> Any:
        """Outputs for ``x`` in inference mode, computed ``batch_size`` images at a time.

        ``verbose`` is accepted as in Keras (``model.predict(x, verbose=0)``); ``predict``
        prints nothing either way.
        """
        x, _ = check_arrays(self, x, None, "predict")
        out = xp.empty((len(x), *self.output_shape), dtype=self._output_layer.dtype)
        with backend.single_threaded_blas():
            for idx in iterate_batches(len(x), batch_size, self._where("predict")):
                out[idx] = self._infer(x[idx])
        return out

    # ----- description and files -------------------------------------------------------------
    def summary(self, print_fn: Any = print) -> str:
        """Print (and return) a table: each layer, its output shape and parameter count (and,
        for a graph, the layers it takes its inputs from)."""
        self._require_built("summary")
        text = self._summary_text()
        if print_fn is not None:
            print_fn(text)
        return text

    def save(self, path: str, include_optimizer: bool = True) -> None:
        """Write the model to one ``.safetensors`` file (see :mod:`cnnumpy.io`)."""
        from cnnumpy import io

        io.save_model(self, path, include_optimizer=include_optimizer)
