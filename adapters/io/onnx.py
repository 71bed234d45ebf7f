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

from .base import OutputPlan, TensorInfo
from .staging import Stage, output_error

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
        from ..onnx.graph import load_proto

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
            from botcore.errors import BotError

            from ..onnx.analysis import analyse

            _validate(self.path)
            try:
                self._analysis = analyse(self._model, self.path.parent)
            except BotError:
                raise
            except (ValueError, IndexError, KeyError, TypeError, AttributeError, ZeroDivisionError) as exc:
                raise UnsupportedModelError(
                    f"{str(self.path)!r} is not an ONNX graph botcore can read ({exc.__class__.__name__}: "
                    f"{exc}); expected an intact export: re-export the model") from None
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

    def check_target(self, sizes) -> None:
        """Refuse target ``sizes`` this graph cannot follow (the writer does too, before any data)."""
        self.analysis.check(sizes)

    def close(self) -> None:
        self._analysis = None

    def __getstate__(self):  # for Dask workers: the analysis is redone there, on first use
        state = dict(self.__dict__)
        state["_analysis"] = None
        return state


def _validate(path) -> None:
    """Refuse a graph that is not valid ONNX (``onnx.checker`` on the file: its data is not read)."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UnsupportedModelError(
            f"{str(path)!r} is not a valid ONNX graph ({first[:200]}); expected an intact export: "
            "re-export the model") from None


def open_reader(source, *, config=None) -> ONNXReader:
    """An :class:`ONNXReader` for the ``.onnx`` file ``source``."""
    return ONNXReader(source, config=config)


class _Data:
    """Initializer data of the output: views into an external file (by offset) or arrays in memory.

    Picklable when it writes into a file (paths and offsets only), so a Dask
    worker can write its tiles too.
    """

    def __init__(self, tensors: dict, path: Path | None):
        import threading

        self._lock = threading.Lock()
        self.path = path
        self.shapes = {n: (tuple(t.shape), _np_dtype(t.elem_type)) for n, t in tensors.items()}
        self.offsets: dict = {}
        self.arrays: dict = {}
        if path is None:
            return
        pos = 0
        for name, t in tensors.items():
            if _nbytes(t) <= _INLINE:
                continue  # small constants stay in the graph: shape inference reads them
            self.offsets[name] = pos
            pos = -(-(pos + _nbytes(t)) // _ALIGN) * _ALIGN
        with open(path, "wb") as f:
            f.truncate(pos)

    def view(self, name: str) -> np.ndarray:
        """A writable array of initializer ``name`` (a memory map of its bytes in the data file)."""
        shape, dtype = self.shapes[name]
        if name in self.offsets:
            if not shape or 0 in shape:
                return np.zeros(shape, dtype)
            return np.memmap(self.path, dtype=dtype, mode="r+", offset=self.offsets[name], shape=shape)
        with self._lock:  # Dask threads may write tiles of one tensor at the same time
            if name not in self.arrays:
                self.arrays[name] = np.empty(shape, dtype)
        return self.arrays[name]

    def __getstate__(self):
        if self.path is None:
            raise OutputError("internal: an in-memory ONNX output cannot be written by other processes")
        state = dict(self.__dict__)
        state.pop("_lock")
        return state

    def __setstate__(self, state):
        import threading

        self.__dict__.update(state)
        self._lock = threading.Lock()


def _np_dtype(elem_type: int) -> np.dtype:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def _nbytes(t) -> int:
    return int(np.prod(t.shape, dtype=np.int64)) * _np_dtype(t.elem_type).itemsize


class _Sink:
    """Puts written tensors (or row tiles of them) where the rewritten graph wants them."""

    def __init__(self, data: _Data, dests: dict):
        self.data, self.dests = data, dests

    def write(self, name: str, array: np.ndarray) -> None:
        self.write_rows(name, 0, array, whole=True)

    def write_rows(self, name: str, start: int, array: np.ndarray, *, whole: bool = False) -> None:
        dests = self.dests.get(name)
        if dests is None:
            raise OutputError(f"internal: the ONNX writer has no place for tensor {name!r}")
        stop = start + (array.shape[0] if array.ndim else 1)
        for d in dests:
            if d.row is not None:
                if start <= d.row < stop:
                    self._place(d, 0, array[d.row - start], whole=True)
                continue
            self._place(d, start, array, whole=whole)

    def _place(self, d, start: int, part: np.ndarray, *, whole: bool) -> None:
        view = self.data.view(d.out)
        part = np.asarray(part)
        rows = part.shape[0] if part.ndim else 1
        index = [slice(None)] * view.ndim
        if d.transposed:
            part = part.T
        axis = (view.ndim - 1 if d.transposed else 0) if view.ndim else None
        if d.block is not None:
            b_axis, lo, hi = d.block
            if whole:
                index[b_axis] = slice(lo, hi)
            else:
                index[b_axis] = slice(lo + start, lo + start + rows)
        elif not whole and axis is not None:
            index[axis] = slice(start, start + rows)
        target = view[tuple(index)] if view.ndim else view
        if tuple(target.shape) != tuple(part.shape):
            raise OutputError(f"internal: {d.out} gets a part of shape {tuple(part.shape)} at "
                              f"{tuple(index)}, planned {tuple(target.shape)}")
        target[...] = part.astype(view.dtype, copy=False)
        if isinstance(view, np.memmap):
            view.flush()


class ONNXWriter:
    """An ONNX graph being written (see the module docstring)."""

    def __init__(self, out, *, overwrite: bool = False, external: bool | None = None):
        self.path = Path(out)
        self.overwrite = overwrite
        self.external = external
        self.stage: Stage | None = None
        self.rewritten = None
        self._left: dict = {}

    # -- begin ----------------------------------------------------------------------
    def begin(self, plan: OutputPlan) -> None:
        from ..onnx.rewrite import build

        reader = plan.reader
        if not isinstance(reader, ONNXReader):
            raise OptionError(
                "an .onnx output is the source graph rewritten, but the pipeline's source is not an "
                "ONNX graph here (rotate= rotates a copy of the weights in memory, which ONNX "
                "graphs do not offer); pass rotate=None, or write a directory")
        self.reader = reader
        targets = {t.name: t for t in plan.tensors}
        self.rewritten = build(reader.analysis, plan.sizes, targets)
        tensors = self.rewritten.tensors
        nbytes = sum(_nbytes(t) for t in tensors.values())
        external = (reader.external or nbytes > TWO_GB) if self.external is None else self.external
        self.stage = Stage(self.path, overwrite=self.overwrite, need_bytes=nbytes)
        try:
            data_path = self.stage.path / external_name(self.path) if external else None
            self.data = _Data(tensors, data_path)
            self._sink = _Sink(self.data, self.rewritten.dests)
            for name, t in tensors.items():
                if t.kind == "array":
                    self.data.view(name)[...] = t.ref
            for name, dests in self.rewritten.dests.items():
                for d in dests:
                    self._left.setdefault(d.out, set()).add(name)
        except OSError as exc:
            self.abort()
            raise output_error(exc, self.path) from None
        except BaseException:
            self.abort()
            raise

    # -- tensors --------------------------------------------------------------------
    def write(self, name: str, array: np.ndarray) -> None:
        try:
            self._sink.write(name, array)
        except OSError as exc:
            raise output_error(exc, self.path) from None
        self.mark_written(name)

    def write_rows(self, name: str, start: int, array: np.ndarray) -> None:
        try:
            self._sink.write_rows(name, start, array)
        except OSError as exc:
            raise output_error(exc, self.path) from None

    def sink(self) -> _Sink:
        """Where row tiles go (picklable for Dask workers when the output has a data file)."""
        return self._sink

    def mark_written(self, name: str) -> None:
        """Record that ``name`` is complete (written here, or tile by tile through :meth:`sink`)."""
        for d in self.rewritten.dests.get(name, ()):
            self._left.get(d.out, set()).discard(name)

    # -- finish ----------------------------------------------------------------------
    def finish(self) -> Path:
        missing = sorted(out for out, names in self._left.items() if names)
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
                view = self.data.view(name)
                view[...] = np.asarray(index.const(t.ref))
                if isinstance(view, np.memmap):
                    view.flush()

    def _initializers(self, model) -> None:
        from onnx import TensorProto, numpy_helper

        g = model.graph
        for name, t in self.rewritten.tensors.items():
            if name not in self.data.offsets:
                tp = numpy_helper.from_array(np.asarray(self.data.view(name), order="C"), name)
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
                onnx.checker.check_model(model)
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
            onnx.checker.check_model(str(target))
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
