"""Learning-rate schedules: formulas, PyTorch schedulers, config round trip, validation."""

from __future__ import annotations

import json
import math

import pytest

from cnnumpy.optimizers import schedules

torch = pytest.importorskip("torch")


def _torch_rates(make_scheduler, lr: float, steps: int) -> list[float]:
    """The learning rate a torch optimizer uses at each of ``steps`` updates."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = make_scheduler(opt)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_step_decay():
    s = schedules.StepDecay(0.1, step_size=3, gamma=0.5)
    assert [s(t) for t in range(7)] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025])
    expected = _torch_rates(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5), 0.1, 20)
    assert [s(t) for t in range(20)] == pytest.approx(expected, rel=1e-12)


def test_exponential_decay():
    s = schedules.ExponentialDecay(0.2, decay_steps=4, decay_rate=0.5)
    assert s(0) == 0.2 and s(4) == pytest.approx(0.1) and s(2) == pytest.approx(0.2 * 0.5**0.5)
    stair = schedules.ExponentialDecay(0.2, decay_steps=4, decay_rate=0.5, staircase=True)
    assert [stair(t) for t in (0, 3, 4, 7, 8)] == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05])
    per_step = schedules.ExponentialDecay(0.2, decay_steps=1, decay_rate=0.9)
    expected = _torch_rates(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9), 0.2, 20)
    assert [per_step(t) for t in range(20)] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_cosine_decay_matches_torch_up_to_decay_steps_then_stays(alpha):
    s = schedules.CosineDecay(0.1, decay_steps=12, alpha=alpha)
    expected = _torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
        o, T_max=12, eta_min=alpha * 0.1), 0.1, 13)
    assert [s(t) for t in range(13)] == pytest.approx(expected, rel=1e-10, abs=1e-14)
    assert s(6) == pytest.approx(0.1 * ((1 - alpha) * 0.5 + alpha))
    assert s(12) == s(100) == pytest.approx(alpha * 0.1)


def test_cosine_decay_with_warmup():
    s = schedules.CosineDecay(0.0001, decay_steps=10, alpha=0.2, warmup_steps=4,
                              warmup_target=0.01)
    assert s(0) == 0.0001
    assert s(2) == pytest.approx(0.0001 + (0.01 - 0.0001) / 2)
    assert s(4) == pytest.approx(0.01)
    assert s(4 + 5) == pytest.approx(0.01 * (0.8 * 0.5 * (1 + math.cos(math.pi / 2)) + 0.2))
    assert s(14) == s(1000) == pytest.approx(0.002)


@pytest.mark.parametrize("schedule", [
    schedules.StepDecay(0.1, 5, gamma=0.3),
    schedules.ExponentialDecay(0.1, 2.5, 0.7, staircase=True),
    schedules.CosineDecay(0.1, 50, alpha=0.05, warmup_steps=3, warmup_target=0.3),
])
def test_config_round_trip(schedule):
    data = json.loads(json.dumps(schedules.serialize(schedule)))
    assert data["class_name"] == type(schedule).__name__
    again = schedules.deserialize(data)
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    assert [again(t) for t in range(60)] == [schedule(t) for t in range(60)]
    assert type(schedule).from_config(schedule.get_config()).get_config() == \
        schedule.get_config()


@pytest.mark.parametrize("make, match", [
    (lambda: schedules.StepDecay(0, 3), r"StepDecay: initial_learning_rate must be a float > 0"),
    (lambda: schedules.StepDecay(0.1, 0), "step_size must be a positive int, received "
                                          "step_size=0"),
    (lambda: schedules.StepDecay(0.1, 2.5), "step_size=2.5"),
    (lambda: schedules.StepDecay(0.1, 3, gamma=-1), "gamma must be a float > 0"),
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), "decay_steps must be a number > 0"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0), "decay_rate must be a float > 0"),
    (lambda: schedules.CosineDecay(0.1, 10, alpha=1.5), r"alpha must be in \[0, 1\]"),
    (lambda: schedules.CosineDecay(0.1, -1), "decay_steps must be a positive int"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_steps=5), "needs a warmup_target"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_steps=2, warmup_target=0),
     "warmup_target must be None or a float > 0"),
    (lambda: schedules.StepDecay(0.1, 3)(-1), "step must be a non-negative int"),
    (lambda: schedules.deserialize({"class_name": "Eval", "config": {}}), "deserialize"),
])
def test_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_only_builtin_schedules_serialize():
    class Custom(schedules.StepDecay):
        pass

    with pytest.raises(TypeError, match="can only serialize"):
        schedules.serialize(Custom(0.1, 2))
    with pytest.raises(TypeError, match="staircase must be True or False"):
        schedules.ExponentialDecay(0.1, 2, 0.5, staircase="no")
