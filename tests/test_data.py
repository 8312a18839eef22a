"""nnlib/data.py: boundary checks, seeded splits, standardization, per-epoch generators."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nnlib.data import Standardizer, check_features, check_positive_int, epoch_rng, split_indices, train_test_split


# -- check_features ---------------------------------------------------------------------------------
@pytest.mark.parametrize("x,n_features,exc,match", [
    (np.array([["a", "b"]]), None, TypeError, r"x must hold numbers.*<U1"),
    (np.array([[1, None]], dtype=object), None, TypeError, r"x must hold numbers.*object"),
    (np.array([[True, False]]), None, TypeError, r"x must hold numbers.*bool"),
    (np.array([[1 + 2j, 0]]), None, TypeError, r"x must hold numbers.*complex"),
    (np.arange(3.0), None, ValueError, r"2-D.*\(3,\).*reshape"),
    (np.zeros((2, 2, 2)), None, ValueError, r"2-D.*\(2, 2, 2\)"),
    (np.float64(1.0), None, ValueError, r"2-D.*\(\)"),
    (np.zeros((0, 3)), None, ValueError, r"empty.*\(0, 3\)"),
    (np.zeros((3, 0)), None, ValueError, r"empty.*\(3, 0\)"),
    (np.zeros((4, 3)), 5, ValueError, r"3 features.*expects 5"),
    (np.array([[0.0, 1.0], [2.0, np.nan]]), None, ValueError, r"nan.*row 1, column 1"),
    (np.array([[np.inf, 1.0]]), None, ValueError, r"inf.*row 0, column 0"),
    (np.array([[0.0, -np.inf]], dtype=np.float32), None, ValueError, r"-inf.*row 0, column 1"),
    ([[1.0, 2.0], [3.0]], None, ValueError, r"x"),  # ragged
], ids=["strings", "objects", "bool", "complex", "1d", "3d", "scalar", "empty_rows", "empty_cols",
        "feature_count", "nan", "inf", "neg_inf_f32", "ragged"])
def test_check_features_errors(x, n_features, exc, match):
    with pytest.raises(exc, match=match):
        check_features(x, "x", np.float32, n_features)


def test_check_features_names_argument_and_casts():
    with pytest.raises(ValueError, match=r"^x_val "):
        check_features(np.zeros(3), "x_val")
    src = np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))
    out = check_features(src, "x", np.float64, 3)
    assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, [[0, 1, 2], [3, 4, 5]])
    out32 = check_features([[1.5, 2.5]], "x", np.float32)
    assert out32.dtype == np.float32 and out32.shape == (1, 2)
    # casting copies; the caller's array is left as it was
    src3 = np.array([[1.0, 2.0]])
    out3 = check_features(src3, "x", np.float32)
    out3[0, 0] = 99.0
    assert src3[0, 0] == 1.0


@pytest.mark.parametrize("value,exc", [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("3", TypeError),
                                       (True, TypeError), (None, TypeError), (np.bool_(True), TypeError)])
def test_check_positive_int_rejects(value, exc):
    with pytest.raises(exc, match=r"epochs must be a positive int, got " + re.escape(repr(value))):
        check_positive_int(value, "epochs")


def test_check_positive_int_accepts():
    assert check_positive_int(3, "n") == 3
    assert check_positive_int(np.int64(7), "n") == 7
    assert type(check_positive_int(np.int32(2), "n")) is int


# -- split_indices ----------------------------------------------------------------------------------
def test_split_indices_disjoint_covering_sorted():
    kept, held = split_indices(50, 0.2, seed=3)
    assert len(held) == 10 and len(kept) == 40
    assert np.intersect1d(kept, held).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(50))
    assert np.all(np.diff(kept) > 0) and np.all(np.diff(held) > 0)
    assert kept.dtype.kind in "iu" and held.dtype.kind in "iu"


def test_split_indices_reproducible_and_seed_dependent():
    a = split_indices(40, 0.25, seed=5)
    b = split_indices(40, 0.25, seed=5)
    c = split_indices(40, 0.25, seed=6)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])
    # not simply the last rows (Keras) nor the first ones
    assert not np.array_equal(a[1], np.arange(30, 40)) and not np.array_equal(a[1], np.arange(10))


@pytest.mark.parametrize("counts,frac", [([30, 20, 10], 0.25), ([7, 7, 7, 7], 0.3), ([50, 5], 0.1),
                                         ([3, 11, 6], 0.5)])
def test_split_indices_stratified(counts, frac):
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = labels[np.random.default_rng(0).permutation(labels.size)]  # interleave classes
    n = labels.size
    kept, held = split_indices(n, frac, seed=1, labels=labels)
    assert len(held) == round(frac * n)
    got = np.bincount(labels[held], minlength=len(counts))
    exact = np.array(counts) * frac
    assert np.all(np.abs(got - exact) < 1), (got, exact)
    np.testing.assert_array_equal(got + np.bincount(labels[kept], minlength=len(counts)), counts)
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(n))
    again = split_indices(n, frac, seed=1, labels=labels)
    np.testing.assert_array_equal(held, again[1])


def test_split_indices_at_least_one_each_side():
    kept, held = split_indices(3, 0.01, seed=0)
    assert len(held) == 1 and len(kept) == 2
    kept, held = split_indices(3, 0.99, seed=0)
    assert len(held) == 2 and len(kept) == 1
    kept, held = split_indices(2, 0.5, seed=0)
    assert len(held) == 1 and len(kept) == 1


@pytest.mark.parametrize("n,frac,exc,match", [
    (10, 0.0, ValueError, r"\(0, 1\).*0\.0"), (10, 1.0, ValueError, r"\(0, 1\).*1\.0"),
    (10, -0.5, ValueError, r"-0\.5"), (10, 1.5, ValueError, r"1\.5"), (10, True, TypeError, "True"),
    (10, "0.5", TypeError, "'0.5'"), (1, 0.5, ValueError, r"1 sample")])
def test_split_indices_rejects(n, frac, exc, match):
    with pytest.raises(exc, match=match) as info:
        split_indices(n, frac, seed=0)
    assert type(info.value) is exc


# -- train_test_split -------------------------------------------------------------------------------
def test_train_test_split_pairs_rows_and_stratifies():
    n = 40
    x = np.arange(n * 2, dtype=float).reshape(n, 2)
    y = np.repeat([0, 1, 2, 3], [16, 12, 8, 4])
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, seed=2)
    assert x_tr.shape == (30, 2) and x_te.shape == (10, 2) and y_tr.shape == (30,) and y_te.shape == (10,)
    # rows stay paired with their labels: row i is [2i, 2i+1] with label y[i]
    for xs, ys in ((x_tr, y_tr), (x_te, y_te)):
        idx = (xs[:, 0] // 2).astype(int)
        np.testing.assert_array_equal(ys, y[idx])
    np.testing.assert_array_equal(np.sort(np.concatenate([x_tr[:, 0], x_te[:, 0]])), x[:, 0])
    np.testing.assert_array_equal(np.bincount(y_te, minlength=4), [4, 3, 2, 1])  # exactly 1/4 of each class
    again = train_test_split(x, y, test_size=0.25, seed=2)
    np.testing.assert_array_equal(again[1], x_te)
    other = train_test_split(x, y, test_size=0.25, seed=3)
    assert not np.array_equal(other[1], x_te)


def test_train_test_split_errors():
    with pytest.raises(ValueError, match=r"different lengths.*5.*4"):
        train_test_split(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match=r"1\.5"):
        train_test_split(np.zeros((5, 2)), np.zeros(5), test_size=1.5)


# -- Standardizer -----------------------------------------------------------------------------------
def test_standardizer_uses_train_statistics_only():
    train = np.array([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0], [5.0, 20.0, 5.0]])  # last column constant
    test = np.array([[7.0, 0.0, 6.0], [1.0, 40.0, 5.0]])
    s = Standardizer().fit(train)
    # by hand: means 3, 20, 5; population stds sqrt(8/3), sqrt(200/3), 0 -> scale 1
    np.testing.assert_allclose(s.mean_, [3.0, 20.0, 5.0])
    np.testing.assert_allclose(s.scale_, [np.sqrt(8 / 3), np.sqrt(200 / 3), 1.0])
    out = s.transform(test)
    want = np.array([[4 / np.sqrt(8 / 3), -20 / np.sqrt(200 / 3), 1.0],
                     [-2 / np.sqrt(8 / 3), 20 / np.sqrt(200 / 3), 0.0]])
    np.testing.assert_allclose(out, want, rtol=1e-12)
    assert out.dtype == np.float64
    tr = s.transform(train)
    np.testing.assert_allclose(tr.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(tr.std(axis=0), [1.0, 1.0, 0.0], atol=1e-12)
    assert np.all(np.isfinite(tr))
    # fit_transform is fit then transform; inputs untouched
    train_copy = train.copy()
    np.testing.assert_allclose(Standardizer().fit_transform(train), tr)
    np.testing.assert_array_equal(train, train_copy)


def test_standardizer_dtypes_and_errors():
    s = Standardizer().fit(np.array([[0.0, 1.0], [2.0, 3.0]]))
    assert s.transform(np.array([[1.0, 1.0]], dtype=np.float32)).dtype == np.float32
    assert s.transform(np.array([[1, 1]])).dtype == np.float32
    with pytest.raises(ValueError, match=r"3 features.*expects 2"):
        s.transform(np.zeros((1, 3)))
    with pytest.raises(RuntimeError, match="fit"):
        Standardizer().transform(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="nan"):
        Standardizer().fit(np.array([[np.nan, 1.0]]))


# -- epoch_rng --------------------------------------------------------------------------------------
def test_epoch_rng_reproducible_and_distinct():
    perms = [epoch_rng(7, k).permutation(100) for k in range(5)]
    for k in range(5):
        np.testing.assert_array_equal(perms[k], epoch_rng(7, k).permutation(100))
    for i in range(5):
        for j in range(i + 1, 5):
            assert not np.array_equal(perms[i], perms[j])
    assert not np.array_equal(epoch_rng(8, 0).permutation(100), perms[0])
    assert isinstance(epoch_rng(7, 0), np.random.Generator)
    # independent of call order and of the global state
    np.random.seed(0)
    late = epoch_rng(7, 3).permutation(100)
    np.testing.assert_array_equal(late, perms[3])


def test_check_features_reports_overflow_in_the_cast():
    """A float64 value beyond float32's range would become inf in the cast: it is named instead."""
    x = np.ones((3, 4))
    x[2, 1] = 1e300
    with pytest.raises(ValueError, match=r"^x contains 1e\+300 at row 2, column 1, too large for float32$"):
        check_features(x, "x", np.float32)
    np.testing.assert_array_equal(check_features(x, "x", np.float64), x)


def test_check_features_large_finite_values_pass_and_late_nan_is_found():
    """Entries near float32's maximum overflow the one-read sum of squares; the exact scan then
    passes them, and still finds a NaN far behind them, in a later chunk of rows."""
    x = np.full((3000, 400), 3e38, dtype=np.float32)
    np.testing.assert_array_equal(check_features(x, "x", np.float32), x)
    x[2900, 399] = np.nan
    with pytest.raises(ValueError, match=r"nan at row 2900, column 399$"):
        check_features(x, "x", np.float32)
    x[2900, 399] = 0.0
    x[2999, 0] = -np.inf
    with pytest.raises(ValueError, match=r"-inf at row 0, column 0$"):
        check_features(x[::-1], "x", np.float32)  # reversed rows: a contiguous copy is checked
