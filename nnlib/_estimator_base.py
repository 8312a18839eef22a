"""The shared core of :mod:`nnlib.estimators`: scikit-learn's MLP, run by nnlib.

:class:`_BaseMLP` holds what ``MLPClassifier`` and ``MLPRegressor`` share, with their
meaning: the parameters (validated by scikit-learn's own constraints, so the errors are
the same), the losses as scikit-learn defines them (its L2 term included), the stochastic
loop (epochs, shuffling, the ``tol``/``n_iter_no_change`` rule, early stopping on the
validation score, the three learning-rate schedules), L-BFGS through
``scipy.optimize.minimize`` on the flat parameter buffer, ``warm_start`` and
``partial_fit``. The network is an nnlib :class:`~nnlib.model.Sequential`: its forward and
backward passes, and nnlib's optimizers (PyTorch's formulas), do the arithmetic.

Nothing here is public: import the estimators from :mod:`nnlib.estimators`.
"""

from __future__ import annotations

import copy
import threading
import warnings
from numbers import Real
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse
from scipy.special import expit, xlogy
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils import shuffle as shuffled
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from . import training
from .layers import BatchNormalization, Dense, Dropout, Layer
from .model import Sequential
from .optimizers import SGD, Adam, Momentum
from .parameter import Parameter, flat_view

#: scikit-learn's hidden activations and nnlib's names for them
_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: inference passes this many samples at a time (bounded memory for any X)
_PREDICT_CHUNK = 4096


def _dtype_option(value: Any) -> np.dtype | None:
    """The precision ``dtype`` forces, or None to follow the input; ValueError otherwise."""
    if value is None:
        return None
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError):  # not a dtype at all, e.g. 3 or "nonsense"
        dtype = None
    # "is None" first: NumPy's dtype == None is True for float64, so `in` alone would pass it
    if dtype is None or dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"The 'dtype' parameter must be None, 'float32' or 'float64', got {value!r} instead.")
    return dtype


