"""Datasets: a safe IDX reader and the Fashion-MNIST, MNIST and digits loaders.

Every loader returns ``(x_train, y_train), (x_test, y_test)`` with ``x`` float32 in
[0, 1] and ``y`` int64. Nothing is downloaded: files are looked up on disk only.
"""

from __future__ import annotations

import gzip
import numbers
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike[str]
Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: Largest IDX payload :func:`read_idx` accepts; bounds the memory a forged header or a
#: gzip bomb can make us allocate (Fashion-MNIST's largest file is 47 MB).
MAX_IDX_BYTES = 2 * 1024**3
#: Largest number of dimensions :func:`read_idx` accepts.
MAX_IDX_DIMS = 8
#: System-wide data directory (where Debian's ``dataset-*`` packages install).
SYSTEM_DATA_DIR = Path("/usr/share/datasets")

# IDX type code -> big-endian dtype of the payload.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CHUNK = 1024**2  # read size: bounds what one read can allocate before data arrives
_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_HOW_TO_GET = {
    "fashion-mnist": "run `apt-get install dataset-fashion-mnist` (installs into "
    "/usr/share/datasets/fashion-mnist), or download the four IDX files from "
    "https://github.com/zalandoresearch/fashion-mnist",
    "mnist": "download the four IDX files from https://yann.lecun.com/exdb/mnist/ "
    "(or a mirror)",
}


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzip-compressed.

    The header is validated before anything is allocated, and at most
    :data:`MAX_IDX_BYTES` bytes are ever decompressed.

    Parameters
    ----------
    path : str or os.PathLike
        File name. Gzip is used when it ends in ``.gz`` or starts with bytes ``1f 8b``.

    Returns
    -------
    ndarray of shape (d_1, ..., d_k)
        The payload in native byte order, with the dtype given by the header's type code
        (uint8, int8, int16, int32, float32 or float64).

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file is empty, truncated, too long, has a bad header or a broken gzip
        stream; the message names the file and the problem.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        lead = raw.read(2)
        if not lead:
            raise ValueError(f"{path}: empty file")
        gz = lead == b"\x1f\x8b"
        if not gz and path.suffix == ".gz":
            raise ValueError(f"{path}: not a gzip file (starts with {lead.hex()})")
        raw.seek(0)
        if gz:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_idx_stream(stream, path, gz=True)
        return _read_idx_stream(raw, path, gz=False)


def _read(stream, n: int, path: Path, gz: bool) -> bytes:
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        if not gz:  # a real I/O error on a plain file stays an OSError
            raise
        raise ValueError(f"{path}: broken gzip stream ({exc})") from exc


