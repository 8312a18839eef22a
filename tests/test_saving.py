"""Safe model files (issue 5): every refusal of a bad file, with a ValueError naming the problem.

``BAD_FILES`` is one table of crafted files, each made from a good model file; it runs here against
``load_model`` and ``load_weights`` (with a memory bound), and is appended to the table-driven
``test_bad_inputs.py``. The helpers that take a model file apart and put it back together (with or
without a re-signed manifest) are shared with ``test_fuzz.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import struct
import sys
import tempfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import nnlib as nn
from nnlib import saving

MEMORY_BOUND = 64 * 2**20  # bytes any refused file may make the loader allocate

X = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0], [2.0, 2.0, 0.5], [-1.0, 0.5, 1.0], [0.3, -0.2, 0.1]])
Y = np.array([0, 1, 2, 0, 1])


# -- taking model files apart and putting them back together ----------------------------------
def good_model(optimizer=None) -> nn.Sequential:
    """The same architecture as the "clf" model of test_bad_inputs, trained a little."""
    model = nn.Sequential([nn.Dense(4, input_dim=3, activation="relu"), nn.Dense(3)], seed=0)
    model.compile(optimizer or nn.Adam(lr=0.01), "softmax_cross_entropy", ["accuracy"])
    model.fit(X, Y, epochs=2, batch_size=2, verbose=0)
    return model


def good_file(folder: Path, name: str = "good.nnlib") -> Path:
    path = Path(folder) / name
    good_model().save(path)
    return path


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def manifest_for(members: dict[str, bytes], version: int = saving.FORMAT_VERSION) -> bytes:
    return json.dumps({"format": "nnlib", "format_version": version, "members": {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in members.items() if name != "manifest.json"}}).encode()


def write_zip(path: Path, members: dict[str, bytes], resign: bool = True,
              method: int = zipfile.ZIP_DEFLATED) -> Path:
    """Write ``members`` as a zip; ``resign`` rewrites the manifest to match them."""
    members = dict(members)
    if resign:
        members = {"manifest.json": manifest_for(members), **{k: v for k, v in members.items() if k != "manifest.json"}}
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_header(descr: str, shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    """A version 1.0 ``.npy`` file with a hand-written header (e.g. a forged shape)."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def edit_config(folder: Path, change) -> Path:
    """A re-signed copy of the good file whose config.json went through ``change(config)``."""
    members = read_members(good_file(folder))
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    return write_zip(Path(folder) / "bad.nnlib", members)


def edit_member(folder: Path, name: str, data: bytes | None, resign: bool = True) -> Path:
    members = read_members(good_file(folder))
    if data is None:
        del members[name]
    else:
        members[name] = data
    return write_zip(Path(folder) / "bad.nnlib", members, resign=resign)


def edit_array(folder: Path, name: str, change) -> Path:
    members = read_members(good_file(folder))
    array = np.load(io.BytesIO(members[name]))
    return edit_member(folder, name, npy(change(array)))


def raw_bytes(folder: Path, change) -> Path:
    """The good file's bytes through ``change(bytearray) -> bytes``."""
    data = bytearray(good_file(folder).read_bytes())
    path = Path(folder) / "bad.nnlib"
    path.write_bytes(bytes(change(data)))
    return path


def central_entries(data: bytes):
    """Yield (offset, name) of every central-directory entry of a zip without a comment."""
    end = len(data) - 22
    assert data[end:end + 4] == b"PK\x05\x06"
    count, = struct.unpack_from("<H", data, end + 10)
    offset, = struct.unpack_from("<L", data, end + 16)
    for _ in range(count):
        n, m, k = struct.unpack_from("<3H", data, offset + 28)
        yield offset, data[offset + 46:offset + 46 + n].decode()
        offset += 46 + n + m + k


