"""Optimizers: parity with torch.optim over 10 steps, clipping, schedules, state, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnumpy import optimizers
from cnnumpy.optimizers import schedules

torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]
STEPS = 10
MAX_NORM = 1.5


def _problem(seed: int = 0, dtype=np.float64):
    """Initial params and a fixed sequence of gradients (norms around 0.5 to 4)."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    scales = rng.uniform(0.2, 1.5, size=(STEPS, len(SHAPES)))
    grads = [[(rng.standard_normal(s) * scales[t, i]).astype(dtype)
              for i, s in enumerate(SHAPES)] for t in range(STEPS)]
    return params, grads


# (our class, our kwargs, torch class, torch kwargs): same hyperparameters under both names
CASES = {
    "sgd": (optimizers.SGD, dict(learning_rate=0.1),
            torch.optim.SGD, dict(lr=0.1)),
    "sgd-momentum": (optimizers.SGD, dict(learning_rate=0.1, momentum=0.9),
                     torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    "sgd-nesterov": (optimizers.SGD, dict(learning_rate=0.05, momentum=0.8, nesterov=True),
                     torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True)),
    "sgd-weight-decay": (optimizers.SGD, dict(learning_rate=0.1, momentum=0.5,
                                              weight_decay=0.01),
                         torch.optim.SGD, dict(lr=0.1, momentum=0.5, weight_decay=0.01)),
    "adam": (optimizers.Adam, dict(learning_rate=0.01),
             torch.optim.Adam, dict(lr=0.01, eps=1e-7)),
    "adam-weight-decay": (optimizers.Adam, dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99,
                                                epsilon=1e-6, weight_decay=0.05),
                          torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                                 weight_decay=0.05)),
    "adam-amsgrad": (optimizers.Adam, dict(learning_rate=0.01, amsgrad=True),
                     torch.optim.Adam, dict(lr=0.01, eps=1e-7, amsgrad=True)),
    "adamw": (optimizers.AdamW, dict(learning_rate=0.01, weight_decay=0.1),
              torch.optim.AdamW, dict(lr=0.01, eps=1e-7, weight_decay=0.1)),
    "rmsprop": (optimizers.RMSprop, dict(learning_rate=0.01),
                torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-7)),
    "rmsprop-momentum": (optimizers.RMSprop, dict(learning_rate=0.01, rho=0.8, momentum=0.9),
                         torch.optim.RMSprop, dict(lr=0.01, alpha=0.8, momentum=0.9, eps=1e-7)),
    "rmsprop-centered": (optimizers.RMSprop, dict(learning_rate=0.01, centered=True,
                                                  momentum=0.5),
                         torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-7, centered=True,
                                                   momentum=0.5)),
    "rmsprop-weight-decay": (optimizers.RMSprop, dict(learning_rate=0.01, weight_decay=0.1),
                             torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-7,
                                                       weight_decay=0.1)),
}


def _run_ours(opt, params, grads):
    params = [p.copy() for p in params]
    ids = [id(p) for p in params]
    for step_grads in grads:
        opt.apply(params, step_grads)
    assert [id(p) for p in params] == ids, "params must be updated in place"
    return params


def _run_torch(cls, kwargs, params, grads, clip=None, scheduler=None):
    tparams = [torch.tensor(p, requires_grad=True) for p in params]
    opt = cls(tparams, **kwargs)
    sched = scheduler(opt) if scheduler else None
    for step_grads in grads:
        for tp, g in zip(tparams, step_grads, strict=True):
            tp.grad = torch.tensor(g)
        if clip == "clipnorm":
            for tp in tparams:
                torch.nn.utils.clip_grad_norm_([tp], MAX_NORM)
        elif clip == "global_clipnorm":
            torch.nn.utils.clip_grad_norm_(tparams, MAX_NORM)
        opt.step()
        if sched:
            sched.step()
    return [tp.detach().numpy() for tp in tparams]


