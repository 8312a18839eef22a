"""scikit-learn's ``MLPClassifier`` and ``MLPRegressor``, run by nnlib: change the import, keep the script.

>>> from nnlib.estimators import NeuralNetClassifier as MLPClassifier
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> clf = make_pipeline(StandardScaler(), MLPClassifier(solver="adam", max_iter=50, random_state=0))

The parameters are scikit-learn's, with its names, defaults, accepted values and validation
(its own parameter constraints); the fitted attributes (``coefs_``, ``loss_curve_``,
``validation_scores_``, ``n_iter_``, ``t_``, ...) and methods mean what they mean there,
down to the loss definitions (so ``tol`` and ``alpha`` carry over), the initial weights
(scikit-learn's Glorot-uniform draws from ``random_state``, in its order), the shuffling,
the stop rule, early stopping on the validation score, ``warm_start`` and ``partial_fit``.
``tests/test_sklearn_conformance.py`` runs the installed scikit-learn's own test file for
its MLP against these classes.

What differs, by design:

- the arithmetic is nnlib's: its forward and backward passes, and its optimizers with
  PyTorch's formulas. Adam puts ``epsilon`` beside the bias-corrected second moment
  (PyTorch) where scikit-learn puts it beside the uncorrected one, and SGD's momentum
  scales the velocity by the current learning rate at each step (PyTorch) where
  scikit-learn folds past rates into it: the same steps at a constant rate, slightly
  different ones after an ``invscaling`` or ``adaptive`` change;
- nnlib's extras, which scikit-learn's frozen MLP does not have: ``dropout``,
  ``class_weight`` (classifier), ``dtype`` and ``layers`` (any nnlib layers, a CNN or a
  BatchNormalization network, as the hidden part of the network: in a Pipeline or
  ``GridSearchCV`` like any estimator);
- ``model_``, the trained :class:`nnlib.Sequential` (``model_.save(path)``,
  ``model_.summary()``).

Pickles of fitted estimators round-trip (scikit-learn's convention) and train on. Load
them only from trusted sources: unpickling runs arbitrary code. For a safe file, save the
network with ``est.model_.save(path)`` and read it back with :func:`nnlib.load_model`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from ._estimator_base import _BaseMLP

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor"]


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default (100,)
        Units of each hidden ``Dense`` layer (ignored when ``layers`` is given).
    activation : {"identity", "logistic", "tanh", "relu"}, default "relu"
        The hidden layers' activation.
    solver : {"lbfgs", "sgd", "adam"}, default "adam"
        "lbfgs": SciPy's L-BFGS-B on all the data at once (``max_iter`` iterations and
        ``max_fun`` loss evaluations at most; not with dropout or BatchNormalization, which
        change the function between evaluations); "sgd" and "adam": mini-batches, nnlib's
        ``SGD``/``Momentum`` and ``Adam``.
    alpha : float >= 0, default 1e-4
        L2 penalty: ``alpha / (2 W) * sum ||kernel||^2`` is added to each batch's loss, ``W``
        the batch's summed sample weight (its size without weights). Kernels only, not biases.
    batch_size : int or "auto", default "auto"
        Samples per step; "auto" is ``min(200, n_samples)``; larger than ``n_samples`` is
        clipped, with scikit-learn's warning.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        The schedule of "sgd": "invscaling" sets ``learning_rate_init / (t_ + 1) ** power_t``
        after each epoch; "adaptive" divides the rate by 5 each time the stop rule fires,
        and stops once it is at most 1e-6.
    learning_rate_init : float > 0, default 1e-3
    power_t : float >= 0, default 0.5
    max_iter : int >= 1, default 200
        Epochs ("sgd", "adam"), or L-BFGS iterations.
    shuffle : bool, default True
        Shuffle the samples before each epoch.
    random_state : int, RandomState instance or None, default None
        Initial weights, shuffling, the validation split (and, with ``layers`` or ``dropout``,
        the seed of the layers' own initializers and of the dropout masks).
    tol : float >= 0, default 1e-4
        An epoch whose training loss is not below ``best_loss_ - tol`` (or, with
        ``early_stopping``, whose validation score is not above ``best + tol``) fails to
        improve; L-BFGS's ``gtol``.
    verbose : bool, default False
        scikit-learn's lines: ``Iteration N, loss = ...`` per epoch.
    warm_start : bool, default False
        ``fit`` continues from the current weights; ``t_``, ``loss_curve_`` and
        ``validation_scores_`` go on growing; ``n_iter_`` counts the last call's epochs, as
        in scikit-learn. A classifier refuses ``y`` with other classes (scikit-learn's error).
    momentum : float in [0, 1], default 0.9
    nesterovs_momentum : bool, default True
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data (stratified for two classes: as in
        scikit-learn, the split is stratified only when the labels binarize to one column),
        stop on its score ({score}) with the rule above, and end with the weights (and
        BatchNormalization statistics) of its best epoch.
    validation_fraction : float in (0, 1), default 0.1
    beta_1, beta_2 : float in [0, 1), default 0.9, 0.999
    epsilon : float > 0, default 1e-8
    n_iter_no_change : int >= 1 or np.inf, default 10
        Stop once more than this many epochs in a row fail to improve; ``np.inf`` never stops early.
    max_fun : int >= 1, default 15000
        L-BFGS's bound on loss evaluations.
    dropout : float in [0, 1), default 0.0
        nnlib's extra: inverted dropout after every hidden ``Dense`` layer while training
        (a stochastic solver only; with ``layers``, put ``nn.Dropout`` layers in the list).
    dtype : {"float32", "float64"}, NumPy type or None, default None
        nnlib's extra: the network's precision. None follows scikit-learn: float32 ``X``
        trains and predicts in float32, anything else in float64.
    layers : list of nnlib layers, callable or None, default None
        nnlib's extra: the hidden part of the network instead of ``hidden_layer_sizes``:
        copies of these layers (never the objects passed), or the layers of the
        ``Sequential`` (or list) ``layers()`` returns. The estimator adds the output
        ``Dense`` layer. Its first layer sees rows of ``X``: put ``nn.Reshape((28, 28, 1))``
        first for flattened images. ``alpha`` penalizes every layer's ``weight`` (Dense and
        Conv2D kernels). A fitted estimator is used by one thread at a time (a lock: its layers
        reuse buffers), so it may be shared across threads, with no speed-up from it.
"""

