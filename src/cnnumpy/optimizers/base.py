"""The Optimizer base class and the helpers every algorithm shares.

As in PyTorch's ``torch.optim``, an optimizer keeps its own state apart from the model: the
"slots" (moment estimates, momentum buffers) of each parameter, keyed by the parameter's index
in the list given to :meth:`Optimizer.apply`. Each algorithm's arithmetic is a pure function
over lists of arrays (``sgd_update``, ``adam_update``, ``rmsprop_update``) that updates the
parameters and slots in place, so layers keep their array objects. Gradients are never changed.
Where the parameters share a dtype, the function runs once on all of them gathered into one
flat array, the slots packed likewise (:mod:`cnnumpy.optimizers.packing`): same results.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnumpy.backend import xp
from cnnumpy.optimizers import packing
from cnnumpy.optimizers.clipping import clip_by_global_norm, clip_by_norm


def check_float(where: str, name: str, value: Any, expected: str,
                ok: Callable[[float], bool]) -> float:
    """Return ``value`` as a float if it is a finite real number with ``ok(value)`` true.

    Raises:
        ValueError: ``"{where}: {name} must be {expected}, received {name}={value!r}"``.
    """
    is_number = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, (bool, np.bool_)) or not is_number or not math.isfinite(value) \
            or not ok(float(value)):
        raise ValueError(f"{where}: {name} must be {expected}, received {name}={value!r}")
    return float(value)


def check_int(where: str, name: str, value: Any, expected: str,
              ok: Callable[[int], bool]) -> int:
    """Return ``value`` as an int if it is an integer with ``ok(value)`` true, else ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not ok(int(value)):
        raise ValueError(f"{where}: {name} must be {expected}, received {name}={value!r}")
    return int(value)


