"""nnlib/estimators.py and nnlib/_estimator_base.py, the scikit-learn facade: scikit-learn's own estimator
checks, then ecosystem and feature tests (partial_fit, class weights, dtypes, early stopping, pickling)."""

import copy
import pickle
import re
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_classification, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.metrics import recall_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

import nnlib
from nnlib.estimators import NeuralNetClassifier, NeuralNetRegressor
from nnlib.losses import SoftmaxCrossEntropy

# A large step and small batches make every check's fit end by the stop rule well before
# max_epochs (the checks fit noise labels and unscaled targets too), so no check needs a
# ConvergenceWarning filter.
_CHECKED = dict(hidden_layer_sizes=(16,), lr=0.1, batch_size=32, max_epochs=1000, tol=1e-3, n_iter_no_change=5,
                random_state=0)


@parametrize_with_checks([NeuralNetClassifier(**_CHECKED), NeuralNetRegressor(**_CHECKED)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)  # dtype=None: no check is expected to fail


# Forced float32 runs every check through the float32 path too (the default takes it only for
# float32 input). Its one possible failure is float32 rounding, not a bug.
_FLOAT32_SUBSET = ("float32: BLAS rounds a row's dot products differently depending on how many rows share the "
                   "matmul (gemv for one row, gemm tiles for many), so a row predicted alone and in a batch can "
                   "differ by a few float32 ulps (~1e-7 relative), which is what this check tolerates")


@parametrize_with_checks(
    [NeuralNetClassifier(**_CHECKED, dtype="float32"), NeuralNetRegressor(**_CHECKED, dtype="float32")],
    expected_failed_checks=lambda est: {"check_methods_subset_invariance": _FLOAT32_SUBSET},
    xfail_strict=False,  # the float32 rounding may or may not exceed the check's 1e-7 on a given machine
)
def test_sklearn_estimator_checks_forced_float32(estimator, check):
    check(estimator)


@pytest.mark.parametrize("Estimator", [NeuralNetClassifier, NeuralNetRegressor])
def test_check_estimator_on_the_bare_default_passes_every_check(Estimator):
    with warnings.catch_warnings():
        # The defaults (lr=1e-3, max_epochs=200) are too slow for some checks' data, so those fits
        # end with a ConvergenceWarning: a warning for scikit-learn, a failure under this suite's
        # filterwarnings=error. Every other warning stays an error.
        warnings.simplefilter("ignore", ConvergenceWarning)
        results = check_estimator(Estimator(), on_fail=None, on_skip=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert failed == []
    assert len(results) > 40 and {r["status"] for r in results} <= {"passed", "skipped"}
    # the only skips are scikit-learn's own, for a method these estimators do not have
    skipped = [r for r in results if r["status"] == "skipped"]
    assert all("does not have a decision_function method" in str(r["exception"]) for r in skipped)


# -- the ecosystem --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_pipeline_on_digits_reaches_90_percent(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = make_pipeline(StandardScaler(), NeuralNetClassifier((64,), lr=1e-2, batch_size=64, max_epochs=100,
                                                               random_state=0))
    pipe.fit(X_train, y_train)
    assert pipe.score(X_test, y_test) >= 0.9
    clf = pipe[-1]
    assert clf.n_iter_ < 100 and len(clf.loss_curve_) == clf.n_iter_  # the stop rule ended it
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.validation_scores_ is None


def test_grid_search_over_hidden_sizes_and_lr():
    X, y = load_iris(return_X_y=True)
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), NeuralNetClassifier(batch_size=32, max_epochs=300, random_state=0)),
        {"neuralnetclassifier__hidden_layer_sizes": [(4,), (16,)], "neuralnetclassifier__lr": [1e-3, 3e-2]},
        cv=3,
    )
    with warnings.catch_warnings():  # lr=1e-3 on 100 samples is meant to be too slow for 300 epochs
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_params_["neuralnetclassifier__lr"] == 3e-2
    assert grid.best_score_ > 0.9
    assert grid.cv_results_["mean_test_score"].shape == (4,)


