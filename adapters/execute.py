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

import math
import re

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


def _stack_bytes(spec) -> int:
    return 4 * math.prod(spec.shape)


def is_tiled(plan, job, chunk_bytes) -> bool:
    """A job goes through the tiled path when a signal exceeds ``chunk_bytes`` and all can."""
    from .tiles import tileable

    return chunk_bytes is not None and any(_stack_bytes(s) > chunk_bytes for s in job) and \
        all(tileable(plan, s) for s in job)


def _threads(*tasks):
    import dask

    return dask.compute(*tasks, scheduler="threads")


def run_tiled(plan, spec, sink, *, compute=_threads, allow_nonfinite=False, measure=False,
              block_bytes=2**27):
    """One signal through Dask, block by block (:mod:`botcore.adapters.tiles`); its record."""
    import numpy as np

    from .methods import resize_signal
    from .pipeline import Record, head_factor
    from .tiles import source_array, store_tasks

    shape = tuple(plan.shapes[spec.name])
    x = source_array(plan, spec, block_bytes=block_bytes, allow_nonfinite=allow_nonfinite)
    zeroed = plan.adapter.zeroes_in_new_layers(spec.name, spec.rule, plan.shapes)
    y, treatment = resize_signal(x, spec.roles, shape, method=plan.method, wavelet=plan.wavelet,
                                 mode=plan.mode, gain=plan.gain, residual=zeroed,
                                 name=spec.name, **plan.options)
    tasks = store_tasks(plan, spec, y, sink, block_bytes=block_bytes, factor=head_factor(plan, spec))
    energy = measure and plan.method == "bot" and plan.gain != "std"
    extra = [(x.astype(np.float64) ** 2).sum()] if energy else []
    results = compute(*tasks, *extra)
    kept = None
    if energy:
        kept = _kept(plan, spec, shape, sum(results[:len(tasks)]), float(results[-1]))
    return Record(spec.name, spec.members, spec.roles, spec.shape, shape,
                  treatment + f" (tiled: {len(tasks)} output blocks)", kept)


def _kept(plan, spec, shape, out_energy: float, in_energy: float) -> float:
    import botcore
    from botcore.resize import gain_factor

    if in_energy == 0:
        return 1.0
    p = botcore.plan(spec.shape, shape, wavelet=plan.wavelet, mode=plan.mode)
    scale = gain_factor(p, spec.roles, "paper") / gain_factor(p, spec.roles, plan.gain)
    return out_energy * scale * scale / in_energy


def block_bytes(chunk_bytes: int) -> int:
    """The size of one Dask block for a tiling threshold of ``chunk_bytes``.

    >>> block_bytes(2**30) // 2**20, block_bytes(2048)
    (128, 4096)
    """
    return max(4096, min(2**27, chunk_bytes // 8))


def run_job(plan, job, sink, *, allow_nonfinite: bool = False, measure: bool = False,
            chunk_bytes=None, compute=_threads) -> list:
    """Read, resize and write the signals of one job through ``sink``; their records."""
    from .pipeline import Emitter, resize_one

    if is_tiled(plan, job, chunk_bytes):
        return [run_tiled(plan, spec, sink, compute=compute, allow_nonfinite=allow_nonfinite,
                          measure=measure, block_bytes=block_bytes(chunk_bytes)) for spec in job]
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


def _natives(plan, job) -> set:
    return {o.name for o in plan.outputs.values()
            if any(p.split("#", 1)[0] == o.name for s in job for p in
                   s.names(plan.shapes[s.name][0] if s.layered else 1)) or o.alias_of is not None}


def run_local(plan, writer, *, progress=None, allow_nonfinite=False, measure=False,
              chunk_bytes=None) -> list:
    """Every job in this process, in order, writing through ``writer``."""
    records, total = [], len(plan.layout.specs)
    for job in jobs(plan):
        tiled = is_tiled(plan, job, chunk_bytes)
        sink = writer.sink() if tiled else writer
        for record in run_job(plan, job, sink, allow_nonfinite=allow_nonfinite, measure=measure,
                              chunk_bytes=chunk_bytes):
            records.append(record)
            if progress is not None:
                progress(len(records), total, record.signal)
        if tiled:
            for name in _natives(plan, job):
                writer.mark_written(name)
    return records


_ADDRESS = re.compile(r"(tcp|tls|inproc|ucx|ws|wss)://[^/\s]+:\d+/?")


def check_scheduler(scheduler) -> None:
    """Refuse a scheduler address that cannot be one, before any work."""
    if scheduler is None or not isinstance(scheduler, str):
        return
    if not _ADDRESS.fullmatch(scheduler.strip()):
        raise OptionError(f"scheduler={scheduler!r} is not a Dask scheduler address; expected "
                          "tcp://HOST:PORT (what `dask scheduler` prints, e.g. tcp://10.0.0.5:8786)")


def _client(scheduler):
    try:
        from distributed import Client
    except ImportError:
        raise ImportError("scheduler= needs dask.distributed: pip install 'bot-scaling[dask]'") from None
    if not isinstance(scheduler, str):
        return scheduler, False  # an existing distributed.Client
    check_scheduler(scheduler)
    try:
        _probe(scheduler)  # a refused port fails at once, not after the client's 30 s of retries
        return Client(scheduler, timeout="30s", set_as_default=False), True
    except (OSError, ValueError, TimeoutError) as exc:
        raise OptionError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start one "
                          "(dask scheduler) or pass the address it prints, e.g. tcp://HOST:8786") from None


def _probe(scheduler: str) -> None:
    """Open and close one TCP connection to a ``tcp://`` scheduler (raises OSError if refused)."""
    import socket

    found = re.fullmatch(r"tcp://\[?([^\]/\s]+?)\]?:(\d+)/?", scheduler.strip())
    if found is not None:
        socket.create_connection((found[1], int(found[2])), timeout=10).close()


def run_cluster(plan, writer, scheduler, *, progress=None, allow_nonfinite=False, measure=False,
                chunk_bytes=None) -> list:
    """Every job on the workers of the Dask scheduler at ``scheduler`` (an address or a Client).

    Jobs that fit in memory run as one task each; tiled signals run as their block graphs,
    scheduled by the cluster. Either way workers read the source and write the output
    files by offset (a shared file system).
    """
    if not hasattr(writer, "sink"):
        raise OptionError("scheduler= writes through the output files: pass out= with a directory "
                          "(Hugging Face safetensors) output")
    from distributed import as_completed

    client, owned = _client(scheduler)
    try:
        shared, sink = client.scatter(plan, broadcast=True), writer.sink()
        work = list(enumerate(jobs(plan)))
        futures = {client.submit(run_job, shared, job, sink, allow_nonfinite=allow_nonfinite,
                                 measure=measure, pure=False): k
                   for k, job in work if not is_tiled(plan, job, chunk_bytes)}
        done, total = {}, len(plan.layout.specs)

        def tell(k):
            if progress is not None:
                progress(sum(len(r) for r in done.values()), total, done[k][-1].signal)

        for k, job in work:
            if k not in futures.values():
                done[k] = run_job(plan, job, sink, allow_nonfinite=allow_nonfinite, measure=measure,
                                  chunk_bytes=chunk_bytes,
                                  compute=lambda *t: client.gather(client.compute(list(t))))
                tell(k)
        for future in as_completed(futures, loop=client.loop):
            done[futures[future]] = future.result()
            tell(futures[future])
    finally:
        if owned:
            client.close()
    for name in (t.name for t in plan.tensors):
        writer.mark_written(name)
    return [r for k in sorted(done) for r in done[k]]