@pytest.mark.parametrize("clip", [None, "clipnorm", "global_clipnorm"])
@pytest.mark.parametrize("case", list(CASES))
def test_ten_steps_match_torch(case, clip):
    ours, kwargs, theirs, tkwargs = CASES[case]
    params, grads = _problem()
    clip_kwargs = {clip: MAX_NORM} if clip else {}
    opt = ours(**kwargs, **clip_kwargs)
    got = _run_ours(opt, params, grads)
    assert opt.iterations == STEPS
    expected = _run_torch(theirs, tkwargs, params, grads, clip)
    for g, e, p in zip(got, expected, params, strict=True):
        assert not np.allclose(g, p)  # the test would notice a no-op
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def test_clipping_changes_the_result_and_leaves_grads_alone():
    params, grads = _problem()
    before = [[g.copy() for g in gs] for gs in grads]
    plain = _run_ours(optimizers.SGD(0.1), params, grads)
    clipped = _run_ours(optimizers.SGD(0.1, clipnorm=MAX_NORM), params, grads)
    clipped_all = _run_ours(optimizers.SGD(0.1, global_clipnorm=MAX_NORM), params, grads)
    assert not np.allclose(plain[0], clipped[0])
    assert not np.allclose(clipped[0], clipped_all[0])
    for gs, bs in zip(grads, before, strict=True):
        for g, b in zip(gs, bs, strict=True):
            np.testing.assert_array_equal(g, b)


@pytest.mark.parametrize("ours, schedule, theirs, tkwargs, scheduler", [
    (optimizers.SGD, schedules.StepDecay(0.1, step_size=3, gamma=0.5),
     torch.optim.SGD, dict(lr=0.1, momentum=0.9),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
    (optimizers.Adam, schedules.CosineDecay(0.01, decay_steps=STEPS, alpha=0.1),
     torch.optim.Adam, dict(lr=0.01, eps=1e-7),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.001)),
    (optimizers.RMSprop, schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.8),
     torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-7),
     lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8)),
])
def test_schedule_matches_torch_scheduler(ours, schedule, theirs, tkwargs, scheduler):
    params, grads = _problem(seed=3)
    extra = {"momentum": 0.9} if ours is optimizers.SGD else {}
    opt = ours(learning_rate=schedule, **extra)
    assert opt.current_learning_rate == schedule(0)
    got = _run_ours(opt, params, grads)
    assert opt.current_learning_rate == schedule(STEPS)
    expected = _run_torch(theirs, tkwargs, params, grads, scheduler=scheduler)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["sgd-momentum", "adam-amsgrad", "rmsprop-centered"])
def test_state_dict_round_trip_continues_exactly(case):
    ours, kwargs, _, _ = CASES[case]
    params, grads = _problem(seed=4)
    original = ours(**kwargs)
    for g in grads[:5]:
        original.apply(params, g)
    saved = original.state_dict()
    # through JSON-like storage: string keys and lists (as a model file may give back)
    stored = json.loads(json.dumps({"iterations": saved["iterations"], "state": {
        str(i): {k: v.tolist() for k, v in slots.items()} for i, slots in saved["state"].items()
    }}))
    restored = ours.from_config(original.get_config())
    restored.load_state_dict(stored)
    assert restored.iterations == 5
    twin = [p.copy() for p in params]
    for g in grads[5:]:
        original.apply(params, g)
        restored.apply(twin, g)
    for a, b in zip(params, twin, strict=True):
        np.testing.assert_array_equal(a, b)
    # the saved dict holds copies: later steps did not change it
    assert saved["iterations"] == 5
    assert not np.array_equal(saved["state"][0][ours(**kwargs)._slot_names()[0]],
                              original.state[0][ours(**kwargs)._slot_names()[0]])


def test_load_state_dict_validates():
    params, grads = _problem()
    opt = optimizers.Adam()
    opt.apply(params, grads[0])
    good = opt.state_dict()
    with pytest.raises(ValueError, match="keys 'iterations' and 'state'"):
        opt.load_state_dict({"state": {}})
    with pytest.raises(ValueError, match="state for 2 parameters, the optimizer has 3"):
        opt.load_state_dict({"iterations": 1, "state": {0: good["state"][0],
                                                        1: good["state"][1]}})
    bad = {"iterations": 1, "state": dict(good["state"])}
    bad["state"][1] = {"exp_avg": np.zeros(5)}
    with pytest.raises(ValueError, match=r"parameter 1 needs slots \['exp_avg', 'exp_avg_sq'\]"):
        opt.load_state_dict(bad)
    bad["state"][1] = {"exp_avg": np.zeros(6), "exp_avg_sq": np.zeros(5)}
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 1 has shape \(6,\), expected"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="iterations must be a non-negative int"):
        opt.load_state_dict({"iterations": -1, "state": good["state"]})
    opt.load_state_dict({"iterations": 7, "state": {}})  # empty: slots made at next apply
    assert opt.iterations == 7 and opt.state == {}
    opt.apply(params, grads[1])
    assert set(opt.state[2]) == {"exp_avg", "exp_avg_sq"}
    fresh = optimizers.Adam()
    fresh.load_state_dict({"iterations": 1, "state": {0: good["state"][0]}})
    with pytest.raises(ValueError, match="holds state for 1 parameters but received 3"):
        fresh.apply(params, grads[1])


