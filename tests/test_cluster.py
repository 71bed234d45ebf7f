"""A real Dask cluster on 127.0.0.1: a scheduler and two worker processes started by the test.

``resize_model(..., scheduler=ADDRESS)`` (and ``botcore resize --scheduler``) runs the
per-signal jobs on the workers and writes the same bytes as a run in one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from botcore.adapters import resize_model

distributed = pytest.importorskip("distributed")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _start(args, log):
    return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` + two ``dask worker`` processes; yields the scheduler address."""
    tmp = tmp_path_factory.mktemp("cluster")
    info = tmp / "scheduler.json"
    log = open(tmp / "cluster.log", "w")
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(info)], log)]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        for _ in range(2):
            procs.append(_start(["worker", address, "--nthreads", "1", "--nworkers", "1",
                                 "--no-dashboard", "--memory-limit", "0"], log))
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=90)
            assert len(client.scheduler_info()["workers"]) == 2
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".safetensors", ".json")}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_cluster_output_is_bit_identical_to_one_process(cluster, family, tmp_path):
    torch.manual_seed(0)
    if family == "llama":
        cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2)
        model, target = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16), {"layers": 2, "hidden": 16}
    else:  # fused, transposed c_attn: q/k/v share one job
        cfg = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=3, n_head=4, n_positions=16)
        model, target = transformers.GPT2LMHeadModel(cfg), {"layers": 2, "hidden": 16, "heads": 2}
    model.save_pretrained(tmp_path / "src", max_shard_size="20KB")
    here = resize_model(tmp_path / "src", target, out=tmp_path / "here", max_shard_size="10KB")
    there = resize_model(tmp_path / "src", target, out=tmp_path / "there", max_shard_size="10KB",
                         scheduler=cluster)
    assert [r.signal for r in there.report] == [r.signal for r in here.report]
    a, b = _files(here.out), _files(there.out)
    assert set(a) == set(b) and len([n for n in a if n.endswith(".safetensors")]) > 1
    for name in a:
        assert a[name] == b[name], name
    assert sorted(os.listdir(tmp_path)) == ["here", "src", "there"]


def test_cli_scheduler_flag(cluster, tmp_path):
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "src")
    proc = subprocess.run([sys.executable, "-m", "botcore", "resize", str(tmp_path / "src"),
                           str(tmp_path / "out"), "--hidden", "16", "--scheduler", cluster],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out")
    assert loaded.config.hidden_size == 16


def test_unreachable_scheduler_is_one_clear_error(tmp_path):
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "src")
    from botcore import OptionError

    with pytest.raises(OptionError, match="cannot reach the Dask scheduler"):
        resize_model(tmp_path / "src", {"hidden": 16}, out=tmp_path / "out",
                     scheduler="tcp://127.0.0.1:9")
    assert sorted(os.listdir(tmp_path)) == ["src"]
