"""Tests for nnlib.registry.Registry and its use by the loss, initializer and layer registries."""

import numpy as np
import pytest

import nnlib as nn
from nnlib import initializers, losses
from nnlib.registry import Registry


class Base:
    pass


@pytest.fixture
def reg():
    """A fresh registry with two entries: ``alpha`` (alias ``first``) and ``beta``."""
    r = Registry("thing", base=Base)

    @r.register("alpha", "first")
    class Alpha(Base):
        def __init__(self, k=1):
            self.k = k

    @r.register("beta")
    class Beta(Base):
        pass

    return r


@pytest.fixture
def scratch_losses(monkeypatch):
    """Let a test register into the global loss registry without leaking entries to other tests."""
    monkeypatch.setattr(losses.registry, "_entries", dict(losses.registry._entries))
    monkeypatch.setattr(losses.registry, "_canonical", dict(losses.registry._canonical))
    return losses.registry


def test_get_by_name_case_insensitive_and_alias(reg):
    """Names resolve case-insensitively; an alias gives the same class; canonical names the main entry."""
    alpha = reg.lookup("alpha")
    assert type(reg.get("alpha")) is alpha
    assert type(reg.get("ALPHA")) is alpha
    assert type(reg.get("First")) is alpha
    assert reg.canonical("first") == "alpha"
    assert alpha.registered_name == "alpha"
    assert reg.names() == ["alpha", "beta", "first"]
    assert "beta" in reg and "gamma" not in reg


def test_get_class_with_kwargs_instance_and_dict(reg):
    """A class is instantiated with kwargs; an instance passes through; a {name, config} dict is built."""
    alpha = reg.lookup("alpha")
    assert reg.get(alpha, k=5).k == 5
    assert reg.get("alpha", k=3).k == 3
    inst = alpha(k=9)
    assert reg.get(inst) is inst
    assert reg.get({"name": "first", "config": {"k": 4}}).k == 4
    assert reg.get({"name": "alpha"}).k == 1
    assert reg.get({"name": "alpha", "config": {"k": 4}}, k=6).k == 6


def test_unknown_name_lists_valid_names(reg):
    """An unknown name raises ValueError quoting the name and every valid one."""
    with pytest.raises(ValueError) as info:
        reg.get("gamma")
    msg = str(info.value)
    assert "gamma" in msg
    for name in ("alpha", "beta", "first"):
        assert name in msg
    with pytest.raises(ValueError, match="name"):
        reg.get({"config": {}})


@pytest.mark.parametrize("bad", ["Alpha", "my-loss", "1abc", "", "a b", "_x"])
def test_register_rejects_bad_names(reg, bad):
    """Registered names must be lower-case letters, digits and '_' (starting with a letter)."""
    with pytest.raises(ValueError) as info:
        reg.register(bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(ValueError):
        reg.register("ok_name", bad)


@pytest.mark.parametrize("bad", [3, 2.5, None, [1], object()])
def test_wrong_type_is_type_error(reg, bad):
    """Identifiers that are no name, class, instance or dict raise TypeError."""
    with pytest.raises(TypeError):
        reg.get(bad)


def test_foreign_class_is_type_error(reg):
    """A class that does not subclass ``base`` cannot be registered or resolved."""
    class Other:
        pass

    with pytest.raises(TypeError):
        reg.register("other")(Other)
    with pytest.raises(TypeError):
        reg.get(Other)
    with pytest.raises(TypeError):
        reg.lookup(3)


def test_registry_without_base_passes_callables():
    """A base-less registry (metrics) returns functions and accepts any callable."""
    r = Registry("metric")

    @r.register("double")
    def double(x):
        return 2 * x

    assert r.get("double") is double
    assert r.get(abs) is abs
    with pytest.raises(TypeError):
        r.get(3)


def test_user_loss_via_register_decorator(scratch_losses):
    """A user Loss subclass registered with ``nn.losses.register`` resolves through ``nn.losses.get``."""

    @nn.losses.register("my_loss")
    class MyLoss(nn.Loss):
        def forward(self, y_pred, y_true):
            return float(np.sum(y_pred))

    loss = nn.losses.get("my_loss")
    assert isinstance(loss, MyLoss)
    assert nn.losses.get("MY_LOSS").forward(np.ones((2, 2)), None) == 4.0
    assert "my_loss" in nn.losses.registry.names()


def test_global_registries_follow_the_rules():
    """The shipped registries resolve all identifier forms and reject unknown names with ValueError."""
    assert isinstance(losses.get("MSE"), nn.MSE)
    assert isinstance(losses.get(nn.MSE), nn.MSE)
    assert isinstance(losses.get({"name": "mse", "config": {}}), nn.MSE)
    init = initializers.registry.get(initializers.Normal, std=0.3)
    assert init.std == 0.3
    assert initializers.get({"name": "normal", "config": {"std": 0.2}}).std == 0.2
    with pytest.raises(ValueError, match="mse"):
        losses.get("nope")
    with pytest.raises(TypeError):
        losses.get(initializers.Zeros())
    assert isinstance(nn.layers.get("relu"), nn.ReLU)