def test_cross_val_score_and_regressor_pipeline():
    X, y = load_iris(return_X_y=True)
    scores = cross_val_score(NeuralNetClassifier((16,), lr=3e-2, batch_size=32, random_state=0), X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.9
    reg = make_pipeline(StandardScaler(), NeuralNetRegressor((16,), lr=1e-2, batch_size=16, random_state=0))
    r2 = cross_val_score(reg, X[:, :3], X[:, 3], cv=KFold(3, shuffle=True, random_state=0))  # petal width
    assert r2.mean() > 0.8


def test_clone_copies_parameters_not_the_fit():
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((8, 4), activation=("tanh", "relu"), lr=3e-2, class_weight="balanced",
                              random_state=3).fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "model_") and not hasattr(twin, "classes_")


# -- pickling ----------------------------------------------------------------------------------
def test_pickle_round_trip_gives_identical_probabilities_and_training_continues():
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((16,), lr=1e-2, batch_size=32, dropout=0.1, random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    # Training goes on exactly as it would have without the round trip (weights, Adam moments,
    # dropout generator and epoch count all carried over), for pickle and deepcopy alike.
    copied = copy.deepcopy(clf)
    before = clf.predict_proba(X)
    for est in (clf, restored, copied):
        est.partial_fit(X, y)
    assert not np.array_equal(clf.predict_proba(X), before)
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(copied.predict_proba(X), clf.predict_proba(X))


def test_pickled_training_really_updates_the_weights():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():  # 5 epochs are meant to be too few
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = pickle.loads(pickle.dumps(NeuralNetClassifier((8,), max_epochs=5, random_state=0).fit(X, y)))
    before = clf.model_.get_weights()
    clf.partial_fit(X, y)
    assert any(not np.array_equal(a, b) for a, b in zip(before, clf.model_.get_weights()))


def test_model_save_is_the_safe_alternative(tmp_path):
    X, y = load_iris(return_X_y=True)
    for clf in (NeuralNetClassifier((8,), lr=3e-2, batch_size=32, random_state=0),
                NeuralNetClassifier((8,), lr=3e-2, batch_size=32, dropout=0.2, random_state=0)):
        clf.fit(X, y)
        clf.model_.save(tmp_path / "net.nnlib")
        loaded = nnlib.load_model(tmp_path / "net.nnlib")
        np.testing.assert_allclose(loaded.predict(X), clf.predict_proba(X), rtol=1e-6)
        assert "trusted" in type(clf).__doc__ and "model_.save" in type(clf).__doc__


# -- labels --------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [np.array(["setosa", "versicolor", "virginica"]), np.array([-7, -1, 3]),
                                    np.array(["b", "a", "c"], dtype=object), np.array([2.0, -1.0, 30.0])])
def test_labels_of_any_type_round_trip(labels):
    X, codes = load_iris(return_X_y=True)
    y = labels[codes]
    clf = NeuralNetClassifier((16,), lr=3e-2, batch_size=32, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, np.sort(labels))
    pred = clf.predict(X)
    assert pred.dtype == clf.classes_.dtype and set(pred) <= set(labels)
    assert np.mean(pred == y) > 0.9
    assert clf.predict_proba(X).shape == (150, 3)


def test_binary_string_labels_and_a_single_class():
    X, y = load_iris(return_X_y=True)
    yb = np.where(y == 0, "yes", "no")
    clf = NeuralNetClassifier((8,), lr=3e-2, batch_size=32, random_state=0).fit(X, yb)
    assert clf.predict_proba(X).shape == (150, 2) and clf.score(X, yb) > 0.95
    with pytest.raises(ValueError, match="only one class"):
        NeuralNetClassifier().fit(X, np.full(150, "yes"))


def test_partial_fit_with_classes_then_more_calls():
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(150)
    clf = NeuralNetClassifier((16,), lr=1e-2, batch_size=16, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    first = order[:40]
    clf.partial_fit(X[first], y[first], classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and list(clf.classes_) == [0, 1, 2]
    for epoch in range(60):
        part = order[(epoch % 3) * 50:(epoch % 3) * 50 + 50]
        clf.partial_fit(X[part], y[part])
    assert clf.n_iter_ == 61 and len(clf.loss_curve_) == 61
    assert clf.loss_curve_[-1] < clf.loss_curve_[0] and clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X[:2], [0, 5])
    with pytest.raises(ValueError, match="differs"):
        clf.partial_fit(X[:2], [0, 1], classes=[0, 1])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:2, :3], [0, 1])
    with pytest.raises(ValueError, match="balanced"):
        NeuralNetClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])