_ATTRIBUTES_DOC = """
    loss_ : float
        The last epoch's mean training loss (L-BFGS: the final loss), L2 term included.
    best_loss_ : float or None
        The lowest ``loss_`` so far; None under ``early_stopping`` (stochastic solvers only).
    loss_curve_ : list of float
        ``loss_`` after each epoch (stochastic solvers only).
    validation_scores_ : list of float or None
        The validation {score} after each epoch under ``early_stopping``, else None.
    best_validation_score_ : float or None
        Their best, whose weights the fit ends with; None without ``early_stopping``.
    t_ : int
        Training samples seen (stochastic solvers).
    coefs_, intercepts_ : list of ndarray
        Views of the network's kernels (``(n_in, n_out)`` for Dense) and biases, for each
        layer that has them (with ``layers``, a layer without a bias adds a kernel and no
        intercept): writing into them writes the network; arrays assigned to them are taken
        by the next fit, prediction or copy.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` had string column names.
    n_iter_ : int
        Epochs (or L-BFGS iterations) of the last ``fit``, or 1 after ``partial_fit``.
    n_layers_ : int
        Layers with weights, plus the input: ``len(hidden_layer_sizes) + 2`` for an MLP.
    n_outputs_ : int
    out_activation_ : str
        {out_activation}
    model_ : nnlib.Sequential
        The trained network, without the output activation (the loss applies it).
"""


