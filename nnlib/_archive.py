"""The safe zip container under model files: bounded reads, a checksummed manifest, plain ``.npy``.

A file is a zip whose ``manifest.json`` lists every other member with its size and
SHA-256::

    {"format": "nnlib", "format_version": 3,
     "members": {name: {"size": bytes, "sha256": hex}}}

Reading allocates no more than the file and its manifest declare, within fixed bounds
(:data:`MAX_MEMBER_BYTES` per member, :data:`MAX_TOTAL_BYTES` in all): a member is
inflated with at most its declared size + 1 byte of output (so one that would inflate
further is refused), every member's size and SHA-256 must match the manifest before it
is parsed, and an array's ``.npy`` header must agree with its length before it is read.
Arrays are read with NumPy's header parser and ``frombuffer``: never unpickled, and
object or structured dtypes are refused. What the members mean is :mod:`nnlib.saving`'s
business; this module imports nothing from nnlib.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import tokenize
import zipfile
import zlib
from typing import Any

import numpy as np

__all__ = ["FORMAT", "MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES", "MAX_JSON_BYTES", "MAX_MEMBERS", "npy_bytes",
           "npy_array", "parse_json", "read_archive", "write_archive"]

FORMAT = "nnlib"
MAX_MEMBER_BYTES = 1 << 30  # no single member may inflate beyond 1 GiB
MAX_TOTAL_BYTES = 4 * MAX_MEMBER_BYTES  # nor all of them together beyond 4 GiB
MAX_JSON_BYTES = 1 << 20
MAX_MEMBERS = 10_000


# -- writing --------------------------------------------------------------------------
def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as ``.npy`` bytes (C order, never pickled)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    import hashlib  # here, not at the top: hashlib and tempfile cost ~14 ms of every `import nnlib`

    return hashlib.sha256(data).hexdigest()


def write_archive(path: str | os.PathLike[str], members: dict[str, bytes], version: int) -> None:
    """Write ``members`` and their manifest (format ``version``) to ``path`` atomically.

    The zip is written to a temporary file in the same folder, synced, then moved into
    place with ``os.replace``: a crash mid-save leaves the previous file intact.
    """
    import tempfile  # see _sha256

    manifest = {
        "format": FORMAT,
        "format_version": version,
        "members": {name: {"size": len(data), "sha256": _sha256(data)}
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


# -- reading --------------------------------------------------------------------------
# A member is read straight from its local header with zlib, not through zipfile.open:
# so no read is larger than the member's declared size + 1 byte, a stream that would
# inflate past its declared size is refused, and every failure is one ValueError.
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # PK\3\4, version, flags, method, time, date, crc, sizes, name/extra len
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


def read_archive(path: str | os.PathLike[str], member_names: re.Pattern[str], max_version: int
                 ) -> tuple[dict[str, bytes], int]:
    """Every member of the file at ``path``, after size and checksum checks against its manifest.

    Parameters
    ----------
    path : str or os.PathLike
    member_names : compiled regex
        Every member named in the manifest must match it (``manifest.json`` aside).
    max_version : int
        The newest format version the caller reads.

    Returns
    -------
    members : dict[str, bytes]
    version : int
        The file's format version, in ``[1, max_version]``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For anything else wrong with the file, named in the message.
    """
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
            return _read_members(f, file_size, zf, path, member_names, max_version)
    except OSError as exc:  # a real I/O error while reading
        raise ValueError(f"{path}: cannot read the model file ({exc})") from None


def _read_members(f: Any, file_size: int, zf: zipfile.ZipFile, path: str, member_names: re.Pattern[str],
                  max_version: int) -> tuple[dict[str, bytes], int]:
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
    manifest = parse_json(_read_member(f, file_size, by_name["manifest.json"], MAX_JSON_BYTES, path),
                          "manifest.json", path)
    members, version = _check_manifest(manifest, path, member_names, max_version)
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
        if _sha256(data) != entry["sha256"]:
            raise ValueError(f"{path}: member {name} fails its SHA-256 check against the manifest")
        out[name] = data
    return out, version


def parse_json(data: bytes, member: str, path: str) -> dict[str, Any]:
    """The JSON object in ``data`` (member ``member`` of ``path``), or one ValueError."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise ValueError(f"{path}: {member} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {member} must hold a JSON object")
    return value


def _check_manifest(manifest: dict[str, Any], path: str, member_names: re.Pattern[str], max_version: int
                    ) -> tuple[dict[str, dict[str, Any]], int]:
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not an nnlib model file (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path}: invalid format_version {version!r}")
    if version > max_version:
        raise ValueError(f"{path}: format version {version} is newer than this nnlib reads "
                         f"({max_version}); upgrade nnlib")
    members = manifest.get("members")
    if not isinstance(members, dict):
        raise ValueError(f"{path}: manifest has no members table")
    total = 0
    for name, entry in members.items():
        if not member_names.match(name):
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
    return members, version


def npy_array(data: bytes, name: str, path: str) -> np.ndarray:
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
