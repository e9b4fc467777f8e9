"""The prototype notebook's API, as thin constructors over the library.

Code written for the prototype runs with only its import line changed::

    from cnnumpy.compat import CNN, Activation, Conv2D, Dense, Flatten, MaxPool2D

Differences from the notebook, all deliberate:

- ``Conv2D`` is a cross-correlation (as in every framework) with a verified gradient; the
  notebook's forward pass flipped the kernel while its kernel gradient did not.
- Weights are updated by an Adam optimizer outside the layers, not inside ``backward``.
- ``save_model`` writes the library's safe model file (safetensors), never a pickle, and
  ``load_model`` refuses pickles.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnumpy import io, layers
from cnnumpy.callbacks import Callback
from cnnumpy.layers import Layer
from cnnumpy.model import Sequential
from cnnumpy.optimizers import Adam


def Conv2D(input_shape: tuple[int, int, int], kernel_size: tuple[int, int],  # noqa: N802
           depth: int) -> layers.Conv2D:
    """A valid-padded convolution with ``depth`` filters for ``(height, width, channels)`` input."""
    return layers.Conv2D(depth, kernel_size, input_shape=input_shape)


def MaxPool2D(pool_size: tuple[int, int] = (2, 2),  # noqa: N802
              stride: tuple[int, int] | None = None) -> layers.MaxPool2D:
    """Max pooling; ``stride`` defaults to ``pool_size``."""
    return layers.MaxPool2D(pool_size, strides=stride)


def Flatten() -> layers.Flatten:  # noqa: N802
    """Flattens each sample to a vector."""
    return layers.Flatten()


def Dense(input_size: int, output_size: int, activation: str = "relu") -> layers.Dense:  # noqa: N802
    """A fully connected layer from ``input_size`` to ``output_size`` features."""
    return layers.Dense(output_size, activation=activation, input_shape=(input_size,))


def Activation(activation: str) -> layers.Activation:  # noqa: N802
    """An activation by name (``"relu"``, ``"softmax"``, ...)."""
    return layers.Activation(activation)


class _PrintEveryTenth(Callback):
    """Print the loss as the notebook did: epoch 1, every tenth epoch, and the last."""

    def __init__(self, epochs: int, n_outputs: int) -> None:
        super().__init__()
        self.epochs, self.n_outputs = epochs, n_outputs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and (epoch % 10 == 0 or epoch == self.epochs - 1):
            # The notebook's loss sums squared errors over outputs; Keras' MSE averages them.
            print(f"Epoch {epoch + 1}/{self.epochs}, Loss: {logs['loss'] * self.n_outputs:.4f}")


class CNN:
    """The notebook's model: ``add`` layers, ``train`` with Adam on mean squared error.

    Args:
        learning_rate: Adam's learning rate.
    """

    def __init__(self, learning_rate: float = 0.001) -> None:
        self.learning_rate = learning_rate
        self.model = Sequential()
        self.model.compile(Adam(learning_rate=learning_rate, epsilon=1e-8), "mse", metrics=[])

    @property
    def layers(self) -> list[Layer]:
        """The model's layers, in order."""
        return self.model.layers

    def add(self, layer: Layer) -> None:
        """Append a layer to the model."""
        self.model.add(layer)

    def predict(self, input_data: Any) -> np.ndarray:
        """Outputs for a batch ``(N, H, W, C)`` or a single image ``(H, W, C)``."""
        input_data = np.asarray(input_data)
        if input_data.ndim == 3:
            input_data = input_data[np.newaxis]
        return self.model.predict(input_data)

    def train(self, X_train: Any, y_train: Any, epochs: int, batch_size: int = 32,  # noqa: N803
              verbose: bool = True) -> None:
        """Train for ``epochs`` passes with shuffling, printing the loss every tenth epoch."""
        x, y = np.asarray(X_train), np.asarray(y_train)
        if x.ndim == 3:
            x, y = x[np.newaxis], y.reshape(1, -1)
        elif y.ndim == 1:
            y = y.reshape(-1, 1)
        n_outputs = int(np.prod(y.shape[1:]))
        callbacks: list[Callback] = [_PrintEveryTenth(epochs, n_outputs)] if verbose else []
        self.model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=callbacks)

    def save_model(self, filename: str) -> None:
        """Save to ``filename`` in the library's safe format (whatever the extension)."""
        self.model.save(filename)

    @classmethod
    def load_model(cls, filename: str) -> CNN:
        """Load a model saved by ``save_model``; pickle files are refused."""
        model = io.load_model(filename)
        cnn = cls.__new__(cls)
        cnn.model = model
        cnn.learning_rate = model.optimizer.get_config()["learning_rate"]
        return cnn
