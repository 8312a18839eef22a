"""Model files: architecture, weights, compile settings and state, on top of :mod:`nnlib._archive`.

Members of a ``.nnlib`` file (format version 3)::

    manifest.json          the archive's checksummed table of members (see nnlib._archive)
    config.json            model, layers, loss, optimizer and metric names + hyperparameters
    weights/0000.npy ...   one array per parameter, in get_weights() order
    optimizer/0000_m.npy   optimizer state per parameter and slot (model files only), the
                           optimizer's own state arrays (PyTorch's quantities)
    state/0002_moving_mean.npy   a layer's non-trainable state (``Layer.get_state``), by
                           layer index and key: running statistics, a dropout generator's
                           position (model files only)

Version 3 writes the per-sample ``input_shape`` (a list) where versions 1 and 2 wrote
the integer ``input_dim``; both are read. Version 1 files also differ in one point:
Adam's and AdamW's ``m`` and ``v`` were stored rescaled, as ``m / (1 - beta1)`` and
``v / (1 - beta2)``; they are converted on loading.

Loading never imports or calls anything named in the file: the model class, layers,
loss, optimizer and metrics are looked up by name in nnlib's own registries (the model
classes register in :data:`models`), arrays must be plain numeric, and the parameter
shapes a config implies are compared with the stored arrays before any layer is built.
Only the members of the layout above are accepted; weights and optimizer state must be
finite in the model's dtype.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import numpy as np

from . import layers as layers_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from ._archive import npy_array, npy_bytes, parse_json, read_archive, write_archive
from ._validation import check_shape
from .registry import Registry

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "models", "FORMAT_VERSION"]

FORMAT_VERSION = 3
MAX_SAMPLE_SIZE = 1 << 31  # numbers per sample a config may declare (a forged (10**9, 10**9) is refused)
MIN_WIDTH_BOUND = 1 << 16  # widths a config may imply beyond the stored numbers (parameter-free models)
_STATE_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_MEMBER_NAME = re.compile(r"^(config\.json|weights/\d{4,}\.npy|(optimizer|state)/\d{4,}_[a-z][a-z0-9_]*\.npy)$")

#: model classes by name: ``@models.register("sequential")`` beside the class (nnlib.model)
models = Registry("model")


# -- writing --------------------------------------------------------------------------
def _registered_name(obj: Any, registry: Any) -> str:
    name = getattr(type(obj), "registered_name", None)
    if name is None or name not in registry or registry.lookup(name) is not type(obj):
        raise ValueError(f"{type(obj).__name__} is not registered in nnlib's {registry.kind} registry; "
                         f"register it with @register(...) to save it")
    return name


def _model_name(model: Any) -> str:
    """The registered model class ``model`` is, or derives from (a user's subclass of Sequential
    that registers nothing is saved, and loads, as the Sequential it extends)."""
    for cls in type(model).__mro__:
        name = getattr(cls, "registered_name", None)
        if name in models and models.lookup(name) is cls:
            return name
    raise ValueError(f"{type(model).__name__} derives from no model class in nnlib.saving.models; "
                     "register it with @nnlib.saving.models.register(name) to save it")


def _named(obj: Any, registry: Any) -> dict[str, Any]:
    return {"name": _registered_name(obj, registry), "config": obj.get_config()}


def model_config(model: Any) -> dict[str, Any]:
    """The JSON-able description of a model: architecture, compile settings, dtype, seed."""
    config: dict[str, Any] = {
        "model": _model_name(model),
        "name": model.name, "seed": model.seed, "dtype": model.dtype.name, "input_shape": list(model.input_shape),
        "layers": [_named(layer, layers_module.registry) for layer in model.layers],
    }
    if model.loss is not None:
        metric_names = []
        for name, fn in model.metrics:
            if name not in metrics_module.registry or metrics_module.registry.lookup(name) is not fn:
                raise ValueError(f"metric {name!r} is not registered in nnlib's metric registry")
            metric_names.append(name)
        config["compile"] = {
            "loss": _named(model.loss, losses_module.registry),
            "optimizer": {**_named(model.optimizer, optimizers_module.registry),
                          "iterations": model.optimizer.iterations},
            "metrics": metric_names,
        }
    return config


def save_model(model: Any, path: str | os.PathLike[str]) -> None:
    """Write ``model`` (architecture, weights, compile settings, optimizer state) to ``path``."""
    if not model.built:
        raise ValueError("cannot save a model that is not built: fit it or call build(input_shape) first")
    members = {"config.json": json.dumps(model_config(model), indent=1).encode()}
    params = model.parameters()
    for i, p in enumerate(params):
        members[f"weights/{i:04d}.npy"] = npy_bytes(p.value)
    if model.optimizer is not None:
        for i, p in enumerate(params):
            for slot, array in model.optimizer.state.get(p, {}).items():
                members[f"optimizer/{i:04d}_{slot}.npy"] = npy_bytes(array)
    for i, layer in enumerate(model.layers):
        for key, array in _layer_state(layer).items():
            if not isinstance(key, str) or not _STATE_KEY.match(key):
                raise ValueError(f"{layer!r}.get_state() key {key!r} must be lower-case letters, digits and '_'")
            members[f"state/{i:04d}_{key}.npy"] = npy_bytes(np.asarray(array))
    write_archive(path, members, FORMAT_VERSION)


def _layer_state(layer: Any) -> dict[str, np.ndarray]:
    get_state = getattr(layer, "get_state", None)
    return dict(get_state()) if get_state is not None else {}


def save_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """Write only the weights (and enough config to check them) to ``path``."""
    if not model.built:
        raise ValueError("cannot save the weights of a model that is not built")
    members = {"config.json": json.dumps({"weights_only": True, "dtype": model.dtype.name,
                                          "shapes": [list(p.shape) for p in model.parameters()]}).encode()}
    for i, p in enumerate(model.parameters()):
        members[f"weights/{i:04d}.npy"] = npy_bytes(p.value)
    write_archive(path, members, FORMAT_VERSION)



# -- reading --------------------------------------------------------------------------
def _cast(array: np.ndarray, dtype: np.dtype, name: str, path: str) -> np.ndarray:
    """A finite copy of ``array`` in ``dtype``; refuses NaN, inf and values that overflow ``dtype``."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = array.astype(dtype)
    if not np.isfinite(out).all():
        what = "contains NaN or inf" if not np.isfinite(array).all() else f"holds values too large for {dtype}"
        raise ValueError(f"{path}: {name} {what}")
    return out


