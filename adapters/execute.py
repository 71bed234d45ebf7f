"""Executing a plan: jobs of signals, run here or on a Dask cluster.

Contract: :func:`jobs` groups a plan's signals into independent jobs (signals
that write parts of the same fused tensor, such as GPT-2's ``c_attn`` q/k/v,
share a job; everything else is a job of its own). :func:`run_job` reads,
resizes and writes one job through any sink with ``write(name, array)``: the
writer itself in this process, or a picklable
:meth:`~botcore.adapters.io.hf.HFWriter.sink` on a worker. :func:`run_local`
runs every job here, in order; :func:`run_cluster` submits them to the
``dask.distributed`` scheduler at an address (workers need the source and the
output on a shared file system) and returns the same records: the arithmetic
is the same NumPy code on the same data, so the output is bit-identical.

Examples
--------
>>> import numpy as np
>>> from botcore.adapters.pipeline import plan
>>> cfg = dict(model_type="gpt2", n_layer=1, n_embd=4, n_head=2)
>>> p = plan({"h.0.attn.c_attn.weight": np.ones((4, 12), np.float32),
...           "h.0.attn.c_attn.bias": np.ones(12, np.float32)}, {"hidden": 2, "heads": 1}, config=cfg)
>>> [[s.name for s in job] for job in jobs(p)]
[['q', 'k', 'v'], ['q.bias', 'k.bias', 'v.bias']]
"""

from __future__ import annotations

from botcore.errors import OptionError

__all__ = ["jobs", "run_cluster", "run_job", "run_local"]


def jobs(plan) -> list[tuple]:
    """The plan's signals grouped into independent jobs, in plan order."""
    specs = list(plan.layout.specs.values())
    owner: dict = {}
    group = list(range(len(specs)))

    def root(i):
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i, spec in enumerate(specs):
        for member in spec.members:
            native = plan.layout.views[member].native
            if native in owner:
                group[root(i)] = root(owner[native])
            else:
                owner[native] = i
    out: dict = {}
    for i, spec in enumerate(specs):
        out.setdefault(root(i), []).append(spec)
    return [tuple(v) for _, v in sorted(out.items(), key=lambda kv: specs.index(kv[1][0]))]


def run_job(plan, job, sink, *, allow_nonfinite: bool = False, measure: bool = False) -> list:
    """Read, resize and write the signals of one job through ``sink``; their records."""
    from .pipeline import Emitter, resize_one

    emitter = Emitter(plan.outputs, {t.name: t.dtype for t in plan.tensors}, sink)
    records = []
    for spec in job:
        out, record = resize_one(plan, spec, allow_nonfinite=allow_nonfinite, measure=measure)
        emitter.emit(spec, out)
        records.append(record)
        del out
    if emitter.pending:
        raise OptionError(f"internal: fused tensors left incomplete: {sorted(emitter.pending)[:4]}")
    return records


def run_local(plan, writer, *, progress=None, allow_nonfinite=False, measure=False) -> list:
    """Every job in this process, in order, writing through ``writer``."""
    records, total = [], len(plan.layout.specs)
    for job in jobs(plan):
        for record in run_job(plan, job, writer, allow_nonfinite=allow_nonfinite, measure=measure):
            records.append(record)
            if progress is not None:
                progress(len(records), total, record.signal)
    return records


def _client(scheduler):
    try:
        from distributed import Client
    except ImportError:
        raise ImportError("scheduler= needs dask.distributed: pip install 'bot-scaling[dask]'") from None
    if not isinstance(scheduler, str):
        return scheduler, False  # an existing distributed.Client
    try:
        return Client(scheduler, timeout="30s", set_as_default=False), True
    except OSError as exc:
        raise OptionError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start one "
                          "(dask scheduler) or pass the address it prints, e.g. tcp://HOST:8786") from None


def run_cluster(plan, writer, scheduler, *, progress=None, allow_nonfinite=False, measure=False) -> list:
    """Every job on the workers of the Dask scheduler at ``scheduler`` (an address or a Client)."""
    if not hasattr(writer, "sink"):
        raise OptionError("scheduler= writes through the output files: pass out= with a directory "
                          "(Hugging Face safetensors) output")
    from distributed import as_completed

    client, owned = _client(scheduler)
    try:
        shared = client.scatter(plan, broadcast=True)
        sink = writer.sink()
        futures = {client.submit(run_job, shared, job, sink, allow_nonfinite=allow_nonfinite,
                                 measure=measure, pure=False): k for k, job in enumerate(jobs(plan))}
        done, total = {}, len(plan.layout.specs)
        for future in as_completed(futures, loop=client.loop):
            done[futures[future]] = future.result()
            if progress is not None:
                progress(sum(len(r) for r in done.values()), total, done[futures[future]][-1].signal)
    finally:
        if owned:
            client.close()
    for name in (t.name for t in plan.tensors):
        writer.mark_written(name)
    return [r for k in sorted(done) for r in done[k]]
