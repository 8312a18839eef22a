"""nnlib/estimators.py and nnlib/_estimator_base.py, scikit-learn's MLPClassifier/MLPRegressor run by nnlib:
scikit-learn's own estimator checks, then the parameters, the agreement with scikit-learn's MLP, the ecosystem
(Pipeline, GridSearchCV, clone, pickle) and nnlib's extras (dropout, class_weight, dtype, layers)."""

import copy
import os
import pickle
import re
import unittest
import warnings

import numpy as np
import pytest
import scipy.sparse
from scipy.special import expit, softmax
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_classification, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.metrics import recall_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

import nnlib
import nnlib as nn
import nnlib._estimator_base as estimator_base
from nnlib.estimators import NeuralNetClassifier, NeuralNetRegressor

# A large step and a loose stop rule make every check's fit end by that rule well before max_iter (the checks
# fit noise labels and unscaled targets too), so no check needs a ConvergenceWarning filter; batch_size="auto"
# never exceeds the checks' tiny data sets (a larger int would warn that it is clipped, an error under this
# suite's filters).
_CHECKED = dict(hidden_layer_sizes=(16,), learning_rate_init=0.1, batch_size="auto", max_iter=1000, tol=1e-2,
                n_iter_no_change=3, random_state=0)


def _run_check(estimator, check):
    """Run one of scikit-learn's checks; its only skip, for the missing decision_function (scikit-learn's MLP
    has none either), is asserted rather than reported as a skipped test."""
    try:
        check(estimator)
    except unittest.SkipTest as skip:
        assert str(skip) == f"{type(estimator).__name__} does not have a decision_function method."


@parametrize_with_checks([NeuralNetClassifier(**_CHECKED), NeuralNetRegressor(**_CHECKED)])
def test_sklearn_estimator_checks(estimator, check):
    _run_check(estimator, check)  # dtype=None: no check is expected to fail


# Forced float32 runs every check through the float32 path too (the default takes it only for float32 input).
_FLOAT32_ROUNDING = ("float32: fitting with integer sample weights and fitting on the repeated rows sum the same "
                     "terms in a different order, so the fits differ by a few float32 ulps (~3e-7 relative), above "
                     "the check's rtol=1e-7")
_FLOAT32_SUBSET = ("float32: BLAS rounds a row's dot products differently depending on how many rows share the "
                   "matmul (gemv for one row, gemm tiles for many), so a row predicted alone and in a batch can "
                   "differ by a few float32 ulps (~1e-7 relative), which is what this check tolerates")
_FLOAT32_SATURATION = ("float32: after a confident fit the logistic output rounds to exactly 1.0 for some samples, "
                       "so predict_log_proba takes log(0) and NumPy warns (an error here), as scikit-learn's "
                       "MLPClassifier does on float32 data (it computes np.log(predict_proba(X)) too)")
_FLOAT32_MULTIOUTPUT = ("dtype='float32' predicts in the network's precision, float32 by design; the check asks "
                        "for float64 predictions")


def _float32_expected_failures(estimator):
    failures = {"check_sample_weight_equivalence_on_dense_data": _FLOAT32_ROUNDING,
                "check_sample_weight_equivalence_on_sparse_data": _FLOAT32_ROUNDING,
                "check_methods_subset_invariance": _FLOAT32_SUBSET}
    if isinstance(estimator, NeuralNetRegressor):
        failures["check_regressor_multioutput"] = _FLOAT32_MULTIOUTPUT
    else:
        failures["check_array_api_input"] = _FLOAT32_SATURATION  # run only with SCIPY_ARRAY_API=1 (conftest.py)
    return failures


@parametrize_with_checks(
    [NeuralNetClassifier(**_CHECKED, dtype="float32"), NeuralNetRegressor(**_CHECKED, dtype="float32")],
    expected_failed_checks=_float32_expected_failures,
    xfail_strict=False,  # float32 rounding may or may not exceed a check's tolerance on a given machine
)
def test_sklearn_estimator_checks_forced_float32(estimator, check):
    _run_check(estimator, check)


@pytest.mark.parametrize("Estimator", [NeuralNetClassifier, NeuralNetRegressor])
def test_check_estimator_on_the_bare_default_passes_every_check(Estimator):
    with warnings.catch_warnings():
        # The defaults (learning_rate_init=1e-3, max_iter=200) are too slow for some checks' data, so those fits
        # end with a ConvergenceWarning (as scikit-learn's MLP): a warning for scikit-learn, a failure under this
        # suite's filterwarnings=error. Every other warning stays an error.
        warnings.simplefilter("ignore", ConvergenceWarning)
        results = check_estimator(Estimator(), on_fail=None, on_skip=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert failed == []
    assert len(results) > 50 and {r["status"] for r in results} <= {"passed", "skipped"}
    # the only skips are scikit-learn's own: there is no decision_function (scikit-learn's MLP has none either),
    # and the array-API check needs SCIPY_ARRAY_API=1, which tests/conftest.py sets before SciPy is imported
    skipped = {(r["check_name"], str(r["exception"])) for r in results if r["status"] == "skipped"}
    expected = set()
    if os.environ.get("SCIPY_ARRAY_API") != "1":
        expected.add(("check_array_api_input", "SCIPY_ARRAY_API is not set: not checking array_api input"))
    if Estimator is NeuralNetClassifier:
        expected.add(("check_classifiers_multilabel_output_format_decision_function",
                      "NeuralNetClassifier does not have a decision_function method."))
    assert skipped == expected


# -- helpers ------------------------------------------------------------------------------------
def _quietly(fit, *args, **kwargs):
    """``fit(*args, **kwargs)`` with a budget meant to be too short: ConvergenceWarning ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit(*args, **kwargs)


def _hand_loss_and_grads(coefs, intercepts, X, Y, out_activation, alpha, sw=None):
    """scikit-learn's loss of a ReLU MLP from its definitions, and its gradients by hand-written backprop:
    the weighted mean over samples of each sample's loss (softmax: -log p of its class; logistic: the binary
    log-losses SUMMED over the outputs; identity: half the squared error averaged over outputs), plus
    ``0.5 * alpha * sum ||W||^2 / sum(sw)`` on the kernels."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    sw = np.ones(len(X)) if sw is None else np.asarray(sw, dtype=np.float64)
    activations = [X]
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        activations.append(np.maximum(activations[-1] @ W + b, 0.0))
    z = activations[-1] @ coefs[-1] + intercepts[-1]
    if out_activation == "softmax":
        out = softmax(z, axis=1)
        per_sample = -np.sum(Y * np.log(out), axis=1)
    elif out_activation == "logistic":
        out = expit(z)
        per_sample = -np.sum(Y * np.log(out) + (1 - Y) * np.log(1 - out), axis=1)
    else:
        out = z
        per_sample = 0.5 * np.mean((Y - out) ** 2, axis=1)
    total = sw.sum()
    loss = np.sum(sw * per_sample) / total + 0.5 * alpha * sum(np.sum(W**2) for W in coefs) / total
    delta = (out - Y) * sw[:, None] / total
    coef_grads, intercept_grads = [None] * len(coefs), [None] * len(coefs)
    for i in range(len(coefs) - 1, -1, -1):
        coef_grads[i] = activations[i].T @ delta + alpha * coefs[i] / total
        intercept_grads[i] = delta.sum(axis=0)
        if i:
            delta = (delta @ coefs[i].T) * (activations[i] > 0)
    return loss, coef_grads, intercept_grads


def _weights(est):
    return [c.copy() for c in est.coefs_], [b.copy() for b in est.intercepts_]