def test_regressor_partial_fit_and_output_shapes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y2 = np.column_stack([X @ [1.0, -2.0, 0.5], X[:, 0] - X[:, 1]])
    reg = NeuralNetRegressor((16,), lr=1e-2, batch_size=32, random_state=0)
    assert reg.fit(X, y2[:, 0]).predict(X).shape == (200,)
    assert reg.fit(X, y2[:, :1]).predict(X).shape == (200, 1)
    assert reg.fit(X, y2).predict(X).shape == (200, 2) and reg.n_outputs_ == 2
    assert reg.score(X, y2) > 0.9 and reg.predict(X).dtype == np.float64
    inc = NeuralNetRegressor((16,), lr=1e-2, batch_size=32, random_state=0)
    for _ in range(5):
        inc.partial_fit(X, y2)
    assert inc.n_iter_ == 5 and inc.loss_curve_[-1] < inc.loss_curve_[0]
    with pytest.raises(ValueError, match="outputs"):
        inc.partial_fit(X, y2[:, 0])


def test_a_column_vector_of_labels_warns_and_is_used_as_1d():
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((8,), max_epochs=3, random_state=0)
    with pytest.warns(DataConversionWarning), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y.reshape(-1, 1))
    assert clf.predict(X).shape == (150,)


# -- class weights -------------------------------------------------------------------------------
def _imbalanced():
    X, y = make_classification(n_samples=800, n_features=4, n_informative=2, n_redundant=0, weights=[0.9, 0.1],
                               class_sep=0.6, flip_y=0, random_state=0)
    return train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)


def test_balanced_class_weight_improves_minority_recall():
    X_train, X_test, y_train, y_test = _imbalanced()
    settings = dict(hidden_layer_sizes=(8,), lr=1e-2, batch_size=32, tol=1e-3, random_state=0)
    plain = NeuralNetClassifier(**settings).fit(X_train, y_train)
    balanced = NeuralNetClassifier(**settings, class_weight="balanced").fit(X_train, y_train)
    recall_plain = recall_score(y_test, plain.predict(X_test))
    recall_balanced = recall_score(y_test, balanced.predict(X_test))
    assert recall_balanced > recall_plain + 0.2, (recall_plain, recall_balanced)


