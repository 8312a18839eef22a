"""Safe model files: a zip of JSON and plain ``.npy`` arrays, checked before use.

Layout of a ``.nnlib`` file (format version 1)::

    manifest.json          {"format": "nnlib", "format_version": 1,
                            "members": {name: {"size": bytes, "sha256": hex}}}
    config.json            model, layers, loss, optimizer and metric names + hyperparameters
    weights/0000.npy ...   one array per parameter, in get_weights() order
    optimizer/0000_m.npy   optimizer state per parameter and slot (model files only)

Loading never imports or calls anything named in the file: names are looked up in
nnlib's own registries, arrays are read with ``allow_pickle=False`` and must be
plain numeric, and every member's size and SHA-256 must match the manifest before
it is parsed. Writes go to a temporary file in the same folder, then
``os.replace``, so a crash mid-save leaves the old file intact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from . import layers as layers_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .model import Sequential

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "FORMAT_VERSION"]

FORMAT = "nnlib"
FORMAT_VERSION = 1
MAX_MEMBER_BYTES = 1 << 30  # no single member may inflate beyond 1 GiB
MAX_JSON_BYTES = 1 << 20
MAX_MEMBERS = 10_000


# -- writing --------------------------------------------------------------------------
def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _write_atomic(path: str | os.PathLike[str], members: dict[str, bytes]) -> None:
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "members": {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                    for name, data in members.items()},
    }
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nnlib-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("manifest.json", json.dumps(manifest, indent=1))
            for name, data in members.items():
                zf.writestr(name, data)
            raw.flush()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _named(obj: Any, registry: Any) -> dict[str, Any]:
    name = getattr(type(obj), "registered_name", None)
    if name is None or name not in registry or registry.lookup(name) is not type(obj):
        raise ValueError(f"{type(obj).__name__} is not registered in nnlib's {registry.kind} registry; "
                         f"register it with @register(...) to save it")
    return {"name": name, "config": obj.get_config()}


def model_config(model: Sequential) -> dict[str, Any]:
    """The JSON-able description of a model: architecture, compile settings, dtype, seed."""
    config: dict[str, Any] = {
        "name": model.name, "seed": model.seed, "dtype": model.dtype.name, "input_dim": model.input_dim,
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


def save_model(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Write ``model`` (architecture, weights, compile settings, optimizer state) to ``path``."""
    if not model.built:
        raise ValueError("cannot save a model that is not built: fit it or call build(input_dim) first")
    members = {"config.json": json.dumps(model_config(model), indent=1).encode()}
    params = model.parameters()
    for i, p in enumerate(params):
        members[f"weights/{i:04d}.npy"] = _npy_bytes(p.value)
    if model.optimizer is not None:
        for i, p in enumerate(params):
            for slot, array in model.optimizer.state.get(p, {}).items():
                members[f"optimizer/{i:04d}_{slot}.npy"] = _npy_bytes(array)
    _write_atomic(path, members)


