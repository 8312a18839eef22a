"""Issue 2, "Bad input: a clear error, nothing lost": one table of every bad call to the public interface
(fit, train_on_batch, evaluate, predict, compile, the constructors, set_weights, save and load paths,
callbacks that monitor unlogged keys).

Each case names the model it runs on, the call, the exception type and a regex the message must
match (the argument and/or the value). Afterwards every model's weights, build state, loss and
optimizer (object, step count and state arrays) must be exactly as before, and no IndexError may escape.
The crafted bad model files (``model_files.BAD_FILES``) go through the same checks, with a memory bound,
in test_saving.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from model_files import assert_unchanged, snapshot

import nnlib as nn

X = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0], [2.0, 2.0, 0.5],
              [-1.0, 0.5, 1.0], [0.3, -0.2, 0.1], [1.5, -1.5, 0.0]])
Y = np.array([0, 1, 2, 0, 1, 2])
T = np.array([[0.5, -1.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-0.5, 0.5], [0.25, 0.75]])


def make_context():
    clf = nn.Sequential([nn.Dense(4, input_dim=3, activation="relu"), nn.Dense(3)], seed=0)
    clf.compile(nn.Adam(lr=0.01), "softmax_cross_entropy", ["accuracy"])
    clf.fit(X, Y, epochs=1, batch_size=3, verbose=0)  # optimizer state exists
    reg = nn.Sequential([nn.Dense(2, input_dim=3)], seed=0)
    reg.compile(nn.Momentum(lr=0.01), "mse", ["mae"])
    reg.fit(X, T, epochs=1, batch_size=3, verbose=0)
    raw = nn.Sequential([nn.Dense(3, input_dim=3)], seed=0)  # built, not compiled
    lazy = nn.Sequential([nn.Dense(4), nn.Dense(3)], seed=0)  # compiled, not built
    lazy.compile("adam", "softmax_cross_entropy")
    return {"clf": clf, "reg": reg, "raw": raw, "lazy": lazy}


def fit(m, x=X, y=Y, **kw):
    kw.setdefault("epochs", 2)
    kw.setdefault("verbose", 0)
    return m.fit(x, y, **kw)


def with_nan(a, where=(1, 1), value=np.nan):
    a = np.array(a, dtype=float)
    a[where] = value
    return a


XS = np.array([["a", "b", "c"]] * 6)
XO = np.array([[1.0, None, 2.0]] * 6, dtype=object)
ONEHOT4 = np.eye(4)[[0, 1, 2, 3, 0, 1]]

# (id, model, call, exception, message regex)
CASES = [
    # lengths, shapes
    ("fit_length_mismatch", "clf", lambda m: fit(m, X, Y[:5]), ValueError, r"different lengths.*6.*5"),
    ("fit_length_mismatch_long_y", "clf", lambda m: fit(m, X[:4], Y), ValueError, r"different lengths.*4.*6"),
    ("fit_wrong_feature_count", "clf", lambda m: fit(m, np.zeros((6, 4)), Y), ValueError, r"4 features.*expects 3"),
    ("fit_1d_x", "clf", lambda m: fit(m, X[:, 0], Y), ValueError, r"x.*2-D.*\(6,\)"),
    ("fit_3d_x", "clf", lambda m: fit(m, X[:, :, None], Y), ValueError, r"x.*2-D.*\(6, 3, 1\)"),
    ("fit_empty", "clf", lambda m: fit(m, np.zeros((0, 3)), np.zeros(0, dtype=int)), ValueError, r"x.*empty"),
    ("fit_empty_y", "clf", lambda m: fit(m, X, np.zeros(0, dtype=int)), ValueError, r"6.*0"),
    ("fit_onehot_width", "clf", lambda m: fit(m, X, ONEHOT4), ValueError, r"y.*\(N, 3\).*\(6, 4\)"),
    ("fit_reg_target_width", "reg", lambda m: fit(m, X, np.zeros((6, 3))), ValueError, r"y.*\(N, 2\).*\(6, 3\)"),
    # non-finite
    ("fit_nan_x", "clf", lambda m: fit(m, with_nan(X), Y), ValueError, r"x contains nan.*row 1"),
    ("fit_inf_x", "clf", lambda m: fit(m, with_nan(X, (2, 0), np.inf), Y), ValueError, r"x contains inf.*row 2"),
    ("fit_neg_inf_x", "reg", lambda m: fit(m, with_nan(X, (0, 2), -np.inf), T), ValueError, r"x contains -inf"),
    ("fit_nan_float_targets", "reg", lambda m: fit(m, X, with_nan(T)), ValueError, r"y.*non-finite.*nan"),
    ("fit_inf_float_targets", "reg", lambda m: fit(m, X, with_nan(T, (0, 0), np.inf)), ValueError,
     r"y.*non-finite.*inf"),
    ("fit_nan_onehot", "clf", lambda m: fit(m, X, with_nan(np.eye(3)[Y], (3, 2))), ValueError, r"y.*nan"),
    ("fit_nan_float_labels", "clf", lambda m: fit(m, X, with_nan(Y, 2)), ValueError, r"y.*nan"),
    # labels
    ("fit_label_too_big", "clf", lambda m: fit(m, X, np.array([0, 1, 2, 3, 0, 1])), ValueError,
     r"labels must lie in \[0, 3\).*3"),
    ("fit_label_negative", "clf", lambda m: fit(m, X, np.array([0, 1, -1, 0, 1, 2])), ValueError,
     r"labels must lie in \[0, 3\).*-1"),
    ("fit_fractional_labels", "clf", lambda m: fit(m, X, np.array([0.0, 0.5, 1.0, 2.0, 1.0, 0.0])), ValueError,
     r"fractional.*0\.5"),
    # non-numeric
    ("fit_string_x", "clf", lambda m: fit(m, XS, Y), TypeError, r"x must hold numbers"),
    ("fit_object_x", "clf", lambda m: fit(m, XO, Y), TypeError, r"x must hold numbers.*object"),
    ("fit_string_y", "clf", lambda m: fit(m, X, np.array(list("abcabc"))), TypeError, r"y must hold numbers"),
    ("fit_object_y", "reg", lambda m: fit(m, X, np.array([[1.0, None]] * 6, dtype=object)), TypeError,
     r"y must hold numbers.*object"),
    ("fit_y_not_array", "clf", lambda m: fit(m, X, 3), TypeError, r"y.*int"),
    # fit arguments
    ("epochs_zero", "clf", lambda m: fit(m, epochs=0), ValueError, r"epochs.*\b0\b"),
    ("epochs_negative", "clf", lambda m: fit(m, epochs=-2), ValueError, r"epochs.*-2"),
    ("epochs_float", "clf", lambda m: fit(m, epochs=2.5), TypeError, r"epochs.*2\.5"),
    ("epochs_str", "clf", lambda m: fit(m, epochs="3"), TypeError, r"epochs.*'3'"),
    ("epochs_bool", "clf", lambda m: fit(m, epochs=True), TypeError, r"epochs.*True"),
    ("batch_size_zero", "clf", lambda m: fit(m, batch_size=0), ValueError, r"batch_size.*\b0\b"),
    ("batch_size_negative", "clf", lambda m: fit(m, batch_size=-1), ValueError, r"batch_size.*-1"),
    ("batch_size_float", "clf", lambda m: fit(m, batch_size=2.5), TypeError, r"batch_size.*2\.5"),
    ("batch_size_str", "clf", lambda m: fit(m, batch_size="3"), TypeError, r"batch_size.*'3'"),
    ("batch_size_bool", "clf", lambda m: fit(m, batch_size=True), TypeError, r"batch_size.*True"),
    ("validation_split_zero", "clf", lambda m: fit(m, validation_split=0.0), ValueError,
     r"validation_split.*\(0, 1\).*0\.0"),
    ("validation_split_one", "clf", lambda m: fit(m, validation_split=1.0), ValueError, r"validation_split.*1\.0"),
    ("validation_split_negative", "clf", lambda m: fit(m, validation_split=-0.2), ValueError,
     r"validation_split.*-0\.2"),
    ("validation_split_big", "clf", lambda m: fit(m, validation_split=1.5), ValueError, r"validation_split.*1\.5"),
    ("tol_negative", "clf", lambda m: fit(m, tol=-0.1), ValueError, r"tol.*-0\.1"),
    ("tol_nan", "clf", lambda m: fit(m, tol=float("nan")), ValueError, r"tol.*nan"),
    ("patience_zero", "clf", lambda m: fit(m, patience=0), ValueError, r"patience.*0"),
    ("monitor_val_without_validation", "clf", lambda m: fit(m, monitor="val_loss"), ValueError, r"monitor.*val_loss"),
    ("verbose_bad", "clf", lambda m: fit(m, verbose=3), ValueError, r"verbose.*3"),
    ("validation_data_bad_labels", "clf", lambda m: fit(m, validation_data=(X, Y + 1)), ValueError,
     r"validation y.*\[0, 3\)"),
    ("validation_data_bad_features", "clf", lambda m: fit(m, validation_data=(X[:, :2], Y)), ValueError,
     r"validation x.*2 features"),
    ("validation_data_not_pair", "clf", lambda m: fit(m, validation_data=(X,)), ValueError, r"validation_data"),
    ("fit_before_compile", "raw", lambda m: fit(m), RuntimeError, r"compile"),
    ("train_on_batch_before_compile", "raw", lambda m: m.train_on_batch(X, Y), RuntimeError, r"compile"),
    # the other entry points
    ("train_on_batch_nan", "clf", lambda m: m.train_on_batch(with_nan(X), Y), ValueError, r"x contains nan"),
    ("train_on_batch_labels", "clf", lambda m: m.train_on_batch(X, Y + 5), ValueError, r"\[0, 3\).*7"),
    ("loss_and_gradients_shape", "clf", lambda m: m.loss_and_gradients(X[:, :2], Y), ValueError, r"2 features"),
    ("evaluate_wrong_features", "clf", lambda m: m.evaluate(np.zeros((6, 5)), Y), ValueError, r"5 features"),
    ("evaluate_label_out_of_range", "clf", lambda m: m.evaluate(X, Y * 2), ValueError, r"\[0, 3\).*4"),
    ("evaluate_length_mismatch", "reg", lambda m: m.evaluate(X, T[:3]), ValueError, r"different lengths.*6.*3"),
    ("evaluate_batch_size", "clf", lambda m: m.evaluate(X, Y, batch_size=0), ValueError, r"batch_size.*0"),
    ("evaluate_before_compile", "raw", lambda m: m.evaluate(X, Y), RuntimeError, r"compile"),
    ("predict_1d", "clf", lambda m: m.predict(X[0]), ValueError, r"x.*2-D.*\(3,\)"),
    ("predict_nan", "clf", lambda m: m.predict(with_nan(X)), ValueError, r"x contains nan"),
    ("predict_wrong_features", "reg", lambda m: m.predict(np.zeros((2, 4))), ValueError, r"4 features.*expects 3"),
    ("predict_strings", "clf", lambda m: m.predict(XS), TypeError, r"x must hold numbers"),
    ("predict_empty", "clf", lambda m: m.predict(np.zeros((0, 3))), ValueError, r"empty"),
    ("predict_batch_size", "clf", lambda m: m.predict(X, batch_size=-1), ValueError, r"batch_size.*-1"),
    # compile and constructors
    ("unknown_loss", "clf", lambda m: m.compile("adam", "hinge_loss"), ValueError,
     r"unknown loss 'hinge_loss'.*softmax_cross_entropy"),
    ("unknown_optimizer", "clf", lambda m: m.compile("nadamax", "mse"), ValueError,
     r"unknown optimizer 'nadamax'.*adam.*sgd"),
    ("unknown_metric", "clf", lambda m: m.compile("adam", "mse", ["precision"]), ValueError,
     r"unknown metric 'precision'.*accuracy"),
    ("missing_loss", "clf", lambda m: m.compile("adam"), ValueError, r"loss"),
    ("compile_bad_lr", "clf", lambda m: m.compile({"name": "adam", "config": {"lr": -1}}, "mse"), ValueError,
     r"lr.*-1"),
    ("unknown_activation", None, lambda m: nn.Dense(3, activation="swishy"), ValueError,
     r"unknown activation 'swishy'.*relu"),
    ("dense_units_zero", None, lambda m: nn.Dense(0), ValueError, r"units.*0"),
    ("lr_zero", None, lambda m: nn.SGD(lr=0), ValueError, r"lr.*0"),
    ("lr_negative", None, lambda m: nn.Adam(lr=-0.001), ValueError, r"lr.*-0\.001"),
    ("lr_nan", None, lambda m: nn.Momentum(lr=float("nan")), ValueError, r"lr.*nan"),
    ("lr_string", None, lambda m: nn.SGD(lr="fast"), TypeError, r"lr.*'fast'"),
    ("momentum_above_one", None, lambda m: nn.Momentum(momentum=1.01), ValueError, r"momentum.*1\.01"),
    ("momentum_negative", None, lambda m: nn.Momentum(momentum=-0.5), ValueError, r"momentum.*-0\.5"),
    ("beta1_one", None, lambda m: nn.Adam(beta1=1.0), ValueError, r"beta1.*1\.0"),
    ("beta1_negative", None, lambda m: nn.Adam(beta1=-0.1), ValueError, r"beta1.*-0\.1"),
    ("beta2_one", None, lambda m: nn.Adam(beta2=1), ValueError, r"beta2.*1"),
    ("beta2_big", None, lambda m: nn.Adam(beta2=1.5), ValueError, r"beta2.*1\.5"),
    ("eps_zero", None, lambda m: nn.Adam(eps=0), ValueError, r"eps.*0"),
    ("weight_decay_negative", None, lambda m: nn.SGD(weight_decay=-1e-4), ValueError, r"weight_decay.*-0\.0001"),
    ("model_bad_dtype", None, lambda m: nn.Sequential([nn.Dense(2)], dtype="int32"), ValueError, r"dtype.*int32"),
    ("model_bad_seed", None, lambda m: nn.Sequential([nn.Dense(2)], seed=-1), ValueError, r"seed.*-1"),
    # set_weights
    ("set_weights_too_few", "clf", lambda m: m.set_weights(m.get_weights()[:3]), ValueError, r"expected 4.*got 3"),
    ("set_weights_too_many", "clf", lambda m: m.set_weights(m.get_weights() + [np.zeros(3)]), ValueError,
     r"expected 4.*got 5"),
    ("set_weights_wrong_shape", "clf",
     lambda m: m.set_weights([np.zeros((3, 4)), np.zeros(4), np.zeros((3, 4)), np.zeros(3)]), ValueError,
     r"weights\[2\].*\(4, 3\).*\(3, 4\)"),
    ("set_weights_bias_shape", "reg", lambda m: m.set_weights([np.ones((3, 2)), np.ones((1, 2))]), ValueError,
     r"weights\[1\].*\(2,\).*\(1, 2\)"),
    ("set_weights_nan", "reg", lambda m: m.set_weights([np.ones((3, 2)), np.array([0.0, np.nan])]), ValueError,
     r"weights\[1\].*NaN"),
    ("set_weights_strings", "reg", lambda m: m.set_weights([np.ones((3, 2)), np.array(["a", "b"])]), TypeError,
     r"weights\[1\]"),
    # a model built lazily must stay unbuilt after a failed first call
    ("lazy_fit_bad_labels", "lazy", lambda m: fit(m, X, Y + 3), ValueError, r"\[0, 3\)"),
    ("lazy_fit_onehot_width", "lazy", lambda m: fit(m, X, ONEHOT4), ValueError, r"\(N, 3\).*\(6, 4\)"),
    ("lazy_fit_bad_monitor", "lazy", lambda m: fit(m, monitor="val_loss"), ValueError, r"monitor.*val_loss"),
    ("lazy_train_on_batch_fractional", "lazy", lambda m: m.train_on_batch(X, Y + 0.5), ValueError, r"fractional"),
    ("lazy_fit_nan_x", "lazy", lambda m: fit(m, with_nan(X)), ValueError, r"x contains nan"),
]


CASES += [
    ("load_model_missing_path", None, lambda m: nn.load_model("/nonexistent/model.nnlib"), FileNotFoundError,
     r"no such model file: /nonexistent/model\.nnlib"),
    ("load_weights_missing_path", "clf", lambda m: m.load_weights("/nonexistent/w.nnlib"), FileNotFoundError,
     r"/nonexistent/w\.nnlib"),
    ("load_weights_unbuilt", "lazy", lambda m: m.load_weights("/nonexistent/w.nnlib"), RuntimeError, r"not built"),
    ("save_unbuilt", "lazy", lambda m: m.save("/nonexistent/m.nnlib"), ValueError, r"not built"),
    ("save_into_missing_folder", "clf", lambda m: m.save("/nonexistent/m.nnlib"), FileNotFoundError, r"nonexistent"),
    ("checkpoint_bad_mode", None, lambda m: nn.ModelCheckpoint("m.nnlib", mode="auto"), ValueError, r"mode.*'auto'"),
    ("early_stopping_bad_patience", None, lambda m: nn.EarlyStopping(patience=-2), ValueError, r"patience.*-2"),
    ("early_stopping_bad_min_delta", None, lambda m: nn.EarlyStopping(min_delta=-1.0), ValueError,
     r"min_delta.*-1\.0"),
    ("terminate_on_nan_bad_flag", None, lambda m: nn.TerminateOnNaN(raise_error=None), TypeError,
     r"raise_error.*None"),
    ("csv_logger_bad_path", None, lambda m: nn.CSVLogger(3.5), TypeError, r"path.*3\.5"),
    ("fit_checkpoint_unlogged_monitor", "clf", lambda m: fit(m, callbacks=[nn.ModelCheckpoint("/nonexistent/x")]),
     ValueError, r"'val_loss'.*available keys: \['accuracy', 'loss'\]"),
    ("fit_early_stopping_unlogged_monitor", "reg", lambda m: fit(m, X, T, callbacks=[nn.EarlyStopping("val_mae")]),
     ValueError, r"'val_mae'.*available keys: \['loss', 'mae'\]"),
]

@pytest.mark.parametrize("target,call,exc,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(target, call, exc, match):
    ctx = make_context()
    before = {name: snapshot(m) for name, m in ctx.items()}
    with pytest.raises(Exception) as info:  # noqa: B017 -- the type is checked below, IndexError must not escape
        call(ctx[target] if target else None)
    err = info.value
    assert not isinstance(err, IndexError), f"IndexError escaped: {err!r}"
    assert isinstance(err, exc), f"expected {exc.__name__}, got {type(err).__name__}: {err}"
    assert re.search(match, str(err)), f"message {str(err)!r} does not match {match!r}"
    for name, m in ctx.items():  # nothing lost, on any model
        assert_unchanged(before[name], m)