def patch_member_header(path: Path, name: str, crc: int | None = None, size: int | None = None,
                        flags: int | None = None, method: int | None = None) -> Path:
    """Overwrite fields of ``name``'s local and central headers (a lying or odd zip)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(name).header_offset
    central = next(off for off, n in central_entries(data) if n == name)
    for base, (f_flags, f_method, f_crc, f_size) in ((local, (6, 8, 14, 22)), (central, (8, 10, 16, 24))):
        if flags is not None:
            struct.pack_into("<H", data, base + f_flags, flags)
        if method is not None:
            struct.pack_into("<H", data, base + f_method, method)
        if crc is not None:
            struct.pack_into("<L", data, base + f_crc, crc)
        if size is not None:
            struct.pack_into("<L", data, base + f_size, size)
    path.write_bytes(bytes(data))
    return path


def lying_bomb(folder: Path) -> Path:
    """weights/0001.npy really inflates to 32 MiB, but the zip headers and the manifest say it is
    as long as the original member (and carry the checksums of that prefix)."""
    members = read_members(good_file(folder))
    declared = len(members["weights/0001.npy"])
    big = members["weights/0001.npy"] + bytes(32 * 2**20)
    members["weights/0001.npy"] = big
    path = write_zip(Path(folder) / "bad.nnlib", {**members, "weights/0001.npy": big[:declared]})  # manifest
    manifest = read_members(path)["manifest.json"]
    path = write_zip(path, {**members, "manifest.json": manifest}, resign=False)
    return patch_member_header(path, "weights/0001.npy", crc=zlib.crc32(big[:declared]), size=declared)


def size_bomb(folder: Path) -> Path:
    """A 32 MiB member of zeros (32 KiB compressed) whose manifest entry says it holds 104 bytes."""
    members = read_members(good_file(folder))
    manifest = json.loads(members["manifest.json"])
    members["weights/0001.npy"] = bytes(32 * 2**20)
    members["manifest.json"] = json.dumps(manifest).encode()
    return write_zip(Path(folder) / "bad.nnlib", members, resign=False)


def huge_declared(folder: Path) -> Path:
    members = read_members(good_file(folder))
    manifest = json.loads(members["manifest.json"])
    manifest["members"]["weights/0000.npy"]["size"] = 2**31
    members["manifest.json"] = json.dumps(manifest).encode()
    return write_zip(Path(folder) / "bad.nnlib", members, resign=False)


def flip_member_byte(folder: Path, name: str = "weights/0001.npy") -> Path:
    """Flip the last byte of a member and rewrite the zip, keeping the old manifest."""
    members = read_members(good_file(folder))
    data = bytearray(members[name])
    data[-1] ^= 0x40
    members[name] = bytes(data)
    return write_zip(Path(folder) / "bad.nnlib", members, resign=False)


def grow_member(folder: Path) -> Path:
    members = read_members(good_file(folder))
    members["weights/0001.npy"] += b"\0"
    return write_zip(Path(folder) / "bad.nnlib", members, resign=False)


def cut(fraction: float | None = None, keep: int | None = None):
    def change(data: bytearray) -> bytes:
        n = keep if keep is not None else int(len(data) * fraction)
        return data[:n] if n >= 0 else data[:len(data) + n]
    return change


def with_manifest(folder: Path, key: str, value) -> Path:
    """The good file with ``manifest[key] = value`` (checksums left as they were)."""
    members = read_members(good_file(folder))
    manifest = json.loads(members["manifest.json"])
    manifest[key] = value
    members["manifest.json"] = json.dumps(manifest).encode()
    return write_zip(Path(folder) / "bad.nnlib", members, resign=False)


def duplicate_member(folder: Path) -> Path:
    members = read_members(good_file(folder))
    path = write_zip(Path(folder) / "bad.nnlib", members, resign=False)
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as zf:
        zf.writestr("weights/0000.npy", members["weights/0000.npy"])
    return path


def unlisted_member(folder: Path) -> Path:
    members = read_members(good_file(folder))
    members["weights/0004.npy"] = npy(np.zeros(3))
    return write_zip(Path(folder) / "bad.nnlib", members, resign=False)


def adam_v(change):
    def go(folder: Path) -> Path:
        return edit_array(folder, "optimizer/0001_v.npy", change)
    return go


def set_first(value):
    def change(a):
        a = a.astype(np.float64)
        a.flat[0] = value
        return a
    return change


def pickled_array(folder: Path) -> Path:
    """An object array saved with pickling on, under a manifest re-signed to match."""
    return edit_member(folder, "weights/0000.npy", npy(np.array([[1.0, "x", None]] * 3 + [[None] * 3],
                                                                  dtype=object).T.copy(), allow_pickle=True))


# (id, builder(folder) -> path, load_model message regex, load_weights message regex or None if the
#  defect is in what only load_model reads)
BAD_FILES = [
    ("not_a_zip_text", lambda d: write_bytes(d, b"hello, I am a model\n" * 10), r"not a readable zip", "same"),
    ("empty_file", lambda d: write_bytes(d, b""), r"not a readable zip", "same"),
    ("random_bytes", lambda d: write_bytes(d, np.random.default_rng(0).bytes(4096)), r"not a readable zip", "same"),
    ("npy_not_zip", lambda d: write_bytes(d, npy(np.zeros(3))), r"not a readable zip", "same"),
    *[(f"truncated_{name}", (lambda d, c=c: raw_bytes(d, c)), r"truncated", "same")
      for name, c in [("to_1_byte", cut(keep=1)), ("to_30_bytes", cut(keep=30)), ("at_10pct", cut(0.1)),
                      ("at_half", cut(0.5)), ("at_90pct", cut(0.9)), ("minus_22", cut(keep=-22)),
                      ("minus_1", cut(keep=-1))]],
    ("middle_chunk_removed", lambda d: raw_bytes(d, lambda b: b[:200] + b[300:]), r"corrupt|truncated", "same"),
    ("checksum_mismatch", flip_member_byte, r"weights/0001\.npy fails its SHA-256 check", "same"),
    ("checksum_mismatch_config", lambda d: flip_member_byte(d, "config.json"), r"config\.json fails its SHA-256",
     "same"),
    ("raw_byte_flipped", lambda d: raw_bytes(d, lambda b: b[:120] + bytes([b[120] ^ 0xFF]) + b[121:]),
     r"corrupt|CRC-32|local header|holds \d+ bytes, its header says \d+", "same"),  # which depends on the layout
    ("size_mismatch", grow_member, r"weights/0001\.npy has size \d+, the manifest says \d+", "same"),
    ("pickled_object_array", pickled_array, r"weights/0000\.npy.*dtype object.*pickles are refused", "same"),
    ("structured_array", lambda d: edit_member(d, "weights/0000.npy", npy(np.zeros(3, dtype=[("a", "<f8")]))),
     r"weights/0000\.npy is not a plain numeric.*dtype", "same"),
    ("complex_array", lambda d: edit_array(d, "weights/0000.npy", lambda a: a.astype(complex)),
     r"weights/0000\.npy is not a plain numeric.*complex128", "same"),
    ("bool_array", lambda d: edit_array(d, "weights/0000.npy", lambda a: a > 0),
     r"weights/0000\.npy is not a plain numeric.*bool", "same"),
    ("npy_forged_shape", lambda d: edit_member(d, "weights/0000.npy", npy_header("<f8", (10**12,), bytes(16))),
     r"weights/0000\.npy declares shape \(1000000000000,\).*holds 16 bytes", "same"),
    ("npy_garbage_header", lambda d: edit_member(d, "weights/0000.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': ]]]]\n"),
     r"weights/0000\.npy is not a plain numeric", "same"),
    ("npy_bad_magic", lambda d: edit_member(d, "weights/0000.npy", b"PICKLE" + bytes(100)),
     r"weights/0000\.npy is not a plain numeric", "same"),
    ("zip_bomb_past_manifest_size", size_bomb, r"weights/0001\.npy has size 33554432, the manifest says \d+", "same"),
    ("zip_bomb_lying_header", lying_bomb, r"weights/0001\.npy inflates beyond its declared \d+ bytes", "same"),
    ("declared_beyond_bound", huge_declared, r"weights/0000\.npy.*exceeds 1073741824 bytes", "same"),
    ("newer_format_version", lambda d: with_manifest(d, "format_version", saving.FORMAT_VERSION + 1),
     rf"format version {saving.FORMAT_VERSION + 1} is newer.*upgrade", "same"),
    ("format_version_string", lambda d: with_manifest(d, "format_version", "1"), r"invalid format_version '1'", "same"),
    ("not_nnlib_format", lambda d: with_manifest(d, "format", "keras"),
     r"not an nnlib model file \(format 'keras'\)", "same"),
    ("no_manifest", lambda d: edit_member(d, "manifest.json", None, resign=False), r"no manifest\.json", "same"),
    ("member_missing", lambda d: edit_member(d, "weights/0002.npy", None, resign=False),
     r"disagree with the manifest.*missing: \['weights/0002\.npy'\]", "same"),
    ("member_unlisted", unlisted_member, r"disagree with the manifest.*unlisted: \['weights/0004\.npy'\]", "same"),
    ("member_unexpected_name", lambda d: edit_member(d, "payload.py", b"import os\n"),
     r"unexpected member name 'payload\.py'", "same"),
    ("member_path_traversal", lambda d: edit_member(d, "../../evil.npy", npy(np.zeros(2))),
     r"unexpected member name '\.\./\.\./evil\.npy'", "same"),
    ("duplicate_member", duplicate_member, r"duplicate member weights/0000\.npy", "same"),
    ("encrypted_flag", lambda d: patch_member_header(good_file(d), "config.json", flags=1),
     r"member config\.json is encrypted", "same"),
    ("compression_bzip2", lambda d: patch_member_header(good_file(d), "config.json", method=12),
     r"config\.json uses compression method 12", "same"),
    ("nan_weight", lambda d: edit_array(d, "weights/0002.npy", set_first(np.nan)),
     r"weights/0002\.npy contains NaN or inf", "same"),
    ("inf_weight", lambda d: edit_array(d, "weights/0003.npy", set_first(-np.inf)),
     r"weights/0003\.npy contains NaN or inf", "same"),
    ("weight_overflows_float32", lambda d: edit_array(d, "weights/0000.npy", set_first(1e300)),
     r"weights/0000\.npy holds values too large for float32", "same"),
    ("weight_wrong_shape", lambda d: edit_array(d, "weights/0000.npy", lambda a: np.zeros((3, 5))),
     r"weight arrays have shapes \[\(3, 5\), \(4,\).*need \[\(3, 4\), \(4,\)",
     r"weights/0000\.npy has shape \(3, 5\), the model needs \(3, 4\)"),
    ("weight_count", lambda d: edit_member(d, "weights/0003.npy", None),
     r"weight arrays have shapes \[\(3, 4\), \(4,\), \(4, 3\)\].*need", r"holds 3 weight arrays.*has 4 parameters"),
    ("weight_gap", lambda d: edit_member(d, "weights/0007.npy", npy(np.zeros(3))),
     r"weights/0000\.npy, weights/0001\.npy, \.\.\.; got", "same"),
    ("config_not_json", lambda d: edit_member(d, "config.json", b"{'layers': nope"), r"config\.json is not valid JSON",
     "same"),
    ("config_json_list", lambda d: edit_member(d, "config.json", b"[1, 2]"), r"config\.json must hold a JSON object",
     "same"),
    # what only load_model reads
    ("layer_os_system", lambda d: edit_config(d, lambda c: c["layers"][0].update(name="os.system")),
     r"layer 'os\.system' is not one of nnlib's:.*\bdense\b", None),
    ("loss_builtins_eval", lambda d: edit_config(d, lambda c: c["compile"]["loss"].update(name="builtins.eval")),
     r"loss 'builtins\.eval' is not one of nnlib's:.*mse", None),
    ("optimizer_subprocess", lambda d: edit_config(d, lambda c: c["compile"]["optimizer"].update(
        name="subprocess.Popen")), r"optimizer 'subprocess\.Popen' is not one of nnlib's:.*adam", None),
    ("metric_os_getcwd", lambda d: edit_config(d, lambda c: c["compile"].update(metrics=["os.getcwd"])),
     r"metric 'os\.getcwd' is not one of nnlib's", None),
    ("activation_os_system", lambda d: edit_config(d, lambda c: c["layers"][0]["config"].update(
        activation={"name": "os.system", "config": {}})), r"invalid config for layer 'dense'.*unknown activation",
     None),
    ("initializer_eval", lambda d: edit_config(d, lambda c: c["layers"][1]["config"].update(
        weight_init={"name": "builtins.eval", "config": {}})), r"invalid config for layer.*unknown initializer", None),
    ("layer_unknown_kwarg", lambda d: edit_config(d, lambda c: c["layers"][0]["config"].update(__class__="x")),
     r"invalid config for layer 'dense'.*__class__", None),
    ("layer_entry_not_dict", lambda d: edit_config(d, lambda c: c["layers"].__setitem__(0, "dense")),
     r"invalid layer entry 'dense'", None),
    ("no_layers", lambda d: edit_config(d, lambda c: c.update(layers=[])), r"config\.json lists no layers", None),
    # 5000 x 5000: building first would allocate >= 100 MB, beyond MEMORY_BOUND (not enough to sink a CI machine)
    ("huge_dense_config", lambda d: edit_config(d, lambda c: (c.update(input_dim=5000), c["layers"][0][
        "config"].update(input_dim=5000, units=5000))), r"weight arrays have shapes.*need \[\(5000, 5000\)", None),
    ("bad_input_dim", lambda d: edit_config(d, lambda c: (c.update(input_dim=-3), c["layers"][0]["config"].update(
        input_dim=None))), r"invalid input_dim -3", None),
    ("bad_dtype", lambda d: edit_config(d, lambda c: c.update(dtype="int8")), r"invalid model config.*dtype.*int8",
     None),
    ("bad_seed", lambda d: edit_config(d, lambda c: c.update(seed="0")), r"invalid model config.*seed", None),
    ("bad_lr", lambda d: edit_config(d, lambda c: c["compile"]["optimizer"]["config"].update(lr=-1)),
     r"invalid config for optimizer 'adam'.*lr.*-1", None),
    ("optimizer_spec_list", lambda d: edit_config(d, lambda c: c["compile"].update(optimizer=["adam"])),
     r"invalid compile section", None),
    ("negative_iterations", lambda d: edit_config(d, lambda c: c["compile"]["optimizer"].update(iterations=-5)),
     r"invalid optimizer iterations -5", None),
    ("weights_only_to_load_model", lambda d: weights_only(d), r"holds weights only.*load_weights", None),
    ("nan_optimizer_state", lambda d: edit_array(d, "optimizer/0000_m.npy", set_first(np.nan)),
     r"optimizer/0000_m\.npy contains NaN or inf", None),
    ("negative_adam_v", adam_v(lambda a: -np.abs(a) - 1), r"optimizer/0001_v\.npy holds negative values", None),
    ("partial_optimizer_state", lambda d: edit_member(d, "optimizer/0002_v.npy", None),
     r"optimizer state members.*do not match Adam's slots \['m', 'v'\]", None),
    ("optimizer_state_shape", lambda d: edit_array(d, "optimizer/0002_m.npy", lambda a: np.zeros(7)),
     r"optimizer/0002_m\.npy has shape \(7,\), expected \(4, 3\)", None),
    ("state_without_compile", lambda d: edit_config(d, lambda c: c.pop("compile")),
     r"optimizer state without a compile section", None),
]


def write_bytes(folder: Path, data: bytes) -> Path:
    path = Path(folder) / "bad.nnlib"
    path.write_bytes(data)
    return path


def weights_only(folder: Path) -> Path:
    path = Path(folder) / "w.nnlib"
    good_model().save_weights(path)
    return path


BAD_IDS = [case[0] for case in BAD_FILES]
_BY_ID = {case[0]: case for case in BAD_FILES}


def bad_file(case_id: str, folder: Path) -> Path:
    return _BY_ID[case_id][1](Path(folder))


def load_bad(case_id: str, model: nn.Sequential | None = None) -> None:
    """Build the bad file ``case_id`` in a fresh temporary folder and load it (into ``model`` if given)."""
    with tempfile.TemporaryDirectory() as folder:
        path = bad_file(case_id, Path(folder))
        if model is None:
            nn.load_model(path)
        else:
            model.load_weights(path)


def measured(load):
    """Run ``load``; return (the exception it raised or None, peak bytes allocated meanwhile)."""
    tracemalloc.start()
    try:
        load()
        error = None
    except Exception as exc:  # noqa: BLE001 -- the type is the thing under test
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


# -- the table --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", BAD_IDS)
def test_load_model_refuses(tmp_path, case_id):
    path = bad_file(case_id, tmp_path)
    error, peak = measured(lambda: nn.load_model(path))
    assert isinstance(error, ValueError), f"expected ValueError, got {error!r}"
    assert re.search(_BY_ID[case_id][2], str(error)), str(error)
    assert str(path) in str(error)
    assert peak < MEMORY_BOUND, f"{peak} bytes allocated"


@pytest.mark.parametrize("case_id", [c[0] for c in BAD_FILES if c[3] is not None])
def test_load_weights_refuses_and_changes_nothing(tmp_path, case_id):
    path = bad_file(case_id, tmp_path)
    model = good_model(nn.SGD(lr=0.1))
    before = model.get_weights()
    error, peak = measured(lambda: model.load_weights(path))
    want = _BY_ID[case_id][3]
    assert isinstance(error, ValueError), f"expected ValueError, got {error!r}"
    assert re.search(_BY_ID[case_id][2] if want == "same" else want, str(error)), str(error)
    assert peak < MEMORY_BOUND
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_the_good_file_loads(tmp_path):
    """The table's files are all made from this one, which must load (else every refusal is vacuous)."""
    path = good_file(tmp_path)
    assert nn.load_model(path).optimizer.iterations == 6
    assert nn.load_model(write_zip(tmp_path / "again.nnlib", read_members(path))).optimizer.iterations == 6
    assert nn.load_model(write_zip(tmp_path / "stored.nnlib", read_members(path), method=zipfile.ZIP_STORED))
    model = good_model(nn.SGD(lr=0.1))
    model.load_weights(path)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        nn.load_model(tmp_path / "absent.nnlib")
    model = good_model()
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "absent.nnlib")
    with pytest.raises(ValueError, match="not a regular file"):
        nn.load_model(tmp_path)


