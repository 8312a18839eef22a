"""Safe model files: a zip of JSON and plain ``.npy`` arrays, checked before use.

Layout of a ``.nnlib`` file (format version 1)::

    manifest.json          {"format": "nnlib", "format_version": 1,
                            "members": {name: {"size": bytes, "sha256": hex}}}
    config.json            model, layers, loss, optimizer and metric names + hyperparameters
    weights/0000.npy ...   one array per parameter, in get_weights() order
    optimizer/0000_m.npy   optimizer state per parameter and slot (model files only)
    state/0002_moving_mean.npy   a layer's non-trainable state (``Layer.get_state``), by
                           layer index and key: running statistics, a dropout generator's
                           position (model files only)

Loading never imports or calls anything named in the file: names are looked up in
nnlib's own registries, arrays are read with ``allow_pickle=False`` and must be
plain numeric, and every member's size and SHA-256 must match the manifest before
it is parsed. Writes go to a temporary file in the same folder, then
``os.replace``, so a crash mid-save leaves the old file intact.

Reading allocates no more than the file and its manifest declare, within fixed
bounds (:data:`MAX_MEMBER_BYTES` per member, :data:`MAX_TOTAL_BYTES` in all): a
member is inflated with at most its declared size + 1 byte of output (so one that
would inflate further is refused), an array's ``.npy`` header must agree with its
length before it is read, and the parameter shapes a config implies are compared
with the stored arrays before any layer is built. Only the members of the layout
above are accepted; weights and optimizer state must be finite in the model's dtype.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import struct
import tempfile
import tokenize
import zipfile
import zlib
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
MAX_TOTAL_BYTES = 4 * MAX_MEMBER_BYTES  # nor all of them together beyond 4 GiB
MAX_JSON_BYTES = 1 << 20
MAX_MEMBERS = 10_000
MIN_WIDTH_BOUND = 1 << 16  # widths a config may imply beyond the stored numbers (parameter-free models)


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
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600 files; keep the mode a plain open() would give
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


def _file_mode(path: str) -> int:
    """The permission bits for ``path``: those of the file it replaces, else 0666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


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
    for i, layer in enumerate(model.layers):
        for key, array in _layer_state(layer).items():
            if not isinstance(key, str) or not _STATE_KEY.match(key):
                raise ValueError(f"{layer!r}.get_state() key {key!r} must be lower-case letters, digits and '_'")
            members[f"state/{i:04d}_{key}.npy"] = _npy_bytes(np.asarray(array))
    _write_atomic(path, members)


def _layer_state(layer: Any) -> dict[str, np.ndarray]:
    get_state = getattr(layer, "get_state", None)
    return dict(get_state()) if get_state is not None else {}


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
# A member is read straight from its local header with zlib, not through zipfile.open:
# so no read is larger than the member's declared size + 1 byte, a stream that would
# inflate past its declared size is refused, and every failure is one ValueError.
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # PK\3\4, version, flags, method, time, date, crc, sizes, name/extra len
_STATE_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_MEMBER_NAME = re.compile(r"^(config\.json|weights/\d{4,}\.npy|(optimizer|state)/\d{4,}_[a-z][a-z0-9_]*\.npy)$")
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error,
               NotImplementedError, RuntimeError, KeyError, IndexError, OverflowError, zlib.error)


