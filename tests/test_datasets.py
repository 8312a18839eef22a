"""nnlib/datasets.py: the IDX reader (round trips, every malformed file refused with a ValueError naming the
file, forged headers refused without allocating what they claim), the IDX loaders' search order and checks,
the dispatcher, and digits. (The reader's fuzz tests are in test_fuzz.py.)"""

import gzip
import math
import re
import struct
import tracemalloc

import numpy as np
import pytest
from idx_files import TYPE_CODES, header, idx_bytes, write_idx, write_raw

from nnlib import datasets
from nnlib.datasets import (
    DATASETS,
    MAX_IDX_BYTES,
    load,
    load_digits,
    load_fashion_mnist,
    load_idx_dir,
    load_mnist,
    read_idx,
)

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def expect_error(path, problem):
    """Assert read_idx(path) raises ValueError matching `problem` and naming the file."""
    with pytest.raises(ValueError, match=problem) as info:
        read_idx(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("dtype", list(TYPE_CODES))
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (2, 1, 3, 1), (0, 28)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, shape, suffix):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    path = write_idx(tmp_path / f"a-idx{suffix}", arr)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)
    out[...] = 0  # the result is an ordinary writable array
    assert out.flags.writeable


def test_gzip_detected_by_magic_without_gz_suffix(tmp_path):
    arr = np.arange(12, dtype=np.int32).reshape(3, 4)
    path = write_idx(tmp_path / "compressed-idx", arr, gz=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(path), arr)


def test_accepts_str_path(tmp_path):
    arr = np.arange(5, dtype=np.uint8)
    path = write_idx(tmp_path / "a", arr)
    np.testing.assert_array_equal(read_idx(str(path)), arr)


