"""nnlib/gradcheck.py: the result object, detection of wrong backward passes, whole-model checks, that
checking never changes the object it was given, where the default tolerance turns pass into fail, and that
the differences are central (exact on a strongly curved function where one-sided ones are far off)."""

import numpy as np
import pytest

import nnlib as nn


class DoubledReLU(nn.ReLU):
    """ReLU whose backward is wrong by a factor 2 (in dL/dx)."""

    def _backward(self, g, dx):
        super()._backward(g, dx)
        dx *= 2


class BadBiasDense(nn.Dense):
    """Dense whose bias gradient is wrong by a factor 1.5."""

    def backward(self, grad_out):
        dx = super().backward(grad_out)
        self.bias.grad *= 1.5
        return dx


class BadWeightDense(nn.Dense):
    """Dense whose weight gradient has the wrong sign."""

    def backward(self, grad_out):
        dx = super().backward(grad_out)
        self.weight.grad *= -1
        return dx


class Square(nn.Layer):
    """A custom layer y = x^2 with a backward missing its factor 2."""

    def forward(self, x, training=False):
        self._x = x
        return x * x

    def backward(self, grad_out):
        return grad_out * self._x

    def symbolic(self, sp, x):
        return x ** 2  # an object array of sympy expressions


def x_away_from_zero(rng, shape):
    return rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)


@pytest.mark.parametrize("checker", [nn.check_gradients, nn.check_symbolic])
def test_result_fields_and_str(checker, rng):
    """A passing check has ok=True, a small max_error equal to errors[worst], and an 'OK' summary."""
    layer = nn.Dense(2, activation="tanh", name="d")
    result = checker(layer, x_away_from_zero(rng, (3, 3)))
    assert isinstance(result, nn.GradCheckResult)
    assert result.ok is True
    assert set(result.errors) == {"input", "d/weight", "d/bias"}
    assert result.worst in result.errors
    assert result.max_error == max(result.errors.values()) == result.errors[result.worst]
    assert 0 <= result.max_error < 1e-6
    text = str(result)
    assert "OK" in text and "MISMATCH" not in text and result.worst in text


@pytest.mark.parametrize("checker", [nn.check_gradients, nn.check_symbolic])
@pytest.mark.parametrize("make, worst", [
    (lambda: DoubledReLU(), "input"),
    (lambda: Square(), "input"),
    (lambda: BadBiasDense(3, name="broken"), "broken/bias"),
    (lambda: BadWeightDense(3, activation="sigmoid", name="broken"), "broken/weight"),
], ids=["doubled_relu", "custom_square", "bad_bias", "bad_weight"])
def test_broken_backward_is_caught(checker, make, worst, rng):
    """A wrong backward gives ok=False (no exception) and ``worst`` names the broken array."""
    result = checker(make(), x_away_from_zero(rng, (4, 3)))
    assert result.ok is False
    assert result.worst == worst
    assert result.max_error > 1e-3
    assert "MISMATCH" in str(result) and worst in str(result)


def test_broken_layer_inside_model_is_named(rng):
    """In a model check the broken parameter of a named layer is the worst entry."""
    model = nn.Sequential([nn.Dense(4, input_dim=3, activation="tanh"), BadBiasDense(2, name="head")], seed=0)
    model.compile(optimizer="sgd", loss="mse")
    result = nn.check_gradients(model, rng.standard_normal((5, 3)), rng.standard_normal((5, 2)))
    assert result.ok is False and result.worst == "head/bias"


@pytest.mark.parametrize("loss, targets", [
    ("softmax_cross_entropy", lambda rng: rng.integers(0, 3, 6)),
    ("mse", lambda rng: rng.standard_normal((6, 3))),
])
def test_whole_model_check(loss, targets, rng):
    """A compiled float32 model passes the float64 check, which covers the input and every parameter,
    and leaves the model's dtype and weights untouched."""
    model = nn.Sequential([nn.Dense(5, input_dim=4, activation="tanh"), nn.Sigmoid(), nn.Dense(3)], seed=0)
    model.compile(optimizer="sgd", loss=loss)
    before = [p.value.copy() for p in model.parameters()]
    x = rng.standard_normal((6, 4)).astype(np.float32)
    result = nn.check_gradients(model, x, targets(rng))
    assert result.ok, str(result)
    names = [p.name for p in model.parameters()]
    assert len(names) == 4
    assert set(result.errors) == {"input", *names}
    assert result.max_error < 1e-6  # impossible in float32 arithmetic
    for p, v in zip(model.parameters(), before):
        assert p.value.dtype == np.float32
        np.testing.assert_array_equal(p.value, v)


def test_model_check_needs_compiled_loss(rng):
    """Checking an uncompiled model is a ValueError, and unsupported objects a TypeError."""
    model = nn.Sequential([nn.Dense(2, input_dim=3)], seed=0)
    with pytest.raises(ValueError):
        nn.check_gradients(model, rng.standard_normal((2, 3)), np.zeros((2, 2)))
    with pytest.raises(TypeError):
        nn.check_gradients(lambda x: x, rng.standard_normal((2, 3)))
    with pytest.raises(TypeError):
        nn.check_symbolic(model)


