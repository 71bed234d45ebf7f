"""Naming a graph's backbone: which initializer uses are which Hugging Face parameters.

Contract: :func:`recognise` finds the model family of an exported graph (BERT,
GPT-2, Llama, ViT, DeiT, DINOv2; TorchScript or dynamo exports, and graphs after
ONNX Runtime's transformer optimizer) and names the *uses* of its initializers
that the family's adapter has rules for, by the module that consumes them
(``pkg.torch.onnx.name_scopes`` metadata, ``/module/path/Op`` node names, or
the module path in the names of the values a fused node produces): the weight
operand of ``MatMul``/``Gemm`` (also through a ``Transpose``), the bias ``Add``
after it, the table of an embedding ``Gather``, the scale and bias of a
normalisation (``LayerNormalization``, decomposed ``Mul``/``Add``, ONNX
Runtime's ``SkipLayerNormalization``), convolution kernels, LayerScale gains,
tokens and position tables, the fused ``Attention`` weights (split into query,
key and value blocks) and ``EmbedLayerNormalization`` tables. A name is
accepted only when the family's adapter has a rule for it, so everything else
(a decoder, a custom head, extra layers) is left to the dimension propagation
(:mod:`botcore.adapters.onnx.propagate`): the family is the source of roles for
the backbone, not a whitelist for the graph. It also labels every node with its
transformer block and reads the Hugging Face config (sizes, vocabulary,
epsilon, RoPE base) off the graph. Anything it cannot name consistently raises
:class:`~botcore.errors.UnsupportedModelError` naming the node.

Examples
--------
>>> sorted(FAMILIES)
['bert', 'deit', 'dinov2', 'gpt2', 'llama', 'vit']
>>> FAMILIES["llama"].canonical("m.model.layers.3.mlp.up_proj")
('m.', 'model.layers.3.mlp.up_proj')
>>> FAMILIES["llama"].layer("model.layers.3.mlp.up_proj")
3
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from botcore.errors import UnsupportedModelError

from ..registry import get_adapter
from .graph import GraphIndex, float_scalar, layer_index, strip_to_root

__all__ = ["FAMILIES", "Backbone", "FamilySpec", "Slot", "recognise"]

_FLOAT_TYPES = (1, 10, 11, 16)  # float, float16, double, bfloat16


@dataclass(frozen=True)
class FamilySpec:
    """Naming knowledge of one family in exported graphs."""

    name: str
    roots: tuple
    layer_re: str
    signature: str
    conv1d: tuple = ()

    def canonical(self, path):
        """``(prefix, canonical module path)`` of a module path, or ``None``."""
        return strip_to_root(path, self.roots) if path else None

    def layer(self, canonical):
        """Layer index of a canonical path, or ``None`` outside the blocks."""
        return layer_index(canonical, self.layer_re)

    def is_conv1d(self, module):
        """Whether ``module`` stores its weight ``[in, out]`` natively (GPT-2 ``Conv1D``)."""
        return any(module.endswith("." + c) for c in self.conv1d)


_VIT_ROOTS = ("embeddings", "encoder", "layers", "layernorm", "pooler", "classifier", "cls_classifier",
              "distillation_classifier")
FAMILIES = {
    "gpt2": FamilySpec("gpt2", ("wte", "wpe", "h", "ln_f", "lm_head", "score"), r"^h\.(\d+)(?:\.|$)",
                       r"^h\.\d+\.attn", ("c_attn", "c_proj", "c_fc")),
    "dinov2": FamilySpec("dinov2", _VIT_ROOTS, r"^(?:encoder\.layer|layers)\.(\d+)(?:\.|$)",
                         r"^(?:encoder\.layer|layers)\.\d+\.layer_scale1(?:\.|$)"),
    "deit": FamilySpec("deit", _VIT_ROOTS, r"^(?:encoder\.layer|layers)\.(\d+)(?:\.|$)",
                       r"^embeddings\.distillation_token$"),
    "vit": FamilySpec("vit", _VIT_ROOTS, r"^(?:encoder\.layer|layers)\.(\d+)(?:\.|$)",
                      r"^embeddings\.patch_embeddings\.projection"),
    "llama": FamilySpec("llama", ("model.layers", "model.embed_tokens", "model.norm", "model.rotary_emb",
                                  "lm_head", "score"),
                        r"^model\.layers\.(\d+)(?:\.|$)", r"^model\.layers\.\d+\.self_attn"),
    "bert": FamilySpec("bert", ("embeddings", "encoder", "pooler", "classifier", "cls"),
                       r"^encoder\.layer\.(\d+)(?:\.|$)",
                       r"^encoder\.layer\.\d+\.(?:attention|intermediate|output)"),
}
_ORDER = ("gpt2", "dinov2", "deit", "vit", "llama", "bert")


@dataclass(frozen=True)
class Slot:
    """``nodes[node].input[index]`` holds Hugging Face parameter ``name``.

    ``transposed``: the graph tensor's axes are the reverse of the Hugging Face
    layout. ``block``: ``(graph axis, start, stop)`` when the parameter is only
    that range of the graph tensor (ONNX Runtime's fused query/key/value).
    """

    node: int
    index: int
    name: str
    transposed: bool = False
    block: tuple | None = None


@dataclass
class Backbone:
    """What :func:`recognise` found (see the module docstring)."""

    spec: FamilySpec
    adapter: object
    config: dict
    slots: list
    prefix: str
    node_layer: list
    sizes: dict
    notes: list = field(default_factory=list)

    @property
    def family(self) -> str:
        return self.spec.name


def _refuse(node, what, expected):
    name = getattr(node, "name", "") or "<unnamed>"
    op = getattr(node, "op_type", "?")
    raise UnsupportedModelError(
        f"ONNX graph not understood at node {name!r} ({op}): {what}; expected {expected}")


def _known(adapter, name) -> bool:
    """Whether the adapter has a rule for ``name`` (for every part, when it is a fused tensor)."""
    if any(r.match(name) for r in adapter.rules):
        return True
    fusion = adapter.fusion_for(name)
    return fusion is not None and all(any(r.match(name + s) for r in adapter.rules) for s in fusion.suffixes)


def _detect(index: GraphIndex):
    paths = [index.module_path(i) for i in range(len(index.nodes))]
    names = list(index.initializers) + [v for n in index.nodes for v in n.input if v]
    for fam in (FAMILIES[n] for n in _ORDER):
        mods = {c[1] for p in paths if (c := fam.canonical(p)) is not None}
        mods |= {c[1] for v in names if (c := fam.canonical(v)) is not None}
        if any(re.match(fam.signature, m) for m in mods):
            return fam, paths
    shown = sorted({p for p in paths if p})[:6]
    raise UnsupportedModelError(
        f"no known transformer backbone in this ONNX graph (module paths like {shown}); expected the "
        "modules of a Hugging Face BERT (encoder.layer.N), GPT-2 (h.N), Llama (model.layers.N) or "
        "ViT/DeiT/DINOv2 (embeddings.patch_embeddings) model, exported with torch.onnx.export")


class _Namer:
    """Collects candidate names per initializer use; keeps those the adapter knows."""

    def __init__(self, index: GraphIndex, spec: FamilySpec, adapter, paths):
        self.index, self.spec, self.adapter = index, spec, adapter
        self.mods = [None] * len(index.nodes)
        self.prefixes: list = []
        for i, p in enumerate(paths):
            c = spec.canonical(p)
            if c is not None:
                self.prefixes.append(c[0])
                self.mods[i] = c[1]
        self.slots: dict = {}

    def const(self, i, k) -> bool:
        node = self.index.nodes[i]
        return k < len(node.input) and bool(node.input[k]) and self.index.is_const(node.input[k])

    def init_names(self, i, k) -> list:
        node = self.index.nodes[i]
        if k >= len(node.input) or not node.input[k]:
            return []
        name = self.index.source(node.input[k])
        c = self.spec.canonical(name)
        return [c[1]] if c is not None else []

    def offer(self, i, k, names, transposed=False, block=None) -> bool:
        if (i, k) in self.slots or not self.const(i, k):
            return False
        for name in names:
            if name and _known(self.adapter, name):
                self.slots[(i, k)] = Slot(i, k, name, transposed, block)
                return True
        return False

    def linear(self, i, k, mod, graph_in_out: bool) -> None:
        """A Linear weight consumed at ``(i, k)``; ``graph_in_out``: the graph stores ``[in, out]``."""
        hf_in_out = self.spec.is_conv1d(mod)
        self.offer(i, k, [f"{mod}.weight"], transposed=graph_in_out != hf_in_out)


def _linear_uses(nm: _Namer, i, node, mod) -> None:
    index = nm.index
    op = node.op_type
    if op == "MatMul" and len(node.input) > 1:
        if nm.const(i, 1):
            nm.linear(i, 1, mod, True)
        elif node.input[1] in index.producer:
            j = index.producer[node.input[1]]
            t = index.nodes[j]
            if t.op_type == "Transpose" and nm.const(j, 0) and len(index.shape(t.input[0]) or ()) == 2:
                nm.linear(j, 0, mod, False)
    elif op == "Gemm" and nm.const(i, 1):
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        nm.linear(i, 1, mod, not trans_b)
        if len(node.input) > 2:
            nm.offer(i, 2, [f"{mod}.bias"])


def _bias_adds(nm: _Namer) -> None:
    index = nm.index
    weight_out = {}
    for slot in list(nm.slots.values()):
        i = slot.node
        node = index.nodes[i]
        if node.op_type in ("MatMul", "Gemm") and slot.name.endswith(".weight"):
            weight_out[node.output[0]] = slot.name[: -len(".weight")]
        elif node.op_type == "Transpose":
            for c, _ in index.consumers.get(node.output[0], []):
                if index.nodes[c].op_type == "MatMul":
                    weight_out[index.nodes[c].output[0]] = slot.name[: -len(".weight")]
    for i, node in enumerate(index.nodes):
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        for k in (0, 1):
            other = node.input[1 - k]
            if nm.const(i, k) and other in weight_out:
                nm.offer(i, k, [f"{weight_out[other]}.bias"])


def _ort_uses(nm: _Namer, i, node, mod) -> None:
    index, op = nm.index, node.op_type
    if op == "EmbedLayerNormalization":
        names = ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                 "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                 "embeddings.LayerNorm.bias")
        for k, name in zip(range(2, 7), names):
            nm.offer(i, k, [name] + nm.init_names(i, k))
    elif op == "Attention" and mod is not None and nm.const(i, 1):
        _fused_qkv(nm, i, mod)
    elif op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
        src = _producer_module(nm, node.input[0])
        norm = mod or (src.rsplit(".", 1)[0] + ".LayerNorm" if src else None)
        for k, suffix in ((2, "weight"), (3, "bias")):
            nm.offer(i, k, ([f"{norm}.{suffix}"] if norm else []) + nm.init_names(i, k))
        if src:
            nm.offer(i, 4, [f"{src}.bias"] + nm.init_names(i, 4))
    elif op in ("BiasGelu", "FastGelu", "BiasAdd"):
        src = _producer_module(nm, node.input[0])
        nm.offer(i, 1, ([f"{src}.bias"] if src else []) + nm.init_names(i, 1))
    del index


def _producer_module(nm: _Namer, value):
    j = nm.index.producer.get(value)
    return nm.mods[j] if j is not None else None


def _fused_qkv(nm: _Namer, i, mod) -> None:
    """ONNX Runtime's Attention: ``[in, q | k | v]`` weights and ``[q | k | v]`` bias."""
    index = nm.index
    node = index.nodes[i]
    w_shape = index.const_shape(node.input[1])
    if w_shape is None or len(w_shape) != 2:
        return
    sizes = next((list(a.ints) for a in node.attribute if a.name == "qkv_hidden_sizes"), None)
    sizes = sizes or [w_shape[1] // 3] * 3
    pos = np.cumsum([0] + sizes).tolist()
    bases = (mod, f"{mod}.self", f"{mod}.attention.self", f"{mod}.attention")
    for part, name in enumerate(("query", "key", "value")):
        for k, suffix, axis in ((1, "weight", 1), (2, "bias", 0)):
            full = next((f"{b}.{name}.{suffix}" for b in bases if _known(nm.adapter, f"{b}.{name}.{suffix}")),
                        None)
            if full is None or not nm.const(i, k) or (i, k, part) in nm.slots:
                continue
            nm.slots[(i, k, part)] = Slot(i, k, full, k == 1, (axis, pos[part], pos[part + 1]))


def _vector_uses(nm: _Namer, i, node, mod) -> None:
    op = node.op_type
    index = nm.index
    if op in ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization"):
        nm.offer(i, 1, [f"{mod}.weight"] + nm.init_names(i, 1))
        nm.offer(i, 2, [f"{mod}.bias"] + nm.init_names(i, 2))
    elif op == "Conv":
        nm.offer(i, 1, [f"{mod}.weight"] + nm.init_names(i, 1))
        nm.offer(i, 2, [f"{mod}.bias"] + nm.init_names(i, 2))
    elif op in ("Mul", "Add", "Sub") and len(node.input) == 2:
        for k in (0, 1):
            if not nm.const(i, k) or (i, k) in nm.slots:
                continue
            shape = index.const_shape(node.input[k])
            if not shape or int(np.prod(shape)) <= 1:
                continue
            suffixes = ("weight", "lambda1", "gamma", "bias") if op == "Mul" else ("bias", "weight")
            nm.offer(i, k, [f"{mod}.{s}" for s in suffixes] + nm.init_names(i, k))


def _leftover_uses(nm: _Namer) -> None:
    """Float initializers named after their parameter (tokens, position tables) wherever they are used."""
    index = nm.index
    for i, node in enumerate(index.nodes):
        if node.op_type in ("Constant", "Identity"):
            continue
        for k in range(len(node.input)):
            if (i, k) in nm.slots or not nm.const(i, k):
                continue
            src = index.source(node.input[k])
            if src in index.initializers and index.initializers[src].data_type in _FLOAT_TYPES:
                nm.offer(i, k, nm.init_names(i, k))


def _name_slots(nm: _Namer) -> list:
    index = nm.index
    for i, node in enumerate(index.nodes):
        mod = nm.mods[i]
        if node.op_type == "Gather" and mod is not None:
            nm.offer(i, 0, [f"{mod}.weight"] + nm.init_names(i, 0))
        elif node.op_type in ("MatMul", "Gemm") and mod is not None:
            _linear_uses(nm, i, node, mod)
        elif node.domain == "com.microsoft" or node.op_type in ("EmbedLayerNormalization", "Attention"):
            _ort_uses(nm, i, node, mod)
    _bias_adds(nm)
    for i, node in enumerate(index.nodes):
        if nm.mods[i] is not None:
            _vector_uses(nm, i, node, nm.mods[i])
    _leftover_uses(nm)
    return list(nm.slots.values())


def _check_names(index: GraphIndex, slots: list) -> None:
    """The same parameter name must always come from the same initializer range."""
    seen = {}
    for s in slots:
        src = index.source(index.nodes[s.node].input[s.index])
        where = (src, s.transposed, s.block)
        if seen.setdefault(s.name, where) != where:
            _refuse(index.nodes[s.node], f"two different tensors ({seen[s.name][0]!r} and {src!r}) are "
                    f"both named {s.name!r} by the modules that use them",
                    "one initializer per parameter (export the model as it is, without edits)")


def _label_blocks(index: GraphIndex, nm: _Namer, slots: list) -> list:
    """The block of every node: from its module path, its parameters, or the nodes it feeds.

    A node without a module of its own (TorchScript ``Constant``/``Identity`` nodes,
    fused operators) belongs to block ``b`` when everything it feeds is in block
    ``b``; when it feeds nodes outside the blocks, or several blocks, it is outside.
    """
    n = len(index.nodes)
    labels, known = [None] * n, [False] * n
    for i, mod in enumerate(nm.mods):
        if mod is not None:
            labels[i], known[i] = nm.spec.layer(mod), True
        elif index.module_path(i) is not None and index.nodes[i].op_type != "Constant":
            known[i] = True  # a module outside the transformer (wrapper, head, decoder)
    for s in slots:
        layer = nm.spec.layer(s.name)
        if layer is not None and labels[s.node] is None:
            labels[s.node], known[s.node] = layer, True
    outputs = set(index.graph_outputs)
    for _ in range(8):
        changed = False
        for i in reversed(range(n)):
            if known[i]:
                continue
            users = [c for v in index.nodes[i].output for c, _ in index.consumers.get(v, [])]
            if any(not known[c] for c in users):
                continue
            cons = {labels[c] for c in users}
            inside = len(cons) == 1 and None not in cons and not outputs & set(index.nodes[i].output)
            labels[i], known[i], changed = (cons.pop() if inside else None), True, True
        if not changed:
            break
    return labels


def recognise(index: GraphIndex) -> Backbone:
    """Find the family, name the backbone's parameter uses, label blocks; read the config.

    Parameters
    ----------
    index : GraphIndex
        The graph, with shapes inferred.

    Returns
    -------
    Backbone

    Raises
    ------
    UnsupportedModelError
        No known backbone, inconsistent names, or sizes that cannot be read.
    """
    spec, paths = _detect(index)
    adapter = get_adapter(spec.name)
    nm = _Namer(index, spec, adapter, paths)
    slots = _name_slots(nm)
    _check_names(index, slots)
    labels = _label_blocks(index, nm, slots)
    prefix = Counter(nm.prefixes).most_common(1)[0][0] if nm.prefixes else ""
    shapes = _hf_shapes(index, slots)
    config = _config(spec, index, shapes, slots)
    sizes = adapter.sizes(config, {n: _Shaped(s) for n, s in shapes.items()})
    return Backbone(spec, adapter, config, slots, prefix, labels, sizes)


class _Shaped:
    def __init__(self, shape):
        self.shape = tuple(shape)


def _hf_shapes(index: GraphIndex, slots: list) -> dict:
    out = {}
    for s in slots:
        shape = list(index.const_shape(index.nodes[s.node].input[s.index]))
        if s.block is not None:
            axis, lo, hi = s.block
            shape[axis] = hi - lo
        out[s.name] = tuple(reversed(shape)) if s.transposed else tuple(shape)
    return out


def _first(shapes, *suffixes):
    for name, shape in shapes.items():
        if name.endswith(suffixes):
            return name, shape
    return None, None


def _epsilon(index: GraphIndex):
    for node in index.nodes:
        if node.op_type in ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
                            "SimplifiedLayerNormalization"):
            for a in node.attribute:
                if a.name == "epsilon":
                    return float(a.f)
    for node in index.nodes:  # decomposed RMSNorm: Add(ReduceMean(x^2), eps)
        if node.op_type == "Add" and node.input[0] in index.producer and \
                index.nodes[index.producer[node.input[0]]].op_type == "ReduceMean":
            eps = float_scalar(index.const(node.input[1])) if index.is_const(node.input[1]) else None
            if eps is not None and 0 < eps < 1e-2:
                return eps
    return None


def _from_projection(index: GraphIndex, value, sources: set) -> bool:
    """Whether ``value`` comes (through bias adds, splits, reshapes) from a node in ``sources``."""
    for _ in range(6):
        j = index.producer.get(value)
        if j is None:
            return False
        if j in sources:
            return True
        node = index.nodes[j]
        if node.op_type not in ("Add", "Split", "Identity", "Cast", "Slice", "Reshape"):
            return False
        value = next((v for v in node.input if v and not index.is_const(v)), None)
    return False


def _head_dim(index: GraphIndex, widths: set, sources: set):
    """head_dim from the Reshape that splits a query/key width into ``[..., heads, head_dim]``."""
    found = {}
    for i, node in enumerate(index.nodes):
        if node.op_type == "Attention":
            heads = next((a.i for a in node.attribute if a.name == "num_heads"), None)
            w = index.const_shape(node.input[1]) if index.is_const(node.input[1]) else None
            if heads and w:
                found.setdefault(w[1] // 3 // heads, i)
        if node.op_type != "Reshape":
            continue
        src, dst = index.shape(node.input[0]), index.shape(node.output[0])
        if not src or not dst or len(dst) != len(src) + 1 or src[-1] not in widths:
            continue
        if sources and not _from_projection(index, node.input[0], sources):
            continue
        a, b = dst[-2], dst[-1]
        if isinstance(a, int) and isinstance(b, int) and a * b == src[-1] and b != src[-1]:
            found.setdefault(b, i)
    if len(found) != 1:
        node = index.nodes[next(iter(found.values()))] if found else None
        _refuse(node, f"head_dim candidates {sorted(found)} from the attention reshapes",
                "one Reshape pattern [..., heads, head_dim] after the query/key projections")
    return next(iter(found))


def _config(spec: FamilySpec, index: GraphIndex, shapes: dict, slots: list) -> dict:
    layers = {spec.layer(n) for n in shapes} - {None}
    if not layers or layers != set(range(max(layers) + 1)):
        _refuse(index.nodes[0] if index.nodes else None, f"block indices {sorted(layers)}",
                "blocks numbered 0..L-1")
    builder = {"gpt2": _gpt2_config, "llama": _llama_config, "bert": _bert_config}.get(spec.name, _vit_config)
    cfg = builder(spec, index, shapes, len(layers), slots)
    eps = _epsilon(index)
    if eps is not None:
        cfg["rms_norm_eps" if spec.name == "llama" else
            "layer_norm_epsilon" if spec.name == "gpt2" else "layer_norm_eps"] = eps
    return cfg


def _widths(shapes, *suffixes) -> set:
    return {s[0] for n, s in shapes.items() if n.endswith(suffixes)}


def _sources(slots, *suffixes) -> set:
    """Nodes that apply the parameters named ``*suffixes`` (the query/key projections)."""
    return {s.node for s in slots if s.name.endswith(suffixes)}


def _need(name, shape, what):
    if shape is None:
        raise UnsupportedModelError(f"the ONNX graph has no {what} ({name}); expected the embeddings "
                                    "and attention projections of the backbone in the graph")
    return shape


def _bert_config(spec, index, shapes, layers, slots):
    _, word = _first(shapes, "embeddings.word_embeddings.weight")
    hidden = _need("word embeddings", word, "word embeddings")[1]
    qk = ("attention.self.query.weight", "attention.self.key.weight")
    head_dim = _head_dim(index, _widths(shapes, *qk), _sources(slots, *qk))
    _, ffn = _first(shapes, "intermediate.dense.weight")
    cfg = {"model_type": "bert", "hidden_size": hidden, "num_attention_heads": hidden // head_dim,
           "num_hidden_layers": layers, "intermediate_size": _need("ffn", ffn, "feed-forward")[0],
           "vocab_size": word[0]}
    for key, suffix in (("max_position_embeddings", "position_embeddings.weight"),
                        ("type_vocab_size", "token_type_embeddings.weight")):
        _, shape = _first(shapes, "embeddings." + suffix)
        if shape is not None:
            cfg[key] = shape[0]
    _, cls = _first(shapes, "classifier.weight")
    if cls is not None:
        cfg["num_labels"] = cls[0]
    return cfg


def _gpt2_config(spec, index, shapes, layers, slots):
    _, wte = _first(shapes, "wte.weight")
    hidden = _need("wte", wte, "token embeddings")[1]
    head_dim = _head_dim(index, {hidden}, _sources(slots, "attn.c_attn.weight"))
    _, fc = _first(shapes, "mlp.c_fc.weight")
    cfg = {"model_type": "gpt2", "n_embd": hidden, "n_head": hidden // head_dim, "n_layer": layers,
           "n_inner": _need("c_fc", fc, "feed-forward")[1], "vocab_size": wte[0]}
    _, wpe = _first(shapes, "wpe.weight")
    if wpe is not None:
        cfg["n_positions"] = wpe[0]
    return cfg


def _llama_config(spec, index, shapes, layers, slots):
    _, emb = _first(shapes, "embed_tokens.weight")
    _, q = _first(shapes, "self_attn.q_proj.weight")
    _, k = _first(shapes, "self_attn.k_proj.weight")
    _, up = _first(shapes, "mlp.up_proj.weight")
    q, k = _need("q_proj", q, "query projection"), _need("k_proj", k, "key projection")
    head_dim = _head_dim(index, {q[0], k[0]}, _sources(slots, "q_proj.weight", "k_proj.weight"))
    hidden = q[1]
    cfg = {"model_type": "llama", "hidden_size": hidden, "num_attention_heads": q[0] // head_dim,
           "num_key_value_heads": k[0] // head_dim, "head_dim": head_dim, "num_hidden_layers": layers,
           "intermediate_size": _need("up_proj", up, "feed-forward")[0]}
    if emb is not None:
        cfg["vocab_size"] = emb[0]
    base = _rope_base(index)
    if base is not None:
        cfg["rope_theta"] = base
    return cfg


def _rope_base(index: GraphIndex):
    for name, t in index.initializers.items():
        if "inv_freq" in name and len(t.dims) == 1:
            base = rope_base(np.asarray(index.const(name), dtype=np.float64))
            if base is not None:
                return base
    return None


def rope_base(freqs) -> float | None:
    """``base`` when ``freqs[j] == base ** (-j / len(freqs))`` (the default RoPE table), else ``None``.

    >>> rope_base(10000.0 ** (-np.arange(0, 16, 2) / 16))
    10000.0
    """
    freqs = np.asarray(freqs, dtype=np.float64).reshape(-1)
    n = freqs.size
    if n < 2 or freqs[0] != 1 or np.any(freqs <= 0):
        return None
    with np.errstate(all="ignore"):
        base = float(freqs[1] ** (-n))
        expect = base ** (-np.arange(n) / n)
    if not np.isfinite(base) or not np.allclose(freqs, expect, rtol=1e-4):
        return None
    nice = float(round(base))
    return nice if abs(nice - base) <= 1e-4 * base else base


def _vit_config(spec, index, shapes, layers, slots):
    _, patch = _first(shapes, "patch_embeddings.projection.weight")
    hidden = _need("patch", patch, "patch projection")[0]
    qk = ("query.weight", "key.weight", "q_proj.weight", "k_proj.weight")
    head_dim = _head_dim(index, _widths(shapes, *qk), _sources(slots, *qk))
    _, ffn = _first(shapes, "intermediate.dense.weight", "mlp.fc1.weight")
    ffn = _need("ffn", ffn, "feed-forward")[0]
    cfg = {"model_type": spec.name, "hidden_size": hidden, "num_attention_heads": hidden // head_dim,
           "num_hidden_layers": layers, "num_channels": int(patch[1]), "patch_size": int(patch[2])}
    if spec.name == "dinov2":
        cfg["mlp_ratio"] = ffn / hidden if ffn % hidden else ffn // hidden
    else:
        cfg["intermediate_size"] = ffn
    _, pos = _first(shapes, "embeddings.position_embeddings")
    if pos is not None:
        extra = 2 if spec.name == "deit" else 1  # cls (and distillation) tokens
        cfg["image_size"] = round(float(np.sqrt(pos[1] - extra))) * cfg["patch_size"]
    _, cls = _first(shapes, "classifier.weight")
    if cls is not None:
        cfg["num_labels"] = cls[0]
    return cfg