def test_class_weight_is_a_weighted_mean_of_cross_entropies():
    X_train, _, y_train, _ = _imbalanced()
    clf = NeuralNetClassifier((4,), max_epochs=1, tol=0.0, class_weight={0: 0.5, 1: 3.0}, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    rows, codes, _, _ = clf._targets(y_train, first=False, partial=False, classes=None)
    logits = np.random.default_rng(0).normal(size=rows.shape)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    w = np.where(codes == 1, 3.0, 0.5)
    expected = np.mean(w * -log_p[np.arange(len(codes)), codes])
    assert SoftmaxCrossEntropy().forward(logits, rows.astype(np.float64)) == pytest.approx(expected, rel=1e-6)
    # unit weights train exactly like no weights, up to rounding
    ones = NeuralNetClassifier((4,), lr=1e-2, batch_size=32, tol=1e-3, random_state=0, class_weight={0: 1, 1: 1})
    none = NeuralNetClassifier((4,), lr=1e-2, batch_size=32, tol=1e-3, random_state=0)
    np.testing.assert_allclose(ones.fit(X_train, y_train).predict_proba(X_train),
                               none.fit(X_train, y_train).predict_proba(X_train), atol=1e-4)
    with pytest.raises(ValueError, match="multilabel"):
        NeuralNetClassifier(class_weight="balanced").fit(X_train[:4], [[0, 1], [1, 0], [1, 1], [0, 0]])


# -- stopping, curves, warnings ------------------------------------------------------------------
def test_early_stopping_fills_validation_scores_and_restores_the_best_epoch(digits):
    X_train, _, y_train, _ = digits
    clf = NeuralNetClassifier((32,), lr=1e-2, batch_size=64, early_stopping=True, validation_fraction=0.2,
                              random_state=0)
    clf.fit(X_train / 16, y_train)
    n = clf.n_iter_
    assert len(clf.validation_scores_) == len(clf.validation_loss_curve_) == len(clf.loss_curve_) == n
    assert all(0 <= s <= 1 for s in clf.validation_scores_) and clf.best_validation_score_ > 0.9
    assert clf.best_loss_ == min(clf.validation_loss_curve_)
    best = int(np.argmin(clf.validation_loss_curve_))
    assert clf.best_validation_score_ == clf.validation_scores_[best] and best < n - 1
    # the restored weights are those of the best epoch: reproduce its validation loss
    from nnlib.data import split_indices
    _, val = split_indices(len(y_train), 0.2, clf.model_.seed, y_train)
    val_loss = clf.model_.evaluate((X_train / 16)[val], y_train[val])["loss"]
    assert val_loss == pytest.approx(clf.best_loss_, rel=1e-5)
    reg = NeuralNetRegressor((8,), lr=1e-2, batch_size=16, early_stopping=True, random_state=0)
    X, y = load_iris(return_X_y=True)
    reg.fit(X[:, :3], X[:, 3])
    assert len(reg.validation_scores_) == reg.n_iter_ and max(reg.validation_scores_) > 0.5  # R^2


def test_convergence_warning_when_max_epochs_ends_training():
    X, y = load_iris(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match="max_epochs=3"):
        clf = NeuralNetClassifier((8,), max_epochs=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the stop rule ends this one
        NeuralNetClassifier((8,), lr=3e-2, batch_size=16, max_epochs=500, random_state=0).fit(X, y)


def test_random_state_makes_fits_repeat():
    X, y = load_iris(return_X_y=True)
    a = NeuralNetClassifier((8,), lr=1e-2, dropout=0.3, random_state=7).fit(X, y).predict_proba(X)
    b = NeuralNetClassifier((8,), lr=1e-2, dropout=0.3, random_state=7).fit(X, y).predict_proba(X)
    c = NeuralNetClassifier((8,), lr=1e-2, dropout=0.3, random_state=8).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    free = NeuralNetClassifier((8,), max_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seeds = {free.fit(X, y).model_.seed for _ in range(3)}
    assert len(seeds) == 3  # random_state=None: a new seed per fit


# -- multilabel ----------------------------------------------------------------------------------
def test_multilabel_classification():
    X, Y = make_multilabel_classification(n_samples=300, n_features=8, n_classes=4, random_state=0)
    clf = make_pipeline(StandardScaler(), NeuralNetClassifier((32,), lr=3e-2, batch_size=32, tol=1e-3,
                                                              random_state=0))
    clf.fit(X, Y)
    proba, pred = clf.predict_proba(X), clf.predict(X)
    assert proba.shape == pred.shape == (300, 4) and pred.dtype == Y.dtype
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    assert np.mean(pred == Y) > 0.85  # per-label accuracy
    assert list(clf[-1].classes_) == [0, 1, 2, 3] and clf[-1].model_.loss.registered_name == "binary_cross_entropy"
    with pytest.raises(ValueError, match="multiclass-multioutput"):
        NeuralNetClassifier().fit(X[:4], [[0, 2], [1, 0], [2, 1], [0, 0]])


# -- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("params, match", [
    ({"hidden_layer_sizes": (16, 0)}, "hidden_layer_sizes"), ({"activation": "softsign"}, "unknown activation"),
    ({"activation": ("relu",), "hidden_layer_sizes": (4, 4)}, "one name per hidden layer"),
    ({"optimizer": "lbfgs"}, "unknown optimizer"), ({"lr": 0.0}, "lr"), ({"batch_size": 0}, "batch_size"),
    ({"max_epochs": 0}, "max_epochs"), ({"tol": -1.0}, "tol"), ({"n_iter_no_change": 0}, "n_iter_no_change"),
    ({"validation_fraction": 1.0}, "validation_fraction"), ({"alpha": -0.1}, "alpha"), ({"dropout": 1.0}, "dropout"),
    ({"dtype": "float16"}, "dtype"),
])
def test_bad_parameters_are_named_at_fit(params, match):
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier(**params)  # nothing is checked in __init__, as scikit-learn requires
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")


def test_alpha_has_scikit_learns_scale_and_activation_aliases():
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((4,), activation="logistic", optimizer="momentum", alpha=0.5, batch_size=50,
                              max_epochs=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.model_.optimizer.weight_decay == pytest.approx(0.5 / 50)
    assert type(clf.model_.optimizer).__name__ == "Momentum" and clf.model_.optimizer.lr == 1e-3
    assert clf.model_.layers[0].activation.registered_name == "sigmoid"


def test_feature_names_in():
    import pandas as pd  # a dev dependency: feature names come from a DataFrame
    X, y = load_iris(return_X_y=True, as_frame=False)
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    clf = NeuralNetClassifier((8,), lr=3e-2, batch_size=32, tol=1e-3, random_state=0).fit(frame, y)
    assert list(clf.feature_names_in_) == ["sl", "sw", "pl", "pw"]
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)


# -- dropout ----------------------------------------------------------------------------------------
def test_dropout_in_the_estimator():
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((32,), lr=1e-2, batch_size=16, dropout=0.3, random_state=0).fit(X, y)
    kinds = [type(layer).__name__ for layer in clf.model_.layers]
    assert kinds == ["Dense", "Dropout", "Dense"]
    assert clf.score(X, y) > 0.9
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))  # no dropout at inference