def test_load_weights_into_other_shapes(tmp_path):
    path = tmp_path / "w.nnlib"
    good_model().save_weights(path)
    wider = nn.Sequential([nn.Dense(5, input_dim=3), nn.Dense(3)], seed=0)
    deeper = nn.Sequential([nn.Dense(4, input_dim=3), nn.Dense(3), nn.Dense(2)], seed=0)
    with pytest.raises(ValueError, match=r"weights/0000\.npy has shape \(3, 4\), the model needs \(3, 5\)"):
        wider.load_weights(path)
    with pytest.raises(ValueError, match=r"holds 4 weight arrays, the model has 6 parameters"):
        deeper.load_weights(path)
    with pytest.raises(RuntimeError, match="not built"):
        nn.Sequential([nn.Dense(4), nn.Dense(3)]).load_weights(path)
    as64 = nn.Sequential([nn.Dense(4, input_dim=3, activation="relu"), nn.Dense(3)], seed=3, dtype="float64")
    as64.load_weights(path)  # float32 file into a float64 model: cast exactly
    for a, b in zip(as64.get_weights(), good_model().get_weights()):
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, b)


CANARY = """
import pathlib
pathlib.Path(__file__).with_name("canary_ran").write_text("imported")

def boom(*args, **kwargs):
    pathlib.Path(__file__).with_name("canary_called").write_text("called")

class Boom:
    def __init__(self, *args, **kwargs):
        boom()
"""