def _build(registry: Any, spec: Any, what: str, path: str) -> Any:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(
            spec.get("config", {}), dict):
        raise ValueError(f"{path}: invalid {what} entry {spec!r:.200}")
    if spec["name"] not in registry:
        raise ValueError(f"{path}: {what} {spec['name']!r:.100} is not one of nnlib's: {', '.join(registry.names())}")
    cls = registry.lookup(spec["name"])
    config = spec.get("config", {})
    try:
        return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{path}: invalid config for {what} {spec['name']!r}: {exc}") from None


def _weight_arrays(members: dict[str, bytes], path: str) -> list[np.ndarray]:
    names = sorted(n for n in members if n.startswith("weights/"))
    if names != [f"weights/{i:04d}.npy" for i in range(len(names))]:
        raise ValueError(f"{path}: weight members must be weights/0000.npy, weights/0001.npy, ...; got {names}")
    return [npy_array(members[name], name, path) for name in names]


def _check_weights(arrays: list[np.ndarray], shapes: list[tuple[int, ...]], dtype: np.dtype,
                   path: str) -> list[np.ndarray]:
    if len(arrays) != len(shapes):
        raise ValueError(f"{path}: holds {len(arrays)} weight arrays, the model has {len(shapes)} parameters")
    out = []
    for i, (a, shape) in enumerate(zip(arrays, shapes)):
        if a.shape != tuple(shape):
            raise ValueError(f"{path}: weights/{i:04d}.npy has shape {a.shape}, the model needs {tuple(shape)}")
        out.append(_cast(a, dtype, f"weights/{i:04d}.npy", path))
    return out