def _check_one_sgd_step(est, X, y, Y, lr, sample_weight=None, hand_weights=None):
    """The estimator is a fitted full-batch SGD (momentum=0) classifier; one more partial_fit on (X, y) must
    report the hand-computed loss at the current weights (each sample weighted by ``hand_weights``) and take
    exactly the hand-computed step."""
    coefs, intercepts = _weights(est)
    loss, coef_grads, intercept_grads = _hand_loss_and_grads(coefs, intercepts, X, Y, est.out_activation_,
                                                             est.alpha, hand_weights)
    est.partial_fit(X, y, sample_weight=sample_weight)
    assert est.loss_ == pytest.approx(loss, rel=1e-12)
    for new, old, grad in zip(est.coefs_ + est.intercepts_, coefs + intercepts, coef_grads + intercept_grads):
        np.testing.assert_allclose(new, old - lr * grad, rtol=1e-10, atol=1e-13)
    return loss


# -- the parameters -------------------------------------------------------------------------------
def test_the_old_parameter_names_are_refused_and_scikit_learns_construct():
    for old in ({"lr": 0.1}, {"max_epochs": 10}, {"optimizer": "adam"}):
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            NeuralNetClassifier(**old)
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            NeuralNetRegressor(**old)
    clf = NeuralNetClassifier(solver="adam", max_iter=200, learning_rate_init=1e-3)  # the example
    assert (clf.solver, clf.max_iter, clf.learning_rate_init) == ("adam", 200, 1e-3)
    assert NeuralNetRegressor("poisson").loss == "poisson"  # loss is the regressor's first positional parameter
    assert NeuralNetClassifier((8, 4), "tanh").get_params()["activation"] == "tanh"


@pytest.mark.parametrize("Estimator, Reference, extras", [
    (NeuralNetClassifier, MLPClassifier, {"dropout", "class_weight", "dtype", "layers"}),
    (NeuralNetRegressor, MLPRegressor, {"dropout", "dtype", "layers"}),
])
def test_get_params_are_scikit_learns_plus_nnlibs_extras_with_its_defaults(Estimator, Reference, extras):
    ours, theirs = Estimator().get_params(), Reference().get_params()
    assert set(ours) == set(theirs) | extras
    assert not set(theirs) & extras
    for name, value in theirs.items():
        assert ours[name] == value, name
    assert {name: ours[name] for name in extras} == {name: None if name != "dropout" else 0.0 for name in extras}


@pytest.mark.parametrize("params, match", [
    ({"solver": "momentum"}, "'solver' parameter"), ({"activation": "softsign"}, "'activation' parameter"),
    ({"learning_rate_init": 0.0}, "'learning_rate_init' parameter"), ({"batch_size": 0}, "'batch_size' parameter"),
    ({"max_iter": 0}, "'max_iter' parameter"), ({"tol": -1.0}, "'tol' parameter"),
    ({"n_iter_no_change": 0}, "'n_iter_no_change' parameter"), ({"learning_rate": "cosine"}, "'learning_rate'"),
    ({"validation_fraction": 1.0}, "'validation_fraction' parameter"), ({"alpha": -0.1}, "'alpha' parameter"),
    ({"momentum": 1.5}, "'momentum' parameter"), ({"beta_1": 1.0}, "'beta_1' parameter"),
    ({"epsilon": 0.0}, "'epsilon' parameter"), ({"max_fun": 0}, "'max_fun' parameter"),
    ({"power_t": -1.0}, "'power_t' parameter"), ({"dropout": 1.0}, "'dropout' parameter"),
    ({"class_weight": "balance"}, "'class_weight' parameter"), ({"layers": nn.Dense(4)}, "'layers' parameter"),
])
def test_bad_parameters_raise_scikit_learns_error_at_fit(params, match):
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier(**params)  # nothing is checked in __init__, as scikit-learn requires
    with pytest.raises(InvalidParameterError, match=match + ".* of NeuralNetClassifier must be"):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")
    with pytest.raises(InvalidParameterError, match=match):  # partial_fit checks first: no classes_ left behind
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert not hasattr(clf, "model_") and not hasattr(clf, "classes_")


def test_the_regressors_loss_is_validated_by_scikit_learn():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(InvalidParameterError, match="'loss' parameter of NeuralNetRegressor must be a str among"):
        NeuralNetRegressor("absolute_error").fit(X, y)


@pytest.mark.parametrize("params, error, match", [
    ({"hidden_layer_sizes": (16, 0)}, ValueError, re.escape("hidden_layer_sizes must be > 0, got [16, 0].")),
    ({"hidden_layer_sizes": [8, -3]}, ValueError, re.escape("hidden_layer_sizes must be > 0, got [8, -3].")),
    ({"dtype": "float16"}, ValueError, "The 'dtype' parameter must be None, 'float32' or 'float64'"),
    ({"dropout": 0.2, "solver": "lbfgs"}, ValueError, "dropout=0.2 needs a stochastic solver"),
    ({"layers": [nn.Dense(4), "relu"]}, TypeError, re.escape("layers[1] must be an nnlib layer, got str")),
    ({"layers": lambda: 3}, TypeError, "layers\\(\\) must return a Sequential or a list of nnlib layers"),
    ({"layers": [nn.Dense(4)], "dropout": 0.1}, ValueError, "with layers=, put nn.Dropout layers in the list"),
    ({"layers": [nn.Dense(4), nn.BatchNormalization()], "solver": "lbfgs"}, ValueError,
     "solver='lbfgs' needs the same function at every evaluation"),
])
def test_nnlib_parameter_rules_are_named(params, error, match):
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier(**params)
    with pytest.raises(error, match=match):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")


# -- agreement with scikit-learn's MLP ---------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "logistic"])
@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
def test_same_random_state_gives_scikit_learns_initial_weights(activation, task):
    X, y = load_iris(return_X_y=True)
    ours, theirs = {"multiclass": (NeuralNetClassifier, MLPClassifier), "binary": (NeuralNetClassifier, MLPClassifier),
                    "regression": (NeuralNetRegressor, MLPRegressor)}[task]
    target = {"multiclass": y, "binary": y == 1, "regression": X[:, 3]}[task]
    # one epoch at a negligible rate without momentum: the weights stay the initial ones (to ~1e-12)
    kw = dict(hidden_layer_sizes=(5, 3), activation=activation, solver="sgd", learning_rate_init=1e-12, momentum=0,
              max_iter=1, random_state=3)
    a, b = _quietly(ours(**kw).fit, X, target), _quietly(theirs(**kw).fit, X, target)
    assert [c.shape for c in a.coefs_] == [c.shape for c in b.coefs_]
    for mine, reference in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-10)
    bound = np.sqrt((2.0 if activation == "logistic" else 6.0) / (4 + 5))  # Glorot uniform, scikit-learn's factor
    assert np.abs(a.coefs_[0]).max() <= bound and np.abs(a.coefs_[0]).max() > 0.5 * bound


