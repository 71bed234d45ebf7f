"""Fuzzing safetensors files: lying headers and damaged bodies, through the reader and the CLI.

Property (tests/fuzz_support.py): reading the header and every tensor either works
or raises :class:`botcore.errors.UnsupportedModelError` (nothing else, no huge
allocation from a claimed size); ``botcore resize`` on the damaged checkpoint
either succeeds and its output loads, or exits 1 with one clear line; nothing
partial, no staging folder, no hang.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import tracemalloc

import pytest
from fuzz_support import (
    FUZZ,
    FUZZ_LONG,
    Blob,
    bert_params,
    check_cli_outcome,
    no_hang,
    outcome_label,
    write_model,
)
from hypothesis import event, given
from hypothesis import strategies as st

from botcore.errors import BotError, UnsupportedModelError

safetensors_numpy = pytest.importorskip("safetensors.numpy")

from botcore.adapters.io.safetensors import read_header, read_tensor  # noqa: E402


def _valid_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.safetensors")
        safetensors_numpy.save_file(bert_params(), path)
        with open(path, "rb") as f:
            return f.read()


VALID = _valid_bytes()
(_N,) = struct.unpack("<Q", VALID[:8])
HEADER = json.loads(VALID[8:8 + _N])
BODY = VALID[8 + _N:]
NAMES = sorted(n for n in HEADER if n != "__metadata__")

dims = st.one_of(st.integers(0, 40), st.integers(-3, 2**40), st.just(2**63), st.text(max_size=2),
                 st.floats(allow_nan=True), st.none())
shapes = st.one_of(st.lists(dims, max_size=4), st.none(), st.integers(), st.text(max_size=3))
offsets = st.one_of(st.lists(st.one_of(st.integers(-5, len(BODY) + 64), st.integers(0, 2**64)),
                             min_size=0, max_size=3), st.text(max_size=3), st.none())
dtypes = st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "I8", "U8", "BOOL", "F8_E4M3", "Q4", "",
                          "f32", None, 3])
#: True about one time in ten (``st.integers`` would favour its bounds)
rarely = st.sampled_from([False] * 9 + [True])


@st.composite
def headers(draw):
    """The real header with entries mutated, added or dropped; maybe a lying length or body."""
    header = json.loads(json.dumps(HEADER))
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=1, max_size=3)):
        entry = header[name]
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "drop", "replace", "missing",
                                      "reshape", "retype", "reshape", "retype"]))
        if field == "reshape":  # the same bytes under another shape: passes the header check
            n = math.prod(entry["shape"])
            entry["shape"] = draw(st.sampled_from([[n], [1, n], [n, 1], list(reversed(entry["shape"])),
                                                   [2, n // 2] if n % 2 == 0 else [n]]))
        elif field == "retype":  # the same bytes as another dtype of that width, or half/double
            n = math.prod(entry["shape"])
            entry["dtype"], entry["shape"] = draw(st.sampled_from(
                [("I32", entry["shape"]), ("U8", [4 * n]), ("F16", [2 * n]), ("BF16", [2 * n]),
                 ("F64", [n // 2] if n % 2 == 0 else [n]), ("BOOL", [4 * n]), ("F32", entry["shape"])]))
        elif field == "dtype":
            entry["dtype"] = draw(dtypes)
        elif field == "shape":
            entry["shape"] = draw(shapes)
        elif field == "data_offsets":
            entry["data_offsets"] = draw(offsets)
        elif field == "drop":
            del header[name]
        elif field == "replace":
            header[name] = draw(st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2)))
        else:
            del entry[draw(st.sampled_from(["dtype", "shape", "data_offsets"]))]
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.one_of(st.none(), st.integers(), st.just({"format": 5})))
    text = json.dumps(header).encode()
    if draw(rarely):
        text = text[: draw(st.integers(0, len(text)))]  # not JSON any more
    n = len(text) if not draw(rarely) else draw(st.one_of(st.integers(0, 2**64 - 1),
                                                               st.integers(0, len(text) + 64)))
    body = BODY[: draw(st.integers(0, len(BODY)))] if draw(rarely) else BODY
    return Blob(struct.pack("<Q", n) + text + body)


@st.composite
def damaged(draw):
    """The valid file with bytes overwritten, cut off or inserted."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["set", "set", "set", "set", "set-header", "cut", "insert"]))
        if kind == "cut":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif data:  # "set": a byte of the tensor data (NaN, Inf, huge values); or of the header
            lo, hi = (0, min(len(data), 8 + _N)) if kind == "set-header" else (8 + _N, len(data))
            if lo < hi:
                data[draw(st.integers(lo, hi - 1))] = draw(st.integers(0, 255))
    return Blob(data)


def _check_reader(data: bytes, folder: str) -> None:
    path = os.path.join(folder, "x.safetensors")
    with open(path, "wb") as f:
        f.write(data)
    tracemalloc.start()
    try:
        with no_hang(30):
            entries = read_header(path)
            for e in entries.values():
                read_tensor(path, e)
    except UnsupportedModelError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"reading a {len(data)}-byte file allocated {peak} bytes"
    os.remove(path)


def _check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check_reader(data, tmp)
        src = write_model(os.path.join(tmp, "src"))
        with open(os.path.join(src, "model.safetensors"), "wb") as f:
            f.write(data)
        out = os.path.join(tmp, "out")
        outcome = check_cli_outcome(["resize", src, out, "--hidden", "8", "--quiet"], out, tmp)
        event(outcome_label(outcome))


@FUZZ
@given(headers())
def test_fuzz_safetensors_headers(data):
    _check(data)


@FUZZ
@given(damaged())
def test_fuzz_safetensors_bytes(data):
    _check(data)


@pytest.mark.slow
@FUZZ_LONG
@given(headers())
def test_fuzz_safetensors_headers_long(data):
    _check(data)


@pytest.mark.slow
@FUZZ_LONG
@given(damaged())
def test_fuzz_safetensors_bytes_long(data):
    _check(data)


def test_the_unmutated_file_resizes():
    """The fuzzers start from a checkpoint that works (else every refusal would be vacuous)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = write_model(os.path.join(tmp, "src"))
        out = os.path.join(tmp, "out")
        assert check_cli_outcome(["resize", src, out, "--hidden", "8", "--quiet"], out, tmp) == "ok"
        assert os.path.isdir(out)
    assert issubclass(UnsupportedModelError, BotError)
