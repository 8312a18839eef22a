"""The package's face: every public name of the API before the restructuring still resolves, and
``import nnlib`` stays light (no SciPy, scikit-learn, sympy, tqdm or matplotlib until used)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import nnlib as nn

# The public names of nnlib and of its family modules at commit df81fa2 (before the house was rebuilt),
# less the modules that moved (nnlib.monitor, nnlib.schedules, nnlib.training_layers: deprecated aliases,
# tested below) and the modules' own imports (np, math, ...). Each must still be importable from the same place.
PUBLIC_BEFORE = {
    "nnlib": (
        "Adam AdamW BatchNormalization BinaryCrossEntropy CSVLogger Callback ConvergenceStop CosineDecay "
        "Dense Dropout EarlyStopping ExponentialDecay GradCheckResult GradientHealthWarning GradientMonitor "
        "History Layer LeakyReLU Linear Loss MSE ModelCheckpoint Momentum Optimizer ProgressLogger RMSprop "
        "ReLU ReduceLROnPlateau SGD Sequential Sigmoid SoftmaxCrossEntropy StepDecay Tanh TerminateOnNaN "
        "callbacks check_gradients check_symbolic data explain functional gradcheck layers load_model losses "
        "metrics model optimizers parameter registry saving "
    ).split(),
    "nnlib.callbacks": (
        "CSVLogger Callback CallbackList ConvergenceStop CosineDecay EarlyStopping ExponentialDecay "
        "GradientHealthWarning GradientMonitor History ModelCheckpoint ProgressLogger ReduceLROnPlateau "
        "StepDecay TerminateOnNaN "
    ).split(),
    "nnlib.layers": (
        "Dense Layer LeakyReLU Linear ReLU Sigmoid Tanh activations get registry "
    ).split(),
    "nnlib.optimizers": (
        "Adam AdamW FLUSH_EVERY GLOBAL_CLIPNORM_EPS Momentum Optimizer RMSprop SGD get registry "
    ).split(),
    "nnlib.losses": (
        "BinaryCrossEntropy Loss MSE SoftmaxCrossEntropy get register registry "
    ).split(),
    "nnlib.metrics": (
        "Callable accuracy get mae mse registry "
    ).split(),
}


@pytest.mark.parametrize("module", sorted(PUBLIC_BEFORE))
def test_every_public_name_of_the_old_layout_still_resolves(module):
    mod = importlib.import_module(module)
    missing = [name for name in PUBLIC_BEFORE[module] if not hasattr(mod, name)]
    assert missing == []
    for name in getattr(mod, "__all__", []):
        assert hasattr(mod, name), f"{module}.__all__ names {name}, which does not exist"


OLD_MODULES = {
    "monitor": ["GradientHealthWarning", "GradientMonitor", "explain"],
    "schedules": ["StepDecay", "ExponentialDecay", "CosineDecay", "ReduceLROnPlateau", "LearningRateSchedule"],
    "training_layers": ["Dropout", "BatchNormalization"],
}


@pytest.mark.parametrize("name", sorted(OLD_MODULES))
def test_the_old_module_paths_still_work_and_say_they_are_deprecated(name):
    """nnlib.monitor and nnlib.schedules were in nnlib.__all__; they (and nnlib.training_layers) still
    import, as attributes too, warn once with the new place, and hold the very same objects."""
    sys.modules.pop(f"nnlib.{name}", None)
    vars(nn).pop(name, None)
    with pytest.warns(DeprecationWarning, match=rf"nnlib\.{name} is deprecated: import .* from nnlib"):
        old = getattr(nn, name)
    assert old is importlib.import_module(f"nnlib.{name}")
    for attr in OLD_MODULES[name]:
        home = nn.callbacks if attr == "LearningRateSchedule" else nn
        assert getattr(old, attr) is getattr(home, attr)
    with pytest.raises(AttributeError, match="module 'nnlib' has no attribute 'nonexistent'"):
        nn.nonexistent  # noqa: B018


def test_the_moved_names_point_at_one_object():
    """A class is one object wherever it is reached from: isinstance checks keep working."""
    assert nn.callbacks.GradientMonitor is nn.GradientMonitor
    assert nn.layers.Dropout is nn.Dropout and nn.layers.BatchNormalization is nn.BatchNormalization
    assert nn.callbacks.StepDecay is nn.StepDecay and nn.optimizers.Adam is nn.Adam
    assert nn.layers.registry.lookup("batch_norm") is nn.BatchNormalization


def test_datasets_is_reachable_as_an_attribute():
    """Keras users write keras.datasets.fashion_mnist: nn.datasets works without another import."""
    assert callable(nn.datasets.load_fashion_mnist) and callable(nn.datasets.load_digits)


HEAVY = ('scipy', 'sklearn', 'sympy', 'tqdm', 'matplotlib', 'onnx', 'onnxruntime', 'mpi4py')


@pytest.mark.parametrize("statement", [
    "import nnlib",
    # the export's rules and the command line load without the onnx package: it is imported by the export
    "import nnlib.onnx, nnlib.cli; nnlib.Sequential([nnlib.Dense(2, input_dim=3)]).summary(print_fn=len)",
])
def test_import_nnlib_stays_light(statement):
    code = f"import sys; {statement}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
