"""Model files taken apart and put back together, the table of crafted bad files, and the snapshot of what a
refused call must leave as it was (not collected: no ``test_`` prefix).

Used by test_saving.py (which runs ``BAD_FILES`` against ``load_model`` and ``load_weights``),
test_bad_inputs.py (``snapshot``/``assert_unchanged``) and test_fuzz.py (the good file and the zip
writer, with or without a re-signed manifest).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
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
    """The same architecture as the "clf" model of test_bad_inputs.py, trained a little."""
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


def edit_config(folder: Path, change, source: Path | None = None) -> Path:
    """A re-signed copy of the good file (or of ``source``) whose config.json went through ``change(config)``."""
    members = read_members(source or good_file(folder))
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
    ("huge_dense_config", lambda d: edit_config(d, lambda c: (c.update(input_shape=[5000]), c["layers"][0][
        "config"].update(input_dim=5000, units=5000))), r"weight arrays have shapes.*need \[\(5000, 5000\)", None),
    ("bad_input_shape", lambda d: edit_config(d, lambda c: (c.update(input_shape=[-3]), c["layers"][0]["config"].update(
        input_dim=None))), r"invalid input_shape \(-3,\)", None),
    ("legacy_input_dim", lambda d: edit_config(d, lambda c: (c.pop("input_shape"), c.update(input_dim=-3),
        c["layers"][0]["config"].update(input_dim=None))), r"invalid input_shape \(-3,\)", None),
    ("huge_input_shape", lambda d: edit_config(d, lambda c: (c.update(input_shape=[10**6, 10**6, 3]),
        c["layers"][0]["config"].update(input_dim=None))), r"invalid input_shape \(1000000, 1000000, 3\)", None),
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
BAD_BY_ID = {case[0]: case for case in BAD_FILES}


def bad_file(case_id: str, folder: Path) -> Path:
    return BAD_BY_ID[case_id][1](Path(folder))


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


# -- what a refused call must leave as it was ------------------------------------------------------
def snapshot(model):
    opt = model.optimizer
    return {
        "built": model.built,
        "input_shape": model.input_shape,
        "weights": model.get_weights(),
        "optimizer": opt,
        "loss": model.loss,
        "metrics": list(model.metrics),
        "iterations": None if opt is None else opt.iterations,
        "state": None if opt is None else {id(p): {k: v.copy() for k, v in s.items()} for p, s in opt.state.items()},
    }


def assert_unchanged(before, model):
    after = snapshot(model)
    assert after["built"] == before["built"]
    assert after["input_shape"] == before["input_shape"]
    assert len(after["weights"]) == len(before["weights"])
    for a, b in zip(after["weights"], before["weights"]):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert after["optimizer"] is before["optimizer"]
    assert after["loss"] is before["loss"]
    assert after["metrics"] == before["metrics"]
    assert after["iterations"] == before["iterations"]
    if before["state"] is not None:
        assert after["state"].keys() == before["state"].keys()
        for pid, slots in before["state"].items():
            for k, v in slots.items():
                np.testing.assert_array_equal(after["state"][pid][k], v)