def _read_idx_stream(stream, path: Path, gz: bool) -> np.ndarray:
    magic = _read(stream, 4, path, gz)
    if not magic:
        raise ValueError(f"{path}: empty file (after decompression)")
    if len(magic) < 4:
        raise ValueError(f"{path}: header cut short ({len(magic)} of 4 magic bytes)")
    if magic[:2] != b"\0\0":
        raise ValueError(f"{path}: bad magic number 0x{magic.hex()}, not an IDX file")
    dtype = _IDX_DTYPES.get(magic[2])
    if dtype is None:
        raise ValueError(f"{path}: unknown IDX type code 0x{magic[2]:02x}")
    ndim = magic[3]
    if not 1 <= ndim <= MAX_IDX_DIMS:
        raise ValueError(f"{path}: number of dimensions must be 1..{MAX_IDX_DIMS}, got {ndim}")
    head = _read(stream, 4 * ndim, path, gz)
    if len(head) < 4 * ndim:
        raise ValueError(f"{path}: header cut short ({len(head)} of {4 * ndim} size bytes)")
    shape = tuple(int.from_bytes(head[i : i + 4], "big") for i in range(0, 4 * ndim, 4))
    nbytes = extent = dtype.itemsize
    for d in shape:  # Python ints: no overflow however large the forged sizes
        nbytes *= d
        extent *= max(d, 1)  # a 0 makes no data, but the other sizes must still be possible
    if extent > MAX_IDX_BYTES:
        raise ValueError(
            f"{path}: header claims shape {shape}, {nbytes} bytes of data, "
            f"more than the limit of {MAX_IDX_BYTES} bytes"
        )
    # Grow the buffer only as data really arrives, so a forged header cannot make
    # us allocate its claimed size up front.
    buf = bytearray()
    while len(buf) < nbytes:
        chunk = _read(stream, min(_CHUNK, nbytes - len(buf)), path, gz)
        if not chunk:
            raise ValueError(
                f"{path}: payload truncated: header says {nbytes} bytes, got {len(buf)}"
            )
        buf += chunk
    # One more byte (which also makes gzip check its CRC and length trailer).
    if _read(stream, 1, path, gz):
        raise ValueError(f"{path}: payload too long: more than the {nbytes} bytes in the header")
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dir(path: PathLike, flatten: bool = True) -> Split:
    """Load the four standard MNIST-style IDX files, each plain or ``.gz``, from one
    directory (no search); `flatten`, returns and errors as :func:`load_fashion_mnist`.
    """
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"data directory {directory} does not exist")
    files = [_find_file(directory, name) for name in _IDX_FILES]
    missing = [name for name, f in zip(_IDX_FILES, files) if f is None]
    if missing:
        raise FileNotFoundError(f"{directory} lacks {', '.join(n + '[.gz]' for n in missing)}")
    splits = []
    for images_file, labels_file in (files[:2], files[2:]):
        images, labels = read_idx(images_file), read_idx(labels_file)
        if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
            raise ValueError(
                f"{images_file}: expected uint8 images of shape (N, 28, 28), "
                f"got {images.dtype} of shape {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(
                f"{labels_file}: expected 1-D uint8 labels, got {labels.dtype} "
                f"of shape {labels.shape}"
            )
        if len(labels) != len(images):
            raise ValueError(
                f"{labels_file}: {len(labels)} labels for {len(images)} images in {images_file}"
            )
        if labels.size and labels.max() > 9:
            raise ValueError(f"{labels_file}: labels must be in 0..9, got {labels.max()}")
        x = images.astype(np.float32)
        x /= 255
        splits.append((x.reshape(len(x), 784) if flatten else x, labels.astype(np.int64)))
    return splits[0], splits[1]


def _search_dirs(name: str, path: PathLike | None) -> list[Path]:
    dirs = []
    if path is not None:
        given = Path(path).expanduser()
        if not given.is_dir():  # a typo should not silently fall back to another copy
            raise FileNotFoundError(f"{name}: the given data directory {given} does not exist")
        dirs.append(given)
    if os.environ.get("NNLIB_DATA"):
        dirs.append(Path(os.environ["NNLIB_DATA"]).expanduser() / name)
    return dirs + [Path.home() / ".nnlib" / "datasets" / name, SYSTEM_DATA_DIR / name]


def _load_named(name: str, path: PathLike | None, flatten: bool) -> Split:
    looked = []
    for directory in _search_dirs(name, path):
        missing = [f for f in _IDX_FILES if _find_file(directory, f) is None]
        if not missing:
            return load_idx_dir(directory, flatten=flatten)
        why = "missing" if len(missing) == 4 else "lacks " + ", ".join(missing)
        looked.append(f"  {directory}  ({why if directory.is_dir() else 'does not exist'})")
    raise FileNotFoundError(
        f"{name} not found: no directory holds all of {', '.join(_IDX_FILES)} "
        f"(each plain or .gz). Looked in:\n" + "\n".join(looked) + "\n"
        f"To get it, {_HOW_TO_GET[name]} and put them in one of those directories "
        f"(or set NNLIB_DATA to a directory containing {name}/)."
    )


