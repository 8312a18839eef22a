"""Regression with MSE on scikit-learn's diabetes data, against a Ridge baseline.

442 patients, 10 features (age, sex, BMI, blood pressure, six blood serum values); the
target is a measure of disease progression one year later. Shows:

- standardizing features *and* target with ``nnlib.data.Standardizer`` fitted on the
  training split only (the test split must not leak into the scaling),
- a small MLP trained with the ``"mse"`` loss, early-stopped on a validation split,
- mapping predictions back to the original units before computing test RMSE and R^2,
- ``sklearn.linear_model.Ridge`` on the same split and features as the baseline.

On 332 training rows a linear model is hard to beat; expect the MLP to tie it
(test R^2 about 0.53-0.56 for both) rather than to win.

Run (needs scikit-learn; a few seconds)::

    python examples/regression.py
"""

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

import nnlib as nn
from nnlib.data import Standardizer, train_test_split


def rmse_r2(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """Root mean squared error and the coefficient of determination R^2."""
    sse = np.sum((y_true - y_pred) ** 2)
    return float(np.sqrt(sse / len(y_true))), float(1 - sse / np.sum((y_true - y_true.mean()) ** 2))


def main() -> None:
    x, y = load_diabetes(return_X_y=True)  # x (442, 10), y (442,) in original units
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, seed=0)
    print(f"train {x_train.shape}, test {x_test.shape}; target mean {y_train.mean():.1f}, std {y_train.std():.1f}")

    # Fit the scalers on the training split only, then apply them to both splits.
    x_scaler = Standardizer().fit(x_train)
    y_scaler = Standardizer().fit(y_train.reshape(-1, 1))  # Standardizer wants 2-D (N, D)
    x_train_s, x_test_s = x_scaler.transform(x_train), x_scaler.transform(x_test)
    y_train_s = y_scaler.transform(y_train.reshape(-1, 1))

    # A small MLP with one linear output, trained on 80% of the training rows (20% decide when to stop);
    # Adam's L2 weight decay keeps it from overfitting so few rows.
    model = nn.Sequential([nn.Dense(16, activation="relu"), nn.Dense(1)], seed=0)
    model.compile(optimizer=nn.Adam(lr=1e-3, weight_decay=1e-2), loss="mse")
    history = model.fit(x_train_s, y_train_s, epochs=500, batch_size=32, validation_split=0.2,
                        monitor="val_loss", tol=1e-4, patience=20, verbose=0)
    print(f"MLP 10-16-1: {history.epochs_run} epochs, {history.stop_reason}")

    # Predictions come out standardized: undo the target scaling to get original units.
    mlp_pred = model.predict(x_test_s)[:, 0] * y_scaler.scale_[0] + y_scaler.mean_[0]
    ridge_pred = Ridge(alpha=1.0).fit(x_train_s, y_train).predict(x_test_s)

    print(f"\n{'test set (original units)':<28}{'RMSE':>8}{'R^2':>8}")
    for name, pred in [("predict the train mean", np.full_like(y_test, y_train.mean())),
                       ("Ridge(alpha=1)", ridge_pred),
                       ("nnlib MLP 10-16-1", mlp_pred)]:
        rmse, r2 = rmse_r2(y_test, pred)
        print(f"{name:<28}{rmse:>8.2f}{r2:>8.3f}")


if __name__ == "__main__":
    main()
