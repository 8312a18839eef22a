"""Tests for nnlib.parameter: Parameter's grad, ``pack`` into flat buffers and ``flat_view`` detection."""

import numpy as np
import pytest

from nnlib.parameter import Parameter, flat_view, pack

SHAPES = [(2, 3), (3,), (4, 1), (1, 1)]


def make_params(rng, dtype=np.float64):
    return [Parameter(rng.standard_normal(s).astype(dtype), f"p{i}") for i, s in enumerate(SHAPES)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_grad_matches_value(shape, dtype, rng):
    """grad is a zero array of the value's shape and dtype; value is kept as given (no copy)."""
    value = rng.standard_normal(shape).astype(dtype)
    p = Parameter(value, "w")
    assert p.value is value
    assert p.grad.shape == shape and p.grad.dtype == dtype
    assert not np.shares_memory(p.grad, p.value)
    np.testing.assert_array_equal(p.grad, 0)
    assert p.shape == shape and p.size == value.size and p.name == "w"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_keeps_values_in_order(dtype, rng):
    """pack copies every value, in order, into one contiguous buffer of the requested dtype."""
    params = make_params(rng, np.float64)
    originals = [p.value.copy() for p in params]
    values, grads = pack(params, dtype)
    assert values.dtype == grads.dtype == dtype
    assert values.ndim == 1 and values.flags.c_contiguous and grads.flags.c_contiguous
    assert values.size == grads.size == sum(int(np.prod(s)) for s in SHAPES)
    np.testing.assert_allclose(values, np.concatenate([o.ravel() for o in originals]).astype(dtype))
    for p, o in zip(params, originals):
        assert p.value.shape == o.shape and p.grad.shape == o.shape
        assert p.value.dtype == p.grad.dtype == dtype
        np.testing.assert_allclose(p.value, o.astype(dtype))


def test_pack_makes_views_both_ways(rng):
    """After pack, writing the flat buffers changes each Parameter and vice versa (value and grad)."""
    params = make_params(rng)
    values, grads = pack(params, np.float64)
    values[:] = np.arange(values.size)
    grads[:] = -np.arange(grads.size)
    offset = 0
    for p in params:
        n = p.size
        np.testing.assert_array_equal(p.value.ravel(), np.arange(offset, offset + n))
        np.testing.assert_array_equal(p.grad.ravel(), -np.arange(offset, offset + n))
        offset += n
    params[2].value[...] = 7.0
    params[2].grad[...] = 9.0
    start = params[0].size + params[1].size
    np.testing.assert_array_equal(values[start:start + params[2].size], 7.0)
    np.testing.assert_array_equal(grads[start:start + params[2].size], 9.0)
    assert values[start - 1] == start - 1  # neighbours untouched


def test_flat_view_of_packed_parameters(rng):
    """flat_view returns the buffer itself for the packed values (and grads), in pack order."""
    params = make_params(rng)
    values, grads = pack(params, np.float64)
    assert flat_view([p.value for p in params]) is values
    assert flat_view([p.grad for p in params]) is grads


def test_flat_view_none_cases(rng):
    """flat_view is None for unpacked, reordered, partial or empty lists."""
    loose = make_params(rng)
    assert flat_view([p.value for p in loose]) is None
    params = make_params(rng)
    pack(params, np.float64)
    vals = [p.value for p in params]
    assert flat_view(vals[::-1]) is None
    assert flat_view([vals[1], vals[0], *vals[2:]]) is None
    assert flat_view(vals[:-1]) is None
    assert flat_view(vals[1:]) is None
    assert flat_view([]) is None
    assert flat_view([vals[0], loose[1].value, *vals[2:]]) is None