class Optimizer:
    """Base class: validation, clipping, learning-rate schedules, state and config.

    Subclasses define ``_slot_names()`` (the per-parameter state, all created as zeros of
    the parameter's shape and dtype) and ``_update(params, grads, lr)``, which calls the
    algorithm's pure update function with the slots of :meth:`_slots`. A subclass whose
    update treats every element alike (no per-tensor norms) sets ``elementwise = True``: its
    ``_update`` then runs once on all parameters gathered into one flat array.

    Args:
        learning_rate: a positive float, or a schedule: any callable of the step count
            (``0`` for the first update), such as those of
            :mod:`cnnumpy.optimizers.schedules`.
        clipnorm: if set, each gradient is clipped to this L2 norm separately.
        global_clipnorm: if set, all gradients together are clipped to this L2 norm.
    """

    elementwise = False
    """Whether ``_update`` may run on all parameters gathered into one flat array."""

    def __init__(self, learning_rate: float | Callable[[int], float], *,
                 clipnorm: float | None = None, global_clipnorm: float | None = None) -> None:
        where = type(self).__name__
        if not callable(learning_rate):
            learning_rate = check_float(where, "learning_rate", learning_rate,
                                        "a positive float or a schedule", lambda v: v > 0)
        positive = "None or a positive float"
        if clipnorm is not None:
            clipnorm = check_float(where, "clipnorm", clipnorm, positive, lambda v: v > 0)
        if global_clipnorm is not None:
            global_clipnorm = check_float(where, "global_clipnorm", global_clipnorm, positive,
                                          lambda v: v > 0)
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError(f"{where}: set clipnorm or global_clipnorm, not both; received "
                             f"clipnorm={clipnorm!r}, global_clipnorm={global_clipnorm!r}")
        self.learning_rate = learning_rate
        self.clipnorm = clipnorm
        self.global_clipnorm = global_clipnorm
        self.iterations = 0
        self.state: dict[int, dict[str, Any]] = {}
        self._packed: packing.Packed | None = None  # the slots, one flat array per name
        self._flat: dict[str, Any] | None = None  # set while _update runs on flat arrays

    def __repr__(self) -> str:
        return f"<{type(self).__name__} iterations={self.iterations}>"

    @property
    def current_learning_rate(self) -> float:
        """The learning rate the next update will use."""
        if not callable(self.learning_rate):
            return self.learning_rate
        lr = self.learning_rate(self.iterations)
        if not isinstance(lr, (int, float, np.number)) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"{type(self).__name__}: the learning-rate schedule returned "
                             f"{lr!r} at step {self.iterations}; expected a float >= 0")
        return float(lr)

    # ----- the update ----------------------------------------------------------------------
    def apply(self, params: list[Any], grads: list[Any]) -> None:
        """Update each parameter in place from its gradient, then count one step.

        Args:
            params: the arrays to update (float arrays, changed in place).
            grads: one gradient per parameter, of the same shape.
        """
        grads = self._check_lists(params, grads)
        if self.clipnorm is not None:
            grads = clip_by_norm(grads, self.clipnorm)
        if self.global_clipnorm is not None:
            grads = clip_by_global_norm(grads, self.global_clipnorm)
        lr = self.current_learning_rate
        if not self.state:
            self.state = {i: {name: xp.zeros_like(p) for name in self._slot_names()}
                          for i, p in enumerate(params)}
        else:
            self._check_state(params)
        if not (self.elementwise and packing.pays(params)):
            self._update(list(params), grads, lr)
        else:
            self._update_flat(list(params), grads, lr)
        self.iterations += 1

    def _update_flat(self, params: list[Any], grads: list[Any], lr: float) -> None:
        """``_update`` once, on the parameters and gradients gathered into one flat array
        each and the slots packed (packing them first if anything replaced one); the same
        elementwise arithmetic as parameter by parameter, so the same results."""
        if not packing.packed(self.state, self._packed):
            self._packed = packing.pack(self.state)
        if self._packed is None:  # slots of mixed dtypes: one parameter at a time
            self._update(params, grads, lr)
            return
        flat = packing.gather(params)
        self._flat = {name: slots for name, (slots, _) in self._packed.items()}
        try:
            self._update([flat], [packing.gather(grads)], lr)
        finally:
            self._flat = None
        packing.scatter(flat, params)

    def _slot_names(self) -> tuple[str, ...]:
        return ()

    def _slots(self, name: str) -> list[Any]:
        """The slot ``name`` of every parameter, in parameter order (one flat array of them
        all while ``_update`` runs on flat arrays)."""
        if self._flat is not None:
            return [self._flat[name]]
        return [self.state[i][name] for i in range(len(self.state))]

    def _update(self, params: list[Any], grads: list[Any], lr: float) -> None:
        raise NotImplementedError

    def _check_lists(self, params: Any, grads: Any) -> list[Any]:
        where = type(self).__name__
        for label, seq in (("params", params), ("grads", grads)):
            if not isinstance(seq, (list, tuple)):
                raise TypeError(f"{where}.apply: {label} must be a list of arrays, received "
                                f"{type(seq).__name__}")
        if len(params) != len(grads):
            raise ValueError(f"{where}.apply: received {len(params)} params but "
                             f"{len(grads)} grads; expected one gradient per parameter")
        checked = []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if not isinstance(p, xp.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"{where}.apply: params[{i}] must be a float array (updated "
                                f"in place), received {type(p).__name__}"
                                f"{' of dtype ' + p.dtype.name if hasattr(p, 'dtype') else ''}")
            if g is None:
                raise TypeError(f"{where}.apply: grads[{i}] is None; run backward before "
                                f"apply (params[{i}] has shape {p.shape})")
            g = xp.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"{where}.apply: grads[{i}] has shape {g.shape} but "
                                 f"params[{i}] has shape {p.shape}")
            checked.append(g if g.dtype == p.dtype else g.astype(p.dtype))
        return checked

    def _check_state(self, params: list[Any]) -> None:
        where = type(self).__name__
        if len(self.state) != len(params):
            raise ValueError(f"{where}.apply: the optimizer holds state for "
                             f"{len(self.state)} parameters but received {len(params)}; "
                             "use one optimizer per list of parameters")
        for i, p in enumerate(params):
            for name, slot in self.state[i].items():
                if slot.shape != p.shape:
                    raise ValueError(f"{where}.apply: state {name!r} of parameter {i} has "
                                     f"shape {slot.shape} but params[{i}] has shape {p.shape}")
                if slot.dtype != p.dtype:
                    self.state[i][name] = slot.astype(p.dtype)

    # ----- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"iterations": int, "state": {index: {slot_name: array}}}`` (copies)."""
        return {"iterations": self.iterations,
                "state": {i: {k: v.copy() for k, v in slots.items()}
                          for i, slots in self.state.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the optimizer then continues exactly.

        Indices may be ints or digit strings (as after a JSON round trip). An empty ``state``
        (a fresh optimizer's, or SGD's without momentum) means slots are created at the next
        ``apply``.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"iterations", "state"}:
            raise ValueError(f"{where}: expected a dict with keys 'iterations' and 'state', "
                             f"received {state_dict!r:.200}")
        iterations = check_int(where, "iterations", state_dict["iterations"],
                               "a non-negative int", lambda v: v >= 0)
        raw = state_dict["state"]
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: 'state' must be a dict, received {type(raw).__name__}")
        entries = {}
        for key, slots in raw.items():
            index = int(key) if isinstance(key, str) and key.isdigit() else key
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise ValueError(f"{where}: state keys must be parameter indices, "
                                 f"received {key!r}")
            entries[int(index)] = slots
        if sorted(entries) != list(range(len(entries))):
            raise ValueError(f"{where}: state keys must be 0..{len(entries) - 1}, "
                             f"received {sorted(entries)}")
        if self.state and entries and len(entries) != len(self.state):
            raise ValueError(f"{where}: received state for {len(entries)} parameters, "
                             f"the optimizer has {len(self.state)}")
        expected = set(self._slot_names())
        new_state: dict[int, dict[str, Any]] = {}
        for i in range(len(entries)):
            slots = entries[i]
            if not isinstance(slots, dict) or set(slots) != expected:
                got = sorted(slots) if isinstance(slots, dict) else slots
                raise ValueError(f"{where}: parameter {i} needs slots {sorted(expected)}, "
                                 f"received {got!r}")
            new_state[i] = {}
            for name, value in slots.items():
                arr = xp.array(value)
                if arr.dtype.kind != "f":
                    raise ValueError(f"{where}: slot {name!r} of parameter {i} must be a "
                                     f"float array, received dtype {arr.dtype.name}")
                if self.state:
                    old = self.state[i][name]
                    if arr.shape != old.shape:
                        raise ValueError(f"{where}: slot {name!r} of parameter {i} has shape "
                                         f"{arr.shape}, expected {old.shape}")
                    arr = arr.astype(old.dtype, copy=False)
                new_state[i][name] = arr
        self.state = new_state
        self.iterations = iterations

    # ----- config --------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-friendly values; ``from_config`` rebuilds the optimizer.

        Raises:
            TypeError: if the learning rate is a plain callable (not a schedule class).
        """
        from cnnumpy.optimizers import schedules  # here: schedules imports this module

        lr: float | Callable[[int], float] | dict[str, Any] = self.learning_rate
        if callable(lr):
            if not isinstance(lr, schedules.LearningRateSchedule):
                raise TypeError(f"{type(self).__name__}.get_config: cannot serialize "
                                f"learning_rate={lr!r}; only floats and the schedules of "
                                "cnnumpy.optimizers.schedules can be saved")
            lr = schedules.serialize(lr)
        return {"learning_rate": lr, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        """The optimizer that ``get_config`` describes (its state starts empty)."""
        from cnnumpy.optimizers import schedules

        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)
