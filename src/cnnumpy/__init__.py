"""cnnumpy: convolutional neural networks in NumPy.

    import cnnumpy
    from cnnumpy import layers

    model = cnnumpy.Sequential([
        layers.Conv2D(32, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPool2D(),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
"""

from cnnumpy import callbacks, datasets, layers, losses, metrics, optimizers
from cnnumpy.backend import floatx, set_floatx, set_seed
from cnnumpy.graph import Input
from cnnumpy.graph_model import Model
from cnnumpy.io import ModelFormatError, load_model
from cnnumpy.model import Sequential

__version__ = "0.1.0"

__all__ = [
    "Sequential", "load_model", "ModelFormatError", "set_seed", "floatx", "set_floatx",
    "layers", "losses", "optimizers", "metrics", "callbacks", "datasets", "__version__",
    "Model", "Input",
]