def test_loading_never_imports_or_calls_what_the_file_names(tmp_path, monkeypatch):
    (tmp_path / "h5_canary_mod.py").write_text(CANARY)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("h5_canary_mod", None)
    names = ["h5_canary_mod.Boom", "h5_canary_mod.boom", "h5_canary_mod:Boom", "h5_canary_mod"]
    edits = [
        lambda c, n: c["layers"][0].update(name=n),
        lambda c, n: c["compile"]["loss"].update(name=n),
        lambda c, n: c["compile"]["optimizer"].update(name=n),
        lambda c, n: c["compile"].update(metrics=[n]),
        lambda c, n: c["layers"][0]["config"].update(activation={"name": n, "config": {}}),
        lambda c, n: c["layers"][1]["config"].update(bias_init={"name": n, "config": {}}),
    ]
    refusals = 0
    for edit in edits:
        for name in names:
            path = edit_config(tmp_path, lambda c, e=edit, n=name: e(c, n))
            with pytest.raises(ValueError):
                nn.load_model(path)
            refusals += 1
    # a pickle that would import the canary and call it, as an object-array member
    payload = b"\x80\x02ch5_canary_mod\nboom\n)R."
    evil = npy_header("|O", (1,), payload)
    for member in ("weights/0000.npy", "optimizer/0000_m.npy"):
        with pytest.raises(ValueError, match="dtype object"):
            nn.load_model(edit_member(tmp_path, member, evil))
        refusals += 1
    assert refusals == len(edits) * len(names) + 2
    assert "h5_canary_mod" not in sys.modules
    assert not (tmp_path / "canary_ran").exists() and not (tmp_path / "canary_called").exists()
    import h5_canary_mod  # noqa: F401 -- the canary itself works: importing it leaves its mark

    assert (tmp_path / "canary_ran").exists()
    sys.modules.pop("h5_canary_mod", None)


