"""In-memory checkpoints: a mapping of arrays in, a dict of arrays out.

Contract: :class:`MappingReader` presents a mapping of parameter names to numpy,
torch, tensorflow or jax arrays (with ``config=``) as a reader; it never copies
the mapping or modifies its arrays, and records each array's framework, dtype
and device (:class:`~botcore.adapters._arrays.Like`). :class:`MemoryWriter`
collects the written tensors and returns them converted back to the framework,
dtype and device of the source parameter they correspond to (a new layer takes
layer 0's); tensors written as the same array (ties) come back as the same object.

Examples
--------
>>> import numpy as np
>>> r = MappingReader({"w": np.ones((3, 2), np.float32)}, config={"model_type": "bert"})
>>> r.tensors()["w"], r.read_rows("w", 1, 3).shape
(TensorInfo(name='w', shape=(3, 2), dtype='float32', rule=None), (2, 2))
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from botcore.errors import OptionError

from .._arrays import Like, framework_of, from_numpy
from .base import OutputPlan, TensorInfo, numpy_dtype

__all__ = ["MappingReader", "MemoryWriter", "open_reader"]


def _dtype_name(x) -> str:
    name = getattr(x.dtype, "name", None) or str(x.dtype)
    return name.replace("torch.", "")


def _native(x) -> np.ndarray:
    """``x`` as a NumPy array in its own dtype (bfloat16 as ml_dtypes), sharing memory if it can."""
    fw = framework_of(x)
    if fw == "numpy":
        return x
    if fw == "torch":
        from .hf import _tensor_to_numpy

        return _tensor_to_numpy(x)
    if _dtype_name(x) == "bfloat16":
        return np.asarray(x).astype(numpy_dtype("bfloat16"))
    return np.asarray(x)


class MappingReader:
    """A mapping of arrays opened as a reader (see the module docstring)."""

    format = "mapping"
    path = None

    def __init__(self, params: Mapping, *, config=None):
        if config is None:
            raise OptionError(
                "source is an in-memory mapping, so config= is required: pass a dict of the "
                "model's Hugging Face config keys (e.g. model.config.to_dict())")
        from .hf import _plain_config

        self.params = params
        self.config = _plain_config(config)
        self.meta: dict = {}
        self.likes = {}
        for name, x in params.items():
            self.likes[name] = Like(framework_of(x), _dtype_name(x), getattr(x, "device", None),
                                    x.dtype)

    def tensors(self) -> dict:
        return {n: TensorInfo(n, tuple(int(d) for d in x.shape), self.likes[n].dtype)
                for n, x in self.params.items()}

    def read(self, name: str) -> np.ndarray:
        return np.array(_native(self.params[name]), copy=True)

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        return np.array(_native(self.params[name])[start:stop], copy=True)

    def copy_extras(self, dest: Path) -> list[str]:
        return []

    def close(self) -> None:
        pass


class MemoryWriter:
    """Collects written tensors and converts them back to the source's frameworks."""

    path = None

    def __init__(self, likes: Mapping | None = None):
        self.likes = dict(likes or {})
        self.params: dict = {}
        self._by_id: dict = {}

    def begin(self, plan: OutputPlan) -> None:
        self.plan = plan

    def _like(self, name: str) -> Like | None:
        like = self.likes.get(name) or self.likes.get(re.sub(r"(?<=\.)\d+(?=\.)", "0", name))
        return like or next(iter(self.likes.values()), None)

    def write(self, name: str, array: np.ndarray) -> None:
        like = self._like(name)
        key = (id(array), like)
        if key not in self._by_id:
            self._by_id[key] = (array, array if like is None or like.framework == "numpy"
                                and like.native_dtype == array.dtype else from_numpy(array, like))
        self.params[name] = self._by_id[key][1]

    def write_rows(self, name: str, start: int, array: np.ndarray) -> None:
        raise OptionError("internal: tiled writes need an output file; pass out=")

    def finish(self):
        return None

    def abort(self) -> None:
        self.params.clear()


def open_reader(source, *, config=None) -> MappingReader:
    """A :class:`MappingReader` for a mapping of arrays."""
    return MappingReader(source, config=config)
