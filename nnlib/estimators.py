"""scikit-learn estimators built on :class:`~nnlib.model.Sequential`.

>>> from nnlib.estimators import NeuralNetClassifier
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> clf = make_pipeline(StandardScaler(), NeuralNetClassifier((64,), max_epochs=50, random_state=0))

Both estimators pass scikit-learn's ``check_estimator`` and ``parametrize_with_checks``
(see ``tests/test_estimators.py``), so they work in Pipelines, ``GridSearchCV``,
``cross_val_score`` and ``clone``. Parameters keep scikit-learn's MLP meanings, and its
names except ``lr`` (``learning_rate_init``), ``max_epochs`` (``max_iter``) and
``optimizer`` (``solver``); ``model_`` is the trained ``Sequential``. Precision follows
scikit-learn's rule: with ``dtype=None`` (the default) float32 input trains and predicts
in float32, any other input in float64.

Class weights, which the core does not have, are provided here: a weighted softmax
cross-entropy, obtained by giving the core loss one-hot target rows scaled by each
sample's class weight (see :meth:`NeuralNetClassifier._targets`). The shared parameters
and the training loop live in the private ``nnlib._estimator_base``.

Pickles of fitted estimators round-trip (scikit-learn's convention) and train on. Load
them only from trusted sources: unpickling runs arbitrary code. For a safe file, save the
network with ``est.model_.save(path)`` and read it back with :func:`nnlib.load_model`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import r2_score
from sklearn.utils import column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels

from ._estimator_base import _BaseNeuralNet

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor"]


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Units of each hidden ``Dense`` layer; ``()`` gives a linear model.
    activation : str or sequence of str, default "relu"
        Hidden-layer activation, one name for all or one per layer: "relu", "leaky_relu",
        "tanh", "sigmoid" (or scikit-learn's "logistic"), "linear" (or "identity").
    optimizer : {"adam", "sgd", "momentum"}, default "adam"
        Any name in ``nnlib.optimizers.registry``, built with ``lr`` and ``alpha``.
    lr : float > 0, default 1e-3
        Learning rate (scikit-learn's ``learning_rate_init``).
    batch_size : int >= 1 or "auto", default 200
        Samples per step, clipped to the number of samples ("auto" means 200).
    max_epochs : int >= 1, default 200
        Passes over the data in ``fit`` (scikit-learn's ``max_iter``).
    tol : float >= 0, default 1e-4
        An epoch fails to improve when its loss is above ``best - tol``.
    n_iter_no_change : int >= 1, default 10
        ``fit`` stops when more than ``n_iter_no_change`` epochs in a row fail to improve
        (scikit-learn's rule); otherwise it runs ``max_epochs`` epochs and warns
        ``ConvergenceWarning``.
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data (stratified for single-label
        classification), watch the validation loss instead of the training loss, and
        restore the weights of the epoch with the lowest validation loss.
    validation_fraction : float in (0, 1), default 0.1
    alpha : float >= 0, default 0.0
        L2 penalty with scikit-learn's scale, ``alpha / (2 n_batch) ||w||^2`` added to each
        batch's mean loss: it becomes the optimizer's weight decay ``alpha / batch_size``.
        Unlike scikit-learn's MLP, biases are decayed too.
    dropout : float in [0, 1), default 0.0
        Inverted-dropout rate after every hidden layer while training.
    random_state : int, RandomState instance or None, default None
        Seeds the weights, shuffling, validation split and dropout masks; None draws a new
        seed for every ``fit``.
    verbose : bool, default False
        Print one line per epoch.
    dtype : {"float32", "float64"} or None, default None
        Precision of the network, chosen when ``fit`` (or a first ``partial_fit``) builds it,
        kept by later ``partial_fit`` calls, and recorded as ``model_.dtype``. None follows
        scikit-learn's rule: float32 ``X`` (an array or DataFrame that scikit-learn keeps
        float32) trains in float32, any other ``X`` (float64, integers, lists, ...) in
        float64. "float32" or "float64" (or the NumPy type or dtype) forces that precision.
        ``predict`` and ``score`` cast ``X`` to the network's precision; outputs are
        returned as float64. In float32, a row predicted alone and in a batch may differ
        by float32 rounding (~1e-7 relative: BLAS sums in a different order).
"""

_ATTRIBUTES_DOC = """
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` had string column names.
    n_outputs_ : int
    model_ : Sequential
        The trained network (``model_.summary()``, ``model_.save(path)``); ``model_.dtype``
        is the precision it computes in.
    loss_curve_ : list of float
        Mean training loss of each epoch (without the L2 term).
    validation_scores_ : list of float or None
        With ``early_stopping``, the validation {score} of each epoch, else None.
    validation_loss_curve_ : list of float or None
        With ``early_stopping``, the validation loss of each epoch, else None.
    best_loss_ : float
        Lowest loss watched by the stop rule: the training loss, or the validation loss
        with ``early_stopping`` (whose weights are restored).
    best_validation_score_ : float or None
        With ``early_stopping``, the validation {score} of the restored epoch.
    n_iter_ : int
        Epochs run, ``partial_fit`` calls included.

    Notes
    -----
    Pickling a fitted estimator works and round-trips exactly, but pickles must only be
    loaded from trusted sources: unpickling can run arbitrary code. For a safe file use
    ``est.model_.save(path)`` and :func:`nnlib.load_model`.
"""