@pytest.mark.parametrize("checker", [nn.check_gradients, nn.check_symbolic])
def test_float32_layer_checked_in_float64_and_untouched(checker, rng):
    """A built float32 layer is checked on a float64 copy: the check is float64-accurate and the
    original keeps its dtype, weights, grads and cached buffers."""
    layer = nn.Dense(3, activation="tanh")
    layer.build(4, np.random.default_rng(0), np.float32)
    layer.bias.value[...] = [0.1, -0.2, 0.3]
    snapshot = [(p.value.copy(), p.grad.copy()) for p in layer.parameters()]
    result = checker(layer, x_away_from_zero(rng, (2, 4)))
    assert result.ok, str(result)
    assert result.max_error < 1e-7
    assert layer.dtype == np.float32 and layer.activation.dtype == np.float32
    for p, (v, g) in zip(layer.parameters(), snapshot):
        assert p.value.dtype == p.grad.dtype == np.float32
        np.testing.assert_array_equal(p.value, v)
        np.testing.assert_array_equal(p.grad, g)
    assert layer.needs_input_grad is True


@pytest.mark.parametrize("checker", [nn.check_gradients, nn.check_symbolic])
def test_unbuilt_layer_stays_unbuilt(checker, rng):
    """Passing an unbuilt layer builds a private copy; the caller's layer remains unbuilt."""
    layer = nn.Dense(3, activation="relu")
    assert checker(layer, x_away_from_zero(rng, (2, 2))).ok
    assert not layer.built
    assert layer.weight is None and layer.bias is None and layer.parameters() == []
    assert layer.input_dim is None


def test_needs_input_grad_false_layer_still_checked(rng):
    """A layer marked needs_input_grad=False (first layer of a model) still gets its input gradient checked,
    and the caller's flag is left alone."""
    layer = nn.Dense(2)
    layer.build(3, np.random.default_rng(0), np.float64)
    layer.needs_input_grad = False
    result = nn.check_gradients(layer, rng.standard_normal((2, 3)))
    assert result.ok and "input" in result.errors
    assert layer.needs_input_grad is False


@pytest.mark.parametrize("loss", [nn.SoftmaxCrossEntropy(), nn.MSE(), nn.BinaryCrossEntropy()],
                         ids=["softmax_ce", "mse", "bce"])
def test_check_symbolic_loss_with_default_targets(loss):
    """check_symbolic(loss) with its default point and targets returns a passing result for every loss
    (the default targets must fit the loss instead of crashing)."""
    result = nn.check_symbolic(loss)
    assert result.ok, str(result)


# -- where pass turns to fail ----------------------------------------------------------------------------
class OffByDense(nn.Dense):
    """Dense whose weight gradient is off by the relative error ``rel`` (backward scales it by 1 + rel)."""

    def __init__(self, rel, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rel = rel

    def backward(self, grad_out):
        dx = super().backward(grad_out)
        self.weight.grad *= 1.0 + self.rel
        return dx


@pytest.mark.parametrize("rel, ok", [(1e-3, False), (1e-4, False), (3e-5, False), (3e-6, True), (1e-9, True)])
def test_default_tolerance_pins_where_pass_turns_to_fail(rel, ok, rng):
    """At the defaults (rtol=1e-5, atol=1e-7) a weight gradient off by a relative 3e-5 or more fails and one off
    by 3e-6 or less passes; max_error is the error of the largest entry, rel * max |dW|."""
    x = rng.uniform(1.0, 3.0, (8, 4)) * rng.choice([-1.0, 1.0], (8, 4))
    layer = OffByDense(rel, 3, name="d")
    layer.build(4, np.random.default_rng(1), np.float64)
    weights = np.random.default_rng(0).standard_normal((8, 3))  # check_gradients' R for seed=0
    true_dw = x.T @ weights  # d/dW of sum((x W + b) * R)
    assert np.abs(true_dw).max() > 1.0  # entries large enough for the relative tolerance to decide
    result = nn.check_gradients(layer, x)
    assert result.ok is ok, str(result)
    assert result.errors["input"] < 1e-8 and result.errors["d/bias"] < 1e-8
    # the largest error is the weight gradient's at its largest entry (up to rounding, ~1e-9, in the differences)
    assert result.max_error == pytest.approx(rel * np.abs(true_dw).max(), rel=1e-3, abs=5e-9)
    if not ok:
        assert result.worst == "d/weight" and "MISMATCH" in str(result)


class Parabola(nn.Layer):
    """y = c x^2 with its exact backward: so curved that a one-sided difference (f(x + eps) - f(x)) / eps would
    be off by c eps R per entry, 1e-4 here, far above the tolerance, where the central one is exact to rounding."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x, training=False):
        self._x = x
        return self.c * x * x

    def backward(self, grad_out):
        return 2.0 * self.c * grad_out * self._x


def test_central_differences_on_a_strongly_curved_function(rng):
    """A correct backward passes on y = 100 x^2 near 0 with an error at rounding level: only a central difference
    gets there (a one-sided one would be off by ~1e-4 against a tolerance of ~1e-7 + 1e-5 * 0.2)."""
    x = rng.uniform(1e-3, 1e-2, (4, 3)) * rng.choice([-1.0, 1.0], (4, 3))
    result = nn.check_gradients(Parabola(100.0), x)
    assert result.ok, str(result)
    assert result.max_error < 1e-9
    # the one-sided difference at the same point, by hand: far outside the tolerance
    weights = np.random.default_rng(0).standard_normal((4, 3))
    eps = 1e-6
    one_sided = (100.0 * ((x + eps) ** 2 - x**2) * weights) / eps
    exact = 200.0 * x * weights
    assert (np.abs(one_sided - exact) > 1e-7 + 1e-5 * np.abs(exact)).all()
