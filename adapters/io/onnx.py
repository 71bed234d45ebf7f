"""ONNX graphs as a reader and a writer of the one resize pipeline (format ``"onnx"``).

Contract. :class:`ONNXReader` opens an ``.onnx`` file without loading its
external data, analyses it (:func:`botcore.adapters.onnx.analysis.analyse`:
the family recogniser names the backbone, the dimension propagation follows
its sizes through the rest of the graph) and presents

* the backbone's parameters under their Hugging Face names and layouts
  (``[out, in]`` Linear weights, GPT-2 ``Conv1D`` ``[in, out]``; fused
  ``Attention`` weights of ONNX Runtime's optimizer as separate query, key and
  value tensors), with a Hugging Face style ``config`` read off the graph;
* every other floating-point initializer that carries a model dimension as
  ``onnx:<name>``, with its treatment in ``TensorInfo.rule`` (e.g.
  ``("_,hidden,_,_", "fixed,in,fixed,fixed")`` for a convolution reading the
  hidden stream); tensors inside blocks are stacked along depth
  (``("layers,hidden", "depth,out")``) so that a depth change resizes them with
  the blocks. A tensor that carries no model dimension is not listed: the
  writer copies it.

Tensors are read one at a time, straight from the file (external data through
a memory map, by offset); the source is never written to, and external-data
locations outside the model's folder are refused.

:class:`ONNXWriter` is told the plan first (``begin``): it refuses a target the
graph cannot follow (:meth:`~botcore.adapters.onnx.analysis.Analysis.check`),
builds the target graph (:func:`botcore.adapters.onnx.rewrite.build`: size
constants, attributes, attention scales, rotary tables, depth) and lays out its
initializers; every written tensor then goes to its initializer(s) (transposed
back, as a column block of a fused tensor, or split into per-block tensors),
straight into the external data file at its offset when the output has one (a
source with external data, or an output over 2 GB), else into memory;
``finish`` copies the unchanged initializers, saves the graph, infers its
shapes (through the file path for external data, which works above 2 GB),
checks them strictly and makes the graph and its data file appear together
(:class:`~botcore.adapters.io.staging.Stage`).

Examples
--------
>>> external_name("model.onnx")
'model.onnx.data'
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from botcore.errors import OptionError, OutputError, UnsupportedModelError

from ..io.base import OutputPlan, TensorInfo
from ..io.staging import Stage, output_error

__all__ = ["ONNXReader", "ONNXWriter", "external_name", "open_reader", "open_writer"]

#: Outputs whose initializers exceed this many bytes are written with external data.
TWO_GB = 2**31 - 2**20
_ALIGN = 64
_INLINE = 1024  # bytes: tensors up to this size stay inside the graph file (as onnx.save does)


def external_name(out) -> str:
    """The external-data file name of an output graph: ``<name>.data`` beside it."""
    return Path(out).name + ".data"


class ONNXReader:
    """An ONNX graph opened for lazy reading (see the module docstring)."""

    format = "onnx"

    def __init__(self, path, *, config=None):
        from ..onnx_next.graph import load_proto

        self.path = Path(path)
        self.folder = None  # no Hugging Face folder to copy extras from
        self.meta: dict = {}
        self._model, self.external = load_proto(self.path)
        self._override = dict(config.to_dict() if hasattr(config, "to_dict") else config or {})
        self._analysis = None

    @property
    def analysis(self):
        """The graph's :class:`~botcore.adapters.onnx.analysis.Analysis` (computed on first use)."""
        if self._analysis is None:
            from ..onnx_next.analysis import analyse

            self._analysis = analyse(self._model, self.path.parent)
        return self._analysis

    @property
    def config(self) -> dict:
        cfg = self.analysis.config
        cfg.update(self._override)
        return cfg

    def tensors(self) -> dict[str, TensorInfo]:
        return self.analysis.tensors()

    def _param(self, name, rows=None) -> np.ndarray:
        a = self.analysis
        p = a.params[name]
        data = a.index.const(p.source)
        if p.block is not None:
            axis, lo, hi = p.block
            data = data[:, lo:hi] if axis == 1 else data[lo:hi]
        if p.transposed:
            data = data.T
        if rows is not None:
            data = data[rows[0]:rows[1]]
        return np.array(data, copy=True)

    def _foreign(self, name, rows=None) -> np.ndarray:
        f = self.analysis.foreign[name]
        index = self.analysis.index
        if not f.stacked:
            data = index.const(f.members[0])
            return np.array(data if rows is None else data[rows[0]:rows[1]], copy=True)
        members = f.members if rows is None else f.members[rows[0]:rows[1]]
        return np.stack([np.asarray(index.const(m)) for m in members]).copy()

    def read(self, name: str) -> np.ndarray:
        return self._param(name) if name in self.analysis.params else self._foreign(name)

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        if name in self.analysis.params:
            return self._param(name, (start, stop))
        return self._foreign(name, (start, stop))

    def copy_extras(self, dest: Path) -> list[str]:
        return []

    def close(self) -> None:
        self._analysis = None