def _planned_shapes(layers: list[Any], input_shape: tuple[int, ...]) -> tuple[list[tuple[int, ...]] | None, int]:
    """The parameter shapes ``layers`` will create for samples of ``input_shape`` (None when a layer is
    not one of nnlib's own, whose :meth:`~nnlib.layers.Layer.parameter_shapes` can be trusted) and the
    widest last axis of any layer's samples (what state such as BatchNormalization's scales with), found
    without allocating anything, so a forged config cannot make the loader allocate more than the file holds."""
    shapes: list[tuple[int, ...]] | None = []
    shape = input_shape
    widest = shape[-1]
    for layer in layers:
        own = type(layer).__module__.startswith("nnlib.")
        if shapes is not None and own:
            shapes += [tuple(s) for s in layer.parameter_shapes(shape)]
        elif not own and type(layer).build is not layers_module.Layer.build:
            shapes = None
        shape = layer.compute_output_shape(shape)
        widest = max(widest, shape[-1])
    return shapes, widest


def _input_shape(config: dict[str, Any], layers: list[Any], path: str) -> tuple[int, ...]:
    raw = config.get("input_shape", config.get("input_dim"))  # input_dim: files of versions 1 and 2
    if raw is None:
        raw = layers[0].declared_input_shape
    try:
        shape = check_shape(raw, "input_shape")
    except (TypeError, ValueError):
        shape = None
    if shape is None or len(shape) > 8 or math.prod(shape) > MAX_SAMPLE_SIZE:
        shown = tuple(raw) if isinstance(raw, list) else (raw,) if isinstance(raw, int) else raw
        raise ValueError(f"{path}: invalid input_shape {shown!r:.100} in config.json")
    return shape


