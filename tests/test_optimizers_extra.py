"""Gradient clipping on every optimizer, RMSprop and AdamW: golden values worked by hand
(PyTorch's formulas), both the packed (flat-buffer) and the loose (per-parameter) paths."""

from __future__ import annotations

import numpy as np
import pytest

import nnlib as nn
from nnlib.optimizers import SGD, Adam, AdamW, Momentum, RMSprop
from nnlib.parameter import Parameter, pack

# Two parameters of different shapes; values and two rounds of gradients, float64.
P0 = [np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.5]]), np.array([0.1, -0.2, 0.3])]
G1 = [np.array([[0.5, -1.0, 2.0], [-0.25, 0.75, 1.5]]), np.array([-0.3, 0.6, 0.05])]
G2 = [np.array([[-0.4, 0.2, 1.0], [0.5, -0.125, 0.25]]), np.array([0.2, -0.1, 0.4])]


def make_params(packed: bool, values=P0, dtype=np.float64) -> list[Parameter]:
    params = [Parameter(np.array(v, dtype=dtype), name=f"p{i}") for i, v in enumerate(values)]
    if packed:
        pack(params, np.dtype(dtype))
    return params


def run(opt, packed: bool, steps: int, grads=(G1, G2), values=P0) -> list[np.ndarray]:
    params = make_params(packed, values)
    for g in list(grads)[:steps]:
        for p, gi in zip(params, g):
            p.grad[...] = gi  # in place: packed grads stay views into the flat buffer
        opt.step(params)
    if packed:  # the flat path really ran: every state slot is a view of one buffer
        for slot in opt.slots:
            bases = [opt.state[p][slot].base for p in params]
            assert bases[0] is not None and all(b is bases[0] for b in bases)
    return [p.value.copy() for p in params]


# -- hand computations (float64, torch.optim formulas) ---------------------------------------------
def hand_rmsprop(lr, alpha, eps, mu, centered, wd, steps):
    out = []
    for p, g1, g2 in zip(P0, G1, G2):
        p = p.copy()
        v, a, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
        for g in [g1, g2][:steps]:
            d = g + wd * p
            v = alpha * v + (1 - alpha) * d * d
            if centered:
                a = alpha * a + (1 - alpha) * d
                denom = np.sqrt(v - a * a) + eps
            else:
                denom = np.sqrt(v) + eps
            if mu:
                buf = mu * buf + d / denom
                p = p - lr * buf
            else:
                p = p - lr * d / denom
        out.append(p)
    return out


def hand_adamw(lr, b1, b2, eps, wd, steps):
    out = []
    for p, g1, g2 in zip(P0, G1, G2):
        p = p.copy()
        m, v = np.zeros_like(p), np.zeros_like(p)
        for t, g in enumerate([g1, g2][:steps], start=1):
            p = p * (1 - lr * wd)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(p)
    return out


CASES = [
    ("rmsprop", lambda: RMSprop(lr=0.01), lambda s: hand_rmsprop(0.01, 0.99, 1e-8, 0.0, False, 0.0, s)),
    ("rmsprop_custom", lambda: RMSprop(lr=0.1, alpha=0.5, eps=1e-3),
     lambda s: hand_rmsprop(0.1, 0.5, 1e-3, 0.0, False, 0.0, s)),
    ("rmsprop_momentum", lambda: RMSprop(lr=0.01, momentum=0.9),
     lambda s: hand_rmsprop(0.01, 0.99, 1e-8, 0.9, False, 0.0, s)),
    ("rmsprop_centered", lambda: RMSprop(lr=0.01, centered=True),
     lambda s: hand_rmsprop(0.01, 0.99, 1e-8, 0.0, True, 0.0, s)),
    ("rmsprop_all", lambda: RMSprop(lr=0.05, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.1),
     lambda s: hand_rmsprop(0.05, 0.9, 1e-8, 0.5, True, 0.1, s)),
    ("adamw", lambda: AdamW(lr=0.01), lambda s: hand_adamw(0.01, 0.9, 0.999, 1e-8, 1e-2, s)),
    ("adamw_custom", lambda: AdamW(lr=0.1, beta1=0.5, beta2=0.75, eps=1e-3, weight_decay=0.5),
     lambda s: hand_adamw(0.1, 0.5, 0.75, 1e-3, 0.5, s)),
]


