"""The text of ``Sequential.summary``: one row per layer, then the parameter counts."""

from __future__ import annotations

from typing import Any


def summary_table(model: Any) -> str:
    """Each layer's name and type, output shape and parameter count, as Keras prints them."""
    rows = [(f"{layer.name} ({type(layer).__name__})",
             str((None, *layer.compute_output_shape(layer.input_shape))),
             f"{layer.count_params():,}") for layer in model.layers]
    header = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(r[i]) for r in [header, *rows]) + 2 for i in range(3)]
    line = "-" * sum(widths)
    fmt = "".join(f"{{:<{w}}}" for w in widths)
    total = model.count_params()
    trainable = sum(layer.count_trainable_params() for layer in model.layers)
    return "\n".join([f'Model: "{model.name}"', line, fmt.format(*header), "=" * len(line),
                     *(fmt.format(*r) for r in rows), "=" * len(line),
                     f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                     f"Non-trainable params: {total - trainable:,}", line])