def test_saved_file_layout_and_manifest(tmp_path):
    path = good_file(tmp_path)
    members = read_members(path)
    assert sorted(members) == sorted(["manifest.json", "config.json", *[f"weights/{i:04d}.npy" for i in range(4)],
                                      *[f"optimizer/{i:04d}_{s}.npy" for i in range(4) for s in ("m", "v")]])
    manifest = json.loads(members["manifest.json"])
    assert manifest["format"] == "nnlib" and manifest["format_version"] == saving.FORMAT_VERSION
    for name, entry in manifest["members"].items():
        assert entry == {"size": len(members[name]), "sha256": hashlib.sha256(members[name]).hexdigest()}
    config = json.loads(members["config.json"])
    assert [layer["name"] for layer in config["layers"]] == ["dense", "dense"]
    assert config["compile"]["optimizer"]["name"] == "adam" and config["compile"]["metrics"] == ["accuracy"]
    for name in members:
        if name.endswith(".npy"):
            np.load(io.BytesIO(members[name]), allow_pickle=False)  # plain arrays


def test_save_refuses_unregistered_parts_and_unbuilt_models(tmp_path):
    class Unregistered(nn.ReLU):
        pass

    model = nn.Sequential([nn.Dense(3, input_dim=2), Unregistered(name="custom")], seed=0)
    with pytest.raises(ValueError, match="Unregistered is not registered in nnlib's layer registry"):
        model.save(tmp_path / "m.nnlib")
    with pytest.raises(ValueError, match="not built"):
        nn.Sequential([nn.Dense(3)]).save(tmp_path / "m.nnlib")
    with pytest.raises(ValueError, match="not built"):
        nn.Sequential([nn.Dense(3)]).save_weights(tmp_path / "m.nnlib")
    assert os.listdir(tmp_path) == []