@pytest.mark.parametrize("steps", [1, 2], ids=["one_step", "two_steps"])
@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize("name,make,hand", CASES, ids=[c[0] for c in CASES])
def test_golden_values(name, make, hand, packed, steps):
    """Vector parameters follow the torch.optim formulas written out in numpy, on both paths."""
    got = run(make(), packed, steps)
    for g, w, p0 in zip(got, hand(steps), P0):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)
        assert not np.allclose(g, p0)


@pytest.mark.parametrize("name,make,hand", CASES, ids=[c[0] for c in CASES])
def test_packed_and_loose_paths_agree(name, make, hand, packed_matches_loose):
    packed_matches_loose(run, make)


# -- literal golden values, worked on paper for a scalar p = 1, g1 = 0.5, g2 = -0.25 ----------------
# RMSprop lr=0.01 (alpha 0.99, eps 1e-8):
#   t=1: v = 0.01*0.25 = 0.0025, sqrt(v) = 0.05, p1 = 1 - 0.01*0.5/0.05000001 = 0.90000002
#   t=2: v = 0.99*0.0025 + 0.01*0.0625 = 0.0031, sqrt = 0.0556776436, p2 = 0.90000002 + 0.0025/0.0556776536
#        = 0.9449013374
# RMSprop lr=0.01, momentum=0.9: buf1 = 0.5/0.05000001 = 9.999998, p1 = 0.90000002;
#   buf2 = 0.9*9.999998 - 0.25/0.0556776536 = 4.5098664558, p2 = 0.90000002 - 0.045098664558 = 0.8549013554
# RMSprop lr=0.01, centered: a1 = 0.005, sqrt(0.0025 - 0.000025) = 0.0497493719, p1 = 1 - 0.005/0.0497493819
#   = 0.8994962387; a2 = 0.99*0.005 - 0.0025 = 0.00245, sqrt(0.0031 - 0.0000060025) = 0.0556237135,
#   p2 = 0.8994962387 + 0.0025/0.0556237235 = 0.9444410903
# AdamW lr=0.1, wd=0.1 (decay factor 1 - 0.01 = 0.99):
#   t=1: p = 0.99, then Adam's first step 0.1*0.5/(0.5 + 1e-8) = 0.099999998 -> p1 = 0.890000002
#   t=2: p = 0.99*0.890000002 = 0.88110000198, then Adam's second step (same as the Adam golden in
#        test_optimizers.py: 0.900000002 - 0.8733662987 = 0.0266337033) -> p2 = 0.8544662987
@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize(("opt", "p1", "p2", "rtol"), [
    (lambda: RMSprop(lr=0.01), 0.90000002, 0.9449013374, 1e-10),
    (lambda: RMSprop(lr=0.01, momentum=0.9), 0.90000002, 0.8549013554, 1e-10),
    (lambda: RMSprop(lr=0.01, centered=True), 0.8994962387, 0.9444410903, 1e-10),
    (lambda: AdamW(lr=0.1, weight_decay=0.1), 0.890000002, 0.8544662987, 1e-10),
], ids=["rmsprop", "rmsprop_momentum", "rmsprop_centered", "adamw"])
def test_scalar_golden_steps_worked_by_hand(opt, p1, p2, rtol, packed, two_scalar_steps):
    got1, got2, untouched = two_scalar_steps(opt(), packed)
    np.testing.assert_allclose([got1, got2], [p1, p2], rtol=rtol)
    assert untouched == 0.0  # zero gradient, no decay of 0: untouched