def load_fashion_mnist(path: PathLike | None = None, flatten: bool = True) -> Split:
    """Load Fashion-MNIST (60000 train and 10000 test 28x28 grey images, 10 classes).

    Looks in `path`, then ``$NNLIB_DATA/fashion-mnist/``, ``~/.nnlib/datasets/fashion-mnist/``
    and ``/usr/share/datasets/fashion-mnist/`` (``apt-get install dataset-fashion-mnist``),
    and uses the first directory holding all four IDX files.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory to look in first; it must exist if given.
    flatten : bool, default=True
        Return images as rows of 784 pixels instead of 28x28 arrays.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        x : float32 ndarray of shape (N, 784), or (N, 28, 28) if not `flatten`, in [0, 1].
        y : int64 ndarray of shape (N,), class labels in 0..9.

    Raises
    ------
    FileNotFoundError
        If no directory holds the files (the message lists where it looked and how to
        get them) or `path` does not exist.
    ValueError
        If a file is malformed, images are not 28x28 uint8, labels are not 1-D uint8 in
        0..9, or the counts of images and labels differ.
    """
    return _load_named("fashion-mnist", path, flatten)


def load_mnist(path: PathLike | None = None, flatten: bool = True) -> Split:
    """Load MNIST handwritten digits (60000 train and 10000 test 28x28 images).

    Same parameters, search order (with ``mnist`` as the directory name), returns and
    errors as :func:`load_fashion_mnist`.
    """
    return _load_named("mnist", path, flatten)


def load_digits(test_size: float = 0.25, seed: int = 0, flatten: bool = True) -> Split:
    """Load scikit-learn's bundled 8x8 digits (1797 images, 10 classes), split stratified.

    Parameters
    ----------
    test_size : float, default=0.25
        Fraction of samples in the test split, in (0, 1).
    seed : int, default=0
        Seed of the split; the same seed gives the same split.
    flatten : bool, default=True
        Return images as rows of 64 pixels instead of 8x8 arrays.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        x : float32 ndarray of shape (N, 64), or (N, 8, 8) if not `flatten`, in [0, 1].
        y : int64 ndarray of shape (N,), class labels in 0..9.
    """
    real = isinstance(test_size, numbers.Real) and not isinstance(test_size, bool)
    if not real or not 0 < test_size < 1:
        raise ValueError(f"test_size must be a number in (0, 1), got {test_size!r}")
    # Imported here: sklearn is slow to import and only this loader needs it.
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = bunch.data.astype(np.float32)
    x /= 16  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    if not flatten:
        x = x.reshape(-1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=float(test_size), stratify=y, random_state=seed
    )
    return (x_train, y_train), (x_test, y_test)


#: Name -> loader taking ``flatten`` (and ``path`` for the IDX sets).
DATASETS: dict[str, Callable[..., Split]] = {
    "digits": load_digits,
    "fashion-mnist": load_fashion_mnist,
    "mnist": load_mnist,
}


def load(name: str, path: PathLike | None = None, flatten: bool = True) -> Split:
    """Load a dataset by name, or the four IDX files of a directory (the CLI's ``--data``).

    Parameters
    ----------
    name : str
        ``"digits"``, ``"fashion-mnist"``, ``"mnist"`` or a directory holding the four
        MNIST-style IDX files.
    path : str or os.PathLike, optional
        Directory to look in first for ``"fashion-mnist"`` and ``"mnist"``.
    flatten : bool, default=True
        Return images as rows of pixels instead of 2-D arrays.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        As returned by the chosen loader.

    Raises
    ------
    ValueError
        If `name` is neither a known dataset nor an existing directory, or if `path` is
        given for ``"digits"`` (bundled with scikit-learn).
    """
    if name in DATASETS and name != "digits":
        return DATASETS[name](path=path, flatten=flatten)
    if path is not None:
        raise ValueError(f"path is only used by the IDX datasets, got path={path!r} for {name!r}")
    if name == "digits":
        return load_digits(flatten=flatten)
    if Path(name).expanduser().is_dir():
        return load_idx_dir(name, flatten=flatten)
    if os.sep in name or name.startswith((".", "~")):
        raise FileNotFoundError(f"data directory {name} does not exist")
    raise ValueError(
        f"unknown dataset {name!r}; valid names are {sorted(DATASETS)} or an existing directory"
    )