class NeuralNetClassifier(ClassifierMixin, _BaseNeuralNet):
    _numeric_y = False

    def __init__(self, hidden_layer_sizes: Any = (100,), *, activation: Any = "relu", optimizer: str = "adam",
                 lr: float = 1e-3, batch_size: int | str = 200, max_epochs: int = 200, tol: float = 1e-4,
                 n_iter_no_change: int = 10, early_stopping: bool = False, validation_fraction: float = 0.1,
                 alpha: float = 0.0, dropout: float = 0.0, random_state: Any = None, verbose: bool = False,
                 dtype: str | type | np.dtype | None = None, class_weight: Any = None) -> None:
        super().__init__(hidden_layer_sizes, activation=activation, optimizer=optimizer, lr=lr,
                         batch_size=batch_size, max_epochs=max_epochs, tol=tol, n_iter_no_change=n_iter_no_change,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, alpha=alpha,
                         dropout=dropout, random_state=random_state, verbose=verbose, dtype=dtype)
        self.class_weight = class_weight

    def _loss(self) -> str:
        return "binary_cross_entropy" if self._multilabel else "softmax_cross_entropy"

    def _targets(self, y: Any, *, first: bool, partial: bool, classes: Any
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        """Labels -> (loss targets, truth for the validation score, strata, outputs).

        Sets ``classes_`` on the first call; later calls must use the same classes.
        """
        if hasattr(y, "toarray"):  # sparse multilabel indicator
            y = y.toarray()
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"{type(self).__name__} supports binary, multiclass and multilabel-indicator "
                             f"targets, got {kind}")
        multilabel = kind == "multilabel-indicator"
        if first:
            if partial and classes is None and not multilabel:
                raise ValueError("classes must be passed on the first call to partial_fit")
            found = unique_labels(y) if classes is None or multilabel else unique_labels(classes)
            if not multilabel and len(found) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes, but the data "
                                 f"contains only one class: {found[0]!r}")
            if multilabel and self.class_weight is not None:
                raise ValueError("class_weight is not supported for multilabel targets")
            self._multilabel, self._label_dtype, self.classes_ = multilabel, y.dtype, found
        else:
            if classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
                raise ValueError(f"classes={classes!r} differs from classes_={self.classes_!r} of the first call")
            if multilabel != self._multilabel:
                raise ValueError(f"y is {kind}, but the estimator was fitted on "
                                 f"{'multilabel' if self._multilabel else 'single-label'} targets")
        n_classes = len(self.classes_)
        if multilabel:
            if y.shape[1] != n_classes:
                raise ValueError(f"y has {y.shape[1]} labels, the estimator has {n_classes}")
            return y, y, None, n_classes
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels not in classes_ {self.classes_.tolist()}: {unknown.tolist()}")
        codes = np.searchsorted(self.classes_, y).astype(np.intp)
        if self.class_weight is None:
            return codes, codes, codes, n_classes
        if isinstance(self.class_weight, str) and self.class_weight == "balanced" and partial:
            raise ValueError("class_weight='balanced' is not supported by partial_fit: pass the dict that "
                             "compute_class_weight('balanced', classes=..., y=...) gives instead")
        weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        # Weighted cross-entropy through the core loss: with target rows t_n = w_n onehot(y_n),
        # SoftmaxCrossEntropy gives L = (1/N) sum_n w_n (-log p_n[y_n]) and dz = (w_n p_n - t_n) / N.
        rows = np.zeros((len(codes), n_classes))
        rows[np.arange(len(codes)), codes] = weights[codes]
        return rows, codes, codes, n_classes

    def _score_outputs(self, proba: np.ndarray, truth: np.ndarray) -> float:
        """Accuracy (subset accuracy for multilabel), for the validation scores."""
        if self._multilabel:
            return float(np.mean(np.all((proba > 0.5) == (truth > 0.5), axis=1)))
        return float(np.mean(proba.argmax(axis=1) == truth))

    def fit(self, X: Any, y: Any) -> NeuralNetClassifier:
        """Train a new network on (X, y) for up to ``max_epochs`` epochs.

        Parameters
        ----------
        X : array-like of shape (N, D_in)
        y : array-like of shape (N,) or (N, C)
            Class labels of any type scikit-learn accepts (binary or multiclass), or a
            multilabel indicator matrix of 0/1.

        Returns
        -------
        self
        """
        return self._fit(X, y, partial=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> NeuralNetClassifier:
        """One epoch on (X, y), continuing the current network (a new one on the first call).

        No validation split and no stop rule; ``n_iter_`` and ``loss_curve_`` grow by one.

        Parameters
        ----------
        X : array-like of shape (N, D_in)
        y : array-like of shape (N,) or (N, C)
        classes : array-like of shape (C,), optional
            Every class that will ever appear; required on the first call (for a
            multilabel indicator ``y`` its columns are the classes).

        Returns
        -------
        self
        """
        return self._fit(X, y, partial=True, classes=classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax), or per-label probabilities (sigmoid) for multilabel.

        Parameters
        ----------
        X : array-like of shape (N, D_in)

        Returns
        -------
        ndarray of shape (N, C), float64
            Columns follow ``classes_``.
        """
        proba = self._outputs(X)
        if not self._multilabel:
            proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class (multilabel: every label with probability > 0.5).

        Parameters
        ----------
        X : array-like of shape (N, D_in)

        Returns
        -------
        ndarray of shape (N,) with the labels' type, or (N, C) of 0/1 for multilabel
        """
        proba = self.predict_proba(X)
        if self._multilabel:
            return (proba > 0.5).astype(self._label_dtype)
        return self.classes_[proba.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class NeuralNetRegressor(RegressorMixin, _BaseNeuralNet):
    _numeric_y = True

    def _loss(self) -> str:
        return "mse"

    def _targets(self, y: Any, *, first: bool, partial: bool, classes: Any
                 ) -> tuple[np.ndarray, np.ndarray, None, int]:
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if first:
            self._y_ndim = y.ndim
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs, the estimator was fitted with {self.n_outputs_}")
        return y, y, None, n_outputs

    def _score_outputs(self, out: np.ndarray, truth: np.ndarray) -> float:
        """R^2 (uniform average over outputs), for the validation scores."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)  # a single validation sample
            return float(r2_score(truth, out.reshape(truth.shape)))

    def fit(self, X: Any, y: Any) -> NeuralNetRegressor:
        """Train a new network on (X, y) for up to ``max_epochs`` epochs (MSE loss).

        Parameters
        ----------
        X : array-like of shape (N, D_in)
        y : array-like of shape (N,) or (N, D_out)

        Returns
        -------
        self
        """
        return self._fit(X, y, partial=False)

    def partial_fit(self, X: Any, y: Any) -> NeuralNetRegressor:
        """One epoch on (X, y), continuing the current network (a new one on the first call).

        No validation split and no stop rule; ``n_iter_`` and ``loss_curve_`` grow by one.

        Parameters
        ----------
        X : array-like of shape (N, D_in)
        y : array-like of shape (N,) or (N, D_out)

        Returns
        -------
        self
        """
        return self._fit(X, y, partial=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values.

        Parameters
        ----------
        X : array-like of shape (N, D_in)

        Returns
        -------
        ndarray of shape (N,) if ``y`` was 1-D in fit, else (N, D_out); float64
        """
        out = self._outputs(X)
        return out.ravel() if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


NeuralNetClassifier.__doc__ = f"""A neural-network classifier: hidden ``Dense`` layers, softmax cross-entropy.

    Binary and multiclass labels of any type train a softmax over ``len(classes_)``
    outputs; a multilabel indicator ``y`` (N, C) trains C sigmoid outputs with binary
    cross-entropy. Training is mini-batch with nnlib's optimizers, shuffled per epoch
    from ``random_state``.
{_PARAMETERS_DOC}    class_weight : dict, "balanced" or None, default None
        Weights of each class in the loss: ``{{label: weight}}`` (missing labels weigh 1),
        or "balanced", ``n_samples / (n_classes * bincount(y))``. The loss becomes
        ``(1/N) sum_n w[y_n] CE_n``. Not for multilabel targets; "balanced" is refused
        by ``partial_fit``.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Sorted labels (for multilabel ``y``: ``arange(C)``).
{_ATTRIBUTES_DOC.format(score="accuracy")}
    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from nnlib.estimators import NeuralNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NeuralNetClassifier((32,), lr=1e-2, batch_size=16, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).tolist(), clf.n_iter_ < clf.max_epochs
    ([0, 0, 0], True)
    """

NeuralNetRegressor.__doc__ = f"""A neural-network regressor: hidden ``Dense`` layers, a linear output, MSE.

    ``y`` may be 1-D (N,) or multi-output (N, D_out); ``predict`` returns the same shape.
{_PARAMETERS_DOC}
    Attributes
    ----------
{_ATTRIBUTES_DOC.format(score="R^2")}
    Examples
    --------
    >>> import numpy as np
    >>> from nnlib.estimators import NeuralNetRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = NeuralNetRegressor((32,), lr=1e-2, batch_size=16, random_state=0).fit(X, X.ravel() ** 2)
    >>> reg.predict([[0.5]]).shape, reg.score(X, X.ravel() ** 2) > 0.95
    ((1,), True)
    """