def test_adamw_decay_is_decoupled_from_adam_l2():
    """AdamW's decay never enters the moments: with g = 0 Adam(wd) moves by a full lr step, AdamW only shrinks p."""
    p = Parameter(np.array([2.0]))
    AdamW(lr=0.1, weight_decay=0.5).step([p])  # p *= 1 - 0.05 -> 1.9; m = v = 0 -> no Adam step
    assert p.value[0] == pytest.approx(1.9, abs=1e-15)
    p = Parameter(np.array([2.0]))
    Adam(lr=0.1, weight_decay=0.5).step([p])  # g = 0 + 0.5*2 = 1 -> p -= 0.1 * 1/(1 + 1e-8)
    assert p.value[0] == pytest.approx(1.9, abs=1e-8)
    # and with a gradient the two differ: AdamW 1.9 - 0.1 = 1.8, Adam 2 - 0.1 (g + wd p = 2 > 0) = 1.9
    p, q = Parameter(np.array([2.0])), Parameter(np.array([2.0]))
    p.grad[...] = q.grad[...] = 1.0
    AdamW(lr=0.1, weight_decay=0.5).step([p])
    Adam(lr=0.1, weight_decay=0.5).step([q])
    assert p.value[0] == pytest.approx(1.8, abs=1e-7)
    assert q.value[0] == pytest.approx(1.9, abs=1e-7)
    assert p.grad[0] == 1.0  # AdamW leaves grad as the loss's gradient


def test_rmsprop_state_slots():
    assert RMSprop().slots == ("square_avg",)
    assert RMSprop(momentum=0.5, centered=True).slots == ("square_avg", "momentum_buffer", "grad_avg")
    opt = RMSprop(lr=0.1)
    p = Parameter(np.array([1.0, 2.0]))
    p.grad[...] = [0.5, -1.0]
    opt.step([p])
    np.testing.assert_allclose(opt.state[p]["square_avg"], 0.01 * np.array([0.25, 1.0]), rtol=1e-14)


def test_defaults_follow_pytorch():
    r = RMSprop()
    assert (r.lr, r.alpha, r.eps, r.momentum, r.centered, r.weight_decay) == (0.01, 0.99, 1e-8, 0.0, False, 0.0)
    a = AdamW()
    assert (a.lr, a.beta1, a.beta2, a.eps, a.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 1e-2)


def test_registry_and_config_round_trip():
    assert isinstance(nn.optimizers.get("rmsprop"), RMSprop)
    assert isinstance(nn.optimizers.get("adamw"), AdamW)
    for opt in [RMSprop(lr=0.2, alpha=0.9, momentum=0.3, centered=True, weight_decay=0.1, clipvalue=2.0),
                AdamW(lr=0.3, weight_decay=0.2, global_clipnorm=1.5), SGD(clipnorm=0.5)]:
        config = opt.get_config()
        clone = nn.optimizers.get({"name": type(opt).registered_name, "config": config})
        assert type(clone) is type(opt) and clone.get_config() == config
    assert RMSprop(clipvalue=2.0).get_config()["clipvalue"] == 2.0
    assert Adam().get_config()["clipnorm"] is None


