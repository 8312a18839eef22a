"""nnlib inside scikit-learn: a GridSearchCV on digits, then a side-by-side with MLPClassifier.

``NeuralNetClassifier`` is a scikit-learn estimator, so it goes into a Pipeline after a
``StandardScaler`` and into ``GridSearchCV`` like any other. The search picks
``hidden_layer_sizes`` and ``learning_rate_init`` by 3-fold cross-validation on the training split;
then the best settings are trained once more by nnlib and by scikit-learn's own
``MLPClassifier`` with the same arguments (the estimators take scikit-learn's parameters,
so only the class differs), and both are scored on the same held-out test split.

Run (about 15 s on 2 cores)::

    python examples/sklearn_pipeline.py
"""

import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nnlib.estimators import NeuralNetClassifier

SHARED = dict(batch_size=64, tol=1e-4, n_iter_no_change=10, alpha=0.0, random_state=0, max_iter=200)


def timed_fit(pipe, X, y):
    """Fit ``pipe``; return the seconds it took and whether it hit the epoch budget."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        pipe.fit(X, y)
        seconds = time.perf_counter() - start
    return seconds, any(issubclass(w.category, ConvergenceWarning) for w in caught)


def main() -> None:
    X, y = load_digits(return_X_y=True)  # 1797 8x8 images, 10 classes
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)

    search = GridSearchCV(
        make_pipeline(StandardScaler(), NeuralNetClassifier(**SHARED)),
        {"neuralnetclassifier__hidden_layer_sizes": [(32,), (64,), (128,)],
         "neuralnetclassifier__learning_rate_init": [1e-3, 3e-3, 1e-2]},
        cv=3,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 1e-3 may use the whole budget
        search.fit(X_train, y_train)
    print(f"GridSearchCV: 9 settings x 3 folds in {time.perf_counter() - start:.1f} s")
    results = search.cv_results_
    for params, mean, std in zip(results["params"], results["mean_test_score"], results["std_test_score"]):
        hidden = params["neuralnetclassifier__hidden_layer_sizes"]
        lr = params["neuralnetclassifier__learning_rate_init"]
        print(f"  hidden={str(hidden):<7} lr={lr:<6g} CV accuracy {mean:.4f} +- {std:.4f}")
    best = {k.split("__")[1]: v for k, v in search.best_params_.items()}
    print(f"best: {best}, CV accuracy {search.best_score_:.4f}\n")

    settings = dict(activation="relu", solver="adam", **best, **SHARED)
    contenders = {
        "nnlib NeuralNetClassifier": NeuralNetClassifier(**settings),
        "sklearn MLPClassifier": MLPClassifier(**settings),
    }
    print(f"{'same settings, test split':<28}{'accuracy':>9}{'fit s':>8}{'epochs':>8}  stopped by")
    for name, clf in contenders.items():
        pipe = make_pipeline(StandardScaler(), clf)
        seconds, hit_budget = timed_fit(pipe, X_train, y_train)
        accuracy = pipe.score(X_test, y_test)
        print(f"{name:<28}{accuracy:>9.4f}{seconds:>8.2f}{clf.n_iter_:>8}  "
              f"{'max epochs (ConvergenceWarning)' if hit_budget else 'the tol / n_iter_no_change rule'}")


if __name__ == "__main__":
    main()
