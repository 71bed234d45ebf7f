"""ONNX graphs: resize any transformer graph by following its dimensions.

Contract: an ``.onnx`` file is a reader and a writer of the one resize pipeline
(:mod:`botcore.adapters.io.onnx`), so ``resize_model("model.onnx", target,
out="small.onnx")`` resizes it like any checkpoint: sizes are resolved once
(:func:`botcore.adapters.targets.resolve_target`), weights go through the same
per-role signal resize, and the graph is rewritten around them. This package
holds the graph side:

* :mod:`~botcore.adapters.onnx.graph` -- reading a graph without its weights
  (producers, consumers, constants, module paths, shapes, lazy data);
* :mod:`~botcore.adapters.onnx.dims` -- symbolic axis sizes
  (``heads*head_dim``, ``1/2*head_dim``) and their algebra;
* :mod:`~botcore.adapters.onnx.families` -- the family recognisers that name
  the backbone's parameters (the source of roles, not a whitelist);
* :mod:`~botcore.adapters.onnx.propagate` -- the dimension propagation that
  follows every model dimension through every operator of the graph;
* :mod:`~botcore.adapters.onnx.analysis` -- the two together, plus blocks,
  taps and per-block inputs/outputs;
* :mod:`~botcore.adapters.onnx.rewrite` -- the target graph.

The functions here are conveniences over that pipeline: :func:`resize`
(``resize_model`` with the sizes as keywords), :func:`analyse` (what the
propagation finds in a file), :func:`load_model` and :func:`save_model`
(loading with external data, saving atomically). The previous entry points
``resize_onnx_model`` and ``resolve_sizes`` are gone: use
:func:`botcore.adapters.resize_model` and its ``plan_model``.
``onnx`` is imported when a function runs, never on ``import botcore``.

Examples
--------
>>> from botcore.adapters.onnx.dims import Algebra
>>> alg = Algebra({"hidden": 64, "heads": 4, "kv_heads": 4, "head_dim": 16, "ffn": 256},
...               gqa=False, free_head_dim=False)
>>> str(alg.dim("heads", "head_dim")), alg.value(alg.dim("heads", "head_dim"))
('heads*head_dim', 64)
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["analyse", "load_model", "resize", "save_model"]


def resize(src, dst, *, layers=None, hidden=None, heads=None, kv_heads=None, head_dim=None, ffn=None,
           overwrite=False, **options):
    """Resize the ONNX graph at ``src`` and write it to ``dst``: ``resize_model`` with keyword sizes.

    Parameters
    ----------
    src, dst : str or Path
        Source and destination ``.onnx`` files (``src`` is never modified).
    layers, hidden, heads, kv_heads, head_dim, ffn : int, optional
        Target sizes; omitted ones follow :func:`botcore.adapters.targets.resolve_target`.
    overwrite : bool
        Replace an existing ``dst``.
    **options
        Passed to :func:`botcore.adapters.resize_model` (``method``, ``gain``, ``wavelet``, ...).

    Returns
    -------
    botcore.adapters.ResizeResult
    """
    from ..api import resize_model

    given = {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads,
             "head_dim": head_dim, "ffn": ffn}
    target = {k: v for k, v in given.items() if v is not None}
    return resize_model(str(src), target, out=dst, overwrite=overwrite, **options)


def analyse(path):
    """The :class:`~botcore.adapters.onnx.analysis.Analysis` of the graph at ``path`` (no weights read)."""
    from .analysis import analyse as _analyse
    from .graph import load_proto

    model, _ = load_proto(path)
    return _analyse(model, Path(path).parent)


def load_model(path):
    """Load an ONNX file with its external data, refusing locations outside its folder.

    Returns
    -------
    tuple of (onnx.ModelProto, bool)
        The model with all tensor data in memory, and whether it used external data.
    """
    from onnx.external_data_helper import load_external_data_for_model

    from .graph import load_proto

    model, external = load_proto(path)
    if external:
        load_external_data_for_model(model, str(Path(path).parent.resolve()))
    return model, external


def save_model(model, out, *, external=False, overwrite=False):
    """Write ``model`` to ``out`` atomically; external data goes to ``<out name>.data`` beside it.

    Output shapes are re-inferred (through the file path when the model is stored
    with external data, which works above 2 GB) and stale ``value_info`` is dropped.
    External data is forced when the tensors exceed 2 GB. The graph and its data
    file appear together (:class:`~botcore.adapters.io.staging.Stage`).
    """
    import onnx

    from ..io.onnx import TWO_GB, external_name
    from ..io.staging import Stage

    data = sum(len(t.raw_data) for t in model.graph.initializer)
    external = external or data > TWO_GB
    with Stage(out, overwrite=overwrite, need_bytes=data) as stage:
        tmp = stage.target
        if external:
            onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=external_name(out), size_threshold=1024)
            inferred = stage.path / ("inferred-" + Path(out).name)
            onnx.shape_inference.infer_shapes_path(str(tmp), str(inferred))
            small = onnx.load(str(inferred), load_external_data=False)
            os.unlink(inferred)
            del small.graph.value_info[:]
            onnx.save_model(small, str(tmp))
        else:
            inferred = onnx.shape_inference.infer_shapes(model)
            del inferred.graph.value_info[:]
            onnx.save_model(inferred, str(tmp))
        return stage.commit()
