"""Conv2DTranspose: parameter handling around :mod:`cnnumpy.functional.conv_transpose`."""

from __future__ import annotations

from typing import Any

from cnnumpy import initializers
from cnnumpy.functional import conv_transpose
from cnnumpy.functional.im2col import _is_int
from cnnumpy.layers.base import _name_counters
from cnnumpy.layers.conv import _is_positive_int, kernel_bias_backward
from cnnumpy.layers.conv_depthwise import _conv_config, _ConvArgs, _store_conv_args


class Conv2DTranspose(_ConvArgs):
    """Transposed 2-D convolution (sometimes called deconvolution): the input gradient of a
    Conv2D with the same kernel size, strides, padding and dilation, as in Keras; with
    strides above 1 it upsamples. PyTorch's ``conv_transpose2d`` computes the same values
    (cropped as below).

    Args:
        filters: number of output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        padding: "valid" or "same" (see Shape).
        output_padding: None, an int or a pair (each below its stride): the output size then
            follows the formula with ``output_padding`` below.
        dilation_rate: int or (dh, dw).
        use_bias: add a learned bias per filter (initialized to zeros).
        activation: name of an activation applied to the output, or None.
        kernel_initializer: name of an initializer in :mod:`cnnumpy.initializers`.
        input_shape, name, dtype: see :class:`~cnnumpy.layers.base.Layer`.

    Shape:
        input (batch, H, W, C); output (batch, Ho, Wo, filters); kernel (kh, kw, filters, C);
        bias (filters,). With ``span = (kh - 1) * dh + 1``: "valid" gives
        ``Ho = H * sh + max(span - sh, 0)``, or ``(H - 1) * sh + span + output_padding``;
        "same" gives ``Ho = H * sh``, or ``(H - 1) * sh + span % 2 + output_padding`` (likewise
        ``Wo``). "same" drops half the extra rows at the top, the odd one at the bottom.
    """

    def __init__(self, filters: int, kernel_size: int | tuple[int, int],
                 strides: int | tuple[int, int] = 1, padding: str = "valid",
                 output_padding: int | tuple[int, int] | None = None,
                 dilation_rate: int | tuple[int, int] = 1, use_bias: bool = True,
                 activation: str | None = None, kernel_initializer: str = "glorot_uniform",
                 input_shape: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        where = type(self).__name__
        if not _is_positive_int(filters):
            raise ValueError(f"{where}: filters must be a positive int, "
                             f"received filters={filters!r}")
        if not (isinstance(padding, str) and padding.lower() in ("valid", "same")):
            raise ValueError(f"{where}: padding must be 'valid' or 'same', "
                             f"received padding={padding!r}")
        self.filters = int(filters)
        _store_conv_args(self, where, kernel_size, strides, padding, dilation_rate, use_bias)
        self.output_padding = None if output_padding is None else _output_padding(
            output_padding, self.strides, where)
        initializers.get(kernel_initializer, f"{where}: kernel_initializer")
        self.kernel_initializer = kernel_initializer
        if name is None:  # Keras' default name, which the base class would spell conv2dtranspose
            count = next(_name_counters["conv2d_transpose"])
            name = "conv2d_transpose" if count == 0 else f"conv2d_transpose_{count}"
        super().__init__(activation=activation, input_shape=input_shape, name=name, dtype=dtype)
        self._cache: Any = None

    def _output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ValueError(f"{self.label}: expected per-sample input of shape (height, width, "
                             f"channels), received {input_shape}")
        extra = self.output_padding or (None, None)
        out_hw = tuple(conv_transpose.transpose_geometry(
            input_shape[a], self.kernel_size[a], self.strides[a], self.dilation_rate[a],
            self.padding, extra[a])[0] for a in (0, 1))
        if min(out_hw) < 1:
            raise ValueError(f"{self.label}: kernel_size={self.kernel_size} with "
                             f"padding={self.padding!r} and output_padding="
                             f"{self.output_padding} gives an empty output {out_hw} for the "
                             f"input {input_shape[:2]}")
        return (*out_hw, self.filters)

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {
            "kernel": (*self.kernel_size, self.filters, input_shape[2])}
        return {**shapes, "bias": (self.filters,)} if self.use_bias else shapes

    def _initial_value(self, name: str, shape: tuple[int, ...]) -> Any:
        if name == "bias":
            return initializers.zeros(shape, dtype=self._built_dtype())
        return initializers.get(self.kernel_initializer)(shape, dtype=self.dtype)

    def call(self, x: Any, training: bool) -> Any:
        y, self._cache = conv_transpose.conv_transpose2d_forward(
            x, self.params["kernel"], self.params.get("bias"), self.strides, self.padding,
            self.output_padding, self.dilation_rate)
        return y

    def call_backward(self, dy: Any) -> Any:
        return kernel_bias_backward(self, conv_transpose.conv_transpose2d_backward, dy)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(filters=self.filters, **_conv_config(self),
                      output_padding=None if self.output_padding is None
                      else list(self.output_padding),
                      kernel_initializer=self.kernel_initializer)
        return config


def _output_padding(value: Any, strides: tuple[int, int], where: str) -> tuple[int, int]:
    """``output_padding`` as a pair of non-negative ints, each below its stride."""
    pair = (value, value) if _is_int(value, 0) else value
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(_is_int(v, 0) for v in pair)):
        raise ValueError(f"{where}: output_padding must be None, a non-negative int or a pair "
                         f"of them, received output_padding={value!r}")
    if any(int(p) >= s for p, s in zip(pair, strides, strict=True)):
        raise ValueError(f"{where}: output_padding must be smaller than the strides "
                         f"{strides}, received output_padding={value!r}")
    return int(pair[0]), int(pair[1])