def _read_member(f: Any, file_size: int, info: zipfile.ZipInfo, limit: int, path: str) -> bytes:
    """The uncompressed bytes of ``info``: exactly its declared ``file_size``, at most ``limit``."""
    name = info.filename
    if info.file_size > limit:
        raise ValueError(f"{path}: member {name} declares {info.file_size} bytes, beyond the limit of {limit}")
    if info.flag_bits & 0x1:
        raise ValueError(f"{path}: member {name} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"{path}: member {name} uses compression method {info.compress_type}; "
                         "only stored and deflate are read")
    if not 0 <= info.header_offset < file_size:
        raise ValueError(f"{path}: corrupt or truncated zip: the header of {name} would lie at offset "
                         f"{info.header_offset}, outside the file's {file_size} bytes")
    f.seek(info.header_offset)
    head = f.read(_LOCAL_HEADER.size)
    if len(head) < _LOCAL_HEADER.size:
        raise ValueError(f"{path}: truncated: the local header of {name} is cut short")
    signature, _, flags, method, _, _, _, _, _, name_len, extra_len = _LOCAL_HEADER.unpack(head)
    raw_name = f.read(name_len)
    local_name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
    if signature != b"PK\x03\x04" or method != info.compress_type or local_name != info.orig_filename:
        raise ValueError(f"{path}: corrupt zip: the local header of {name} disagrees with the central directory")
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    if start + info.compress_size > file_size:  # checked before reading: read(n) allocates n at once
        raise ValueError(f"{path}: truncated: member {name} needs {info.compress_size} bytes at offset {start}, "
                         f"the file has {file_size} bytes")
    f.seek(start)
    raw = f.read(info.compress_size)
    if info.compress_type == zipfile.ZIP_STORED:
        data = raw
    else:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = inflater.decompress(raw, info.file_size + 1)  # never more than declared + 1 byte
        except zlib.error as exc:
            raise ValueError(f"{path}: member {name} is corrupt ({exc})") from None
        if len(data) > info.file_size or inflater.unconsumed_tail:
            raise ValueError(f"{path}: member {name} inflates beyond its declared {info.file_size} bytes")
        if not inflater.eof:
            raise ValueError(f"{path}: truncated: the compressed data of {name} ends early")
    if len(data) != info.file_size:
        raise ValueError(f"{path}: member {name} holds {len(data)} bytes, its header says {info.file_size}")
    if zlib.crc32(data) != info.CRC:
        raise ValueError(f"{path}: member {name} fails its CRC-32 check (corrupt file)")
    return data


def _read_checked(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every member of a model file, after size and checksum checks against the manifest."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not an nnlib model file (not a regular file)")
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            try:
                zf = zipfile.ZipFile(f)
            except _ZIP_ERRORS as exc:
                f.seek(0)
                lead = f.read(4)
                if lead and b"PK\x03\x04".startswith(lead):  # starts as a zip does: most likely cut short
                    raise ValueError(f"{path}: truncated or corrupt zip: its central directory is missing or "
                                     f"damaged ({exc})") from None
                raise ValueError(f"{path}: not an nnlib model file (not a readable zip: {exc})") from None
            return _read_members(f, file_size, zf, path)
    except OSError as exc:  # a real I/O error while reading
        raise ValueError(f"{path}: cannot read the model file ({exc})") from None


def _read_members(f: Any, file_size: int, zf: zipfile.ZipFile, path: str) -> dict[str, bytes]:
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
    manifest = _parse_json(_read_member(f, file_size, by_name["manifest.json"], MAX_JSON_BYTES, path),
                           "manifest.json", path)
    members = _check_manifest(manifest, path)
    if set(members) != set(by_name) - {"manifest.json"}:
        extra = sorted(set(by_name) - {"manifest.json"} - set(members))
        lacking = sorted(set(members) - set(by_name))
        raise ValueError(f"{path}: members disagree with the manifest (unlisted: {extra}, missing: {lacking})")
    out = {}
    for name, entry in members.items():
        info = by_name[name]
        if info.file_size != entry["size"]:  # before inflating anything
            raise ValueError(f"{path}: member {name} has size {info.file_size}, the manifest says {entry['size']}")
        data = _read_member(f, file_size, info, entry["size"], path)
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError(f"{path}: member {name} fails its SHA-256 check against the manifest")
        out[name] = data
    return out


def _parse_json(data: bytes, member: str, path: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
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
        if not _MEMBER_NAME.match(name):
            raise ValueError(f"{path}: unexpected member name {name!r} in the manifest")
        ok = (isinstance(entry, dict) and isinstance(entry.get("size"), int) and not isinstance(entry["size"], bool)
              and isinstance(entry.get("sha256"), str) and 0 <= entry["size"] <= MAX_MEMBER_BYTES)
        if not ok:
            raise ValueError(f"{path}: manifest entry for {name!r} is invalid or exceeds {MAX_MEMBER_BYTES} bytes")
        total += entry["size"]
    if total > MAX_TOTAL_BYTES:
        raise ValueError(f"{path}: members total {total} bytes, beyond the limit of {MAX_TOTAL_BYTES}")
    if "config.json" not in members or members["config.json"]["size"] > MAX_JSON_BYTES:
        raise ValueError(f"{path}: missing or oversized config.json")
    return members


def _array(data: bytes, name: str, path: str) -> np.ndarray:
    """A plain numeric array from ``.npy`` bytes; the header is checked against the data
    length before anything is allocated, and object/structured dtypes (pickles) are refused."""
    f = io.BytesIO(data)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, TypeError, KeyError, SyntaxError, RecursionError, OverflowError,
            tokenize.TokenError) as exc:  # NumPy tokenizes and literal_evals the header
        raise ValueError(f"{path}: {name} is not a plain numeric .npy array ({exc!r:.200})") from None
    if dtype.hasobject or dtype.kind not in "fiu" or dtype.names is not None or dtype.subdtype is not None:
        raise ValueError(f"{path}: {name} is not a plain numeric .npy array: dtype {dtype} "
                         "(object arrays and pickles are refused)")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"{path}: {name} has an invalid shape {shape}")
    count = math.prod(shape)
    offset = f.tell()
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: {name} declares shape {shape} ({count * dtype.itemsize} bytes of {dtype}) "
                         f"but holds {len(data) - offset} bytes")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset) if count else np.empty(0, dtype)
    return flat.reshape(shape, order="F" if fortran else "C")


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
    return [_array(members[name], name, path) for name in names]


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