class NeuralNetClassifier(ClassifierMixin, _BaseMLP):
    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
                 alpha: float = 0.0001, batch_size: int | str = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int | float = 10, max_fun: int = 15000,
                 dropout: float = 0.0, class_weight: Any = None, dtype: Any = None, layers: Any = None) -> None:
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
                         learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
                         warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         dropout=dropout, dtype=dtype, layers=layers)
        self.class_weight = class_weight

    # -- targets -----------------------------------------------------------------------------
    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool, dtype: Any
                        ) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """``(X, Y, weights)``: ``Y`` the labels binarized as the loss reads them (one column for two
        classes), ``weights`` the samples' class weights or None."""
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, dtype=dtype, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        weights = self._class_weights(y, incremental)
        return X, self._label_binarizer.transform(y).astype(bool), weights

    def _class_weights(self, y: np.ndarray, incremental: bool) -> np.ndarray | None:
        if self.class_weight is None:
            return None
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multilabel targets")
        if isinstance(self.class_weight, str) and incremental:
            raise ValueError("class_weight='balanced' is not supported by partial_fit: pass the dict that "
                             "compute_class_weight('balanced', classes=..., y=...) gives instead")
        per_class = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        return per_class[np.searchsorted(self.classes_, y)]

    def _output_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _loss_name(self) -> str:
        return "binary_log_loss" if self.out_activation_ == "logistic" else "log_loss"

    def _score_arrays(self, X: Any, y: Any, sample_weight: Any) -> float:
        out = self._forward_arrays(X)
        if not np.isfinite(out).all():
            return np.nan
        return float(accuracy_score(y, self._labels(out), sample_weight=sample_weight))

    def _labels(self, out: np.ndarray) -> np.ndarray:
        return self._label_binarizer.inverse_transform(out.ravel() if self.n_outputs_ == 1 else out)

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NeuralNetClassifier:
        """Fit the network to (X, y), for up to ``max_iter`` epochs (or L-BFGS iterations).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels of any type (binary or multiclass), or a multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), optional
            Each sample's weight in the loss (a weighted mean), multiplied by ``class_weight``.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> NeuralNetClassifier:
        """One epoch over (X, y) from the current weights (new ones on the first call); not with "lbfgs".

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), optional
        classes : array-like of shape (n_classes,), optional
            Every class across all calls; required on the first call (not for multilabel ``y``).

        Returns
        -------
        self
        """
        self._check_parameters()  # before classes_ is set: a refused call changes nothing (scikit-learn's order)
        if classes is None and not hasattr(self, "classes_"):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        first = False
        if classes is not None:
            if hasattr(self, "classes_"):
                if not np.array_equal(self.classes_, unique_labels(classes)):
                    raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                                     f"was: {self.classes_!r}")
            else:
                self.classes_ = unique_labels(classes)
                first = True
        if first:
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    # -- inference -----------------------------------------------------------------------------
    def predict(self, X: Any) -> np.ndarray:
        """The most probable class (multilabel: each label whose probability is above 0.5).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), or (n_samples, n_labels) for multilabel
        """
        return self._labels(self._forward_checked(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities in the order of ``classes_`` (multilabel: each label's own).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), in the network's precision
        """
        out = self._forward_checked(X)
        if self.n_outputs_ == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``, shape (n_samples, n_classes)."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class NeuralNetRegressor(RegressorMixin, _BaseMLP):
    _parameter_constraints: dict = {**_BaseMLP._parameter_constraints,
                                    "loss": MLPRegressor._parameter_constraints["loss"]}

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001, power_t: float = 0.5,
                 max_iter: int = 200, shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: int | float = 10, max_fun: int = 15000, dropout: float = 0.0, dtype: Any = None,
                 layers: Any = None) -> None:
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
                         learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
                         warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         dropout=dropout, dtype=dtype, layers=layers)
        self.loss = loss

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool, dtype: Any
                        ) -> tuple[Any, np.ndarray, None]:
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True,
                             dtype=dtype, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y, None

    def _output_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _loss_name(self) -> str:
        return self.loss

    def _score_arrays(self, X: Any, y: Any, sample_weight: Any) -> float:
        out = self._forward_arrays(X)
        if not np.isfinite(out).all():
            return np.nan
        return float(r2_score(y, out.ravel() if self.n_outputs_ == 1 else out, sample_weight=sample_weight))

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NeuralNetRegressor:
        """Fit the network to (X, y), for up to ``max_iter`` epochs (or L-BFGS iterations).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> NeuralNetRegressor:
        """One epoch over (X, y) from the current weights (new ones on the first call); not with "lbfgs".

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, in the network's precision.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) for one output, else (n_samples, n_outputs)
        """
        check_is_fitted(self)
        out = self._forward_checked(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


NeuralNetClassifier.__doc__ = f"""scikit-learn's ``MLPClassifier``, run by nnlib (see :mod:`nnlib.estimators`).

    Softmax outputs and the log-loss for multiclass labels; one logistic output for two
    classes, and one per label for a multilabel indicator ``y``, with the binary log-loss
    summed over the labels (scikit-learn's definitions).
{_PARAMETERS_DOC.replace("{score}", "accuracy")}    class_weight : dict, "balanced" or None, default None
        nnlib's extra: each class's weight in the loss, ``{{label: weight}}`` or "balanced"
        (``n_samples / (n_classes * bincount(y))``), multiplied into ``sample_weight``. Not for
        multilabel targets; "balanced" is refused by ``partial_fit``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
{_ATTRIBUTES_DOC.replace("{score}", "accuracy").replace("{out_activation}", '"softmax" or "logistic".')}
    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from nnlib.estimators import NeuralNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NeuralNetClassifier((32,), learning_rate_init=1e-2, max_iter=300, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).tolist(), clf.score(X, y) > 0.95
    ([0, 0, 0], True)
    """

NeuralNetRegressor.__doc__ = f"""scikit-learn's ``MLPRegressor``, run by nnlib (see :mod:`nnlib.estimators`).

    Parameters
    ----------
    loss : {{"squared_error", "poisson"}}, default "squared_error"
        Half the squared error (averaged over samples, then outputs) with identity outputs, or
        the half Poisson deviance with ``exp`` outputs (scikit-learn's definitions).
{_PARAMETERS_DOC.replace("{score}", "R^2").split("----------" + chr(10), 1)[1]}
    Attributes
    ----------
{_ATTRIBUTES_DOC.replace("{score}", "R^2").replace("{out_activation}", '"identity", or "exp" for the Poisson loss.')}
    Examples
    --------
    >>> import numpy as np
    >>> from nnlib.estimators import NeuralNetRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = NeuralNetRegressor(hidden_layer_sizes=(32,), learning_rate_init=1e-2, max_iter=500,
    ...                          random_state=0).fit(X, X.ravel() ** 2)
    >>> reg.predict([[0.5]]).shape, reg.score(X, X.ravel() ** 2) > 0.9
    ((1,), True)
    """