# -- gradient clipping --------------------------------------------------------------------------------
# Two parameters: a = [1, 2] with gradient [3, 4] (norm 5), b = [1] with gradient [0.5] (norm 0.5). SGD lr = 0.1.
CLIP_VALUES = [np.array([1.0, 2.0]), np.array([1.0])]
CLIP_GRADS = [np.array([3.0, 4.0]), np.array([0.5])]


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize(("opt", "a", "b"), [
    # clipnorm=1 per parameter: a's grad -> [0.6, 0.8] (norm 1), b's (0.5 < 1) unchanged
    #   a = [1 - 0.06, 2 - 0.08] = [0.94, 1.92];  b = 1 - 0.05 = 0.95
    (lambda: SGD(lr=0.1, clipnorm=1.0), [0.94, 1.92], [0.95]),
    # global_clipnorm=1: total = sqrt(9 + 16 + 0.25) = 5.0249378106, c = 1/(5.0249378106 + 1e-6) = 0.1990073984
    #   a = [1 - 0.3c, 2 - 0.4c] = [0.9402977805, 1.9203970406];  b = 1 - 0.05c = 0.9900496301
    (lambda: SGD(lr=0.1, global_clipnorm=1.0), [0.9402977805, 1.9203970406], [0.9900496301]),
    # global_clipnorm=10 > total: c = 10/5.025 > 1 is clamped to 1, nothing clipped
    (lambda: SGD(lr=0.1, global_clipnorm=10.0), [0.7, 1.6], [0.95]),
    # clipvalue=0.5: a's grad -> [0.5, 0.5], b's stays 0.5;  a = [0.95, 1.95], b = 0.95
    (lambda: SGD(lr=0.1, clipvalue=0.5), [0.95, 1.95], [0.95]),
    # clipvalue then L2 decay (wd = 0.1): a's grad -> [0.5 + 0.1, 0.5 + 0.2] = [0.6, 0.7] -> a = [0.94, 1.93]
    #   b: 0.5 + 0.1 = 0.6 -> 0.94  (decay first would give a's grad [3.1, 4.2] -> [0.5, 0.5] -> [0.95, 1.95])
    (lambda: SGD(lr=0.1, weight_decay=0.1, clipvalue=0.5), [0.94, 1.93], [0.94]),
], ids=["clipnorm", "global_clipnorm", "global_clipnorm_no_op", "clipvalue", "clip_before_decay"])
def test_clipping_golden_values(opt, a, b, packed):
    got = run(opt(), packed, 1, grads=[CLIP_GRADS], values=CLIP_VALUES)
    np.testing.assert_allclose(got[0], a, rtol=1e-10)
    np.testing.assert_allclose(got[1], b, rtol=1e-10)


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
def test_global_clipnorm_guard_matches_pytorch(packed):
    """At total == max_norm PyTorch still scales by max/(total + 1e-6): [3, 4] with max 5 -> [2.9999994, 3.9999992]."""
    params = make_params(packed, [np.array([0.0, 0.0])])
    params[0].grad[...] = [3.0, 4.0]
    SGD(lr=1.0, global_clipnorm=5.0).step(params)
    np.testing.assert_allclose(params[0].grad, [2.99999940000012, 3.99999920000016], rtol=1e-14)
    np.testing.assert_allclose(params[0].value, [-2.99999940000012, -3.99999920000016], rtol=1e-14)


