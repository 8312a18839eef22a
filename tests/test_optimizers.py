"""nnlib/optimizers (base, algorithms, _flat): golden values computed by hand (PyTorch's formulas) on the
packed (flat-buffer) and loose (per-parameter) paths, the fast updates against their plain reference ones,
clipping, state, subnormal flushing, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnlib as nn
from nnlib.optimizers import SGD, Adam, AdamW, Momentum, RMSprop
from nnlib.parameter import Parameter, pack

# Two parameters of different shapes; values and two rounds of gradients, float64.
P0 = [np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.5]]), np.array([0.1, -0.2, 0.3])]
G1 = [np.array([[0.5, -1.0, 2.0], [-0.25, 0.75, 1.5]]), np.array([-0.3, 0.6, 0.05])]
G2 = [np.array([[-0.4, 0.2, 1.0], [0.5, -0.125, 0.25]]), np.array([0.2, -0.1, 0.4])]


def make_params(packed: bool, dtype=np.float64, values=P0) -> list[Parameter]:
    params = [Parameter(np.array(v, dtype=dtype), name=f"p{i}") for i, v in enumerate(values)]
    if packed:
        pack(params, np.dtype(dtype))
    return params


def set_grads(params: list[Parameter], grads: list[np.ndarray]) -> None:
    for p, g in zip(params, grads):
        p.grad[...] = g  # in place: packed grads must stay views into the flat buffer


def run(opt, packed: bool, steps: int, dtype=np.float64, grads=(G1, G2), values=P0) -> list[np.ndarray]:
    params = make_params(packed, dtype, values)
    for g in list(grads)[:steps]:
        set_grads(params, g)
        opt.step(params)
    if packed:  # the flat-buffer path really ran: state entries are views of one buffer
        for slot in opt.slots:
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
    ("rmsprop_alpha_one", lambda: RMSprop(alpha=1.0), ValueError, r"alpha.*1"),
    ("rmsprop_alpha_negative", lambda: RMSprop(alpha=-0.1), ValueError, r"alpha.*-0\.1"),
    ("rmsprop_eps_zero", lambda: RMSprop(eps=0.0), ValueError, r"eps.*0"),
    ("rmsprop_momentum_one", lambda: RMSprop(momentum=1.0), ValueError, r"momentum.*1"),
    ("rmsprop_centered_int", lambda: RMSprop(centered=1), TypeError, r"centered.*1"),
    ("rmsprop_lr_zero", lambda: RMSprop(lr=0), ValueError, r"lr.*0"),
    ("adamw_wd_negative", lambda: AdamW(weight_decay=-0.1), ValueError, r"weight_decay.*-0\.1"),
    ("adamw_beta1_one", lambda: AdamW(beta1=1.0), ValueError, r"beta1.*1"),
    ("sgd_clipnorm_str", lambda: SGD(lr=0.1, clipnorm="1"), TypeError, r"clipnorm.*'1'"),
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
#   t=2: p = 0.99*0.890000002 = 0.88110000198, then Adam's second step (same as the Adam golden
#        above: 0.900000002 - 0.8733662987 = 0.0266337033) -> p2 = 0.8544662987
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize(("opt", "p1", "p2", "rtol"), [
    (lambda: SGD(lr=0.1), 0.95, 0.975, 1e-15),
    (lambda: SGD(lr=0.1, weight_decay=0.1), 0.94, 0.9556, 1e-15),
    (lambda: Momentum(lr=0.1, momentum=0.9), 0.95, 0.93, 1e-15),
    (lambda: Momentum(lr=0.1, momentum=0.9, nesterov=True), 0.905, 0.912, 1e-15),
    (lambda: Adam(lr=0.1), 0.900000002, 0.8733662987, 1e-10),
    (lambda: RMSprop(lr=0.01), 0.90000002, 0.9449013374, 1e-10),
    (lambda: RMSprop(lr=0.01, momentum=0.9), 0.90000002, 0.8549013554, 1e-10),
    (lambda: RMSprop(lr=0.01, centered=True), 0.8994962387, 0.9444410903, 1e-10),
    (lambda: AdamW(lr=0.1, weight_decay=0.1), 0.890000002, 0.8544662987, 1e-10),
], ids=["sgd", "sgd_wd", "momentum", "nesterov", "adam", "rmsprop", "rmsprop_momentum", "rmsprop_centered", "adamw"])
def test_scalar_golden_steps_worked_by_hand(opt, p1, p2, rtol, packed, two_scalar_steps):
    """Two steps on a scalar parameter land on values worked out on paper (see the comment above)."""
    got1, got2, untouched = two_scalar_steps(opt(), packed)
    np.testing.assert_allclose([got1, got2], [p1, p2], rtol=rtol)
    assert untouched == 0.0  # zero gradient, nothing to decay (and no decay of 0): untouched


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
    params = make_params(packed, values=[np.array([0.0, 0.0])])
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
    params = make_params(packed, np.float32, CLIP_VALUES)
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
    from nnlib.optimizers import base

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
    monkeypatch.setattr(base, "FLUSH_EVERY", 10**9)  # where step() reads it
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


# -- plain state: the fast updates against their reference, no side effects -------------------------
def random_grads(steps, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(p.shape) for p in P0] for _ in range(steps)]


def test_numpy_scalar_hyperparameters_keep_float64_accuracy():
    """Hyperparameters set after construction may be NumPy float32 scalars: Adam's step scale is
    still computed in float64, and the packed and loose paths agree."""
    grads = random_grads(40)
    for make, name in ((lambda: Momentum(lr=0.05), "momentum"), (lambda: Adam(lr=0.01), "beta1")):
        results = []
        for packed in (False, True):
            opt = make()
            setattr(opt, name, np.float32(0.99))
            results.append(run(opt, packed, 40, grads=grads))
        for a, b in zip(*results):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


ALL_OPTIMIZERS = [(name, make) for name, make, _ in CASES] + [
    ("momentum_clipnorm", lambda: Momentum(lr=0.05, clipnorm=0.7)),
    ("adam_global_clipnorm_wd", lambda: Adam(lr=0.01, weight_decay=0.05, global_clipnorm=0.9)),
    ("adamw_clipvalue", lambda: AdamW(lr=0.01, clipvalue=0.3)),
]


@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-10, 1e-12), (np.float32, 1e-4, 1e-5)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize("name,make", ALL_OPTIMIZERS, ids=[c[0] for c in ALL_OPTIMIZERS])
def test_fast_update_matches_its_plain_reference_over_many_steps(name, make, packed, dtype, rtol, atol):
    """600 steps (two subnormal flushes), gradients with exact zeros: the BLAS/in-place fast path and the
    docstring's lines in plain NumPy (``reference = True``) give the same weights and the same state."""
    grads = random_grads(600)
    for g in grads[::7]:
        g[0][0, 1] = 0.0  # a pixel that is often blank
    fast, reference = make(), make()
    reference.reference = True
    got = run(fast, packed, 600, dtype, grads=grads)
    want = run(reference, packed, 600, dtype, grads=grads)
    for a, b, p0 in zip(got, want, P0):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
        assert not np.allclose(a, p0)
    for p_fast, p_ref in zip(fast.state, reference.state):
        for slot in fast.slots:
            np.testing.assert_allclose(fast.state[p_fast][slot], reference.state[p_ref][slot], rtol=rtol, atol=atol)


