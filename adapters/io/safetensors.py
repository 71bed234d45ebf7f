"""The safetensors file format, read and written by offset with the standard library and NumPy.

Contract: :func:`read_header` validates a file's header before any tensor is read
(header length, JSON, dtypes, shapes, offsets inside the file: a truncated or
lying file fails with :class:`~botcore.errors.UnsupportedModelError`) and returns
one :class:`Entry` per tensor with its absolute byte offset. :func:`read_tensor`
reads one tensor, or rows of it, straight into a new NumPy array (one ``preadv``
into the array's own buffer: no intermediate copy, no whole-file map), in its
stored dtype (``ml_dtypes.bfloat16`` for BF16). :class:`ShardLayout` lays out a
file for tensors known in advance (header first, contiguous data in the given
order, as the format requires), so tensors can be written later, in any order,
by offset (:func:`write_at`); the result is byte-compatible with what
``safetensors.numpy.save_file`` reads back.

Examples
--------
>>> import numpy as np, os, tempfile
>>> from botcore.adapters.io.base import TensorInfo
>>> path = os.path.join(tempfile.mkdtemp(), "x.safetensors")
>>> layout = ShardLayout([TensorInfo("a", (2, 3), "float32"), TensorInfo("b", (4,), "float16")])
>>> layout.create(path)
>>> write_at(path, layout.offsets["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
>>> write_at(path, layout.offsets["b"], np.ones(4, np.float16))
>>> entries = read_header(path)
>>> read_tensor(path, entries["a"], rows=(1, 2))
array([[3., 4., 5.]], dtype=float32)
>>> from safetensors.numpy import load_file
>>> sorted(load_file(path))
['a', 'b']
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from botcore.errors import UnsupportedModelError

from .base import TensorInfo, itemsize, numpy_dtype

__all__ = ["DTYPES", "Entry", "ShardLayout", "read_header", "read_tensor", "write_at"]

#: safetensors dtype codes -> dtype names.
DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
          "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_CODES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 2**20  # the safetensors library's own limit


@dataclass(frozen=True)
class Entry:
    """One tensor of a safetensors file: name, shape, dtype and absolute byte offset."""

    name: str
    shape: tuple
    dtype: str
    offset: int

    @property
    def info(self) -> TensorInfo:
        return TensorInfo(self.name, self.shape, self.dtype)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * itemsize(self.dtype)


def _bad(path, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{path} is not a readable safetensors file: {why}; expected a complete file written "
        "by safetensors (re-save or re-copy it)")


def _raw_header(path) -> tuple[dict, int, int]:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _bad(path, f"it has only {size} bytes")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > _MAX_HEADER or 8 + n > size:
            raise _bad(path, f"its header claims {n} bytes but the file has {size}")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad(path, f"the header is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise _bad(path, "the header is not a JSON object")
    return header, 8 + n, size


def _entry(path, name: str, info, base: int, data: int) -> Entry:
    try:
        code, shape, (start, stop) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        ok = all(isinstance(d, int) and d >= 0 for d in shape) and isinstance(start, int) \
            and isinstance(stop, int)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise _bad(path, f"the entry for {name!r} lacks a valid dtype/shape/data_offsets")
    if code not in DTYPES:
        raise _bad(path, f"tensor {name!r} has dtype {code!r}, which no reader here knows")
    if not 0 <= start <= stop <= data:
        raise _bad(path, f"tensor {name!r} lies at bytes {start}..{stop} but only {data} data "
                         "bytes exist (the file is truncated)")
    entry = Entry(name, shape, DTYPES[code], base + start)
    if entry.nbytes != stop - start:
        raise _bad(path, f"tensor {name!r} has shape {list(shape)} ({entry.nbytes} bytes) but "
                         f"{stop - start} bytes of data")
    return entry


def read_header(path) -> dict:
    """``{name: Entry}`` of a safetensors file, validated against the file's size."""
    path = os.fspath(path)
    header, base, size = _raw_header(path)
    return {name: _entry(path, name, info, base, size - base)
            for name, info in header.items() if name != "__metadata__"}


def read_tensor(path, entry: Entry, *, rows: tuple | None = None) -> np.ndarray:
    """One tensor (or rows ``start:stop`` of its first axis) as a new NumPy array."""
    shape, offset = entry.shape, entry.offset
    if rows is not None:
        start, stop = rows
        row = math.prod(shape[1:]) * itemsize(entry.dtype)
        shape, offset = (stop - start, *shape[1:]), offset + start * row
    out = np.empty(shape, dtype=numpy_dtype(entry.dtype))
    buf = out.reshape(-1).view(np.uint8)
    with open(path, "rb") as f:
        f.seek(offset)
        got = f.readinto(buf)
    if got != buf.size:
        raise _bad(path, f"tensor {entry.name!r} ends past the end of the file")
    return out


class ShardLayout:
    """The byte layout of one safetensors file for tensors known in advance."""

    def __init__(self, tensors, *, metadata: dict | None = None):
        header, offsets, pos = {}, {}, 0
        for t in tensors:
            header[t.name] = {"dtype": _CODES[t.dtype], "shape": list(t.shape),
                              "data_offsets": [pos, pos + t.nbytes]}
            offsets[t.name] = pos
            pos += t.nbytes
        header["__metadata__"] = dict(metadata or {"format": "pt"})
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # data starts 8-byte aligned, as safetensors writes it
        self.head = struct.pack("<Q", len(text)) + text
        self.offsets = {n: len(self.head) + o for n, o in offsets.items()}
        self.nbytes = len(self.head) + pos

    def create(self, path) -> None:
        """Write the header and reserve the data (a sparse file until tensors are written)."""
        with open(path, "wb") as f:
            f.write(self.head)
            f.truncate(self.nbytes)


def write_at(path, offset: int, array: np.ndarray) -> None:
    """Write ``array``'s bytes (C order) into ``path`` at ``offset``."""
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    fd = os.open(path, os.O_WRONLY)
    try:
        done = 0
        while done < data.size:
            done += os.pwrite(fd, data[done:done + 2**30], offset + done)
    finally:
        os.close(fd)