def _planned_shapes(layers: list[Any], input_dim: int) -> tuple[list[tuple[int, ...]] | None, int]:
    """The parameter shapes ``layers`` will create for ``input_dim`` (None when a layer's type
    is not one whose parameters this function knows) and the widest activation, found without
    allocating anything, so a forged config cannot make the loader allocate more than the file holds."""
    shapes: list[tuple[int, ...]] | None = []
    dim = widest = input_dim
    for layer in layers:
        if type(layer) is layers_module.Dense and shapes is not None:
            shapes += [(dim, layer.units), (layer.units,)]
        elif type(layer).build is not layers_module.Layer.build:
            shapes = None
        dim = layer.output_dim_for(dim)
        widest = max(widest, dim)
    return shapes, widest


def _input_dim(config: dict[str, Any], layers: list[Any], path: str) -> int:
    dim = config.get("input_dim")
    if dim is None and type(layers[0]) is layers_module.Dense:
        dim = layers[0].declared_input_dim
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"{path}: invalid input_dim {dim!r} in config.json")
    return dim


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
    input_dim = _input_dim(config, layers, path)
    arrays = _weight_arrays(members, path)
    try:
        planned, widest = _planned_shapes(layers, input_dim)
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
        model = Sequential(layers, seed=config.get("seed"), dtype=config.get("dtype"), name=str(config.get("name")))
        if not model.built:
            model.build(input_dim)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid model config: {exc}") from None
    params = model.parameters()
    model.set_weights(_check_weights(arrays, [p.shape for p in params], model.dtype, path))
    _restore_layer_state(model, members, path)
    compiled = config.get("compile")
    if compiled is not None:
        _compile(model, compiled, members, path)
    elif any(n.startswith("optimizer/") for n in members):
        raise ValueError(f"{path}: optimizer state without a compile section")
    return model


def _restore_layer_state(model: Sequential, members: dict[str, bytes], path: str) -> None:
    """Give every layer the state the file holds for it; a stateful layer needs all of its keys."""
    found: dict[int, dict[str, np.ndarray]] = {}
    for name in sorted(n for n in members if n.startswith("state/")):
        index, _, key = name[len("state/"):-len(".npy")].partition("_")
        if int(index) >= len(model.layers):
            raise ValueError(f"{path}: {name} names layer {int(index)}, the model has {len(model.layers)}")
        found.setdefault(int(index), {})[key] = _array(members[name], name, path)
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


def _compile(model: Sequential, compiled: Any, members: dict[str, bytes], path: str) -> None:
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
        a = _array(members[name], name, path)
        if a.shape != p.shape:
            raise ValueError(f"{path}: {name} has shape {a.shape}, expected {p.shape}")
        a = _cast(a, model.dtype, name, path)
        if isinstance(optimizer, optimizers_module.Adam) and slot == "v" and (a < 0).any():
            raise ValueError(f"{path}: {name} holds negative values (Adam's second moments are >= 0)")
        state.setdefault(p, {})[slot] = a
    try:
        model.compile(optimizer=optimizer, loss=loss, metrics=compiled.get("metrics", []))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid compile section: {exc}") from None
    optimizer.iterations = iterations
    optimizer.state.update(state)


def load_weights(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Load weights saved by :func:`save_weights` (or :func:`save_model`) into a built ``model``.

    The file gets the same checks as in :func:`load_model`; the model is left
    unchanged unless every array fits (count, shapes, finite values in its dtype).
    """
    path = os.fspath(path)
    if not model.built:
        raise RuntimeError("the model is not built: call build(input_dim) before load_weights()")
    members = _read_checked(path)
    _parse_json(members["config.json"], "config.json", path)
    arrays = _weight_arrays(members, path)
    model.set_weights(_check_weights(arrays, [p.shape for p in model.parameters()], model.dtype, path))
