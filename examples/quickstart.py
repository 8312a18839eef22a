"""Quickstart: the Keras-like workflow on scikit-learn's 8x8 digits.

Shows the whole loop in a dozen lines: build a ``Sequential`` model, ``compile`` it,
``summary``, ``fit`` with a held-out ``validation_split`` and a stop rule on the
validation loss, ``evaluate`` on the test split, and ``predict`` class probabilities.

Run (needs scikit-learn, which ships the data; a couple of seconds)::

    python examples/quickstart.py
"""

import numpy as np

import nnlib as nn
from nnlib.datasets import load_digits


def main() -> None:
    # 1797 images of 8x8 pixels scaled to [0, 1]; a stratified 75/25 train/test split.
    (x_train, y_train), (x_test, y_test) = load_digits(test_size=0.25, seed=0)
    print(f"train {x_train.shape}, test {x_test.shape}, classes {np.unique(y_train).tolist()}")

    # 1. Build: input_dim on the first layer builds the model at once, so summary() can show shapes.
    model = nn.Sequential([
        nn.Dense(64, input_dim=64, activation="relu"),
        nn.Dense(10),  # logits: the loss applies the softmax
    ], seed=0)

    # 2. Compile: optimizer, loss and metrics by name or by object.
    model.compile(optimizer=nn.Adam(lr=1e-3), loss="softmax_cross_entropy", metrics=["accuracy"])
    model.summary()

    # 3. Fit: hold out 20% of the training set (stratified, seeded) and stop once the
    #    validation loss has improved by less than tol for `patience` epochs in a row.
    history = model.fit(x_train, y_train, epochs=200, batch_size=32, validation_split=0.2,
                        monitor="val_loss", tol=1e-3, patience=5, verbose=0)
    last = {k: round(v[-1], 4) for k, v in history.history.items()}
    print(f"\nepochs run: {history.epochs_run}, last epoch: {last}")
    print(f"stop reason: {history.stop_reason}")

    # 4. Evaluate on data the model never saw.
    scores = model.evaluate(x_test, y_test)
    print(f"\ntest loss: {scores['loss']:.4f}")
    print(f"test accuracy: {scores['accuracy']:.4f}")

    # 5. Predict: one row of class probabilities per input (softmax of the logits).
    probs = model.predict(x_test[:5])
    print("\nfirst 5 test images:")
    for p, label in zip(probs, y_test[:5]):
        print(f"  true {label}  predicted {p.argmax()}  (p = {p.max():.3f})")


if __name__ == "__main__":
    main()
