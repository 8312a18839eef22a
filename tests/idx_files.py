"""IDX files written byte by byte, valid or forged (not collected: no ``test_`` prefix): used by
test_datasets.py (the reader and the loaders) and test_fuzz.py (mutations of valid files)."""

from __future__ import annotations

import gzip

import numpy as np

TYPE_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def header(code, shape):
    """IDX header bytes for type `code` and `shape` (may be forged)."""
    return bytes([0, 0, code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)


def idx_bytes(arr):
    """A valid IDX file's bytes for `arr` (big-endian payload)."""
    arr = np.asarray(arr)
    payload = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    return header(TYPE_CODES[arr.dtype.type], arr.shape) + payload


def write_idx(path, arr, gz=None):
    """Write `arr` as an IDX file; gzip it if `gz`, or by default if `path` ends in .gz."""
    data = idx_bytes(arr)
    if gz or (gz is None and path.suffix == ".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_raw(path, data, gz=False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path