def test_save_keeps_file_permissions(tmp_path):
    path = tmp_path / "m.nnlib"
    model = good_model()
    model.save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask  # as open() would, not mkstemp's 0600
    os.chmod(path, 0o640)
    model.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


@pytest.mark.parametrize("kind", ["batch_normalization", "dropout", "relu"])
def test_forged_width_is_refused_before_building(tmp_path, kind):
    """A layer whose parameters the loader cannot foresee is built only if no width the config implies
    exceeds the numbers the file stores (floor 2**16), so a forged input_dim cannot allocate terabytes."""
    def forge(config):
        config["input_dim"] = 10**12
        config["layers"].insert(0, {"name": kind, "config": {}})
        config["layers"][1]["config"]["input_dim"] = None

    path = edit_config(tmp_path, forge)
    error, peak = measured(lambda: nn.load_model(path))
    assert isinstance(error, ValueError), repr(error)
    assert re.search(r"width of 1000000000000, more than the 31 numbers|need \[\(1000000000000, 4\)", str(error))
    assert peak < MEMORY_BOUND


def stateful_file(folder: Path) -> Path:
    model = nn.Sequential([nn.Dense(4, input_dim=3), nn.BatchNormalization(), nn.Dense(3)], seed=0)
    model.compile("adam", "softmax_cross_entropy")
    model.fit(X, Y, epochs=1, batch_size=2, verbose=0)
    path = Path(folder) / "bn.nnlib"
    model.save(path)
    return path