@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel", "squared_error", "poisson"])
def test_sgd_at_a_constant_rate_trains_exactly_as_scikit_learn(task):
    """Same initial weights, shuffles, loss definitions (L2 term included) and Nesterov momentum steps at a constant
    rate: 15 epochs of mini-batch SGD give scikit-learn's loss curve and weights to rounding."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.02, batch_size=32, max_iter=15, alpha=0.1,
              random_state=0)
    if task in ("squared_error", "poisson"):
        ours, theirs = NeuralNetRegressor(task, **kw), MLPRegressor(task, **kw)
        X, target = X[:, :3], load_iris().data[:, 3]
    else:
        ours, theirs = NeuralNetClassifier(**kw), MLPClassifier(**kw)
        target = {"multiclass": y, "binary": y == 2, "multilabel": np.column_stack([y == 0, y == 1, y != 1])}[task]
    _quietly(ours.fit, X, target)
    _quietly(theirs.fit, X, target)
    assert ours.out_activation_ == theirs.out_activation_ and ours.n_outputs_ == theirs.n_outputs_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    for mine, reference in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(mine, reference, rtol=1e-8, atol=1e-10)
    assert (ours.n_iter_, ours.t_, ours.best_loss_) == (theirs.n_iter_, theirs.t_, pytest.approx(theirs.best_loss_))


def test_adam_is_close_to_scikit_learns():
    # PyTorch's epsilon placement (documented) makes the steps differ by a hair, not more
    X, y = load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=(8,), learning_rate_init=0.01, batch_size=32, max_iter=20, random_state=0)
    ours, theirs = _quietly(NeuralNetClassifier(**kw).fit, X, y), _quietly(MLPClassifier(**kw).fit, X, y)
    np.testing.assert_allclose(ours.loss_curve_[:5], theirs.loss_curve_[:5], rtol=1e-5)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=0.05)
    np.testing.assert_allclose(ours.coefs_[0], theirs.coefs_[0], atol=0.05)


def test_lbfgs_on_iris_matches_scikit_learn():
    X, y = load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=200, random_state=0)
    ours, theirs = NeuralNetClassifier(**kw).fit(X, y), MLPClassifier(**kw).fit(X, y)
    assert ours.score(X, y) >= 0.97 and abs(ours.score(X, y) - theirs.score(X, y)) <= 0.02
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=0.05)
    assert ours.n_iter_ <= 200 and not hasattr(ours, "loss_curve_") and not hasattr(ours, "best_loss_")


def test_lbfgs_warns_when_max_iter_or_max_fun_stops_it_and_has_no_partial_fit():
    X, y = load_iris(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 3 iteration"):
        clf = NeuralNetClassifier((8,), solver="lbfgs", max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ <= 3
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        reg = NeuralNetRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_fun=5, random_state=0)
        reg.fit(X[:, :3], X[:, 3])
    assert reg.n_iter_ <= reg.max_iter
    for est in (clf, reg, NeuralNetClassifier(solver="lbfgs")):
        assert not hasattr(est, "partial_fit")
        with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):  # scikit-learn's available_if
            est.partial_fit  # noqa: B018
    assert hasattr(NeuralNetClassifier(solver="sgd"), "partial_fit")


def test_invscaling_and_adaptive_learning_rates_follow_scikit_learn():
    X, y = load_iris(return_X_y=True)
    inv = dict(hidden_layer_sizes=(4,), solver="sgd", learning_rate="invscaling", learning_rate_init=0.01,
               power_t=0.3, max_iter=12, random_state=0)
    clf = _quietly(NeuralNetClassifier(**inv).fit, X, y)
    assert clf.t_ == 12 * 150
    assert clf._optimizer.learning_rate == pytest.approx(0.01 / (clf.t_ + 1) ** 0.3, rel=1e-12)
    assert clf._optimizer.learning_rate == pytest.approx(_quietly(MLPClassifier(**inv).fit, X, y)
                                                         ._optimizer.learning_rate, rel=1e-12)
    # tol=10: no epoch ever improves enough, so the rule fires every other epoch and divides the rate by 5
    ada = dict(hidden_layer_sizes=(4,), solver="sgd", learning_rate="adaptive", learning_rate_init=0.01,
               tol=10.0, n_iter_no_change=1, max_iter=5, random_state=0)
    clf = _quietly(NeuralNetClassifier(**ada).fit, X, y)
    reference = _quietly(MLPClassifier(**ada).fit, X, y)
    assert clf._optimizer.learning_rate < 0.01
    assert clf._optimizer.learning_rate == pytest.approx(reference._optimizer.learning_rate, rel=1e-12)
    # once the rate is at most 1e-6 the fit stops, as scikit-learn's
    ada.update(max_iter=50)
    clf, reference = NeuralNetClassifier(**ada).fit(X, y), MLPClassifier(**ada).fit(X, y)
    assert clf.n_iter_ == reference.n_iter_ < 50 and clf._optimizer.learning_rate <= 1e-6


def test_verbose_prints_scikit_learns_lines(capsys):
    X, y = load_iris(return_X_y=True)
    _quietly(NeuralNetClassifier((4,), max_iter=2, verbose=True, random_state=0).fit, X, y)
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Iteration 1, loss = \d+\.\d{8}", lines[0]) and lines[1].startswith("Iteration 2, loss = ")


# -- warm_start, sample_weight, sparse input --------------------------------------------------------
def test_warm_start_continues_and_n_iter_counts_the_last_call():
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((4,), warm_start=True, max_iter=5, random_state=0)
    _quietly(clf.fit, X, y)
    first_weights = _weights(clf)[0]
    assert (clf.n_iter_, clf.t_, len(clf.loss_curve_)) == (5, 750, 5)
    _quietly(clf.fit, X, y)
    assert (clf.n_iter_, clf.t_, len(clf.loss_curve_)) == (5, 1500, 10)
    # the second call went on from the first one's weights: its first loss is below the first call's first
    assert clf.loss_curve_[5] < clf.loss_curve_[0]
    assert not np.array_equal(first_weights[0], clf.coefs_[0])
    with pytest.raises(ValueError, match=re.escape("warm_start can only be used where `y` has the same classes as "
                                                   "in the previous call to fit. Previously got [0 1 2], `y` has "
                                                   "[0 1]")):
        clf.fit(X[y < 2], y[y < 2])
    cold = NeuralNetClassifier((4,), max_iter=5, random_state=0)
    _quietly(cold.fit, X, y)
    _quietly(cold.fit, X, y)
    assert (cold.t_, len(cold.loss_curve_)) == (750, 5)  # without warm_start, each fit starts over


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
@pytest.mark.parametrize("Estimator", [NeuralNetClassifier, NeuralNetRegressor])
def test_integer_sample_weights_equal_repeated_rows(Estimator, solver):
    X, y = load_iris(return_X_y=True)
    X, y = X[::2], y[::2]  # 75 rows, every class
    target, X = (y, X) if Estimator is NeuralNetClassifier else (X[:, 3], X[:, :3])
    w = np.random.default_rng(0).integers(0, 4, len(X))
    w[:3] = 2
    assert w.sum() <= 200  # batch_size="auto": one full batch for both fits
    kw = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=30, shuffle=False, learning_rate_init=0.05,
              random_state=0)
    weighted = _quietly(Estimator(**kw).fit, X, target, sample_weight=w)
    repeated = _quietly(Estimator(**kw).fit, np.repeat(X, w, axis=0), np.repeat(target, w))
    assert weighted.loss_ == pytest.approx(repeated.loss_, rel=1e-9)
    for a, b in zip(weighted.coefs_ + weighted.intercepts_, repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)


def test_sample_weights_all_zero_or_misshapen_are_refused_negative_ones_taken_as_scikit_learn():
    X, y = load_iris(return_X_y=True)
    for Estimator in (NeuralNetClassifier, NeuralNetRegressor):
        with pytest.raises(ValueError, match="Sample weights must contain at least one non-zero number"):
            Estimator(hidden_layer_sizes=(4,)).fit(X, y, sample_weight=np.zeros(150))
        with pytest.raises(ValueError, match="sample_weight.shape"):
            Estimator(hidden_layer_sizes=(4,)).fit(X, y, sample_weight=np.ones(3))
        with pytest.raises(ValueError, match="finite"):
            Estimator(hidden_layer_sizes=(4,)).fit(X, y, sample_weight=np.r_[np.nan, np.ones(149)])
    # scikit-learn's MLP checks sample_weight without ensure_non_negative: a negative weight is used as given
    sw = np.r_[-0.5, np.ones(149)]
    kw = dict(hidden_layer_sizes=(4,), solver="sgd", learning_rate_init=0.01, max_iter=3, random_state=0)
    ours = _quietly(NeuralNetClassifier(**kw).fit, X, y, sample_weight=sw)
    theirs = _quietly(MLPClassifier(**kw).fit, X, y, sample_weight=sw)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("Estimator", [NeuralNetClassifier, NeuralNetRegressor])
def test_sparse_input_trains_like_dense_through_sparse_products(Estimator, monkeypatch):
    X, y = load_iris(return_X_y=True)
    X = np.where(X > 3, X, 0.0)  # about half zeros
    target = y if Estimator is NeuralNetClassifier else X[:, 3]
    kw = dict(hidden_layer_sizes=(6,), max_iter=20, learning_rate_init=0.01, random_state=0)
    dense = _quietly(Estimator(**kw).fit, X, target)
    method = "predict_proba" if Estimator is NeuralNetClassifier else "predict"
    expected = getattr(dense, method)(X)
    seen = []
    forward = nn.Dense.forward

    def recording_forward(layer, x, *args, **kwargs):
        seen.append(scipy.sparse.issparse(x))
        return forward(layer, x, *args, **kwargs)

    for fmt in ("csr", "csc"):
        Xs = scipy.sparse.csr_matrix(X).asformat(fmt)
        est = Estimator(**kw)
        monkeypatch.setattr(nn.Dense, "forward", recording_forward)
        _quietly(est.fit, Xs, target)
        predicted = getattr(est, method)(Xs)
        monkeypatch.undo()
        # the first Dense layer was handed the sparse batches (one call in two: the output layer sees dense rows)
        assert seen[0::2] and all(seen[0::2]) and not any(seen[1::2])
        assert scipy.sparse.issparse(est.model_.layers[0]._x)
        seen.clear()
        np.testing.assert_allclose(predicted, expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(getattr(est, method)(X), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="sparse X needs a Dense first layer"):
        Estimator(layers=[nn.BatchNormalization(), nn.Dense(4)]).fit(scipy.sparse.csr_matrix(X), target)


# -- the ecosystem --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_pipeline_on_digits_reaches_90_percent(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = make_pipeline(StandardScaler(), NeuralNetClassifier((64,), learning_rate_init=1e-2, batch_size=64,
                                                               max_iter=100, random_state=0))
    pipe.fit(X_train, y_train)
    assert pipe.score(X_test, y_test) >= 0.9
    clf = pipe[-1]
    assert clf.n_iter_ < 100 and len(clf.loss_curve_) == clf.n_iter_  # the stop rule ended it
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.validation_scores_ is None
    assert clf.best_validation_score_ is None and clf.t_ == clf.n_iter_ * len(X_train)
    assert clf.n_features_in_ == 64 and clf.n_layers_ == 3 and clf.out_activation_ == "softmax"
    assert [c.shape for c in clf.coefs_] == [(64, 64), (64, 10)] and [b.shape for b in clf.intercepts_] == [(64,),
                                                                                                         (10,)]


def test_grid_search_over_hidden_sizes_and_learning_rate_init():
    X, y = load_iris(return_X_y=True)
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), NeuralNetClassifier(batch_size=32, max_iter=40, random_state=0)),
        {"neuralnetclassifier__hidden_layer_sizes": [(4,), (16,)],
         "neuralnetclassifier__learning_rate_init": [1e-4, 3e-2]},
        cv=3,
    )
    _quietly(grid.fit, X, y)  # 1e-4 on 100 samples is meant to be too slow for 40 epochs
    assert grid.best_params_["neuralnetclassifier__learning_rate_init"] == 3e-2
    assert grid.best_score_ > 0.9
    assert grid.cv_results_["mean_test_score"].shape == (4,)


def test_cross_val_score_and_regressor_pipeline():
    X, y = load_iris(return_X_y=True)
    clf = make_pipeline(StandardScaler(), NeuralNetClassifier((16,), learning_rate_init=3e-2, batch_size=32,
                                                              random_state=0))
    scores = cross_val_score(clf, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.9
    reg = make_pipeline(StandardScaler(), NeuralNetRegressor(hidden_layer_sizes=(16,), learning_rate_init=1e-2,
                                                             batch_size=16, random_state=0))
    r2 = cross_val_score(reg, X[:, :3], X[:, 3], cv=KFold(3, shuffle=True, random_state=0))  # petal width
    assert r2.mean() > 0.8


def test_clone_copies_parameters_not_the_fit():
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((8, 4), activation="tanh", learning_rate_init=3e-2, class_weight="balanced",
                              random_state=3).fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "model_") and not hasattr(twin, "classes_") and not hasattr(twin, "coefs_")


# -- pickling ----------------------------------------------------------------------------------
def test_pickle_round_trip_gives_identical_probabilities_and_training_continues():
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((16,), learning_rate_init=1e-2, batch_size=32, dropout=0.1, random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    for mine, theirs in zip(restored.coefs_, restored.model_.get_weights()[0::2]):
        np.testing.assert_array_equal(mine, theirs)
    # coefs_ are views of the restored network again, not stale copies
    assert np.shares_memory(restored.coefs_[0], restored.model_.layers[0].weight.value)
    # Training goes on exactly as it would have without the round trip (weights, Adam moments, dropout generator
    # and sample counter carried over), for pickle and deepcopy alike.
    copied = copy.deepcopy(clf)
    before = clf.predict_proba(X)
    for est in (clf, restored, copied):
        est.partial_fit(X, y)
    assert not np.array_equal(clf.predict_proba(X), before)
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(copied.predict_proba(X), clf.predict_proba(X))
    assert restored.t_ == clf.t_ and len(restored.loss_curve_) == len(clf.loss_curve_)


def test_model_save_is_the_safe_alternative(tmp_path):
    X, y = load_iris(return_X_y=True)
    for clf in (NeuralNetClassifier((8,), learning_rate_init=3e-2, batch_size=32, random_state=0),
                NeuralNetClassifier((8,), learning_rate_init=3e-2, batch_size=32, dropout=0.2, random_state=0)):
        clf.fit(X, y)
        clf.model_.save(tmp_path / "net.nnlib")
        loaded = nnlib.load_model(tmp_path / "net.nnlib")
        # model_ is the network without the output activation: the saved one gives the raw outputs
        np.testing.assert_allclose(softmax(loaded.predict(X), axis=1), clf.predict_proba(X), rtol=1e-10)
    assert "trusted" in NeuralNetClassifier.__doc__ or "trusted" in nnlib.estimators.__doc__
    assert "model_.save" in nnlib.estimators.__doc__


# -- labels --------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [np.array(["setosa", "versicolor", "virginica"]), np.array([-7, -1, 3]),
                                    np.array(["b", "a", "c"], dtype=object), np.array([2.0, -1.0, 30.0])])
def test_labels_of_any_type_round_trip(labels):
    X, codes = load_iris(return_X_y=True)
    y = labels[codes]
    clf = NeuralNetClassifier((16,), learning_rate_init=3e-2, batch_size=32, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, np.sort(labels))
    pred = clf.predict(X)
    assert pred.dtype == clf.classes_.dtype and set(pred) <= set(labels)
    assert np.mean(pred == y) > 0.9
    assert clf.predict_proba(X).shape == (150, 3)


def test_binary_string_labels_and_a_single_class():
    X, y = load_iris(return_X_y=True)
    yb = np.where(y == 0, "yes", "no")
    clf = NeuralNetClassifier((8,), learning_rate_init=3e-2, batch_size=32, random_state=0).fit(X, yb)
    assert list(clf.classes_) == ["no", "yes"]
    assert clf.predict_proba(X).shape == (150, 2) and clf.score(X, yb) > 0.95
    # scikit-learn's behaviour: a single class fits (one logistic output) and predicts that class
    kw = dict(hidden_layer_sizes=(4,), solver="sgd", max_iter=5, random_state=0)
    single = _quietly(NeuralNetClassifier(**kw).fit, X, np.full(150, "yes"))
    reference = _quietly(MLPClassifier(**kw).fit, X, np.full(150, "yes"))
    assert list(single.classes_) == ["yes"] and single.n_outputs_ == 1
    assert set(single.predict(X)) == {"yes"}
    np.testing.assert_allclose(single.predict_proba(X), reference.predict_proba(X), rtol=1e-10)


def test_binary_classification_has_one_logistic_output():
    X, y = load_iris(return_X_y=True)
    yb = y == 2
    clf = NeuralNetClassifier((7,), learning_rate_init=3e-2, batch_size=32, random_state=0).fit(X, yb)
    assert clf.n_outputs_ == 1 and clf.out_activation_ == "logistic"
    assert clf.coefs_[-1].shape == (7, 1) and clf.intercepts_[-1].shape == (1,)
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    hidden = np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0)
    np.testing.assert_allclose(proba[:, 1], expit(hidden @ clf.coefs_[1] + clf.intercepts_[1]).ravel(), rtol=1e-10)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-10)
    assert clf.score(X, yb) > 0.9


def test_partial_fit_with_classes_then_more_calls():
    X, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(150)
    clf = NeuralNetClassifier((16,), learning_rate_init=1e-2, batch_size=16, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        clf.partial_fit(X, y)
    first = order[:40]
    clf.partial_fit(X[first], y[first], classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and list(clf.classes_) == [0, 1, 2]
    for epoch in range(60):
        part = order[(epoch % 3) * 50:(epoch % 3) * 50 + 50]
        clf.partial_fit(X[part], y[part])
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 61 and clf.t_ == 40 + 60 * 50  # scikit-learn's counts
    assert clf.loss_curve_[-1] < clf.loss_curve_[0] and clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match=re.escape("`y` has classes not in `self.classes_`")):
        clf.partial_fit(X[:2], [0, 5])
    with pytest.raises(ValueError, match="is not the same as on last call to partial_fit"):
        clf.partial_fit(X[:2], [0, 1], classes=[0, 1])
    with pytest.raises(ValueError, match="X has 3 features, but NeuralNetClassifier is expecting 4"):
        clf.partial_fit(X[:2, :3], [0, 1])
    with pytest.raises(ValueError, match="balanced"):
        NeuralNetClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        NeuralNetClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


@pytest.mark.parametrize("labels", [[0, 1, 2], ["ant", "bee", "cat"]], ids=["ints", "strings"])
def test_partial_fit_on_a_batch_without_a_class_trains_on_the_columns_of_classes_(labels):
    """After partial_fit(X1, y1, classes=...), a batch holding only classes_[0] and classes_[2] trains on one-hot
    targets in the columns of classes_ (not on codes of the batch's own labels): the full-batch SGD step reports
    the hand-computed loss and moves the weights by exactly the hand-computed gradient."""
    rng = np.random.default_rng(0)
    classes = np.array(labels)
    X1, y1 = rng.standard_normal((30, 4)), classes[np.arange(30) % 3]
    codes2 = np.array([0, 2] * 6)
    X2, y2 = rng.standard_normal((12, 4)), classes[codes2]
    clf = NeuralNetClassifier((5,), solver="sgd", momentum=0, learning_rate_init=0.1, random_state=0)
    clf.partial_fit(X1, y1, classes=classes)
    assert list(clf.classes_) == labels
    loss = _check_one_sgd_step(clf, X2, y2, np.eye(3)[codes2], lr=0.1)  # class 2 is column 2
    coefs, intercepts = _weights(clf)
    assert _hand_loss_and_grads(coefs, intercepts, X2, np.eye(3)[codes2], "softmax", clf.alpha)[0] < loss


def test_regressor_partial_fit_and_output_shapes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y2 = np.column_stack([X @ [1.0, -2.0, 0.5], X[:, 0] - X[:, 1]])
    reg = NeuralNetRegressor(hidden_layer_sizes=(16,), learning_rate_init=1e-2, batch_size=32, random_state=0)
    assert reg.fit(X, y2[:, 0]).predict(X).shape == (200,) and reg.n_outputs_ == 1
    assert reg.out_activation_ == "identity" and reg.coefs_[-1].shape == (16, 1)
    assert reg.fit(X, y2).predict(X).shape == (200, 2) and reg.n_outputs_ == 2
    assert reg.score(X, y2) > 0.9 and reg.predict(X).dtype == np.float64
    inc = NeuralNetRegressor(hidden_layer_sizes=(16,), learning_rate_init=1e-2, batch_size=32, random_state=0)
    for _ in range(5):
        inc.partial_fit(X, y2)
    assert inc.n_iter_ == 1 and len(inc.loss_curve_) == 5 and inc.t_ == 1000
    assert inc.loss_curve_[-1] < inc.loss_curve_[0]
    with pytest.raises(ValueError, match="outputs"):
        inc.partial_fit(X, y2[:, 0])
    poisson = NeuralNetRegressor("poisson", hidden_layer_sizes=(8,), learning_rate_init=1e-2, random_state=0)
    poisson.fit(X, np.exp(X[:, 0]))
    assert poisson.out_activation_ == "exp" and (poisson.predict(X) > 0).all()


@pytest.mark.parametrize("Estimator", [NeuralNetClassifier, NeuralNetRegressor])
def test_a_column_vector_y_warns_and_is_used_as_1d(Estimator):
    X, y = load_iris(return_X_y=True)
    est = Estimator(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    with pytest.warns(DataConversionWarning, match="column-vector y"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y.reshape(-1, 1))
    assert est.predict(X).shape == (150,) and est.n_outputs_ == (3 if Estimator is NeuralNetClassifier else 1)


# -- class weights -------------------------------------------------------------------------------
def _imbalanced():
    X, y = make_classification(n_samples=800, n_features=4, n_informative=2, n_redundant=0, weights=[0.9, 0.1],
                               class_sep=0.6, flip_y=0, random_state=0)
    return train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)


def test_balanced_class_weight_improves_minority_recall():
    X_train, X_test, y_train, y_test = _imbalanced()
    settings = dict(hidden_layer_sizes=(8,), learning_rate_init=1e-2, batch_size=32, tol=1e-3, random_state=0)
    plain = NeuralNetClassifier(**settings).fit(X_train, y_train)
    balanced = NeuralNetClassifier(**settings, class_weight="balanced").fit(X_train, y_train)
    recall_plain = recall_score(y_test, plain.predict(X_test))
    recall_balanced = recall_score(y_test, balanced.predict(X_test))
    assert recall_balanced > recall_plain + 0.2, (recall_plain, recall_balanced)


def test_class_weight_is_a_weighted_mean_of_the_log_losses():
    """The loss is the average over samples of -log p(class), weighted by class weight x sample weight, plus the
    L2 term over that total weight: one full-batch SGD step is checked against the hand computation."""
    X, y = load_iris(return_X_y=True)
    class_weight = {0: 0.5, 1: 3.0, 2: 1.0}
    sw = np.random.default_rng(0).uniform(0.2, 2.0, 150)
    clf = NeuralNetClassifier((5,), solver="sgd", momentum=0, learning_rate_init=0.05, alpha=0.1,
                              class_weight=class_weight, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2], sample_weight=sw)
    weights = np.array([class_weight[c] for c in y]) * sw
    _check_one_sgd_step(clf, X, y, np.eye(3)[y], lr=0.05, sample_weight=sw, hand_weights=weights)
    with pytest.raises(AssertionError):  # the check can fail: the class weights do matter
        _check_one_sgd_step(clf, X, y, np.eye(3)[y], lr=0.05, sample_weight=sw, hand_weights=sw)
    # unit class weights train exactly like none
    X_train, _, y_train, _ = _imbalanced()
    kw = dict(hidden_layer_sizes=(4,), learning_rate_init=1e-2, batch_size=32, tol=1e-3, random_state=0)
    ones = NeuralNetClassifier(**kw, class_weight={0: 1, 1: 1}).fit(X_train, y_train)
    none = NeuralNetClassifier(**kw).fit(X_train, y_train)
    np.testing.assert_allclose(ones.predict_proba(X_train), none.predict_proba(X_train), rtol=1e-10)
    with pytest.raises(ValueError, match="multilabel"):
        NeuralNetClassifier(class_weight="balanced").fit(X_train[:4], [[0, 1], [1, 0], [1, 1], [0, 0]])


# -- stopping, warnings, repeatability -----------------------------------------------------------
def test_early_stopping_fills_validation_scores_and_restores_the_best_epoch(digits, monkeypatch):
    X_train, _, y_train, _ = digits
    X, y = X_train[:600] / 16, y_train[:600]
    splits = []
    original_split = estimator_base.train_test_split

    def recording_split(*args, **kwargs):
        splits.append(original_split(*args, **kwargs))
        return splits[-1]

    monkeypatch.setattr(estimator_base, "train_test_split", recording_split)
    clf = NeuralNetClassifier((16,), learning_rate_init=1e-2, early_stopping=True, n_iter_no_change=5,
                              random_state=0)
    snapshots = []  # the weights at the end of each epoch, right after its validation score
    count = clf._update_no_improvement_count
    clf._update_no_improvement_count = lambda *a: (count(*a), snapshots.append(clf.model_.get_weights()))
    clf.fit(X, y)
    n = clf.n_iter_
    assert len(clf.validation_scores_) == len(clf.loss_curve_) == len(snapshots) == n < clf.max_iter
    assert all(0 <= s <= 1 for s in clf.validation_scores_) and clf.best_validation_score_ > 0.8
    assert clf.best_validation_score_ == max(clf.validation_scores_) and clf.best_loss_ is None
    best = int(np.argmax(clf.validation_scores_))
    assert best < n - 1  # the fit went on past its best epoch ...
    assert not all(np.array_equal(a, b) for a, b in zip(snapshots[-1], snapshots[best]))
    for restored, kept in zip(clf.model_.get_weights(), snapshots[best]):  # ... and ended with that epoch's weights
        np.testing.assert_array_equal(restored, kept)
    (_, X_val, _, Y_val), = splits  # the held-out split (stratified, 10 %) scores the restored weights as the best
    assert len(X_val) == 60
    assert clf.score(X_val, clf._label_binarizer.inverse_transform(Y_val)) == clf.best_validation_score_
    X, y = load_iris(return_X_y=True)
    reg = NeuralNetRegressor(hidden_layer_sizes=(8,), learning_rate_init=1e-2, batch_size=16, early_stopping=True,
                             random_state=0).fit(X[:, :3], X[:, 3])
    assert len(reg.validation_scores_) == reg.n_iter_ and reg.best_validation_score_ > 0.5  # R^2
    assert reg.best_validation_score_ == max(reg.validation_scores_) and reg.best_loss_ is None


def test_convergence_warning_when_max_iter_ends_training():
    X, y = load_iris(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match=re.escape("Stochastic Optimizer: Maximum iterations (3) reached")):
        clf = NeuralNetClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the stop rule ends this one
        clf = NeuralNetClassifier((8,), learning_rate_init=3e-2, batch_size=16, max_iter=500, random_state=0)
        assert clf.fit(X, y).n_iter_ < 500
    # n_iter_no_change=np.inf: the stop rule never fires, even when no epoch improves by tol
    clf = NeuralNetClassifier((4,), max_iter=20, n_iter_no_change=np.inf, tol=10.0, random_state=0)
    with pytest.warns(ConvergenceWarning, match=re.escape("Maximum iterations (20) reached")):
        clf.fit(X, y)
    assert clf.n_iter_ == 20


def test_random_state_makes_fits_repeat():
    X, y = load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=(8,), learning_rate_init=1e-2, dropout=0.3, max_iter=30)
    a = _quietly(NeuralNetClassifier(**kw, random_state=7).fit, X, y).predict_proba(X)
    b = _quietly(NeuralNetClassifier(**kw, random_state=7).fit, X, y).predict_proba(X)
    c = _quietly(NeuralNetClassifier(**kw, random_state=8).fit, X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rng = np.random.RandomState(0)  # a RandomState instance is drawn from, as scikit-learn's
    d = _quietly(NeuralNetClassifier(**kw, random_state=rng).fit, X, y).predict_proba(X)
    np.testing.assert_array_equal(d, _quietly(NeuralNetClassifier(**kw, random_state=0).fit, X, y).predict_proba(X))
    free = NeuralNetClassifier((8,), max_iter=2)
    firsts = {_quietly(free.fit, X, y).coefs_[0][0, 0] for _ in range(3)}
    assert len(firsts) == 3  # random_state=None: new initial weights per fit


# -- multilabel ----------------------------------------------------------------------------------
def test_multilabel_classification():
    X, Y = make_multilabel_classification(n_samples=300, n_features=8, n_classes=4, random_state=0)
    clf = make_pipeline(StandardScaler(), NeuralNetClassifier((32,), learning_rate_init=3e-2, batch_size=32,
                                                              tol=1e-3, random_state=0))
    clf.fit(X, Y)
    proba, pred = clf.predict_proba(X), clf.predict(X)
    assert proba.shape == pred.shape == (300, 4) and pred.dtype == Y.dtype
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    assert np.mean(pred == Y) > 0.85  # per-label accuracy
    net = clf[-1]
    assert list(net.classes_) == [0, 1, 2, 3] and net.out_activation_ == "logistic" and net.n_outputs_ == 4
    with pytest.raises(ValueError, match="Multioutput target data is not supported with label binarization"):
        NeuralNetClassifier().fit(X[:4], [[0, 2], [1, 0], [2, 1], [0, 0]])


def test_multilabel_loss_is_the_sum_of_the_label_log_losses():
    X, Y = make_multilabel_classification(n_samples=60, n_features=5, n_classes=4, random_state=0)
    X = StandardScaler().fit_transform(X)
    clf = NeuralNetClassifier((6,), solver="sgd", momentum=0, learning_rate_init=0.1, random_state=0)
    clf.partial_fit(X, Y, classes=np.arange(4))
    coefs, intercepts = _weights(clf)
    summed = _check_one_sgd_step(clf, X, Y, Y, lr=0.1)
    hidden = np.maximum(X @ coefs[0] + intercepts[0], 0)
    p = expit(hidden @ coefs[1] + intercepts[1])
    mean_over_labels = -np.mean(Y * np.log(p) + (1 - Y) * np.log(1 - p))
    assert summed == pytest.approx(4 * mean_over_labels + 0.5 * clf.alpha * sum(np.sum(c**2) for c in coefs) / 60)


# -- alpha, feature names, dropout ------------------------------------------------------------------
def test_alpha_has_scikit_learns_scale():
    """L = loss + alpha / (2 n) sum ||W||^2 on the kernels (not the biases), gradient alpha W / n: checked on one
    full-batch step for a large alpha, and against scikit-learn's own L-BFGS fit."""
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((4,), activation="relu", solver="sgd", momentum=0, alpha=5.0, learning_rate_init=0.01,
                              random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    coefs, _ = _weights(clf)
    plain = copy.deepcopy(clf).set_params(alpha=0.0)
    with_l2 = _check_one_sgd_step(clf, X, y, np.eye(3)[y], lr=0.01)  # the gradient's alpha * W / n included
    without = _check_one_sgd_step(plain, X, y, np.eye(3)[y], lr=0.01)
    assert with_l2 - without == pytest.approx(0.5 * 5.0 * sum(np.sum(c**2) for c in coefs) / 150, rel=1e-10)
    kw = dict(hidden_layer_sizes=(6,), solver="lbfgs", alpha=1.0, max_iter=50, random_state=0)
    ours = _quietly(NeuralNetClassifier(**kw).fit, X, y)
    theirs = _quietly(MLPClassifier(**kw).fit, X, y)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-3)


def test_feature_names_in():
    import pandas as pd  # a dev dependency: feature names come from a DataFrame
    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    clf = _quietly(NeuralNetClassifier((8,), learning_rate_init=3e-2, batch_size=32, random_state=0).fit, frame, y)
    assert list(clf.feature_names_in_) == ["sl", "sw", "pl", "pw"] and clf.n_features_in_ == 4
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        clf.predict(X)
    assert not hasattr(_quietly(NeuralNetClassifier((8,), max_iter=5, random_state=0).fit, X, y),
                       "feature_names_in_")


def test_dropout_in_the_estimator():
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((32,), learning_rate_init=1e-2, batch_size=16, dropout=0.3, random_state=0).fit(X, y)
    kinds = [type(layer).__name__ for layer in clf.model_.layers]
    assert kinds == ["Dense", "Dropout", "Dense"] and clf.model_.layers[1].rate == 0.3
    assert clf.score(X, y) > 0.9
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))  # no dropout at inference
    no_dropout = NeuralNetClassifier((32,), learning_rate_init=1e-2, batch_size=16, random_state=0).fit(X, y)
    assert clf.loss_curve_[:3] != no_dropout.loss_curve_[:3]  # dropout did act in training


