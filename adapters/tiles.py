"""Signals larger than memory: read tile by tile, resized as a Dask array, written tile by tile.

Contract: for a signal whose float32 stack is larger than ``chunk_bytes``,
:func:`source_array` builds a lazy ``dask.array`` of its canonical stack whose
blocks are read from the checkpoint on demand (one layer, a range of rows of its
native tensor: :meth:`~botcore.adapters.io.base.Reader.read_rows`), checked for
non-finite values and widened to the compute dtype; :func:`botcore.resize` on it
returns a lazy array (the Dask backend, :mod:`botcore.backends.dask`);
:func:`store_tasks` turns the result into one task per output tile that casts
it to the output dtype and writes it by offset (``sink.write_rows``) into its
native tensor — straight into its row range when the tensor is fused from
several signals. Nothing ever holds the whole signal: memory is a few blocks.
The result is bit-identical to the in-memory path (the same NumPy kernels run
on every block). Signals stored transposed (GPT-2 ``Conv1D``) and methods that
edit the stack in place (``net2net`` depth growth) stay in memory.

Examples
--------
>>> rows_per_block(1000, 64, 4, 2**20)
1000
>>> rows_per_block(10000, 4096, 4, 2**24, multiple=64)
1024
"""

from __future__ import annotations

import math

import numpy as np

from botcore.errors import NonFiniteError

from ._arrays import sumsq
from .io.base import numpy_dtype

__all__ = ["rows_per_block", "source_array", "store_tasks", "tileable"]


def rows_per_block(rows: int, row_elems: int, itemsize: int, block_bytes: int, *,
                   multiple: int = 1) -> int:
    """Rows per block so that a block holds about ``block_bytes`` (a multiple of ``multiple``)."""
    per = max(1, block_bytes // max(1, row_elems * itemsize))
    per = max(multiple, per - per % multiple)
    return min(rows, per)


def tileable(plan, spec) -> bool:
    """Whether ``spec`` can go through the tiled path (see the module docstring)."""
    views = [plan.layout.views[m] for m in spec.members]
    if any(v.transpose for v in views) or plan.method == "net2net" or plan.options \
            or plan.matching:
        return False
    if plan.adapter.offset_of(spec.name):  # Gemma's 1 + w norms: small vectors, kept in memory
        return False
    return all(plan.outputs[n.split("#", 1)[0]].transpose is False
               for n in spec.names(plan.shapes[spec.name][0] if spec.layered else 1))


def _group(spec) -> int:
    """How many canonical axes (after depth) the native rows split into."""
    return len(spec.rule.native_dims[0])


def _read_block(reader, view, start: int, stop: int, shape: tuple, dtype, name: str, allow: bool):
    rows = reader.read_rows(view.native, view.rows[0] + start, view.rows[0] + stop) \
        if view.rows is not None else reader.read_rows(view.native, start, stop)
    block = np.empty(shape, dtype)
    block[...] = rows.reshape(shape)
    finite = int(np.count_nonzero(np.isfinite(block)))
    if finite != block.size and not allow:
        raise NonFiniteError(
            f"the weights hold NaN or infinite values: {name!r} ({block.size - finite} in rows "
            f"{start}..{stop}); a resize would spread them into the output; repair the checkpoint, "
            "or pass allow_nonfinite=True (--allow-nonfinite) to keep them")
    return block


def source_array(plan, spec, *, block_bytes: int, allow_nonfinite: bool = False):
    """The canonical stack of ``spec`` as a lazy Dask array read from ``plan.reader``."""
    import dask
    import dask.array as da

    from .pipeline import stack_dtype

    dtype = stack_dtype(plan.layout, spec)
    layer = spec.shape[1:] if spec.layered else spec.shape
    g = _group(spec)
    per_row = math.prod(layer[1:g])  # native rows per step of the first canonical axis
    step = rows_per_block(layer[0], math.prod(layer[1:]), dtype.itemsize, block_bytes)
    layers = []
    for member in spec.members:
        view = plan.layout.views[member]
        blocks = []
        for a in range(0, layer[0], step):
            b = min(layer[0], a + step)
            shape = (b - a, *layer[1:])
            task = dask.delayed(_read_block, pure=True)(plan.reader, view, a * per_row, b * per_row,
                                                        shape, dtype, view.native, allow_nonfinite)
            blocks.append(da.from_delayed(task, shape=shape, dtype=dtype))
        layers.append(da.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0])
    return da.stack(layers) if spec.layered else layers[0]


def _write_block(sink, block, targets, dtype, factor):
    """Cast one output tile and write it into every native row range it belongs to.

    Returns the tile's sum of squares before any head-norm ``factor`` (for the energy kept).
    """
    energy = sumsq(block)
    if factor != 1.0:
        block = block * block.dtype.type(factor)
    out = np.ascontiguousarray(block).astype(dtype, copy=False)
    for name, start, shape in targets:
        sink.write_rows(name, start, out.reshape(shape))
    return energy


def _offsets(plan) -> dict:
    """Row offset of every virtual part inside its native tensor (0 for unfused tensors)."""
    rows = {}
    for spec in plan.layout.specs.values():
        shape = plan.shapes[spec.name]
        n = spec.native_shape(shape)[0] if spec.native_shape(shape) else 1
        rows.update(dict.fromkeys(spec.names(shape[0] if spec.layered else 1), n))
    offsets = {}
    for out in plan.outputs.values():
        start = 0
        for part in out.parts:
            offsets[part] = start
            start += rows.get(part, 0)
    return offsets


def store_tasks(plan, spec, y, sink, *, block_bytes: int, factor: float = 1.0) -> list:
    """One Delayed per output tile of ``y`` (the resized canonical stack) writing it by offset."""
    import dask

    shape = tuple(y.shape)
    layer = shape[1:] if spec.layered else shape
    g = _group(spec)
    per_row = math.prod(layer[1:g])
    native = spec.native_shape(shape)
    step = rows_per_block(layer[0], math.prod(layer[1:]), y.dtype.itemsize, block_bytes)
    depth = (1,) if spec.layered else ()
    y = y.rechunk(depth + (step,) + tuple(-1 for _ in layer[1:]))
    blocks = y.to_delayed()
    names = spec.names(shape[0] if spec.layered else 1)
    offsets = _offsets(plan)
    aliases = {}
    for o in plan.outputs.values():
        if o.alias_of is not None:
            aliases.setdefault(o.alias_of, []).append(o.name)
    dtypes = {t.name: t.dtype for t in plan.tensors}
    tasks = []
    for index in np.ndindex(*blocks.shape):
        k, j = (index[0], index[1]) if spec.layered else (0, index[0])
        virtual = names[k]
        base = virtual.split("#", 1)[0]
        a, b = j * step, min(layer[0], (j + 1) * step)
        rows = (b - a) * per_row
        start = offsets.get(virtual, 0) + a * per_row
        targets = [(t, start, (rows, *native[1:])) for t in [base, *aliases.get(base, [])]]
        tasks.append(dask.delayed(_write_block, pure=False)(sink, blocks[index], targets,
                                                           numpy_dtype(dtypes[base]), factor))
    return tasks
