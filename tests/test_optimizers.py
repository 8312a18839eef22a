"""Optimizers: golden values computed by hand (PyTorch's formulas), both code paths, state, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnlib as nn
from nnlib.optimizers import SGD, Adam, Momentum
from nnlib.parameter import Parameter, pack

# Two parameters of different shapes; values and two rounds of gradients, float64.
P0 = [np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.5]]), np.array([0.1, -0.2, 0.3])]
G1 = [np.array([[0.5, -1.0, 2.0], [-0.25, 0.75, 1.5]]), np.array([-0.3, 0.6, 0.05])]
G2 = [np.array([[-0.4, 0.2, 1.0], [0.5, -0.125, 0.25]]), np.array([0.2, -0.1, 0.4])]


def make_params(packed: bool, dtype=np.float64) -> list[Parameter]:
    params = [Parameter(np.array(v, dtype=dtype), name=f"p{i}") for i, v in enumerate(P0)]
    if packed:
        pack(params, np.dtype(dtype))
    return params


def set_grads(params: list[Parameter], grads: list[np.ndarray]) -> None:
    for p, g in zip(params, grads):
        p.grad[...] = g  # in place: packed grads must stay views into the flat buffer


def run(opt, packed: bool, steps: int, dtype=np.float64) -> list[np.ndarray]:
    params = make_params(packed, dtype)
    for g in [G1, G2][:steps]:
        set_grads(params, g)
        opt.step(params)
    if packed:  # the flat-buffer path really ran: state entries are views of one buffer
        for slot in type(opt).slots:
            bases = [opt.state[p][slot].base for p in params]
            assert bases[0] is not None and all(b is bases[0] for b in bases)
    return [p.value.copy() for p in params]


# -- hand computations (float64, PyTorch's torch.optim formulas) ------------------------------------
def hand_sgd(lr, wd, steps):
    out = []
    for p, g1, g2 in zip(P0, G1, G2):
        p = p.astype(np.float64).copy()
        for g in [g1, g2][:steps]:
            d = g + wd * p
            p = p - lr * d
        out.append(p)
    return out


def hand_momentum(lr, mu, nesterov, wd, steps):
    out = []
    for p, g1, g2 in zip(P0, G1, G2):
        p = p.astype(np.float64).copy()
        v = np.zeros_like(p)
        for g in [g1, g2][:steps]:
            d = g + wd * p
            v = mu * v + d
            p = p - lr * (d + mu * v) if nesterov else p - lr * v
        out.append(p)
    return out


def hand_adam(lr, b1, b2, eps, wd, steps):
    out = []
    for p, g1, g2 in zip(P0, G1, G2):
        p = p.astype(np.float64).copy()
        m = np.zeros_like(p)
        v = np.zeros_like(p)
        for t, g in enumerate([g1, g2][:steps], start=1):
            d = g + wd * p
            m = b1 * m + (1 - b1) * d
            v = b2 * v + (1 - b2) * d * d
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return out


CASES = [
    ("sgd", lambda: SGD(lr=0.1), lambda s: hand_sgd(0.1, 0.0, s)),
    ("sgd_wd", lambda: SGD(lr=0.1, weight_decay=0.01), lambda s: hand_sgd(0.1, 0.01, s)),
    ("momentum", lambda: Momentum(lr=0.1, momentum=0.9), lambda s: hand_momentum(0.1, 0.9, False, 0.0, s)),
    ("momentum_wd", lambda: Momentum(lr=0.05, momentum=0.8, weight_decay=0.1),
     lambda s: hand_momentum(0.05, 0.8, False, 0.1, s)),
    ("nesterov", lambda: Momentum(lr=0.1, momentum=0.9, nesterov=True),
     lambda s: hand_momentum(0.1, 0.9, True, 0.0, s)),
    ("nesterov_wd", lambda: Momentum(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
     lambda s: hand_momentum(0.05, 0.8, True, 0.1, s)),
    ("adam", lambda: Adam(lr=0.01), lambda s: hand_adam(0.01, 0.9, 0.999, 1e-8, 0.0, s)),
    ("adam_custom", lambda: Adam(lr=0.1, beta1=0.5, beta2=0.75, eps=1e-3),
     lambda s: hand_adam(0.1, 0.5, 0.75, 1e-3, 0.0, s)),
    ("adam_wd", lambda: Adam(lr=0.01, weight_decay=0.1), lambda s: hand_adam(0.01, 0.9, 0.999, 1e-8, 0.1, s)),
]


@pytest.mark.parametrize("steps", [1, 2], ids=["one_step", "two_steps"])
@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize("name,make,hand", CASES, ids=[c[0] for c in CASES])
def test_golden_values(name, make, hand, packed, steps):
    got = run(make(), packed, steps)
    want = hand(steps)
    for g, w, p0 in zip(got, want, P0):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)
        assert not np.allclose(g, p0)  # the step did something


@pytest.mark.parametrize("name,make,hand", CASES, ids=[c[0] for c in CASES])
def test_packed_and_loose_paths_agree(name, make, hand, packed_matches_loose):
    packed_matches_loose(run, make)


def test_scalar_goldens_by_hand():
    # SGD: 1.0 - 0.1 * 0.5 = 0.95
    p = Parameter(np.array([1.0]))
    p.grad[...] = 0.5
    SGD(lr=0.1).step([p])
    assert p.value[0] == pytest.approx(0.95, abs=1e-15)
    # SGD + wd: g = 0.5 + 0.1 * 1.0 = 0.6 -> 1.0 - 0.1 * 0.6 = 0.94
    p = Parameter(np.array([1.0]))
    p.grad[...] = 0.5
    SGD(lr=0.1, weight_decay=0.1).step([p])
    assert p.value[0] == pytest.approx(0.94, abs=1e-15)
    # Momentum mu=0.5, g=1 twice: v1=1, p=1-0.1=0.9; v2=0.5+1=1.5, p=0.9-0.15=0.75
    p = Parameter(np.array([1.0]))
    opt = Momentum(lr=0.1, momentum=0.5)
    for _ in range(2):
        p.grad[...] = 1.0
        opt.step([p])
    assert p.value[0] == pytest.approx(0.75, abs=1e-15)
    # Nesterov mu=0.5, g=1 twice: v1=1, p=1-0.1*(1+0.5)=0.85; v2=1.5, p=0.85-0.1*(1+0.75)=0.675
    p = Parameter(np.array([1.0]))
    opt = Momentum(lr=0.1, momentum=0.5, nesterov=True)
    for _ in range(2):
        p.grad[...] = 1.0
        opt.step([p])
    assert p.value[0] == pytest.approx(0.675, abs=1e-15)
    # Adam, first step: m_hat = g, v_hat = g^2 -> p -= lr * g / (|g| + eps)
    p = Parameter(np.array([1.0, 1.0]))
    p.grad[...] = [0.5, -2.0]
    Adam(lr=0.1).step([p])
    np.testing.assert_allclose(p.value, [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), 1.0 + 0.1 * 2.0 / (2.0 + 1e-8)],
                               rtol=1e-14)


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize("cls,slots", [(SGD, ()), (Momentum, ("velocity",)), (Adam, ("m", "v"))])
def test_lazy_state(cls, slots, packed):
    opt = cls(lr=0.1)
    params = make_params(packed)
    assert opt.state == {}
    assert opt.iterations == 0
    set_grads(params, G1)
    opt.step(params)
    assert opt.iterations == 1
    for p in params:
        assert p in opt.state
        assert set(opt.state[p]) == set(slots)
        for s in slots:
            assert opt.state[p][s].shape == p.shape
            assert opt.state[p][s].dtype == p.value.dtype
    if cls is Momentum:  # first step: v = g
        for p, g in zip(params, G1):
            np.testing.assert_array_equal(opt.state[p]["velocity"], g)
    if cls is Adam:  # first step, PyTorch's exp_avg and exp_avg_sq: m = (1-b1) g, v = (1-b2) g^2
        for p, g in zip(params, G1):
            m, v = opt.moments(p)
            np.testing.assert_allclose(m, 0.1 * g, rtol=1e-12)
            np.testing.assert_allclose(v, 0.001 * g * g, rtol=1e-9)


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize("make", [lambda: SGD(lr=0.5), lambda: Momentum(lr=0.5, momentum=0.9),
                                  lambda: Momentum(lr=0.5, nesterov=True), lambda: Adam(lr=0.5)],
                         ids=["sgd", "momentum", "nesterov", "adam"])
def test_zero_gradient_first_step_changes_nothing(make, packed):
    opt = make()
    params = make_params(packed)
    # whole zero gradient on the bias, elementwise zeros in the weight
    g_w = np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    set_grads(params, [g_w, np.zeros(3)])
    opt.step(params)
    np.testing.assert_array_equal(params[1].value, P0[1])
    mask = g_w == 0
    np.testing.assert_array_equal(params[0].value[mask], P0[0][mask])
    assert np.all(params[0].value[~mask] != P0[0][~mask])


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1, weight_decay=0.01),
                                  lambda: Momentum(lr=0.1, nesterov=True, weight_decay=0.01),
                                  lambda: Adam(lr=0.1, weight_decay=0.01)],
                         ids=["sgd", "nesterov", "adam"])
def test_float32_stays_float32(make, packed):
    opt = make()
    params = make_params(packed, np.float32)
    for g in (G1, G2):
        set_grads(params, g)
        opt.step(params)
    for p in params:
        assert p.value.dtype == np.float32
        assert p.grad.dtype == np.float32
        for arr in opt.state[p].values():
            assert arr.dtype == np.float32
    # and the float32 result is close to the float64 one
    ref = run(make(), packed, 2)
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.value, r, rtol=1e-5, atol=1e-6)


def test_model_float32_training_keeps_optimizer_float32():
    x = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=np.float64)
    y = np.array([0, 1, 1, 0])
    for opt in ["sgd", "momentum", "adam"]:
        model = nn.Sequential([nn.Dense(3, input_dim=2, activation="tanh"), nn.Dense(2)], seed=0)
        model.compile(opt, "softmax_cross_entropy")
        model.fit(x, y, epochs=2, batch_size=2, verbose=0, tol=None)
        assert all(w.dtype == np.float32 for w in model.get_weights())
        for st in model.optimizer.state.values():
            assert all(a.dtype == np.float32 for a in st.values())


BAD_HYPER = [
    ("sgd_lr_zero", lambda: SGD(lr=0), ValueError, r"lr.*\b0\b"),
    ("sgd_lr_negative", lambda: SGD(lr=-1.0), ValueError, r"lr.*-1"),
    ("adam_lr_nan", lambda: Adam(lr=float("nan")), ValueError, r"lr.*nan"),
    ("adam_lr_inf", lambda: Adam(lr=float("inf")), ValueError, r"lr.*inf"),
    ("momentum_lr_str", lambda: Momentum(lr="a"), TypeError, r"lr.*'a'"),
    ("sgd_lr_none", lambda: SGD(lr=None), TypeError, r"lr.*None"),
    ("sgd_lr_bool", lambda: SGD(lr=True), TypeError, r"lr.*True"),
    ("momentum_one", lambda: Momentum(momentum=1.0), ValueError, r"momentum.*1"),
    ("momentum_negative", lambda: Momentum(momentum=-0.1), ValueError, r"momentum.*-0\.1"),
    ("momentum_big", lambda: Momentum(momentum=1.5), ValueError, r"momentum.*1\.5"),
    ("beta1_one", lambda: Adam(beta1=1.0), ValueError, r"beta1.*1"),
    ("beta1_negative", lambda: Adam(beta1=-0.5), ValueError, r"beta1.*-0\.5"),
    ("beta2_one", lambda: Adam(beta2=1.0), ValueError, r"beta2.*1"),
    ("beta2_negative", lambda: Adam(beta2=-0.001), ValueError, r"beta2.*-0\.001"),
    ("eps_zero", lambda: Adam(eps=0.0), ValueError, r"eps.*0"),
    ("eps_negative", lambda: Adam(eps=-1e-8), ValueError, r"eps.*-1e-08"),
    ("sgd_wd_negative", lambda: SGD(weight_decay=-0.1), ValueError, r"weight_decay.*-0\.1"),
    ("adam_wd_negative", lambda: Adam(weight_decay=-1), ValueError, r"weight_decay.*-1"),
    ("momentum_wd_negative", lambda: Momentum(weight_decay=-0.5), ValueError, r"weight_decay.*-0\.5"),
    ("nesterov_int", lambda: Momentum(nesterov=1), TypeError, r"nesterov.*1"),
    ("nesterov_str", lambda: Momentum(nesterov="yes"), TypeError, r"nesterov.*'yes'"),
]


@pytest.mark.parametrize("make,exc,match", [c[1:] for c in BAD_HYPER], ids=[c[0] for c in BAD_HYPER])
def test_hyperparameter_validation(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_valid_hyperparameter_edges_accepted():
    assert Momentum(momentum=0.0).momentum == 0.0
    assert Adam(beta1=0.0, beta2=0.0).beta1 == 0.0
    assert SGD(lr=np.float32(0.5)).lr == 0.5
    assert Momentum(nesterov=np.bool_(True)).nesterov is True
    assert SGD(weight_decay=0).weight_decay == 0.0


def test_defaults_match_issue():
    adam = Adam()
    assert (adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 0.0)
    mom = Momentum(lr=0.1)
    assert (mom.momentum, mom.nesterov) == (0.9, False)


def test_registry_names():
    assert isinstance(nn.optimizers.get("sgd"), SGD)
    assert isinstance(nn.optimizers.get("momentum"), Momentum)
    assert isinstance(nn.optimizers.get("adam"), Adam)
    assert isinstance(nn.optimizers.get("ADAM"), Adam)
    assert nn.optimizers.get("adam", lr=0.5).lr == 0.5
    assert nn.optimizers.get({"name": "momentum", "config": {"lr": 0.2, "nesterov": True}}).nesterov is True
    assert nn.optimizers.get(Adam).lr == 1e-3
    inst = SGD(lr=0.3)
    assert nn.optimizers.get(inst) is inst
    with pytest.raises(ValueError, match=r"unknown optimizer 'adagrad'.*adam.*momentum.*sgd"):
        nn.optimizers.get("adagrad")
    with pytest.raises(ValueError, match=r"lr.*-1"):
        nn.optimizers.get("sgd", lr=-1)


def test_compile_adam_before_build():
    model = nn.Sequential([nn.Dense(4, activation="relu"), nn.Dense(2)], seed=0)
    assert not model.built
    model.compile("adam", loss="softmax_cross_entropy")
    assert isinstance(model.optimizer, Adam)
    assert model.optimizer.state == {}
    x = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0], [2.0, 2.0, 0.0]])
    model.fit(x, np.array([0, 1, 0]), epochs=1, verbose=0)
    assert model.built
    assert model.optimizer.iterations == 1
    assert len(model.optimizer.state) == len(model.get_weights()) == 4


def test_state_survives_reloading_params_list():
    # Stepping with a fresh list of the same Parameter objects keeps the state (momentum accumulates).
    params = make_params(False)
    opt = Momentum(lr=0.1, momentum=0.9)
    set_grads(params, G1)
    opt.step(params)
    set_grads(params, G2)
    opt.step(list(params))
    for p, want in zip(params, hand_momentum(0.1, 0.9, False, 0.0, 2)):
        np.testing.assert_allclose(p.value, want, rtol=1e-12)


def test_iterations_count_and_bias_correction_uses_step():
    # Adam's t is the number of steps: after 3 steps with constant g, m_hat = g exactly.
    p = Parameter(np.array([0.0]))
    opt = Adam(lr=0.01, beta1=0.5, beta2=0.5, eps=1e-8)
    for _ in range(3):
        p.grad[...] = 2.0
        opt.step([p])
    assert opt.iterations == 3
    # each step is lr * 2 / (2 + eps)
    assert p.value[0] == pytest.approx(-3 * 0.01 * 2.0 / (2.0 + 1e-8), rel=1e-12)
    assert math.isfinite(p.value[0])


# -- literal golden values, worked on paper for a scalar p = 1, g1 = 0.5, g2 = -0.25 ----------------
# SGD lr=0.1:                 p1 = 1 - 0.1*0.5 = 0.95;  p2 = 0.95 + 0.1*0.25 = 0.975
# SGD lr=0.1, wd=0.1:         d1 = 0.6, p1 = 0.94;  d2 = -0.25 + 0.094 = -0.156, p2 = 0.9556
# Momentum lr=0.1, mu=0.9:    v1 = 0.5, p1 = 0.95;  v2 = 0.45 - 0.25 = 0.2, p2 = 0.93
# Nesterov lr=0.1, mu=0.9:    p1 = 1 - 0.1*(0.5 + 0.45) = 0.905;  v2 = 0.2, p2 = 0.905 - 0.1*(-0.25 + 0.18) = 0.912
# Adam lr=0.1 (0.9, 0.999, 1e-8): t=1: m_hat = 0.5, v_hat = 0.25, p1 = 1 - 0.1*0.5/(0.5 + 1e-8) = 0.900000002
#   t=2: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225,
#        m_hat = 0.02/0.19 = 0.1052631579, v_hat = 0.00031225/0.001999 = 0.1562031016, sqrt = 0.3952253807,
#        p2 = 0.900000002 - 0.1*0.1052631579/0.3952253907 = 0.8733662987
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize(("opt", "p1", "p2", "rtol"), [
    (lambda: SGD(lr=0.1), 0.95, 0.975, 1e-15),
    (lambda: SGD(lr=0.1, weight_decay=0.1), 0.94, 0.9556, 1e-15),
    (lambda: Momentum(lr=0.1, momentum=0.9), 0.95, 0.93, 1e-15),
    (lambda: Momentum(lr=0.1, momentum=0.9, nesterov=True), 0.905, 0.912, 1e-15),
    (lambda: Adam(lr=0.1), 0.900000002, 0.8733662987, 1e-10),
], ids=["sgd", "sgd_wd", "momentum", "nesterov", "adam"])
def test_scalar_golden_steps_worked_by_hand(opt, p1, p2, rtol, packed, two_scalar_steps):
    """Two steps on a scalar parameter land on values worked out on paper (see the comment above)."""
    got1, got2, untouched = two_scalar_steps(opt(), packed)
    np.testing.assert_allclose([got1, got2], [p1, p2], rtol=rtol)
    assert untouched == 0.0  # zero gradient, nothing to decay: untouched