@pytest.mark.parametrize("clip", [{"clipnorm": 0.7}, {"global_clipnorm": 0.9}, {"clipvalue": 0.3}])
@pytest.mark.parametrize("make", [Momentum, Adam, RMSprop, AdamW])
def test_clipping_on_every_optimizer_both_paths_agree(make, clip):
    """Clipping is in the base step: every optimizer accepts it, and the flat and per-parameter paths agree."""
    loose, packed = run(make(lr=0.1, **clip), False, 2), run(make(lr=0.1, **clip), True, 2)
    unclipped = run(make(lr=0.1), False, 2)
    for a, b in zip(loose, packed):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert any(not np.allclose(a, u) for a, u in zip(loose, unclipped))  # the clip really changed something


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
def test_clipping_leaves_grad_clipped_and_float32(packed):
    params = make_params(packed, CLIP_VALUES, np.float32)
    for p, g in zip(params, CLIP_GRADS):
        p.grad[...] = g
    SGD(lr=0.1, clipnorm=1.0).step(params)
    assert all(p.value.dtype == np.float32 and p.grad.dtype == np.float32 for p in params)
    np.testing.assert_allclose(params[0].grad, [0.6, 0.8], rtol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"clipnorm": 1.0, "global_clipnorm": 2.0}, r"clipnorm and global_clipnorm"),
    ({"clipnorm": 1.0, "clipvalue": 2.0}, r"clipnorm and clipvalue"),
    ({"global_clipnorm": 1.0, "clipvalue": 2.0}, r"global_clipnorm and clipvalue"),
    ({"clipnorm": 0.0}, r"clipnorm.*0"),
    ({"global_clipnorm": -1.0}, r"global_clipnorm.*-1"),
    ({"clipvalue": float("inf")}, r"clipvalue.*inf"),
    ({"clipvalue": float("nan")}, r"clipvalue.*nan"),
])
def test_clipping_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD(lr=0.1, **kwargs)
    with pytest.raises(ValueError, match=match):
        nn.optimizers.get("adamw", **kwargs)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: RMSprop(alpha=1.0), ValueError, r"alpha.*1"),
    (lambda: RMSprop(alpha=-0.1), ValueError, r"alpha.*-0\.1"),
    (lambda: RMSprop(eps=0.0), ValueError, r"eps.*0"),
    (lambda: RMSprop(momentum=1.0), ValueError, r"momentum.*1"),
    (lambda: RMSprop(centered=1), TypeError, r"centered.*1"),
    (lambda: RMSprop(lr=0), ValueError, r"lr.*0"),
    (lambda: AdamW(weight_decay=-0.1), ValueError, r"weight_decay.*-0\.1"),
    (lambda: AdamW(beta1=1.0), ValueError, r"beta1.*1"),
    (lambda: SGD(lr=0.1, clipnorm="1"), TypeError, r"clipnorm.*'1'"),
])
def test_hyperparameter_validation(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_model_trains_with_new_optimizers_and_clipping():
    """Through compile/fit (packed parameters, float32), each new optimizer lowers the loss."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    for opt in [RMSprop(lr=0.01), AdamW(lr=0.01), RMSprop(lr=0.01, momentum=0.9, centered=True, clipnorm=1.0),
                Momentum(lr=0.1, global_clipnorm=0.5), Adam(lr=0.01, clipvalue=0.1)]:
        model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(2)], seed=0)
        model.compile(opt, "softmax_cross_entropy")
        history = model.fit(x, y, epochs=15, batch_size=16, verbose=0, tol=None)
        assert history.history["loss"][-1] < 0.8 * history.history["loss"][0], opt
        assert all(w.dtype == np.float32 for w in model.get_weights())


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize("make,slot", [(lambda: nn.optimizers.Adam(lr=1e-3), "m"),
                                       (lambda: nn.optimizers.Momentum(lr=0.01, momentum=0.9), "velocity"),
                                       (lambda: nn.optimizers.RMSprop(lr=0.01, momentum=0.9), "momentum_buffer")])
def test_state_of_a_silent_parameter_never_turns_subnormal(make, slot, packed, monkeypatch):
    # One gradient, then zeros: the moment decays geometrically and would pass through the
    # subnormal floats (slow on x86); the flush zeroes it first, and the weights end the same.
    from nnlib import _optimizer_base

    def run():
        params = [Parameter(np.ones(40, np.float32), "p")]
        if packed:
            pack(params, np.dtype(np.float32))
        opt = make()
        params[0].grad[...] = np.linspace(1e-3, 1.0, 40, dtype=np.float32)
        opt.step(params)
        params[0].grad[...] = 0.0
        subnormal_steps = 0
        for _ in range(40 * 64):
            opt.step(params)
            state = opt.state[params[0]][slot]
            subnormal_steps += bool(np.any((state != 0) & (np.abs(state) < np.finfo(np.float32).tiny)))
        return params[0].value, opt.state[params[0]][slot], subnormal_steps

    value, state, subnormal_steps = run()
    assert subnormal_steps == 0
    assert np.all(state == 0)  # decayed away for good
    monkeypatch.setattr(_optimizer_base, "FLUSH_EVERY", 10**9)  # where step() reads it
    unflushed_value, unflushed_state, unflushed_subnormal_steps = run()
    assert unflushed_subnormal_steps > 0  # what the flush prevents
    np.testing.assert_array_equal(value, unflushed_value)


def test_flush_leaves_normal_state_alone():
    from nnlib.optimizers import FLUSH_EVERY

    p = Parameter(np.ones(3, np.float32), "p")
    opt = nn.optimizers.Momentum(lr=0.01, momentum=0.9)
    for _ in range(FLUSH_EVERY):
        p.grad[...] = [1e-3, 1e-20, -1e-25]
        opt.step([p])
    assert np.all(opt.state[p]["velocity"] != 0)  # fed every step: stays far above the threshold


# -- the windowed flat state (Optimizer notes): invisible outside the step ---------------------------
WINDOWED = {
    "momentum": lambda: Momentum(lr=0.05, momentum=0.5),  # window of 24 steps: 0.5**-24 = 2**24
    "nesterov_wd": lambda: Momentum(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda: Adam(lr=0.01, beta1=0.6, beta2=0.9),
    "adamw": lambda: AdamW(lr=0.01, beta1=0.9, beta2=0.999),
    "adam_beta1_0": lambda: Adam(lr=0.01, beta1=0.0),  # no window: m forgets every step
    "momentum_tiny": lambda: Momentum(lr=0.05, momentum=1e-9),  # no window: 1e-9**-2 > 2**24
}


def random_grads(steps, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(p.shape) for p in P0] for _ in range(steps)]


@pytest.mark.parametrize("make", WINDOWED.values(), ids=WINDOWED.keys())
def test_windowed_state_matches_the_plain_path_over_many_windows(make):
    """600 steps cross many window closes and two subnormal flushes; the state read afterwards
    is the true moment, as the per-parameter path (which never windows) computes it."""
    grads = random_grads(600)
    loose_opt, packed_opt = make(), make()
    loose = run(loose_opt, False, 600, grads)
    packed = run(packed_opt, True, 600, grads)
    for a, b in zip(loose, packed):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    for p_loose, p_packed in zip(loose_opt.state, packed_opt.state):
        for slot in packed_opt.slots:
            np.testing.assert_allclose(packed_opt.state[p_packed][slot], loose_opt.state[p_loose][slot],
                                       rtol=1e-10, atol=1e-12)


def test_reading_state_mid_window_shows_true_values_and_changes_nothing_else():
    grads = random_grads(10)
    params, opt = make_params(True), Momentum(lr=0.05, momentum=0.9)
    plain = Momentum(lr=0.05, momentum=0.9)
    plain_params = make_params(False)
    for g in grads:
        for p, q, gi in zip(params, plain_params, g):
            p.grad[...] = gi
            q.grad[...] = gi
        opt.step(params)
        plain.step(plain_params)
    assert opt._window == 10  # still open: nothing has read the state yet
    velocity = opt.state[params[0]]["velocity"]
    assert opt._window == 0
    np.testing.assert_allclose(velocity, plain.state[plain_params[0]]["velocity"], rtol=1e-13)
    assert velocity.base is opt.state[params[1]]["velocity"].base  # still the live flat buffer


def test_changing_a_decay_or_the_switch_mid_window_settles_with_the_old_one():
    """A user (or a schedule) may change momentum, or turn windowing off and on, between steps:
    the open window is closed with the decay it was opened with."""
    grads = random_grads(12)
    results = []
    for packed in (False, True):
        params, opt = make_params(packed), Momentum(lr=0.05, momentum=0.9)
        for i, g in enumerate(grads):
            if i == 6:
                opt.momentum = 0.5
            opt.windowed = i not in (3, 4, 9)
            for p, gi in zip(params, g):
                p.grad[...] = gi
            opt.step(params)
        results.append([p.value.copy() for p in params])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_copies_and_pickles_of_a_windowed_optimizer_hold_true_values():
    import copy
    import pickle

    grads = random_grads(5)
    params, opt = make_params(True), Adam(lr=0.01)
    for g in grads:
        for p, gi in zip(params, g):
            p.grad[...] = gi
        opt.step(params)
    m_copy = copy.deepcopy(opt)._state
    m_pickle = pickle.loads(pickle.dumps(opt))._state
    assert opt._window == 0  # copying closed the window first
    for p_copy, p_pickle, p in zip(m_copy, m_pickle, params):
        np.testing.assert_array_equal(m_copy[p_copy]["m"], opt.state[p]["m"])
        np.testing.assert_array_equal(m_pickle[p_pickle]["v"], opt.state[p]["v"])


def test_fit_ends_every_epoch_with_true_state():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 5)), rng.integers(0, 3, 64)
    model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(3)], seed=0)
    model.compile(Adam(lr=0.01), "softmax_cross_entropy")
    windows = []

    class Watch(nn.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            windows.append(self.model.optimizer._window)

        def on_epoch_end(self, epoch, logs=None):
            windows.append(("end", self.model.optimizer._window))

    model.fit(x, y, epochs=2, batch_size=16, verbose=0, tol=None, callbacks=[Watch()])
    assert windows == [1, 2, 3, 4, ("end", 0), 1, 2, 3, 4, ("end", 0)]


def test_a_subclass_with_its_own_update_is_not_windowed():
    """A user's Momentum variant with its own _update (here with dampening) knows nothing of the
    windowed form: it must get plain state, so packed and loose paths agree."""

    class Dampened(Momentum):
        def _update(self, value, grad, state, scratch):
            v = state["velocity"]
            v *= self.momentum
            v += 0.5 * grad
            value -= self.lr * v

    class Opted(Momentum):  # says it understands the windowed form: keeps it
        windowed = True

    assert Dampened.windowed is False and Opted.windowed is True and AdamW.windowed is True
    grads = random_grads(20)
    loose, packed = run(Dampened(lr=0.05), False, 20, grads), run(Dampened(lr=0.05), True, 20, grads)
    for a, b in zip(loose, packed):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("make", [lambda: Momentum(lr=0.05, momentum=0.9), lambda: Adam(lr=0.01)])
def test_float16_state_is_not_windowed(make):
    """float16 tops out at 65504: a window's growth of up to 2**24 would overflow it."""
    grads = random_grads(30)
    results = []
    for packed in (False, True):
        params = make_params(packed, dtype=np.float16)
        opt = make()
        for g in grads:
            for p, gi in zip(params, g):
                p.grad[...] = gi
            opt.step(params)
        assert opt._window == 0
        results.append([p.value.copy() for p in params])
    for a, b in zip(*results):
        assert np.isfinite(b).all()
        np.testing.assert_array_equal(b, a)


def test_numpy_scalar_hyperparameters_keep_float64_accuracy():
    """Hyperparameters set after construction may be NumPy float32 scalars: the window's
    powers and Adam's step scale are still computed in float64."""
    grads = random_grads(40)
    for make, name in ((lambda: Momentum(lr=0.05), "momentum"), (lambda: Adam(lr=0.01), "beta1")):
        results = []
        for packed in (False, True):
            opt = make()
            setattr(opt, name, np.float32(0.99))
            results.append(run(opt, packed, 40, grads))
        for a, b in zip(*results):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_optimizers_pickled_before_the_windowed_state_still_load():
    """An optimizer pickled by an older nnlib has a plain ``state`` attribute and no window
    fields, and its group class was nnlib.optimizers._Group."""
    import pickle

    from nnlib import optimizers

    assert optimizers._Group is nn.optimizers._Group  # the name old pickles look up
    params = make_params(True)
    opt = Adam(lr=0.01)
    for g in random_grads(3):
        for p, gi in zip(params, g):
            p.grad[...] = gi
        opt.step(params)
    old = {k: v for k, v in pickle.loads(pickle.dumps(opt)).__dict__.items() if not k.startswith("_window")}
    old["state"] = old.pop("_state")
    revived = Adam.__new__(Adam)
    revived.__setstate__(old)
    assert revived._window == 0 and revived.iterations == 3
    for p_old, p in zip(revived.state, params):
        np.testing.assert_array_equal(revived.state[p_old]["m"], opt.state[p]["m"])
    revived.step(list(revived.state))  # and it still steps