class _Schedule:
    """The learning rate's schedule, with scikit-learn's rules, driving an nnlib optimizer.

    ``learning_rate`` is the current rate: ``"invscaling"`` sets it to
    ``learning_rate_init / (t + 1) ** power_t`` at each epoch's end (``t``: samples seen),
    ``"adaptive"`` divides it by 5 when the stop rule fires, stopping only once it is at most
    1e-6. Adam keeps ``learning_rate_init`` (its bias corrections are in the optimizer).
    """

    def __init__(self, optimizer: Any, learning_rate_init: float, schedule: str, power_t: float) -> None:
        self.optimizer = optimizer
        self.learning_rate_init = self.learning_rate = float(learning_rate_init)
        self.schedule, self.power_t = schedule, float(power_t)

    def step(self, params: list[Parameter]) -> None:
        self.optimizer.lr = self.learning_rate
        self.optimizer.step(params)

    def iteration_ends(self, samples_seen: int) -> None:
        if self.schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (samples_seen + 1) ** self.power_t

    def trigger_stopping(self, message: str, verbose: bool) -> bool:
        """Whether the fit stops when the stop rule fires (else the rate was lowered)."""
        if self.schedule != "adaptive":
            if verbose:
                print(message + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(message + f" Setting learning rate to {self.learning_rate:f}")
        return False


class _BaseMLP(BaseEstimator):
    """Shared parameters, the network, both solvers and inference.

    Subclasses provide ``_validate_input``, ``_output_activation``, ``_loss_name`` and
    ``_score_arrays``.
    """

    # scikit-learn's own constraints (the same checks and messages), and nnlib's extras
    _parameter_constraints: dict = {
        **{k: v for k, v in MLPRegressor._parameter_constraints.items() if k != "loss"},
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "dtype": "no_validation",  # checked by _dtype_option: a name, a NumPy type or a dtype
        "layers": [list, tuple, callable, None],
    }

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
                 alpha: float = 0.0001, batch_size: int | str = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int | float = 10, max_fun: int = 15000,
                 dropout: float = 0.0, dtype: Any = None, layers: Any = None) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.dtype = dtype
        self.layers = layers

    # -- parameters ----------------------------------------------------------------------
    def _check_parameters(self) -> list[int]:
        """Every parameter checked before anything changes; returns the hidden sizes."""
        self._validate_params()
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if np.any(np.array(sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        _dtype_option(self.dtype)
        if self.dropout > 0 and self.solver == "lbfgs":
            raise ValueError(f"dropout={self.dropout!r} needs a stochastic solver ('sgd' or 'adam'): L-BFGS's line "
                             "search needs the same function at every evaluation")
        if self.dropout > 0 and self.layers is not None:
            raise ValueError(f"dropout={self.dropout!r} applies to the hidden_layer_sizes network: with layers=, put "
                             "nn.Dropout layers in the list")
        if self.layers is not None and not callable(self.layers):
            for i, layer in enumerate(self.layers):
                if not isinstance(layer, Layer):
                    raise TypeError(f"layers[{i}] must be an nnlib layer, got {type(layer).__name__}")
        return [int(s) for s in sizes]

    def _input_dtype(self, first_pass: bool) -> Any:
        """What ``validate_data`` converts X to: the network's precision once it exists, else a forced
        ``dtype``, else scikit-learn's rule (float32 stays float32, anything else becomes float64)."""
        if not first_pass and hasattr(self, "model_"):
            return self.model_.dtype
        forced = _dtype_option(self.dtype)
        return (np.float64, np.float32) if forced is None else forced

    # -- the network ---------------------------------------------------------------------
    def _hidden_layers(self, sizes: list[int]) -> list[Layer]:
        if self.layers is None:
            hidden: list[Layer] = []
            for units in sizes:
                hidden.append(Dense(units, activation=_ACTIVATIONS[self.activation]))
                if self.dropout > 0:
                    hidden.append(Dropout(self.dropout))
            return hidden
        if callable(self.layers):
            made = self.layers()
            if isinstance(made, Sequential):
                made = made.layers
            if not isinstance(made, (list, tuple)) or not all(isinstance(layer, Layer) for layer in made):
                raise TypeError("layers() must return a Sequential or a list of nnlib layers, got "
                                f"{type(made).__name__}")
            return [copy.deepcopy(layer) for layer in made]
        # copies: fitting never changes the layers the user passed (scikit-learn's rule for parameters); the
        # model's build initializes them afresh
        return [copy.deepcopy(layer) for layer in self.layers]

    def _initialize(self, Y: np.ndarray, n_features: int, sizes: list[int], dtype: np.dtype) -> None:
        """A new network and every fitted attribute, as a first ``fit`` sets them."""
        # the seed of the layers' own initializers and dropout masks; drawn only for networks scikit-learn has no
        # counterpart of, so that an MLP's draws from random_state stay scikit-learn's
        stochastic = self.layers is not None or self.dropout > 0
        seed = int(self._random_state.randint(np.iinfo(np.int32).max)) if stochastic else 0
        hidden = self._hidden_layers(sizes)
        names, output, i = {layer.name for layer in hidden}, "output", 0
        while output in names:  # a user's layer may be called "output"
            i += 1
            output = f"output_{i}"
        model = Sequential([*hidden, Dense(Y.shape[1], name=output)], seed=seed, dtype=dtype,
                           name=type(self).__name__.lower())
        model.build(n_features)
        if self.solver == "lbfgs":
            noisy = [layer for layer in model.layers if isinstance(layer, BatchNormalization)
                     or (isinstance(layer, Dropout) and layer.rate > 0)]
            if noisy:
                raise ValueError(f"solver='lbfgs' needs the same function at every evaluation, but {noisy[0]!r} "
                                 "changes it (batch statistics, dropout masks): use 'adam' or 'sgd'")
        if self.layers is None:
            # scikit-learn's initialization (Glorot uniform, bound sqrt(6 / (fan_in + fan_out)), or sqrt(2 / ...)
            # for logistic units), drawn from random_state in its order: the same starting weights as MLPClassifier
            factor = 2.0 if self.activation == "logistic" else 6.0
            for dense in (layer for layer in model.layers if isinstance(layer, Dense)):
                fan_in, fan_out = dense.weight.shape
                bound = np.sqrt(factor / (fan_in + fan_out))
                dense.weight.value[...] = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
                dense.bias.value[...] = self._random_state.uniform(-bound, bound, fan_out)
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.out_activation_ = self._output_activation()
        self.model_ = model
        self._link_weights()
        self._best_weights = self._snapshot()
        if self.solver != "lbfgs":
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _link_weights(self) -> None:
        """``coefs_`` and ``intercepts_``: views of the network's kernels and biases, scikit-learn's layout
        (a Dense kernel is ``(n_in, n_out)``); the penalized parameters and L-BFGS's packing order."""
        coefs, intercepts = [], []
        for layer in self.model_.layers:
            weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
            if isinstance(weight, Parameter):
                coefs.append(weight)
                if isinstance(bias, Parameter):
                    intercepts.append(bias)
        self._coef_params, self._intercept_params = coefs, intercepts
        self.coefs_ = [p.value for p in coefs]
        self.intercepts_ = [p.value for p in intercepts]
        self.n_layers_ = len(coefs) + 1
        # L-BFGS's vector: the kernels, then the biases, then any other parameter (scikit-learn's packing)
        params = self.model_.parameters()
        listed = {id(p) for p in coefs + intercepts}
        ordered = coefs + intercepts + [p for p in params if id(p) not in listed]
        offsets, start = {}, 0
        for p in params:
            offsets[id(p)] = (start, start + p.size)
            start += p.size
        self._pack_order = np.concatenate([np.arange(*offsets[id(p)]) for p in ordered]) if params else \
            np.zeros(0, np.intp)

    def _snapshot(self) -> tuple[list[np.ndarray], list[dict]]:
        """The weights and the layers' state (BatchNormalization's running statistics; not Dropout's generator,
        which goes on), for early stopping to return to its best epoch."""
        return self.model_.get_weights(), [{} if isinstance(layer, Dropout) else layer.get_state()
                                           for layer in self.model_.layers]

    def _restore(self, snapshot: tuple[list[np.ndarray], list[dict]]) -> None:
        weights, states = snapshot
        self.model_.set_weights(weights)
        for layer, state in zip(self.model_.layers, states):
            if state:
                layer.set_state(state)

    def _adopt_user_weights(self) -> None:
        """Where the user assigned ``coefs_`` or ``intercepts_`` (scikit-learn allows it), the network takes
        them: a network is built from them when there is none, else their values are copied in (checked)."""
        if not hasattr(self, "model_"):
            self._model_from_weights()
            return
        adopted = []
        for name, params in (("coefs_", self._coef_params), ("intercepts_", self._intercept_params)):
            given = getattr(self, name)
            if len(given) != len(params):
                raise ValueError(f"{name} has {len(given)} arrays, the network has {len(params)}")
            for i, (array, p) in enumerate(zip(given, params)):
                if array is not p.value:
                    array = np.asarray(array)
                    if array.shape != p.shape:
                        raise ValueError(f"{name}[{i}] must have shape {p.shape}, got {array.shape}")
                    adopted.append((p, array))
        for p, array in adopted:  # every shape checked first: all or nothing
            p.value[...] = array
        if adopted:
            self._link_weights()

    def _model_from_weights(self) -> None:
        """A network of Dense layers from user-given ``coefs_`` and ``intercepts_`` (no fit before)."""
        coefs = [np.asarray(c) for c in self.coefs_]
        intercepts = [np.asarray(b) for b in self.intercepts_]
        if not coefs or len(coefs) != len(intercepts):
            raise ValueError(f"coefs_ and intercepts_ must be lists of the same length, got {len(coefs)} and "
                             f"{len(intercepts)} arrays")
        for i, (c, b) in enumerate(zip(coefs, intercepts)):
            if c.ndim != 2 or b.shape != (c.shape[1],) or (i and c.shape[0] != coefs[i - 1].shape[1]):
                raise ValueError(f"coefs_[{i}] {c.shape} and intercepts_[{i}] {b.shape} do not chain")
        dtype = np.result_type(coefs[0].dtype, np.float32) if coefs[0].dtype != np.float64 else np.float64
        hidden = [Dense(c.shape[1], activation=_ACTIVATIONS[self.activation]) for c in coefs[:-1]]
        model = Sequential([*hidden, Dense(coefs[-1].shape[1])], dtype=dtype, name=type(self).__name__.lower())
        model.build(coefs[0].shape[0])
        model.set_weights([a for pair in zip(coefs, intercepts) for a in pair])
        self.model_ = model
        self._link_weights()
        self._best_weights = self._snapshot()
        self.n_outputs_ = coefs[-1].shape[1]

    # -- losses ----------------------------------------------------------------------------
    def _outputs_of(self, raw: np.ndarray) -> np.ndarray:
        """The output activation on the network's raw outputs (a new array)."""
        act = self.out_activation_
        if act == "identity":
            return raw.copy()
        if act == "exp":
            return np.exp(raw)
        if act == "logistic":
            return expit(raw)
        shifted = raw - raw.max(axis=1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=1, keepdims=True)
        return shifted

    def _loss_and_delta(self, raw: np.ndarray, Y: np.ndarray, sw: np.ndarray | None) -> tuple[float, np.ndarray]:
        """scikit-learn's loss of a batch (before the L2 term), and ``(out - Y) * sw``: its delta, the derivative
        with respect to the raw outputs for each canonical link (logistic and binary log-loss, softmax and log-loss,
        identity and squared error, exp and Poisson), before the division by the batch's weight."""
        out = self._outputs_of(raw)
        Y = Y.astype(out.dtype, copy=False)
        name = self._loss_name()
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging fit: its loss is inf or NaN, as sklearn's
            if name == "squared_error":
                # half the squared error, averaged over samples (weighted), then over outputs
                loss = 0.5 * np.average((Y - out) ** 2, weights=sw, axis=0).mean()
            elif name == "poisson":
                loss = np.average(xlogy(Y, Y / out) - Y + out, weights=sw, axis=0).sum()
            else:
                eps = np.finfo(out.dtype).eps
                p = np.clip(out, eps, 1 - eps)
                if name == "binary_log_loss":  # a sum over labels per sample: multilabel as scikit-learn
                    per = xlogy(Y, p) + xlogy(1 - Y, 1 - p)
                else:
                    per = xlogy(Y, p)
                loss = -np.average(per, weights=sw, axis=0).sum()
            delta = np.subtract(out, Y, out=out)
        if sw is not None:
            delta *= sw.reshape(-1, 1).astype(delta.dtype, copy=False)
        return float(loss), delta

    def _loss_name(self) -> str:
        raise NotImplementedError

    def _batch_loss_grad(self, X: Any, Y: np.ndarray, sw: np.ndarray | None) -> float | None:
        """Forward and backward through the network: the batch's loss with the L2 term, every gradient filled
        (None for a batch whose weights are all zero: no gradient, no step).

        ``L = loss + alpha / (2 W) sum ||kernel||^2``, ``W`` the batch's summed sample weight (its size without
        weights); ``dL/dkernel = (a^T delta + alpha kernel) / W``, ``dL/dbias = sum delta / W``."""
        model = self.model_
        sw_sum = float(X.shape[0] if sw is None else sw.sum())
        if sw_sum == 0:  # a batch of zero weights: nothing to learn from (no 0/0), and no step
            return None
        raw = model.forward(X, training=True)
        loss, delta = self._loss_and_delta(raw, Y, sw)
        squares = sum(float(np.dot(p.value.ravel(), p.value.ravel())) for p in self._coef_params)
        loss += 0.5 * self.alpha * squares / sw_sum
        delta /= delta.dtype.type(sw_sum)
        model.backward(delta)
        if self.alpha:
            decay = model.dtype.type(self.alpha / sw_sum)
            for p in self._coef_params:
                p.grad += decay * p.value
        return loss

    def _loss_grad_lbfgs(self, packed: np.ndarray, X: Any, Y: np.ndarray, sample_weight: np.ndarray | None,
                         *_unused: Any) -> tuple[float, np.ndarray]:
        """Loss and gradient at the parameters ``packed`` (kernels, then biases: scikit-learn's order), float64.

        Trailing arguments (scikit-learn's preallocated lists) are accepted and ignored."""
        values = flat_view([p.value for p in self.model_.parameters()])
        values[self._pack_order] = packed
        loss = self._batch_loss_grad(X, np.asarray(Y), sample_weight)
        grads = flat_view([p.grad for p in self.model_.parameters()])
        return loss, grads[self._pack_order].astype(np.float64)

    # -- fitting ---------------------------------------------------------------------------------
    def _mutex(self) -> threading.RLock:
        """This estimator's lock: a fit or a prediction runs the network's layers, whose buffers are shared, so
        threads take turns (scikit-learn's MLP only reads ``coefs_`` to predict, and is used from threads)."""
        return self.__dict__.setdefault("_lock", threading.RLock())

    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False) -> _BaseMLP:
        with self._mutex():
            before = dict(self.__dict__)
            first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
            try:
                return self._fit_unlocked(X, y, sample_weight, incremental, first_pass)
            except Exception:
                if first_pass:  # a new fit that failed leaves the estimator as it was (its old network included)
                    self.__dict__.clear()
                    self.__dict__.update(before)
                raise

    def _fit_unlocked(self, X: Any, y: Any, sample_weight: Any, incremental: bool, first_pass: bool) -> _BaseMLP:
        sizes = self._check_parameters()
        X, Y, class_weights = self._validate_input(X, y, incremental, reset=first_pass,
                                                   dtype=self._input_dtype(first_pass))
        sample_weight = self._sample_weight(sample_weight, X)
        if class_weights is not None:
            sample_weight = class_weights if sample_weight is None else sample_weight * class_weights
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, X.shape[1], sizes, X.dtype)
        else:
            self._adopt_user_weights()
            if Y.shape[1] != self.n_outputs_:
                raise ValueError(f"y has {Y.shape[1]} outputs, the network has {self.n_outputs_}")
            if X.dtype != self.model_.dtype:
                X = X.astype(self.model_.dtype)
        if scipy.sparse.issparse(X) and not isinstance(self.model_.layers[0], Dense):
            raise ValueError(f"sparse X needs a Dense first layer (its products take sparse rows), got "
                             f"{self.model_.layers[0]!r}: densify X or start layers= with a Dense layer")
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, sample_weight)
        else:
            self._fit_stochastic(X, Y, sample_weight, incremental)
        if not all(np.isfinite(p.value).all() for p in self.model_.parameters()):
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain large "
                             "values and need to be preprocessed.")
        return self

    @staticmethod
    def _sample_weight(sample_weight: Any, X: Any) -> np.ndarray | None:
        if sample_weight is None:
            return None
        sw = np.asarray(sample_weight, dtype=np.float64)
        if sw.ndim == 0:
            sw = np.full(X.shape[0], float(sw))
        if sw.shape != (X.shape[0],):
            raise ValueError(f"sample_weight.shape == {sw.shape}, expected {(X.shape[0],)}!")
        if not np.isfinite(sw).all():
            raise ValueError("sample_weight must contain only finite values")
        if not sw.any():
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return sw

    def _new_schedule(self) -> _Schedule:
        lr = float(self.learning_rate_init)
        if self.solver == "adam":
            optimizer = Adam(lr=lr, beta1=float(self.beta_1), beta2=float(self.beta_2), eps=float(self.epsilon))
        elif self.momentum > 0:
            optimizer = Momentum(lr=lr, momentum=float(self.momentum), nesterov=bool(self.nesterovs_momentum))
        else:
            optimizer = SGD(lr=lr)
        schedule = self.learning_rate if self.solver == "sgd" else "constant"
        return _Schedule(optimizer, lr, schedule, self.power_t)

    def _fit_stochastic(self, X: Any, Y: np.ndarray, sample_weight: np.ndarray | None, incremental: bool) -> None:
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._new_schedule()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        X_val = y_val = sw_val = None
        if early_stopping:
            # stratified for single-output classification, as scikit-learn (not for multilabel)
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
            arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
            split = train_test_split(*arrays, random_state=self._random_state, test_size=self.validation_fraction,
                                     stratify=stratify)
            X, X_val, Y, Y_val = split[:4]
            sample_weight, sw_val = (split[4], split[5]) if sample_weight is not None else (None, None)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
            y_val = self._label_binarizer.inverse_transform(Y_val) if is_classifier(self) else Y_val
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                              stacklevel=3)
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        params = self.model_.parameters()
        try:
            with training.parallel_for(self.model_):  # a convolutional network splits its batches over threads
                self._epochs(X, Y, sample_weight, X_val, y_val, sw_val, batch_size, params, incremental)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        if early_stopping:
            self._restore(self._best_weights)

    def _epochs(self, X: Any, Y: np.ndarray, sample_weight: np.ndarray | None, X_val: Any, y_val: Any,
                sw_val: Any, batch_size: int, params: list[Parameter], incremental: bool) -> None:
        """The stochastic solvers' epochs, with scikit-learn's stop rule and schedules."""
        early_stopping = self.early_stopping
        n_samples = X.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            if self.shuffle:  # the indices only, drawn from random_state as scikit-learn draws them
                sample_idx = shuffled(sample_idx, random_state=self._random_state)
            accumulated_loss = 0.0
            for batch in gen_batches(n_samples, batch_size):
                rows = sample_idx[batch] if self.shuffle else batch
                loss = self._batch_loss_grad(X[rows], Y[rows], None if sample_weight is None else
                                             sample_weight[rows])
                if loss is not None:
                    accumulated_loss += loss * (batch.stop - batch.start)
                    self._optimizer.step(params)
            self.n_iter_ += 1
            self.loss_ = accumulated_loss / n_samples
            self.t_ += n_samples
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
            self._optimizer.iteration_ends(self.t_)
            if self._no_improvement_count > self.n_iter_no_change:
                watched = ("Validation score did not improve more than" if early_stopping else
                           "Training loss did not improve more than")
                message = f"{watched} tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."
                if self._optimizer.trigger_stopping(message, self.verbose):
                    break
                self._no_improvement_count = 0
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=5)

    def _update_no_improvement_count(self, early_stopping: bool, X_val: Any, y_val: Any, sw_val: Any) -> None:
        """scikit-learn's stop rule: an epoch that improves by less than ``tol`` (the validation score, or the
        training loss) adds one to the count, any other resets it; the best epoch's weights are kept."""
        if early_stopping:
            score = self._score_arrays(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights = self._snapshot()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _fit_lbfgs(self, X: Any, Y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        """SciPy's L-BFGS-B on the whole batch, from the current weights; ``max_iter`` and ``max_fun`` bound it."""
        values = flat_view([p.value for p in self.model_.parameters()])
        iterations: list[int] = []

        def report(intermediate: Any) -> None:
            iterations.append(1)
            if self.verbose:
                print(f"Iteration {len(iterations)}, loss = {float(intermediate.fun):.8f}")

        with training.parallel_for(self.model_):
            result = scipy.optimize.minimize(
                self._loss_grad_lbfgs, values[self._pack_order].astype(np.float64), method="L-BFGS-B", jac=True,
                args=(X, Y, sample_weight), callback=report,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        if result.status != 0:
            message = result.message.decode("latin1") if isinstance(result.message, bytes) else result.message
            warnings.warn(f"lbfgs failed to converge after {result.nit} iteration(s) (status={result.status}): "
                          f"{message}. Increase the number of iterations (max_iter={self.max_iter}) or of function "
                          f"evaluations (max_fun={self.max_fun}), or scale the data.", ConvergenceWarning,
                          stacklevel=3)
        self.n_iter_ = min(int(result.nit), int(self.max_iter))
        self.loss_ = float(result.fun)
        values[self._pack_order] = result.x

    # -- inference ----------------------------------------------------------------------------------
    def _forward_arrays(self, X: Any) -> np.ndarray:
        """The output activation's values for validated ``X``, in chunks, in the network's precision."""
        model = self.model_
        if X.dtype != model.dtype:
            X = X.astype(model.dtype)
        out = np.empty((X.shape[0], self.n_outputs_), dtype=model.dtype)
        chunk = min(_PREDICT_CHUNK, training.inference_chunk(model))
        with training.parallel_for(model):
            for start in range(0, X.shape[0], chunk):
                out[start:start + chunk] = self._outputs_of(model.forward(X[start:start + chunk]))
        return out

    def _forward_checked(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False, dtype=(np.float64, np.float32))
        with self._mutex():
            self._adopt_user_weights()
            return self._forward_arrays(X)

    def _score_arrays(self, X: Any, y: Any, sample_weight: Any) -> float:
        raise NotImplementedError

    def _check_solver(self) -> bool:
        if self.solver == "lbfgs":
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 "stochastic.")
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def __getstate__(self) -> dict[str, Any]:
        if "model_" in self.__dict__ and "coefs_" in self.__dict__:
            self._adopt_user_weights()  # arrays the user assigned to coefs_ / intercepts_ go into the copy
        state = self.__dict__.copy()
        state.pop("_lock", None)
        # coefs_/intercepts_ are views of the network's weights: rebuilt after unpickling, not stored twice
        for name in ("coefs_", "intercepts_", "_coef_params", "_intercept_params"):
            state.pop(name, None)
        state["_linked"] = "model_" in state
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        linked = state.pop("_linked", False)
        self.__dict__.update(state)
        if linked:
            self._link_weights()