# -- precision (dtype) ----------------------------------------------------------------------------
def _short_fit(est, X, y):
    """``est.fit(X, y)`` with a budget meant to be too short: only the precision matters here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def _iris_inputs():
    import pandas as pd  # a dev dependency, as in test_feature_names_in
    X, y = load_iris(return_X_y=True)
    columns = ["sl", "sw", "pl", "pw"]
    return y, {
        "float32": (X.astype(np.float32), np.float32),
        "float32 frame": (pd.DataFrame(X.astype(np.float32), columns=columns), np.float32),
        "float64": (X, np.float64),
        "float64 frame": (pd.DataFrame(X, columns=columns), np.float64),
        "int64": (np.round(X * 10).astype(np.int64), np.float64),
        "int32": (np.round(X * 10).astype(np.int32), np.float64),
        "float16": (X.astype(np.float16), np.float64),
        "list": (X.tolist(), np.float64),
    }


@pytest.mark.parametrize("Estimator", [NeuralNetClassifier, NeuralNetRegressor])
def test_dtype_none_keeps_float32_input_and_computes_everything_else_in_float64(Estimator):
    y, inputs = _iris_inputs()
    assert Estimator().dtype is None  # the default
    for kind, (X, expected) in inputs.items():
        est = _short_fit(Estimator((4,), max_epochs=2, random_state=0), X, y)
        assert est.model_.dtype == expected, kind
        out = est.predict_proba(X) if Estimator is NeuralNetClassifier else est.predict(X)
        assert out.dtype == np.float64, kind  # outputs stay float64 whatever the precision
        assert est.get_params()["dtype"] is None  # the decision is recorded on model_, not on the parameter


@pytest.mark.parametrize("Estimator", [NeuralNetClassifier, NeuralNetRegressor])
@pytest.mark.parametrize("forced, expected", [("float32", np.float32), ("float64", np.float64),
                                              (np.float32, np.float32), (np.dtype("float64"), np.float64)])
def test_an_explicit_dtype_overrides_the_input(Estimator, forced, expected):
    y, inputs = _iris_inputs()
    for kind in ("float32", "float64", "int64", "list"):
        est = _short_fit(Estimator((4,), max_epochs=2, random_state=0, dtype=forced), inputs[kind][0], y)
        assert est.model_.dtype == expected, kind


def test_predict_casts_x_to_the_fitted_precision():
    y, inputs = _iris_inputs()
    X64, X32 = inputs["float64"][0], inputs["float32"][0]
    clf = NeuralNetClassifier((8,), lr=3e-2, batch_size=32, random_state=0).fit(X64, y)
    assert clf.model_.dtype == np.float64
    # float32 X widens exactly, so it predicts exactly what its float64 copy does
    np.testing.assert_array_equal(clf.predict_proba(X32), clf.predict_proba(X32.astype(np.float64)))
    assert clf.score(X32, y) > 0.9
    clf32 = NeuralNetClassifier((8,), lr=3e-2, batch_size=32, random_state=0).fit(X32, y)
    assert clf32.model_.dtype == np.float32
    np.testing.assert_array_equal(clf32.predict_proba(X64), clf32.predict_proba(X64.astype(np.float32)))
    assert clf32.predict_proba(X64).dtype == np.float64 and clf32.score(X64, y) > 0.9
    reg = NeuralNetRegressor((8,), lr=1e-2, batch_size=16, random_state=0).fit(X64[:, :3], X64[:, 3])
    np.testing.assert_array_equal(reg.predict(X32[:, :3]), reg.predict(X32[:, :3].astype(np.float64)))


@pytest.mark.parametrize("Estimator", [NeuralNetClassifier, NeuralNetRegressor])
def test_partial_fit_keeps_the_precision_of_its_first_call(Estimator):
    y, inputs = _iris_inputs()
    X64, X32 = inputs["float64"][0], inputs["float32"][0]
    extra = {"classes": [0, 1, 2]} if Estimator is NeuralNetClassifier else {}
    est = Estimator((4,), max_epochs=2, random_state=0)
    est.partial_fit(X32, y, **extra)
    assert est.model_.dtype == np.float32
    est.partial_fit(X64, y)
    est.set_params(dtype="float64")  # a new precision needs a new network, i.e. fit
    est.partial_fit(X64, y)
    assert est.model_.dtype == np.float32 and est.n_iter_ == 3
    assert _short_fit(est, X64, y).model_.dtype == np.float64  # fit starts over, with the new dtype


@pytest.mark.parametrize("bad", ["float16", "int32", 3, np.float16, np.dtype("int64"), "nonsense", "", True])
def test_a_bad_dtype_is_named_and_leaves_the_fitted_estimator_alone(bad):
    X, y = load_iris(return_X_y=True)
    message = "dtype must be None, 'float32' or 'float64', got " + re.escape(repr(bad))
    fresh = NeuralNetClassifier(dtype=bad)
    with pytest.raises(ValueError, match=message):
        fresh.fit(X, y)
    assert not hasattr(fresh, "model_")
    for est in (NeuralNetClassifier((8,), lr=3e-2, batch_size=32, random_state=0),
                NeuralNetRegressor((8,), lr=1e-2, batch_size=16, random_state=0)):
        target = y if isinstance(est, NeuralNetClassifier) else X[:, 3]
        est.fit(X, target)
        model, weights, n_iter = est.model_, est.model_.get_weights(), est.n_iter_
        before = est.predict(X)
        est.set_params(dtype=bad)
        for call in (est.fit, est.partial_fit):
            with pytest.raises(ValueError, match=message):
                call(X, target)
        assert est.model_ is model and est.n_iter_ == n_iter
        assert all(np.array_equal(a, b) for a, b in zip(weights, est.model_.get_weights()))
        np.testing.assert_array_equal(est.predict(X), before)


@pytest.mark.parametrize("labels", [[0, 1, 2], ["ant", "bee", "cat"]], ids=["ints", "strings"])
def test_partial_fit_on_a_batch_without_a_class_trains_on_the_columns_of_classes_(labels):
    """After partial_fit(X1, y1, classes=...), a batch holding only classes_[0] and classes_[2] trains on
    one-hot targets in the columns of classes_ (not on codes of the batch's own labels): one full-batch SGD
    step equals the step on the hand-encoded one-hot rows through model_.loss_and_gradients, and it lowers
    the loss on those rows."""
    rng = np.random.default_rng(0)
    classes = np.array(labels)
    X1, y1 = rng.standard_normal((30, 4)), classes[np.arange(30) % 3]
    codes2 = np.array([0, 2] * 6)
    X2, y2 = rng.standard_normal((12, 4)), classes[codes2]
    clf = NeuralNetClassifier((5,), optimizer="sgd", lr=0.1, batch_size=64, random_state=0)
    clf.partial_fit(X1, y1, classes=classes)
    assert list(clf.classes_) == labels
    w0 = clf.model_.get_weights()
    onehot = np.eye(3)[codes2]  # rows in the columns of classes_: class 2 is column 2
    loss, grads = clf.model_.loss_and_gradients(X2, onehot)
    clf.partial_fit(X2, y2)
    assert clf.loss_curve_[-1] == pytest.approx(loss, rel=1e-12)
    for w, g, w1 in zip(w0, grads, clf.model_.get_weights()):
        np.testing.assert_allclose(w1, w - 0.1 * g, rtol=1e-10, atol=1e-12)
    assert clf.model_.loss_and_gradients(X2, onehot)[0] < loss