def load_model(path: str | os.PathLike[str]) -> Any:
    """Rebuild a model saved by :func:`save_model`: same predictions bit for bit, same optimizer state.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a valid, intact nnlib model file (the message names the problem).
    """
    path = os.fspath(path)
    members, version = read_archive(path, _MEMBER_NAME, FORMAT_VERSION)
    config = parse_json(members["config.json"], "config.json", path)
    if config.get("weights_only"):
        raise ValueError(f"{path}: holds weights only; build the model and use load_weights()")
    model_name = config.get("model", "sequential")  # version 1 files name no class: Sequential was the only one
    if not isinstance(model_name, str) or model_name not in models:
        raise ValueError(f"{path}: model class {model_name!r:.100} is not one of nnlib's: {', '.join(models.names())}")
    model_class = models.lookup(model_name)
    layer_specs = config.get("layers")
    if not isinstance(layer_specs, list) or not layer_specs:
        raise ValueError(f"{path}: config.json lists no layers")
    layers = [_build(layers_module.registry, spec, "layer", path) for spec in layer_specs]
    input_shape = _input_shape(config, layers, path)
    arrays = _weight_arrays(members, path)
    try:
        planned, widest = _planned_shapes(layers, input_shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid model config: {exc}") from None
    if planned is not None and planned != [a.shape for a in arrays]:  # before building allocates anything
        raise ValueError(f"{path}: the weight arrays have shapes {[a.shape for a in arrays]}, "
                         f"the layers in config.json need {planned}")
    stored = sum(a.size for a in arrays)
    if widest > max(stored, MIN_WIDTH_BOUND):  # any width of a real model is <= the numbers it stores
        raise ValueError(f"{path}: config.json implies a layer width of {widest}, more than the {stored} "
                         "numbers the file stores")
    try:
        model = model_class(layers, seed=config.get("seed"), dtype=config.get("dtype"), name=str(config.get("name")))
        if not model.built:
            model.build(input_shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid model config: {exc}") from None
    params = model.parameters()
    model.set_weights(_check_weights(arrays, [p.shape for p in params], model.dtype, path))
    _restore_layer_state(model, members, path)
    compiled = config.get("compile")
    if compiled is not None:
        _compile(model, compiled, members, path, version)
    elif any(n.startswith("optimizer/") for n in members):
        raise ValueError(f"{path}: optimizer state without a compile section")
    return model


def _restore_layer_state(model: Any, members: dict[str, bytes], path: str) -> None:
    """Give every layer the state the file holds for it; a stateful layer needs all of its keys."""
    found: dict[int, dict[str, np.ndarray]] = {}
    for name in sorted(n for n in members if n.startswith("state/")):
        index, _, key = name[len("state/"):-len(".npy")].partition("_")
        if int(index) >= len(model.layers):
            raise ValueError(f"{path}: {name} names layer {int(index)}, the model has {len(model.layers)}")
        found.setdefault(int(index), {})[key] = npy_array(members[name], name, path)
    for i, layer in enumerate(model.layers):
        expected = _layer_state(layer)
        state = found.get(i, {})
        if set(state) != set(expected):
            raise ValueError(f"{path}: layer {i} ({layer.name}) needs state {sorted(expected)}, "
                             f"the file holds {sorted(state)}")
        if state:
            try:  # the layer checks shapes and values (finite statistics, a valid generator state)
                layer.set_state({k: np.array(v) for k, v in state.items()})
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"{path}: invalid state for layer {i} ({layer.name}): {exc}") from None


def _compile(model: Any, compiled: Any, members: dict[str, bytes], path: str, version: int) -> None:
    """Restore the loss, optimizer (hyperparameters, step count, state) and metrics."""
    if not isinstance(compiled, dict) or not isinstance(compiled.get("metrics", []), list) \
            or not isinstance(compiled.get("optimizer"), dict):
        raise ValueError(f"{path}: invalid compile section in config.json")
    loss = _build(losses_module.registry, compiled.get("loss"), "loss", path)
    opt_spec = compiled["optimizer"]
    optimizer = _build(optimizers_module.registry, {k: v for k, v in opt_spec.items() if k != "iterations"},
                       "optimizer", path)
    for name in compiled.get("metrics", []):
        if not isinstance(name, str) or name not in metrics_module.registry:
            raise ValueError(f"{path}: metric {name!r:.100} is not one of nnlib's: "
                             f"{', '.join(metrics_module.registry.names())}")
    iterations = opt_spec.get("iterations", 0)
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 0:
        raise ValueError(f"{path}: invalid optimizer iterations {iterations!r:.100}")
    params = model.parameters()
    state_names = sorted(n for n in members if n.startswith("optimizer/"))
    expected = sorted(f"optimizer/{i:04d}_{slot}.npy" for i in range(len(params)) for slot in optimizer.slots)
    if state_names and state_names != expected:
        raise ValueError(f"{path}: optimizer state members {state_names} do not match {type(optimizer).__name__}'s "
                         f"slots {list(optimizer.slots)} for {len(params)} parameters")
    state: dict[Any, dict[str, np.ndarray]] = {}
    for name in state_names:
        index, _, slot = name[len("optimizer/"):-len(".npy")].partition("_")
        p = params[int(index)]
        a = npy_array(members[name], name, path)
        if a.shape != p.shape:
            raise ValueError(f"{path}: {name} has shape {a.shape}, expected {p.shape}")
        a = _cast(a, model.dtype, name, path)
        if isinstance(optimizer, optimizers_module.Adam) and slot == "v" and (a < 0).any():
            raise ValueError(f"{path}: {name} holds negative values (Adam's second moments are >= 0)")
        if version == 1 and isinstance(optimizer, optimizers_module.Adam):  # stored as m / (1 - beta1), v / (1 - beta2)
            a = a * (1.0 - float(optimizer.beta1 if slot == "m" else optimizer.beta2))  # a Python float: dtype kept
        state.setdefault(p, {})[slot] = a
    try:
        model.compile(optimizer=optimizer, loss=loss, metrics=compiled.get("metrics", []))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid compile section: {exc}") from None
    optimizer.iterations = iterations
    optimizer.state.update(state)


def load_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """Load weights saved by :func:`save_weights` (or :func:`save_model`) into a built ``model``.

    The file gets the same checks as in :func:`load_model`; the model is left
    unchanged unless every array fits (count, shapes, finite values in its dtype).
    """
    path = os.fspath(path)
    if not model.built:
        raise RuntimeError("the model is not built: call build(input_shape) before load_weights()")
    members, _ = read_archive(path, _MEMBER_NAME, FORMAT_VERSION)
    parse_json(members["config.json"], "config.json", path)
    arrays = _weight_arrays(members, path)
    model.set_weights(_check_weights(arrays, [p.shape for p in model.parameters()], model.dtype, path))