def open_reader(source, *, config=None) -> ONNXReader:
    """An :class:`ONNXReader` for the ``.onnx`` file ``source``."""
    return ONNXReader(source, config=config)


class _Data:
    """Initializer data of the output: an external file written by offset, or arrays in memory."""

    def __init__(self, rewritten, path: Path | None):
        self.path = path
        self.offsets: dict = {}
        self.arrays: dict = {}
        if path is None:
            return
        pos = 0
        for name, t in rewritten.tensors.items():
            if _nbytes(t) <= _INLINE:
                continue  # small constants stay in the graph: shape inference reads them
            self.offsets[name] = pos
            pos += _nbytes(t)
            pos = -(-pos // _ALIGN) * _ALIGN
        with open(path, "wb") as f:
            f.truncate(pos)

    def put(self, name: str, array: np.ndarray) -> None:
        if name not in self.offsets:
            self.arrays[name] = array
            return
        data = np.ascontiguousarray(array)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        fd = os.open(self.path, os.O_WRONLY)
        try:
            view, pos = memoryview(data.reshape(-1).view(np.uint8)), self.offsets[name]
            while view:
                n = os.pwrite(fd, view[: 2**30], pos)
                view, pos = view[n:], pos + n
        finally:
            os.close(fd)


def _np_dtype(elem_type: int) -> np.dtype:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def _nbytes(t) -> int:
    return int(np.prod(t.shape, dtype=np.int64)) * _np_dtype(t.elem_type).itemsize


class ONNXWriter:
    """An ONNX graph being written (see the module docstring)."""

    def __init__(self, out, *, overwrite: bool = False, external: bool | None = None):
        self.path = Path(out)
        self.overwrite = overwrite
        self.external = external
        self.stage: Stage | None = None
        self.rewritten = None
        self._pending: dict = {}
        self._done: set = set()

    # -- begin ----------------------------------------------------------------------
    def begin(self, plan: OutputPlan) -> None:
        from ..onnx_next.rewrite import build

        reader = plan.reader
        if not isinstance(reader, ONNXReader):
            raise OptionError(
                "an .onnx output is the source graph rewritten, but the pipeline's source is not an "
                "ONNX graph here (rotate= rotates a copy of the weights in memory, which ONNX "
                "graphs do not offer); pass rotate=None, or write a directory")
        self.reader = reader
        targets = {t.name: t for t in plan.tensors}
        self.rewritten = build(reader.analysis, plan.sizes, targets)
        nbytes = sum(_nbytes(t) for t in self.rewritten.tensors.values())
        external = reader.external or nbytes > TWO_GB if self.external is None else self.external
        self.stage = Stage(self.path, overwrite=self.overwrite, need_bytes=nbytes)
        try:
            data_path = self.stage.path / external_name(self.path) if external else None
            self.data = _Data(self.rewritten, data_path)
            for name, t in self.rewritten.tensors.items():
                if t.kind == "array":
                    self.data.put(name, t.ref)
        except OSError as exc:
            self.abort()
            raise output_error(exc, self.path) from None
        except BaseException:
            self.abort()
            raise

    # -- tensors --------------------------------------------------------------------
    def write(self, name: str, array: np.ndarray) -> None:
        dests = self.rewritten.dests.get(name)
        if dests is None:
            raise OutputError(f"internal: the ONNX writer has no place for tensor {name!r}")
        try:
            for d in dests:
                part = array[d.row] if d.row is not None else array
                part = part.T if d.transposed else part
                if d.block is None:
                    self.data.put(d.out, self._cast(d.out, part))
                    self._done.add(d.out)
                else:
                    self._block(d, part)
        except OSError as exc:
            raise output_error(exc, self.path) from None

    def _cast(self, out: str, part: np.ndarray) -> np.ndarray:
        t = self.rewritten.tensors[out]
        if tuple(part.shape) != tuple(t.shape):
            raise OutputError(f"internal: {out} written with shape {tuple(part.shape)}, planned {t.shape}")
        return np.ascontiguousarray(part.astype(_np_dtype(t.elem_type), copy=False))

    def _block(self, d, part: np.ndarray) -> None:
        t = self.rewritten.tensors[d.out]
        buf, filled = self._pending.setdefault(d.out, (np.empty(t.shape, _np_dtype(t.elem_type)), set()))
        axis, lo, hi = d.block
        index = [slice(None)] * len(t.shape)
        index[axis] = slice(lo, hi)
        buf[tuple(index)] = part
        filled.add((lo, hi))
        if sum(h - lo_ for lo_, h in filled) == t.shape[axis]:
            self.data.put(d.out, buf)
            self._done.add(d.out)
            del self._pending[d.out]

    def write_rows(self, name: str, start: int, array: np.ndarray) -> None:
        raise OutputError("internal: the ONNX writer takes whole tensors; pass no chunk_bytes")

    # -- finish ----------------------------------------------------------------------
    def finish(self) -> Path:
        written = {n for n, t in self.rewritten.tensors.items() if t.kind == "written"}
        missing = sorted(written - self._done)
        if missing:
            raise OutputError(f"internal: ONNX initializers never written: {missing[:5]}")
        try:
            self._copies()
            self._save()
        except OSError as exc:
            raise output_error(exc, self.path) from None
        return self.stage.commit()

    def _copies(self) -> None:
        index = self.reader.analysis.index
        for name, t in self.rewritten.tensors.items():
            if t.kind == "copy":
                self.data.put(name, np.asarray(index.const(t.ref)))

    def _initializers(self, model) -> None:
        from onnx import TensorProto, numpy_helper

        g = model.graph
        for name, t in self.rewritten.tensors.items():
            if name not in self.data.offsets:
                arr = np.asarray(self.data.arrays[name]).astype(_np_dtype(t.elem_type), copy=False)
                tp = numpy_helper.from_array(arr.reshape(t.shape), name)
                if tp.data_type != t.elem_type:  # bfloat16 and friends come back as their bits
                    tp.data_type = t.elem_type
                g.initializer.append(tp)
                continue
            tp = g.initializer.add()
            tp.name, tp.data_type = name, t.elem_type
            tp.dims.extend(t.shape)
            tp.data_location = TensorProto.EXTERNAL
            for key, value in (("location", external_name(self.path)), ("offset", str(self.data.offsets[name])),
                               ("length", str(_nbytes(t)))):
                entry = tp.external_data.add()
                entry.key, entry.value = key, value

    def _save(self) -> None:
        import onnx

        model = self.rewritten.model
        self._initializers(model)
        target = self.stage.target
        try:
            if self.data.path is None:
                model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
                del model.graph.value_info[:]
                onnx.save_model(model, str(target))
                return
            onnx.save_model(model, str(target))
            inferred = self.stage.path / ("inferred-" + self.path.name)
            onnx.shape_inference.infer_shapes_path(str(target), str(inferred), strict_mode=True,
                                                   data_prop=True)
            small = onnx.load(str(inferred), load_external_data=False)
            os.unlink(inferred)
            del small.graph.value_info[:]
            onnx.save_model(small, str(target))
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
            raise UnsupportedModelError(
                f"the resized graph does not pass ONNX shape inference ({str(exc).splitlines()[0]}); "
                "nothing was written. This graph holds a size the rewrite did not follow: keep the "
                "sizes it names, and report the graph") from None

    def abort(self) -> None:
        if self.stage is not None:
            self.stage.abort()


def open_writer(out, *, overwrite: bool = False, external: bool | None = None, **options) -> ONNXWriter:
    """An :class:`ONNXWriter` for the ``.onnx`` file ``out``; ``external`` forces or forbids a data file."""
    if options:
        raise OptionError(f"options {sorted(options)} do not apply to an ONNX output; leave them out")
    return ONNXWriter(out, overwrite=overwrite, external=external)