# -- precision (dtype) ----------------------------------------------------------------------------
def _iris_inputs():
    import pandas as pd  # a dev dependency, as in test_feature_names_in
    X, y = load_iris(return_X_y=True)
    columns = ["sl", "sw", "pl", "pw"]
    return y, {
        "float32": (X.astype(np.float32), np.float32),
        "float32 frame": (pd.DataFrame(X.astype(np.float32), columns=columns), np.float32),
        "float32 csr": (scipy.sparse.csr_matrix(X.astype(np.float32)), np.float32),
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
        est = _quietly(Estimator(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit, X, y)
        assert est.model_.dtype == expected, kind
        assert all(c.dtype == expected for c in est.coefs_ + est.intercepts_), kind
        out = est.predict_proba(X) if Estimator is NeuralNetClassifier else est.predict(X)
        assert out.dtype == expected, kind  # outputs in the network's precision, as scikit-learn's
        assert est.get_params()["dtype"] is None  # the decision is recorded on model_, not on the parameter


@pytest.mark.parametrize("Estimator", [NeuralNetClassifier, NeuralNetRegressor])
@pytest.mark.parametrize("forced, expected", [("float32", np.float32), ("float64", np.float64),
                                              (np.float32, np.float32), (np.dtype("float64"), np.float64)])
def test_an_explicit_dtype_overrides_the_input(Estimator, forced, expected):
    y, inputs = _iris_inputs()
    for kind in ("float32", "float64", "int64", "list"):
        est = _quietly(Estimator(hidden_layer_sizes=(4,), max_iter=2, random_state=0, dtype=forced).fit,
                       inputs[kind][0], y)
        assert est.model_.dtype == expected, kind
        assert (est.predict_proba if Estimator is NeuralNetClassifier else est.predict)(inputs[kind][0]).dtype \
            == expected, kind


def test_predict_casts_x_to_the_fitted_precision():
    y, inputs = _iris_inputs()
    X64, X32 = inputs["float64"][0], inputs["float32"][0]
    clf = NeuralNetClassifier((8,), learning_rate_init=3e-2, batch_size=32, random_state=0).fit(X64, y)
    assert clf.model_.dtype == np.float64
    # float32 X widens exactly, so it predicts exactly what its float64 copy does
    np.testing.assert_array_equal(clf.predict_proba(X32), clf.predict_proba(X32.astype(np.float64)))
    assert clf.predict_proba(X32).dtype == np.float64 and clf.score(X32, y) > 0.9
    clf32 = NeuralNetClassifier((8,), learning_rate_init=3e-2, batch_size=32, random_state=0).fit(X32, y)
    assert clf32.model_.dtype == np.float32
    np.testing.assert_array_equal(clf32.predict_proba(X64), clf32.predict_proba(X64.astype(np.float32)))
    assert clf32.predict_proba(X64).dtype == np.float32 and clf32.score(X64, y) > 0.9
    reg = NeuralNetRegressor(hidden_layer_sizes=(8,), learning_rate_init=1e-2, batch_size=16,
                             random_state=0).fit(X64[:, :3], X64[:, 3])
    np.testing.assert_array_equal(reg.predict(X32[:, :3]), reg.predict(X32[:, :3].astype(np.float64)))


@pytest.mark.parametrize("Estimator", [NeuralNetClassifier, NeuralNetRegressor])
def test_partial_fit_keeps_the_precision_of_its_first_call(Estimator):
    y, inputs = _iris_inputs()
    X64, X32 = inputs["float64"][0], inputs["float32"][0]
    extra = {"classes": [0, 1, 2]} if Estimator is NeuralNetClassifier else {}
    est = Estimator(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    est.partial_fit(X32, y, **extra)
    assert est.model_.dtype == np.float32
    est.partial_fit(X64, y)
    est.set_params(dtype="float64")  # a new precision needs a new network, i.e. fit
    est.partial_fit(X64, y)
    assert est.model_.dtype == np.float32 and len(est.loss_curve_) == 3
    assert _quietly(est.fit, X64, y).model_.dtype == np.float64  # fit starts over, with the new dtype


@pytest.mark.parametrize("bad", ["float16", "int32", 3, np.float16, np.dtype("int64"), "nonsense", "", True])
def test_a_bad_dtype_is_named_and_leaves_the_fitted_estimator_alone(bad):
    X, y = load_iris(return_X_y=True)
    message = "The 'dtype' parameter must be None, 'float32' or 'float64', got " + re.escape(repr(bad))
    fresh = NeuralNetClassifier(dtype=bad)
    with pytest.raises(ValueError, match=message):
        fresh.fit(X, y)
    assert not hasattr(fresh, "model_")
    for est in (NeuralNetClassifier((8,), learning_rate_init=3e-2, batch_size=32, max_iter=20, random_state=0),
                NeuralNetRegressor(hidden_layer_sizes=(8,), learning_rate_init=1e-2, batch_size=16, max_iter=20,
                                   random_state=0)):
        target = y if isinstance(est, NeuralNetClassifier) else X[:, 3]
        _quietly(est.fit, X, target)
        model, weights, curve = est.model_, est.model_.get_weights(), list(est.loss_curve_)
        before = est.predict(X)
        est.set_params(dtype=bad)
        for call in (est.fit, est.partial_fit):
            with pytest.raises(ValueError, match=message):
                call(X, target)
        assert est.model_ is model and est.loss_curve_ == curve
        assert all(np.array_equal(a, b) for a, b in zip(weights, est.model_.get_weights()))
        np.testing.assert_array_equal(est.predict(X), before)


# -- layers= -----------------------------------------------------------------------------------------
def test_layers_with_batch_normalization_and_dropout_fit_iris_and_stay_untouched():
    X, y = load_iris(return_X_y=True)
    layers = [nn.Dense(32), nn.BatchNormalization(), nn.ReLU(), nn.Dropout(0.2)]
    clf = NeuralNetClassifier(layers=layers, learning_rate_init=1e-2, max_iter=100, random_state=0)
    _quietly(clf.fit, X, y)
    assert clf.score(X, y) > 0.9
    assert [type(layer).__name__ for layer in clf.model_.layers] == ["Dense", "BatchNormalization", "ReLU", "Dropout",
                                                                       "Dense"]
    assert clf.model_.layers[-1].units == 3 and clf.coefs_[-1].shape == (32, 3) and clf.n_layers_ == 3
    # fit built copies: the user's layer objects are not built, not named, not in the network
    assert clf.get_params()["layers"] is layers
    assert not any(layer.built for layer in layers) and all(layer.name is None for layer in layers)
    assert not any(mine is theirs for mine in layers for theirs in clf.model_.layers)
    twin = clone(clf)  # independent copies of the layers, same configuration
    assert all(a is not b and a.get_config() == b.get_config() for a, b in zip(twin.layers, layers))
    _quietly(twin.fit, X, y)
    np.testing.assert_array_equal(twin.predict_proba(X), clf.predict_proba(X))  # random_state seeds the layers too
    assert not any(layer.built for layer in layers)


def test_layers_as_a_callable_returning_a_sequential():
    X, y = load_iris(return_X_y=True)

    def network():
        return nn.Sequential([nn.Dense(16, activation="relu"), nn.Dense(8, activation="tanh")])

    clf = NeuralNetClassifier(layers=network, learning_rate_init=1e-2, max_iter=150, random_state=0)
    _quietly(clf.fit, X, y)
    assert [layer.units for layer in clf.model_.layers] == [16, 8, 3] and clf.score(X, y) > 0.9
    reg = NeuralNetRegressor(layers=lambda: [nn.Dense(8, activation="relu")], learning_rate_init=1e-2, max_iter=100,
                             random_state=0)
    _quietly(reg.fit, X[:, :3], X[:, 3])
    assert reg.score(X[:, :3], X[:, 3]) > 0.8 and reg.coefs_[-1].shape == (8, 1)


def test_a_small_cnn_in_grid_search_on_digits():
    X, y = load_digits(return_X_y=True)
    X, y = X[:900] / 16, y[:900]
    cnn = NeuralNetClassifier(layers=[nn.Reshape((8, 8, 1)), nn.Conv2D(4, 3, activation="relu"), nn.MaxPooling2D(2),
                                      nn.Flatten()], max_iter=40, random_state=0)
    grid = GridSearchCV(cnn, {"learning_rate_init": [1e-3, 1e-2]}, cv=2)
    _quietly(grid.fit, X, y)
    assert grid.best_params_ == {"learning_rate_init": 1e-2} and grid.best_score_ > 0.8
    best = grid.best_estimator_
    assert type(best.model_.layers[1]).__name__ == "Conv2D" and best.coefs_[0].shape == (3, 3, 1, 4)
    assert best.score(X, y) > 0.8


# -- review findings: shared use, failed refits, copies, layers= ------------------------------------
def test_predictions_from_several_threads_equal_the_serial_ones():
    """The layers reuse their buffers: without the estimator's lock, concurrent predicts mixed their outputs."""
    import threading

    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((16,), max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    rows = [X[i:i + 7] for i in range(0, 140, 7)]
    serial = [clf.predict_proba(r) for r in rows]
    results = [None] * len(rows)

    def work(i):
        for _ in range(20):
            results[i] = clf.predict_proba(rows[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got, want)


def test_a_failed_refit_leaves_the_fitted_estimator_as_it_was():
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetClassifier((6,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    before, model = clf.predict_proba(X[:5]), clf.model_
    clf.set_params(layers=[nn.Reshape((5, 5, 1)), nn.Flatten()])  # cannot be built for 4 features
    with pytest.raises(ValueError, match="cannot reshape"):
        clf.fit(X, y == 0)
    assert clf.model_ is model and clf.n_outputs_ == 3 and clf.out_activation_ == "softmax"
    np.testing.assert_array_equal(clf.predict_proba(X[:5]), before)


def test_momentum_one_fits_as_scikit_learn_allows():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = NeuralNetClassifier((4,), solver="sgd", momentum=1.0, max_iter=5, random_state=0).fit(X, y)
    assert clf.n_iter_ == 5


def test_assigned_coefs_survive_pickling_and_deepcopy():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = NeuralNetClassifier((5,), max_iter=5, random_state=0).fit(X, y)
    clf.coefs_[0] = np.zeros_like(clf.coefs_[0])  # a new array, not a write into the view
    live = clf.predict_proba(X[:3])
    np.testing.assert_allclose(live, np.repeat(live[:1], 3, axis=0))  # the hidden layer no longer sees X
    for copied in (pickle.loads(pickle.dumps(clf)), copy.deepcopy(clf)):
        np.testing.assert_array_equal(copied.predict_proba(X[:3]), live)


def test_dropout_masks_follow_random_state_and_the_output_layer_name_never_collides():
    X, y = load_iris(return_X_y=True)

    def fitted(seed, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return NeuralNetClassifier((8,), max_iter=3, random_state=seed, **kw).fit(X, y)

    np.testing.assert_array_equal(fitted(0, dropout=0.5).coefs_[0], fitted(0, dropout=0.5).coefs_[0])
    assert not np.array_equal(fitted(0, dropout=0.5).coefs_[1], fitted(1, dropout=0.5).coefs_[1])
    named = fitted(0, layers=[nn.Dense(4, name="output"), nn.Dense(4, name="dense_1")])
    assert [layer.name for layer in named.model_.layers] == ["output", "dense_1", "output_1"]


def test_early_stopping_restores_batchnorm_statistics_of_the_best_epoch():
    X, y = load_digits(n_class=3, return_X_y=True)
    clf = NeuralNetClassifier(layers=[nn.Dense(16), nn.BatchNormalization(), nn.ReLU()], early_stopping=True,
                              max_iter=12, n_iter_no_change=2, tol=0.5, learning_rate_init=0.1, random_state=0)
    snapshots = []
    original = estimator_base._BaseMLP._snapshot

    def recording(self):
        snapshots.append(original(self))
        return snapshots[-1]

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mp.setattr(estimator_base._BaseMLP, "_snapshot", recording)
        clf.fit(X / 16, y)
    best_weights, best_states = snapshots[-1]
    bn = clf.model_.layers[1]
    for key, value in best_states[1].items():
        np.testing.assert_array_equal(bn.get_state()[key], value)
    for a, b in zip(clf.model_.get_weights(), best_weights):
        np.testing.assert_array_equal(a, b)
    # meaningful only if the best epoch is not the last one (then the live statistics moved on after it)
    assert int(np.argmax(clf.validation_scores_)) < len(clf.validation_scores_) - 1


def test_grid_search_over_joblib_processes_equals_the_serial_search():
    """scikit-learn users spread searches over processes (loky): the estimator pickles there and back."""
    X, y = load_iris(return_X_y=True)
    grid = {"hidden_layer_sizes": [(4,), (8,)], "learning_rate_init": [1e-2, 3e-2]}

    def search(n_jobs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return GridSearchCV(NeuralNetClassifier(max_iter=30, random_state=0), grid, cv=2, n_jobs=n_jobs).fit(X, y)

    serial, parallel = search(1), search(2)
    np.testing.assert_array_equal(parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
    assert parallel.best_params_ == serial.best_params_
    np.testing.assert_array_equal(parallel.predict_proba(X), serial.predict_proba(X))