@pytest.mark.parametrize("change,match", [
    (lambda m: m.pop("state/0001_moving_variance.npy"), r"layer 1 \(.*\) needs state \['moving_mean', "
                                                        r"'moving_variance'\], the file holds \['moving_mean'\]"),
    (lambda m: m.update({"state/0001_moving_variance.npy": npy(np.full(4, -1.0, np.float32))}),
     r"invalid state for layer 1.*moving_variance"),
    (lambda m: m.update({"state/0001_moving_mean.npy": npy(np.full(4, np.nan, np.float32))}),
     r"invalid state for layer 1.*finite"),
    (lambda m: m.update({"state/0001_moving_mean.npy": npy(np.zeros(5, np.float32))}),
     r"invalid state for layer 1.*shape"),
    (lambda m: m.update({"state/0000_moving_mean.npy": npy(np.zeros(4, np.float32))}), r"layer 0 .*needs state \[\]"),
    (lambda m: m.update({"state/0009_x.npy": npy(np.zeros(4, np.float32))}), r"state/0009_x\.npy names layer 9"),
    (lambda m: m.update({"state/0001_moving_mean.npy": npy(np.array([[1.0, None]], dtype=object),
                                                           allow_pickle=True)}), r"dtype object"),
], ids=["missing", "negative_variance", "nan_mean", "wrong_shape", "stateless_layer", "no_such_layer", "pickle"])
def test_bad_layer_state_is_refused(tmp_path, change, match):
    members = read_members(stateful_file(tmp_path))
    assert nn.load_model(write_zip(tmp_path / "same.nnlib", members))  # the re-signed original loads
    change(members)
    with pytest.raises(ValueError, match=match):
        nn.load_model(write_zip(tmp_path / "bad.nnlib", members))


DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_format_version_1_files_still_load_bit_for_bit(name):
    """Files written by nnlib before the optimizer state became plain (format version 1, see
    tests/data/make_legacy_v1.py) load with the same weights, layer state and predictions, bit for
    bit; Adam's moments, stored rescaled then, come back as PyTorch's m and v."""
    expected = np.load(DATA / f"legacy_v1_{name}_expected.npz", allow_pickle=False)
    model = nn.load_model(DATA / f"legacy_v1_{name}.nnlib")
    params = model.parameters()
    for i, p in enumerate(params):
        np.testing.assert_array_equal(p.value, expected[f"weight_{i}"])
        assert p.value.dtype == np.float32
    np.testing.assert_array_equal(model.predict(expected["x"]), expected["predict"])
    for i, p in enumerate(params):
        for slot in model.optimizer.slots:
            stored = expected[f"state_{i}_{slot}"]
            got = model.optimizer.state[p][slot]
            if name == "adam":  # rescaled in the file; PyTorch's quantities in memory, as moments() gave them
                np.testing.assert_array_equal(got, expected[f"torch_{i}_{slot}"])
                assert not np.array_equal(got, stored) or not stored.any()
            else:
                np.testing.assert_array_equal(got, stored)
    assert model.optimizer.iterations == 6  # two epochs of three batches
    # training resumes from there as it did before the change, to float32 rounding
    rng = np.random.default_rng(7)
    x = rng.normal(size=(24, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=24)
    np.testing.assert_array_equal(x, expected["x"])
    model.fit(x, y, epochs=3, initial_epoch=2, batch_size=8, verbose=0, tol=None)
    resumed = np.concatenate([w.ravel() for w in model.get_weights()])
    np.testing.assert_allclose(resumed, expected["weights_after_epoch_3"], rtol=1e-5, atol=1e-6)


def test_files_name_their_model_class_and_version(tmp_path):
    model = nn.Sequential([nn.Dense(2, input_dim=3)], seed=0)
    path = tmp_path / "m.nnlib"
    model.save(path)
    members = read_members(path)
    assert json.loads(members["config.json"])["model"] == "sequential"
    assert json.loads(members["manifest.json"])["format_version"] == saving.FORMAT_VERSION == 2
    config = json.loads(members["config.json"])
    config["model"] = "functional"
    members["config.json"] = json.dumps(config).encode()
    with pytest.raises(ValueError, match=r"model class 'functional' is not one of nnlib's: sequential"):
        nn.load_model(write_zip(tmp_path / "forged.nnlib", members))
