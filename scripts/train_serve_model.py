"""Train the digits model that ``cnnumpy serve`` shows when given no model file.

A small LeNet-5-like network (two 5x5 convolutions with max pooling, then two dense layers),
trained with the library's own ``Sequential.fit`` on the 8,000 bundled training digits, with
random shifts, seeded: running this script again writes the same weights and metadata
(``tests/serve/test_shipping.py`` checks; the header's keys may come in another order). It
prints the accuracy on the 2,000 bundled test digits, which ``tests/serve/test_api.py`` checks.

    python scripts/train_serve_model.py [--out src/cnnumpy/serve/data/digits.safetensors]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import cnnumpy
from cnnumpy import layers
from cnnumpy.cli_data import preprocessing
from cnnumpy.optimizers.schedules import CosineDecay

OUT = os.path.join(os.path.dirname(__file__), "..", "src", "cnnumpy", "serve", "data",
                   "digits.safetensors")
EPOCHS, BATCH, SEED = 20, 64, 0


def build() -> cnnumpy.Sequential:
    """Conv 5x5x6 same, max pool, conv 5x5x16, max pool, dense 64, dense 10 (softmax)."""
    return cnnumpy.Sequential([
        layers.Conv2D(6, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPool2D(2),
        layers.Conv2D(16, 5, activation="relu"),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], name="digits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    cnnumpy.set_seed(SEED)
    (x_train, y_train), (x_test, y_test) = cnnumpy.datasets.load_mnist_sample()
    net = build()
    shift = layers.RandomTranslation(0.1, 0.1, input_shape=(28, 28, 1))
    trainer = cnnumpy.Sequential([shift, *net.layers], name="digits")
    steps = EPOCHS * -(-len(x_train) // BATCH)
    trainer.compile(cnnumpy.optimizers.Adam(CosineDecay(2e-3, decay_steps=steps)),
                    "sparse_categorical_crossentropy", metrics=["accuracy"])
    trainer.fit(x_train, y_train, epochs=EPOCHS, batch_size=BATCH, verbose=2)
    net.class_names = [str(d) for d in range(10)]
    net.preprocessing = preprocessing(x_train)  # light-on-dark: drawings on paper get inverted
    net.build()
    correct = int(np.sum(net.predict(x_test).argmax(axis=1) == y_test))
    print(f"Test accuracy: {correct / len(x_test):.4f} ({correct} of {len(x_test)} digits)")
    net.save(args.out)
    print(f"Saved {args.out} ({os.path.getsize(args.out):,} bytes)")


if __name__ == "__main__":
    main()