def refused_within(path, match, bound):
    """read_idx(path) raises a ValueError matching ``match`` and naming the file, while allocating less than
    ``bound`` bytes; returns the message."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match) as info:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < bound, f"{path.name}: {peak} bytes"
    return str(info.value)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "shape", [(2**32 - 1,) * 3, (60000, 2**32 - 1), (MAX_IDX_BYTES + 1,), (2**32 - 1,) * 8]
)
def test_forged_huge_header_rejected_without_allocating(tmp_path, gz, shape):
    path = write_raw(tmp_path / ("huge.gz" if gz else "huge"), header(0x08, shape) + b"xy", gz)
    assert str(math.prod(shape)) in refused_within(path, "limit", 1024**2)


@pytest.mark.parametrize("gz", [False, True])
def test_large_claim_under_limit_on_tiny_file_does_not_allocate_claim(tmp_path, gz):
    # 1.5 GiB claimed, 4 bytes present: must fail on the data, not allocate the claim.
    shape = (3 * 2**29,)
    path = write_raw(tmp_path / ("big.gz" if gz else "big"), header(0x08, shape) + b"abcd", gz)
    refused_within(path, "truncated", 8 * 1024**2)


FORGED_IDX = {
    "claims_47MB_holds_16B": bytes([0, 0, 8, 3]) + struct.pack(">3I", 60000, 28, 28) + bytes(16),
    "claims_beyond_limit": bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1),
    "claims_2GB_exactly": bytes([0, 0, 8, 2]) + struct.pack(">2I", 2**16, 2**15) + bytes(100),
    "eight_dims_of_255": bytes([0, 0, 8, 8]) + struct.pack(">8I", *[255] * 8) + bytes(10),
    "gzip_claims_47MB": gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", 60000, 28, 28) + bytes(100)),
    "gzip_tail_bomb": gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + bytes(200 * 2**20)),
}


@pytest.mark.parametrize("name", sorted(FORGED_IDX))
def test_forged_header_memory_bound(tmp_path, name):
    path = tmp_path / f"{name}.idx"
    path.write_bytes(FORGED_IDX[name])
    refused_within(path, r"truncated|limit|too long", 64 * 2**20)


def test_zero_dim_with_huge_dims_names_the_file(tmp_path):
    """A 0 among huge dimensions is 0 bytes of data, but no array of that shape can exist."""
    path = tmp_path / "zero_dim.idx"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 0, 2**32 - 1, 2**32 - 1))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, gz):
    data = idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    path = write_raw(tmp_path / "t-idx", data[:-3], gz)
    expect_error(path, "payload truncated")


@pytest.mark.parametrize("gz", [False, True])
def test_over_long_payload(tmp_path, gz):
    data = idx_bytes(np.arange(10, dtype=np.uint8))
    path = write_raw(tmp_path / "t-idx", data + b"\0", gz)
    expect_error(path, "payload too long")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cut", [1, 3, 4, 9, 15])
def test_cut_header(tmp_path, gz, cut):
    data = idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8))  # 16-byte header
    path = write_raw(tmp_path / "t-idx", data[:cut], gz)
    expect_error(path, "header cut short")


@pytest.mark.parametrize("name", ["empty", "empty.gz"])
def test_empty_file(tmp_path, name):
    path = write_raw(tmp_path / name, b"")
    expect_error(path, "empty file")


def test_gzip_of_nothing(tmp_path):
    path = write_raw(tmp_path / "nothing.gz", b"", gz=True)
    expect_error(path, "empty file")


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x01", b"\x00\x01\x08\x01", b"\xff\xff\xff\xff"])
def test_bad_magic(tmp_path, magic):
    path = write_raw(tmp_path / "t-idx", magic + (3).to_bytes(4, "big") + b"abc")
    expect_error(path, "bad magic number")


@pytest.mark.parametrize("code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_unknown_type_code(tmp_path, code):
    path = write_raw(tmp_path / "t-idx", header(code, (3,)) + b"abc")
    expect_error(path, f"unknown IDX type code 0x{code:02x}")


@pytest.mark.parametrize("ndim", [0, 9, 255])
def test_bad_number_of_dimensions(tmp_path, ndim):
    path = write_raw(tmp_path / "t-idx", bytes([0, 0, 0x08, ndim]) + b"\0\0\0\1" * ndim + b"a")
    expect_error(path, f"number of dimensions must be 1..8, got {ndim}")


def test_truncated_gzip_stream(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    path = write_raw(tmp_path / "t-idx.gz", data[: len(data) // 2])
    expect_error(path, "broken gzip stream")


def test_gzip_bad_crc(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.arange(100, dtype=np.float64))))
    data[-8] ^= 0xFF  # first byte of the CRC32 trailer
    path = write_raw(tmp_path / "t-idx.gz", bytes(data))
    expect_error(path, "broken gzip stream.*CRC")


def test_gzip_corrupted_deflate_data(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int16))))
    data[len(data) // 2] ^= 0x5A
    path = write_raw(tmp_path / "t-idx.gz", bytes(data))
    expect_error(path, "broken gzip stream|payload")


def test_gzip_trailing_garbage(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(10, dtype=np.uint8))) + b"garbage!"
    path = write_raw(tmp_path / "t-idx.gz", data)
    expect_error(path, "broken gzip stream")


def test_not_gzip_despite_gz_suffix(tmp_path):
    path = write_idx(tmp_path / "plain-idx.gz", np.arange(4, dtype=np.uint8), gz=False)
    expect_error(path, "not a gzip file")


def test_gzip_magic_then_garbage(tmp_path):
    path = write_raw(tmp_path / "t-idx", b"\x1f\x8b" + b"\x00" * 30)
    expect_error(path, "broken gzip stream")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- IDX loaders


def make_set(directory, n_train=5, n_test=3, gz=False, seed=0):
    """Write a tiny MNIST-style set of four files into `directory`; return its arrays."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    ]
    arrays[0][0, 0, 0], arrays[0][0, 0, 1] = 0, 255  # make the full range appear
    for name, arr in zip(FILES, arrays):
        write_idx(directory / (name + (".gz" if gz else "")), arr)
    return arrays


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Point every search location at empty tmp dirs; return them by role."""
    d = {
        "path": tmp_path / "given",
        "env": tmp_path / "env",
        "home": tmp_path / "home",
        "system": tmp_path / "system",
    }
    for p in d.values():
        p.mkdir()
    monkeypatch.delenv("NNLIB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(d["home"]))
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIR", d["system"])
    return d


def test_loader_shapes_dtypes_and_values(dirs):
    images, labels, t_images, t_labels = make_set(dirs["path"], gz=True)
    (x, y), (xt, yt) = load_fashion_mnist(dirs["path"])
    assert x.shape == (5, 784) and xt.shape == (3, 784)
    assert y.shape == (5,) and yt.shape == (3,)
    assert x.dtype == xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0 and 0 <= xt.min() and xt.max() <= 1
    np.testing.assert_allclose(x, images.reshape(5, 784) / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(yt, t_labels)

    (x3, _), (xt3, _) = load_fashion_mnist(dirs["path"], flatten=False)
    assert x3.shape == (5, 28, 28) and xt3.shape == (3, 28, 28)
    np.testing.assert_allclose(xt3, t_images / 255, rtol=1e-6)


def test_search_order(dirs, monkeypatch):
    monkeypatch.setenv("NNLIB_DATA", str(dirs["env"]))
    make_set(dirs["system"] / "fashion-mnist", n_train=2)
    make_set(dirs["home"] / ".nnlib" / "datasets" / "fashion-mnist", n_train=3, gz=True)
    make_set(dirs["env"] / "fashion-mnist", n_train=4)
    make_set(dirs["path"], n_train=6, gz=True)

    def n_train(**kwargs):
        return len(load_fashion_mnist(**kwargs)[0][0])

    assert n_train(path=dirs["path"]) == 6
    assert n_train(path=str(dirs["path"])) == 6
    assert n_train() == 4
    monkeypatch.delenv("NNLIB_DATA")
    assert n_train() == 3
    monkeypatch.setenv("HOME", str(dirs["path"]))  # a home without ~/.nnlib
    assert n_train() == 2
    # The same search, under the other name.
    make_set(dirs["system"] / "mnist", n_train=7)
    assert len(load_mnist()[0][0]) == 7


def test_directory_missing_a_file_is_skipped(dirs):
    make_set(dirs["system"] / "fashion-mnist", n_train=2)
    make_set(dirs["path"], n_train=6)
    (dirs["path"] / "t10k-labels-idx1-ubyte").unlink()
    assert len(load_fashion_mnist(dirs["path"])[0][0]) == 2


def test_mixed_plain_and_gz_files(dirs):
    make_set(dirs["path"], gz=True)
    gz_file = dirs["path"] / "t10k-images-idx3-ubyte.gz"
    (dirs["path"] / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(gz_file.read_bytes()))
    gz_file.unlink()
    assert load_fashion_mnist(dirs["path"])[1][0].shape == (3, 784)


@pytest.mark.parametrize(
    ("loader", "name", "hint"),
    [
        (load_fashion_mnist, "fashion-mnist", "apt-get install dataset-fashion-mnist"),
        (load_mnist, "mnist", "download the four IDX files"),
    ],
)
def test_not_found_message_lists_directories_and_how_to_get(dirs, monkeypatch, loader, name, hint):
    monkeypatch.setenv("NNLIB_DATA", str(dirs["env"]))
    with pytest.raises(FileNotFoundError) as info:
        loader(dirs["path"])
    msg = str(info.value)
    for d in (dirs["path"], dirs["env"] / name, dirs["home"] / ".nnlib" / "datasets" / name,
              dirs["system"] / name):
        assert str(d) in msg
    assert hint in msg and "train-images-idx3-ubyte" in msg and "NNLIB_DATA" in msg


def test_given_path_that_does_not_exist(dirs):
    make_set(dirs["system"] / "fashion-mnist")
    with pytest.raises(FileNotFoundError, match="given data directory .*no-such-dir does not exist"):
        load_fashion_mnist(dirs["path"] / "no-such-dir")


def test_inconsistent_label_count(dirs):
    make_set(dirs["path"])
    bad = write_idx(dirs["path"] / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="4 labels for 5 images") as info:
        load_fashion_mnist(dirs["path"])
    assert str(bad) in str(info.value)


@pytest.mark.parametrize(
    ("name", "arr", "problem"),
    [
        ("train-images-idx3-ubyte", np.zeros((5, 27, 28), np.uint8), "shape"),
        ("train-images-idx3-ubyte", np.zeros((5, 784), np.uint8), "shape"),
        ("t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.int16), "uint8 images"),
        ("t10k-labels-idx1-ubyte", np.zeros((3, 1), np.uint8), "1-D uint8 labels"),
        ("t10k-labels-idx1-ubyte", np.zeros(3, np.int32), "1-D uint8 labels"),
        ("train-labels-idx1-ubyte", np.array([0, 1, 2, 10, 3], np.uint8), "0..9"),
    ],
)
def test_inconsistent_files(dirs, name, arr, problem):
    make_set(dirs["path"])
    bad = write_idx(dirs["path"] / name, arr)
    with pytest.raises(ValueError, match=problem) as info:
        load_idx_dir(dirs["path"])
    assert str(bad) in str(info.value)


def test_malformed_file_error_propagates_from_loader(dirs):
    make_set(dirs["path"])
    bad = write_raw(dirs["path"] / "t10k-labels-idx1-ubyte", b"\0\0\x08")
    with pytest.raises(ValueError, match="header cut short") as info:
        load_fashion_mnist(dirs["path"])
    assert str(bad) in str(info.value)


def test_load_idx_dir_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_idx_dir(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_idx_dir(tmp_path)


# --------------------------------------------------------------------------- dispatcher


def test_datasets_registry_names():
    assert set(DATASETS) == {"digits", "fashion-mnist", "mnist"}
    assert DATASETS["fashion-mnist"] is load_fashion_mnist


def test_load_dispatch(dirs):
    make_set(dirs["path"], n_train=4)
    make_set(dirs["system"] / "mnist", n_train=2)
    assert load("fashion-mnist", path=dirs["path"])[0][0].shape == (4, 784)
    assert load(str(dirs["path"]), flatten=False)[0][0].shape == (4, 28, 28)
    assert load("mnist")[0][0].shape == (2, 784)
    (x, _), (xt, _) = load("digits")
    assert x.shape[1] == 64 and len(x) + len(xt) == 1797


def test_load_unknown_name_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'.*digits.*fashion-mnist.*mnist"):
        load("cifar")
    with pytest.raises(ValueError, match="path"):
        load("digits", path=tmp_path)


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_shapes_dtypes_range(digits):
    (x, y), (xt, yt) = digits
    assert x.shape == (1347, 64) and xt.shape == (450, 64)
    assert y.shape == (1347,) and yt.shape == (450,)
    assert x.dtype == xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0 and xt.min() >= 0 and xt.max() <= 1
    assert set(np.unique(y)) == set(range(10))
    # every value is a multiple of 1/16
    np.testing.assert_allclose(x * 16, np.round(x * 16), atol=1e-5)


def test_digits_unflattened_and_test_size():
    (x, _), (xt, _) = load_digits(test_size=0.5, flatten=False)
    assert x.shape[1:] == (8, 8) and xt.shape[1:] == (8, 8)
    assert len(xt) in (898, 899) and len(x) + len(xt) == 1797


def test_digits_reproducible_split(digits):
    (x2, y2), (xt2, yt2) = load_digits(seed=0)
    for a, b in zip((x2, y2, xt2, yt2), (*digits[0], *digits[1])):
        np.testing.assert_array_equal(a, b)
    (x3, _), (xt3, _) = load_digits(seed=1)
    assert x3.shape == x2.shape and not np.array_equal(xt2, xt3)


def test_digits_split_is_stratified(digits):
    (_, y), (_, yt) = digits
    overall = np.bincount(np.concatenate([y, yt]), minlength=10) / (len(y) + len(yt))
    for part in (y, yt):
        np.testing.assert_allclose(np.bincount(part, minlength=10) / len(part), overall, atol=0.01)


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), "0.2", None, True])
def test_digits_bad_test_size(bad):
    with pytest.raises(ValueError, match=r"test_size must be .*\(0, 1\), got " + repr(bad)[:3]):
        load_digits(test_size=bad)
