"""Reads the repository's MNIST IDX files (raw or gzipped) into numpy arrays, pixels / 255."""
import gzip
import os
import struct

import numpy as np

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "mnist")


def _read(name):
    path = os.path.join(DATA, name + ".gz")
    opener = gzip.open if os.path.exists(path) else open
    with opener(path if os.path.exists(path) else os.path.join(DATA, name), "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load():
    """(x_train, y_train, x_test, y_test): float32 features in [0, 1], int64 labels."""
    xs = [(_read(f"{s}-images-idx3-ubyte").reshape(-1, 784) / 255.0).astype(np.float32) for s in ("train", "t10k")]
    ys = [_read(f"{s}-labels-idx1-ubyte").astype(np.int64) for s in ("train", "t10k")]
    return xs[0], ys[0], xs[1], ys[1]