def save_weights(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Write only the weights (and enough config to check them) to ``path``."""
    if not model.built:
        raise ValueError("cannot save the weights of a model that is not built")
    members = {"config.json": json.dumps({"weights_only": True, "dtype": model.dtype.name,
                                          "shapes": [list(p.shape) for p in model.parameters()]}).encode()}
    for i, p in enumerate(model.parameters()):
        members[f"weights/{i:04d}.npy"] = _npy_bytes(p.value)
    _write_atomic(path, members)


# -- reading --------------------------------------------------------------------------
def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: str) -> bytes:
    with zf.open(info) as f:
        data = f.read(limit + 1)  # never more than the declared size + 1 byte
    if len(data) > limit:
        raise ValueError(f"{path}: member {info.filename} inflates beyond its declared {limit} bytes")
    return data


def _read_checked(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every member of a model file, after size and checksum checks against the manifest."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path}")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not an nnlib model file (not a readable zip: {exc})") from None
    try:
        with zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ValueError(f"{path}: too many members ({len(infos)})")
            by_name = {}
            for info in infos:
                if info.filename in by_name:
                    raise ValueError(f"{path}: duplicate member {info.filename}")
                by_name[info.filename] = info
            if "manifest.json" not in by_name:
                raise ValueError(f"{path}: not an nnlib model file (no manifest.json)")
            if by_name["manifest.json"].file_size > MAX_JSON_BYTES:
                raise ValueError(f"{path}: manifest.json is too large")
            manifest = _parse_json(_read_member(zf, by_name["manifest.json"], MAX_JSON_BYTES, path),
                                   "manifest.json", path)
            members = _check_manifest(manifest, path)
            if set(members) != set(by_name) - {"manifest.json"}:
                extra = sorted(set(by_name) - {"manifest.json"} - set(members))
                lacking = sorted(set(members) - set(by_name))
                raise ValueError(f"{path}: members disagree with the manifest (unlisted: {extra}, missing: {lacking})")
            out = {}
            for name, entry in members.items():
                info = by_name[name]
                if info.file_size != entry["size"]:
                    raise ValueError(f"{path}: member {name} has size {info.file_size}, "
                                     f"the manifest says {entry['size']}")
                data = _read_member(zf, info, entry["size"], path)
                if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise ValueError(f"{path}: member {name} fails its size or SHA-256 check")
                out[name] = data
            return out
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise ValueError(f"{path}: corrupt or truncated model file ({exc})") from None


def _parse_json(data: bytes, member: str, path: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: {member} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {member} must hold a JSON object")
    return value


def _check_manifest(manifest: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not an nnlib model file (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version} is newer than this nnlib reads "
                         f"({FORMAT_VERSION}); upgrade nnlib")
    members = manifest.get("members")
    if not isinstance(members, dict):
        raise ValueError(f"{path}: manifest has no members table")
    total = 0
    for name, entry in members.items():
        ok = (isinstance(entry, dict) and isinstance(entry.get("size"), int) and not isinstance(entry["size"], bool)
              and isinstance(entry.get("sha256"), str) and 0 <= entry["size"] <= MAX_MEMBER_BYTES)
        if not ok:
            raise ValueError(f"{path}: manifest entry for {name!r} is invalid or exceeds {MAX_MEMBER_BYTES} bytes")
        total += entry["size"]
    if total > 4 * MAX_MEMBER_BYTES:
        raise ValueError(f"{path}: members total {total} bytes, beyond the limit")
    if "config.json" not in members or members["config.json"]["size"] > MAX_JSON_BYTES:
        raise ValueError(f"{path}: missing or oversized config.json")
    return members


def _array(data: bytes, name: str, path: str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # pickled/object arrays land here
        raise ValueError(f"{path}: {name} is not a plain numeric .npy array ({exc})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise ValueError(f"{path}: {name} must hold numbers, got {getattr(array, 'dtype', type(array))}")
    return array


def _build(registry: Any, spec: Any, what: str, path: str) -> Any:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(
            spec.get("config", {}), dict):
        raise ValueError(f"{path}: invalid {what} entry {spec!r}")
    if spec["name"] not in registry:
        raise ValueError(f"{path}: {what} {spec['name']!r} is not one of nnlib's: {', '.join(registry.names())}")
    cls = registry.lookup(spec["name"])
    config = spec.get("config", {})
    try:
        return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid config for {what} {spec['name']!r}: {exc}") from None


def _weights(members: dict[str, bytes], shapes: list[tuple[int, ...]], path: str) -> list[np.ndarray]:
    names = sorted(n for n in members if n.startswith("weights/"))
    if names != [f"weights/{i:04d}.npy" for i in range(len(shapes))]:
        raise ValueError(f"{path}: expected {len(shapes)} weight arrays, found {len(names)}")
    arrays = []
    for name, shape in zip(names, shapes):
        a = _array(members[name], name, path)
        if a.shape != tuple(shape):
            raise ValueError(f"{path}: {name} has shape {a.shape}, the model needs {tuple(shape)}")
        arrays.append(a)
    return arrays


def load_model(path: str | os.PathLike[str]) -> Sequential:
    """Rebuild a model saved by :func:`save_model`: same predictions bit for bit, same optimizer state.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a valid, intact nnlib model file (the message names the problem).
    """
    path = os.fspath(path)
    members = _read_checked(path)
    config = _parse_json(members["config.json"], "config.json", path)
    if config.get("weights_only"):
        raise ValueError(f"{path}: holds weights only; build the model and use load_weights()")
    layer_specs = config.get("layers")
    if not isinstance(layer_specs, list) or not layer_specs:
        raise ValueError(f"{path}: config.json lists no layers")
    layers = [_build(layers_module.registry, spec, "layer", path) for spec in layer_specs]
    try:
        model = Sequential(layers, seed=config.get("seed"), dtype=config.get("dtype"), name=str(config.get("name")))
        if not model.built:
            model.build(config.get("input_dim"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid model config: {exc}") from None
    params = model.parameters()
    model.set_weights(_weights(members, [p.shape for p in params], path))
    compiled = config.get("compile")
    if compiled is not None:
        if not isinstance(compiled, dict) or not isinstance(compiled.get("metrics", []), list):
            raise ValueError(f"{path}: invalid compile section")
        loss = _build(losses_module.registry, compiled.get("loss"), "loss", path)
        opt_spec = compiled.get("optimizer") or {}
        optimizer = _build(optimizers_module.registry, {k: v for k, v in opt_spec.items() if k != "iterations"},
                           "optimizer", path)
        for name in compiled.get("metrics", []):
            if not isinstance(name, str) or name not in metrics_module.registry:
                raise ValueError(f"{path}: metric {name!r} is not one of nnlib's")
        iterations = opt_spec.get("iterations", 0)
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 0:
            raise ValueError(f"{path}: invalid optimizer iterations {iterations!r}")
        model.compile(optimizer=optimizer, loss=loss, metrics=compiled.get("metrics", []))
        optimizer.iterations = iterations
        for name in (n for n in members if n.startswith("optimizer/")):
            stem = name[len("optimizer/"):-len(".npy")] if name.endswith(".npy") else ""
            index, _, slot = stem.partition("_")
            if not index.isdigit() or int(index) >= len(params) or slot not in optimizer.slots:
                raise ValueError(f"{path}: unexpected member {name}")
            p = params[int(index)]
            a = _array(members[name], name, path)
            if a.shape != p.shape:
                raise ValueError(f"{path}: {name} has shape {a.shape}, expected {p.shape}")
            optimizer.state.setdefault(p, {})[slot] = a.astype(model.dtype)
    elif any(n.startswith("optimizer/") for n in members):
        raise ValueError(f"{path}: optimizer state without a compile section")
    return model


def load_weights(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Load weights saved by :func:`save_weights` (or :func:`save_model`) into a built ``model``."""
    path = os.fspath(path)
    if not model.built:
        raise RuntimeError("the model is not built: call build(input_dim) before load_weights()")
    members = _read_checked(path)
    model.set_weights(_weights(members, [p.shape for p in model.parameters()], path))