def test_float32_params_keep_their_dtype():
    params, grads = _problem(dtype=np.float32)
    for name in ("sgd", "adam", "adamw", "rmsprop"):
        opt = optimizers.get(name)
        ps = _run_ours(opt, params, grads)
        assert all(p.dtype == np.float32 for p in ps)
        assert all(s.dtype == np.float32 for slots in opt.state.values() for s in slots.values())


def test_apply_rejects_bad_lists():
    opt = optimizers.SGD()
    p = [np.zeros((2, 3)), np.zeros(4)]
    with pytest.raises(ValueError, match="received 2 params but 1 grads"):
        opt.apply(p, [np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"grads\[1\] has shape \(5,\) but params\[1\] has "
                                         r"shape \(4,\)"):
        opt.apply(p, [np.zeros((2, 3)), np.zeros(5)])
    with pytest.raises(TypeError, match=r"grads\[0\] is None"):
        opt.apply(p, [None, np.zeros(4)])
    with pytest.raises(TypeError, match=r"params\[0\] must be a float array"):
        opt.apply([[0.0, 1.0]], [np.zeros(2)])
    assert opt.iterations == 0 and not opt.state


@pytest.mark.parametrize("make, match", [
    (lambda: optimizers.SGD(learning_rate=0), "learning_rate must be a positive float.*=0"),
    (lambda: optimizers.SGD(learning_rate="fast"), "learning_rate=.fast."),
    (lambda: optimizers.SGD(momentum=-0.1), "momentum must be a float >= 0.*-0.1"),
    (lambda: optimizers.SGD(nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda: optimizers.Adam(beta_1=1.0), r"beta_1 must be in \[0, 1\).*beta_1=1.0"),
    (lambda: optimizers.AdamW(beta_2=-0.5), r"AdamW: beta_2 must be in \[0, 1\)"),
    (lambda: optimizers.Adam(epsilon=-1e-8), "epsilon must be a float >= 0"),
    (lambda: optimizers.RMSprop(rho=1.5), r"rho must be in \[0, 1\).*1.5"),
    (lambda: optimizers.RMSprop(momentum=float("nan")), "momentum.*nan"),
    (lambda: optimizers.SGD(clipnorm=0), "clipnorm must be None or a positive float"),
    (lambda: optimizers.SGD(clipnorm=1, global_clipnorm=1), "not both"),
])
def test_constructor_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_schedule_returning_garbage_is_reported():
    opt = optimizers.SGD(learning_rate=lambda step: float("nan"))
    with pytest.raises(ValueError, match="schedule returned nan at step 0"):
        opt.apply([np.zeros(2)], [np.ones(2)])


def test_registry_and_config_round_trip():
    assert isinstance(optimizers.get("sgd"), optimizers.SGD)
    assert type(optimizers.get("adam")) is optimizers.Adam
    assert type(optimizers.get("adamw")) is optimizers.AdamW
    assert type(optimizers.get("rmsprop")) is optimizers.RMSprop
    opt = optimizers.RMSprop(0.01, momentum=0.5)
    assert optimizers.get(opt) is opt
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'.*'rmsprop'"):
        optimizers.get("adagrad")
    sched = schedules.CosineDecay(0.1, 100, alpha=0.2, warmup_steps=5, warmup_target=0.5)
    for opt in (optimizers.AdamW(learning_rate=sched, global_clipnorm=2.0),
                optimizers.SGD(0.5, momentum=0.9, nesterov=True, clipnorm=1.0),
                optimizers.RMSprop(centered=True)):
        data = json.loads(json.dumps(optimizers.serialize(opt)))
        assert optimizers.OPTIMIZERS[data["name"]] is type(opt)
        again = optimizers.deserialize(data)
        assert type(again) is type(opt)
        assert again.get_config() == opt.get_config()
    assert again_lr_is_schedule(optimizers.deserialize(optimizers.serialize(
        optimizers.AdamW(learning_rate=sched))), sched)
    with pytest.raises(TypeError, match="cannot serialize learning_rate=<function"):
        optimizers.SGD(learning_rate=lambda s: 0.1).get_config()
    with pytest.raises(ValueError, match="deserialize: expected"):
        optimizers.deserialize({"name": "builtins.eval", "config": {}})


def again_lr_is_schedule(opt, sched):
    lr = opt.learning_rate
    return type(lr) is type(sched) and lr.get_config() == sched.get_config()