def test_reference_update_is_not_the_fast_one():
    """The comparison above is not vacuous: the two updates are separate code (a broken fast
    path is caught), and a base class without a reference says so."""
    opt = Adam(lr=0.01)
    opt.reference = True
    broken = Adam(lr=0.01)
    broken._update = lambda value, grad, state, scratch: None  # a fast path that forgot to step
    assert not np.allclose(run(opt, True, 2)[0], run(broken, True, 2)[0])

    class Bare(nn.Optimizer):
        def _update(self, value, grad, state, scratch):
            value -= self.lr * grad

    bare = Bare(lr=0.1)
    bare.reference = True
    with pytest.raises(NotImplementedError, match="Bare has no reference update"):
        run(bare, False, 1)


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize("make", [lambda: Momentum(lr=0.05, momentum=0.9), lambda: Adam(lr=0.01),
                                  lambda: RMSprop(lr=0.01, momentum=0.5, centered=True)],
                         ids=["momentum", "adam", "rmsprop"])
def test_reading_state_changes_nothing(make, packed):
    """Reading ``state`` (and Adam's ``moments``) between steps is a plain read: the run is bit-identical
    to one that never looked, and the arrays read are the live state."""
    grads = random_grads(40)
    watched, unwatched = make(), make()
    params, plain_params = make_params(packed), make_params(packed)
    for g in grads:
        set_grads(params, g)
        set_grads(plain_params, g)
        watched.step(params)
        unwatched.step(plain_params)
        for p in params:
            seen = {slot: a.copy() for slot, a in watched.state[p].items()}
            if isinstance(watched, Adam):
                m, v = watched.moments(p)
                np.testing.assert_array_equal(m, seen["m"])
                np.testing.assert_array_equal(v, seen["v"])
    for p, q in zip(params, plain_params):
        np.testing.assert_array_equal(p.value, q.value)
        for slot in watched.slots:
            np.testing.assert_array_equal(watched.state[p][slot], unwatched.state[q][slot])
    if packed:  # the state read is the flat buffer itself, not a copy
        assert watched.state[params[0]][watched.slots[0]].base is watched._group.state[watched.slots[0]]


def test_copies_and_pickles_of_an_optimizer_hold_its_state():
    import copy
    import pickle

    grads = random_grads(5)
    params, opt = make_params(True), Adam(lr=0.01)
    for g in grads[:3]:
        set_grads(params, g)
        opt.step(params)
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert clone.iterations == 3
        for p_clone, p in zip(clone.state, params):
            for slot in ("m", "v"):
                np.testing.assert_array_equal(clone.state[p_clone][slot], opt.state[p][slot])
        cloned_params = list(clone.state)
        for g in grads[3:]:
            for p, gi in zip(cloned_params, g):
                p.grad[...] = gi
            clone.step(cloned_params)
        assert clone.iterations == 5

