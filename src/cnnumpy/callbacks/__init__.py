"""Callbacks: hooks into ``Sequential.fit`` (the Keras protocol).

A callback sees the model as ``self.model``; setting ``model.stop_training = True`` ends
training after the current batch. ``fit`` passes each epoch's logs (``"loss"``, the metrics,
and ``"val_*"`` when there is validation data) to ``on_epoch_end`` and each batch's loss and
metrics to ``on_batch_end``. Epoch numbers count from 0, including the ``initial_epoch`` offset.
"""

from cnnumpy.callbacks.base import Callback, History
from cnnumpy.callbacks.files import CSVLogger, ModelCheckpoint
from cnnumpy.callbacks.learning_rate import LearningRateScheduler, ReduceLROnPlateau
from cnnumpy.callbacks.stopping import EarlyStopping, TerminateOnNaN

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau",
           "LearningRateScheduler", "CSVLogger", "TerminateOnNaN"]
