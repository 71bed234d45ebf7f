"""Finding a transformer's parameters, configuration and blocks in an exported graph.

Contract: :func:`analyse` turns an ``onnx.ModelProto`` exported from a Hugging
Face BERT, GPT-2 or ViT/DeiT model (TorchScript or dynamo exporter) into an
:class:`Analysis`: the parameters under their Hugging Face names in PyTorch
layout (``[out, in]`` for ``nn.Linear``, ``[in, out]`` for GPT-2 ``Conv1D``),
a Hugging Face config dict, the *slots* (node, input) each parameter feeds, the
transformer block of every node and the residual-stream value between blocks.
Weights are found by structure (the operand a ``MatMul``/``Gemm``/``Gather``/
``LayerNormalization``/``Conv`` consumes) and named by the module that consumes
them, so anonymous (``onnx::MatMul_12``) and de-duplicated shared initializers
get their true names. Anything it does not understand raises
:class:`~botcore.errors.UnsupportedModelError` naming the node and the pattern
expected. Nothing is modified.

Examples
--------
>>> sorted(FAMILIES)
['bert', 'deit', 'gpt2', 'vit']
>>> FAMILIES["gpt2"].is_conv1d("h.0.attn.c_attn")
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from botcore.errors import UnsupportedModelError

from .onnx_graph import GraphIndex, layer_index, strip_to_root

__all__ = ["FAMILIES", "Analysis", "Family", "Slot", "analyse"]

_FLOAT_TYPES = (1, 10, 11, 16)  # float, float16, double, bfloat16


@dataclass(frozen=True)
class Family:
    """Naming knowledge of one model family (module roots, layer pattern, layouts)."""

    name: str
    roots: tuple
    layer_re: str
    signature: str
    conv1d: tuple = ()

    def is_conv1d(self, module):
        """Whether ``module`` stores its weight ``[in, out]`` natively (GPT-2 ``Conv1D``)."""
        return any(module.endswith("." + c) for c in self.conv1d)

    def layer(self, canonical):
        """Layer index of a canonical path, or ``None`` outside the blocks."""
        return layer_index(canonical, self.layer_re)


FAMILIES = {
    "gpt2": Family(
        "gpt2",
        ("wte", "wpe", "h", "ln_f", "lm_head"),
        r"^h\.(\d+)(?:\.|$)",
        r"^h\.\d+\.attn\.c_attn$",
        ("c_attn", "c_proj", "c_fc"),
    ),
    "vit": Family(
        "vit",
        ("embeddings", "encoder", "layers", "layernorm", "pooler", "classifier", "cls_classifier",
         "distillation_classifier"),
        r"^(?:encoder\.layer|layers)\.(\d+)(?:\.|$)",
        r"^embeddings\.patch_embeddings\.projection$",
    ),
    "deit": Family(
        "deit",
        ("embeddings", "encoder", "layers", "layernorm", "pooler", "classifier", "cls_classifier",
         "distillation_classifier"),
        r"^(?:encoder\.layer|layers)\.(\d+)(?:\.|$)",
        r"^embeddings\.distillation_token$",
    ),
    "bert": Family(
        "bert",
        ("embeddings", "encoder", "pooler", "classifier"),
        r"^encoder\.layer\.(\d+)(?:\.|$)",
        r"^encoder\.layer\.\d+\.attention\.self\.query$",
    ),
}
_DETECTION_ORDER = ("gpt2", "deit", "vit", "bert")  # DeiT graphs also look like ViT
_ALL_ROOTS = tuple(sorted({r for f in FAMILIES.values() for r in f.roots}))


@dataclass
class Slot:
    """One place a parameter enters the graph: ``nodes[node].input[index]``."""

    node: int
    index: int
    param: str
    transposed: bool  # graph layout is the transpose of the Hugging Face layout


@dataclass
class Analysis:
    """What :func:`analyse` found; see the module docstring."""

    family: Family
    config: dict
    params: dict
    slots: list
    index: GraphIndex
    prefix: str
    hidden: int
    heads: int
    head_dim: int
    ffn: int
    layers: int
    node_layer: list
    residual_out: dict
    residual_in0: str
    absent: set = field(default_factory=set)


def _refuse(node, what, expected):
    name = getattr(node, "name", "") or "<unnamed>"
    op = getattr(node, "op_type", "?")
    raise UnsupportedModelError(
        f"ONNX graph not understood at node {name!r} ({op}): {what}. Expected {expected}. "
        "Export the model with torch.onnx.export from a Hugging Face BERT, GPT-2 or ViT/DeiT "
        "model (TorchScript opset 17 or dynamo opset 20), without ORT fusions."
    )


def _canonical(index, i):
    path = index.module_path(i)
    if not path:
        return None, None
    split = strip_to_root(path, _ALL_ROOTS)
    if split is None:
        return None, None
    return split


def _find_slots(index):
    """Return (raw slots as (node, input, canonical module, suffix, layout) , prefixes)."""
    raw = []
    prefixes = []
    weight_producer = {}  # output value of a weight MatMul/Gemm -> canonical module
    for i, node in enumerate(index.nodes):
        op = node.op_type
        inputs = list(node.input)
        pre, mod = _canonical(index, i)
        if op == "Gather" and inputs and index.is_const(inputs[0]):
            if mod is None:
                continue
            raw.append((i, 0, mod, "weight", False))
        elif op in ("MatMul", "Gemm") and len(inputs) >= 2 and index.is_const(inputs[1]):
            if mod is None:
                _refuse(node, "a weight matrix whose module cannot be named",
                        "node names with module paths (TorchScript) or pkg.torch.onnx.name_scopes metadata (dynamo)")
            trans_b = 0
            for a in node.attribute:
                if a.name == "transB":
                    trans_b = a.i
            if op == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute):
                _refuse(node, "Gemm with transA=1", "transA=0")
            raw.append((i, 1, mod, "weight", "io" if (op == "MatMul" or not trans_b) else "oi"))
            if op == "Gemm" and len(inputs) >= 3 and inputs[2]:
                raw.append((i, 2, mod, "bias", None))
            weight_producer[node.output[0]] = mod
        elif op == "LayerNormalization":
            if mod is None:
                _refuse(node, "a LayerNormalization without a module path", "a named LayerNorm module")
            raw.append((i, 1, mod, "weight", None))
            if len(inputs) >= 3 and inputs[2]:
                raw.append((i, 2, mod, "bias", None))
        elif op == "Conv" and len(inputs) >= 2 and index.is_const(inputs[1]):
            if mod is None:
                _refuse(node, "a Conv weight whose module cannot be named", "a named Conv module")
            raw.append((i, 1, mod, "weight", None))
            if len(inputs) >= 3 and inputs[2]:
                raw.append((i, 2, mod, "bias", None))
        if pre is not None:
            prefixes.append(pre)
    # biases added after weight MatMuls
    for i, node in enumerate(index.nodes):
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        a, b = node.input
        for k, (c, other) in enumerate(((a, b), (b, a))):
            if index.is_const(c) and other in weight_producer and not index.is_const(other):
                raw.append((i, list(node.input).index(c), weight_producer[other], "bias", None))
    return raw, prefixes


def _fallback_slots(index, claimed, hidden):
    """Float tensors not claimed by a structural rule: name them by their value name."""
    raw = []
    for i, node in enumerate(index.nodes):
        if node.op_type in ("Constant", "Identity"):
            continue
        for k, inp in enumerate(node.input):
            if not inp or (i, k) in claimed or not index.is_const(inp):
                continue
            src = index.source(inp)
            shape = index.const_shape(inp)
            if src not in index.initializers or not shape or int(np.prod(shape)) <= 1:
                continue
            if index.initializers[src].data_type not in _FLOAT_TYPES:
                continue
            name = None
            for candidate in (inp, src):
                split = strip_to_root(candidate, _ALL_ROOTS)
                if split is not None:
                    name = split[1]
                    break
            if name is None:
                if hidden in shape:
                    _refuse(node, f"input {inp!r} of shape {list(shape)} looks like a weight "
                            "but no rule names it", "weights consumed by MatMul, Gemm, Add (bias), "
                            "Gather (embedding), LayerNormalization or Conv")
                continue
            raw.append((i, k, name, None, None))
    return raw


def _head_dim(index, hidden):
    """head_dim from Reshape targets that split a hidden-sized axis into (heads, head_dim)."""
    found = {}
    for i, node in enumerate(index.nodes):
        if node.op_type != "Reshape":
            continue
        src_shape = index.shape(node.input[0])
        if not src_shape or src_shape[-1] != hidden:
            continue
        target = reshape_target(index, node.input[1])
        if target is None or len(target) < 4:
            continue
        last, second = target[-1], target[-2]
        divides = isinstance(last, int) and last > 0 and hidden % last == 0 and last != hidden
        if divides and second in (-1, None, hidden // last):
            found.setdefault(last, i)
    if len(found) != 1:
        node = index.nodes[next(iter(found.values()))] if found else None
        _refuse(node, f"head_dim candidates {sorted(found)} from Reshape targets",
                "exactly one Reshape pattern [..., heads or -1, head_dim] on the hidden axis")
    return next(iter(found))


def reshape_target(index, name):
    """Elements of a Reshape shape input: ints for constants, ``None`` for runtime pieces.

    Returns ``None`` when the shape is neither a constant nor a Concat of
    constant and length-known runtime pieces.
    """
    if index.is_const(name):
        value = index.const(name)
        return [int(v) for v in np.asarray(value).reshape(-1)]
    if name not in index.producer:
        return None
    node = index.nodes[index.producer[name]]
    if node.op_type != "Concat":
        return None
    out = []
    for piece in node.input:
        if index.is_const(piece):
            out.extend(int(v) for v in np.asarray(index.const(piece)).reshape(-1))
        else:
            shp = index.shape(piece)
            if not shp or len(shp) != 1 or shp[0] is None:
                return None
            out.extend([None] * shp[0])
    return out


def _label_blocks(index, family):
    labels = [None] * len(index.nodes)
    known = [False] * len(index.nodes)
    for i in range(len(index.nodes)):
        _pre, mod = _canonical(index, i)
        if mod is not None:
            labels[i] = family.layer(mod)
            known[i] = True
        elif index.module_path(i) is not None and index.nodes[i].op_type != "Constant":
            known[i] = True  # a module outside the transformer (wrapper, pooling head)
    for _ in range(3):
        for i, node in enumerate(index.nodes):
            if known[i]:
                continue
            ins = {labels[index.producer[v]] for v in node.input if v in index.producer}
            ins.discard(None)
            if len(ins) == 1 and node.op_type not in ("Constant",):
                labels[i] = ins.pop()
                known[i] = True
        for i in reversed(range(len(index.nodes))):
            if known[i]:
                continue
            node = index.nodes[i]
            cons = {labels[c] for v in node.output for c, _ in index.consumers.get(v, [])}
            if len(cons) == 1:
                labels[i] = cons.pop()
                known[i] = True
    return labels


def _residuals(index, labels, layers, hidden):
    """Residual-stream value leaving each block, and the one entering block 0."""
    outs = {}
    for layer in range(layers):
        members = [i for i, lab in enumerate(labels) if lab == layer]
        if not members:
            raise UnsupportedModelError(f"ONNX graph not understood: no nodes found for layer {layer}.")
        candidates = []
        for i in members:
            for v in index.nodes[i].output:
                users = [c for c, _ in index.consumers.get(v, [])]
                leaves = any(labels[c] != layer for c in users) or v in index.graph_outputs
                shp = index.shape(v)
                if leaves and shp and shp[-1] == hidden and index.elem_types.get(v, 1) in _FLOAT_TYPES:
                    candidates.append((i, v))
        if not candidates:
            _refuse(index.nodes[members[-1]], f"block {layer} has no hidden-sized output",
                    "one residual-stream value leaving each transformer block")
        outs[layer] = max(candidates)[1]
    first = [i for i, lab in enumerate(labels) if lab == 0]
    ins = []
    for i in first:
        for v in index.nodes[i].input:
            if v in index.producer and labels[index.producer[v]] is None:
                shp = index.shape(v)
                if shp and shp[-1] == hidden and index.elem_types.get(v, 1) in _FLOAT_TYPES and v not in ins:
                    ins.append(v)
    if len(ins) != 1:
        _refuse(index.nodes[first[0]], f"block 0 has hidden-sized inputs {ins}",
                "exactly one residual-stream value entering the first block")
    return outs, ins[0]


def _config(family, params, layers, hidden, head_dim, ffn, index):
    eps = None
    for node in index.nodes:
        if node.op_type == "LayerNormalization":
            for a in node.attribute:
                if a.name == "epsilon":
                    eps = float(a.f)
            break
    heads = hidden // head_dim
    if family.name == "gpt2":
        cfg = {"model_type": "gpt2", "n_embd": hidden, "n_head": heads, "n_layer": layers,
               "n_inner": ffn, "vocab_size": params["wte.weight"].shape[0],
               "n_positions": params["wpe.weight"].shape[0]}
        if eps is not None:
            cfg["layer_norm_epsilon"] = eps
        return cfg
    cfg = {"model_type": family.name, "hidden_size": hidden, "num_attention_heads": heads,
           "num_hidden_layers": layers, "intermediate_size": ffn}
    if eps is not None:
        cfg["layer_norm_eps"] = eps
    if "classifier.weight" in params:
        cfg["num_labels"] = int(params["classifier.weight"].shape[0])
    if family.name == "bert":
        cfg["vocab_size"] = params["embeddings.word_embeddings.weight"].shape[0]
        cfg["max_position_embeddings"] = params["embeddings.position_embeddings.weight"].shape[0]
        if "embeddings.token_type_embeddings.weight" in params:
            cfg["type_vocab_size"] = params["embeddings.token_type_embeddings.weight"].shape[0]
    else:
        w = params["embeddings.patch_embeddings.projection.weight"]
        cfg["num_channels"], cfg["patch_size"] = int(w.shape[1]), int(w.shape[2])
        extra = 2 if family.name == "deit" else 1  # cls (and distillation) tokens
        npos = params["embeddings.position_embeddings"].shape[1] - extra
        cfg["image_size"] = round(float(np.sqrt(npos))) * cfg["patch_size"]
    return cfg


def analyse(model, *, load_values=True):
    """Analyse an exported transformer graph; see the module docstring.

    Parameters
    ----------
    model : onnx.ModelProto
        Model with external data loaded (when ``load_values``).
    load_values : bool
        Read parameter values (``False``: shapes and structure only).

    Returns
    -------
    Analysis

    Raises
    ------
    UnsupportedModelError
        When the graph does not match a supported export pattern.
    """
    index = GraphIndex(model)
    for node in index.nodes:
        if node.domain not in ("", "ai.onnx"):
            _refuse(node, f"operator from domain {node.domain!r}",
                    "standard ONNX operators only (decomposed attention: MatMul, Softmax, MatMul)")
        if node.op_type in ("Attention", "MultiHeadAttention", "GroupQueryAttention", "If", "Loop", "Scan"):
            _refuse(node, f"unsupported operator {node.op_type}",
                    "decomposed attention (MatMul, Softmax, MatMul) without control flow")
    index.infer_shapes()
    raw, prefixes = _find_slots(index)
    modules = {m for _, _, m, _, _ in raw}
    named = {strip_to_root(v, _ALL_ROOTS) for v in index.initializers}
    modules |= {n[1] for n in named if n is not None}
    family = None
    for fam in (FAMILIES[n] for n in _DETECTION_ORDER):
        if any(re.match(fam.signature, m) for m in modules):
            family = fam
            break
    if family is None:
        node = index.nodes[raw[0][0]] if raw else (index.nodes[0] if index.nodes else None)
        _refuse(node, f"no known transformer modules among {sorted(modules)[:6]}",
                "BERT (encoder.layer.N.attention.self.query), GPT-2 (h.N.attn.c_attn) or ViT "
                "(embeddings.patch_embeddings.projection) module paths")
    slots = []
    params = {}
    shapes = {}
    for i, k, mod, suffix, layout in raw:
        name = f"{mod}.{suffix}" if suffix else mod
        transposed = layout == "io" and not family.is_conv1d(mod) or layout == "oi" and family.is_conv1d(mod)
        slots.append(Slot(i, k, name, transposed))
        shp = index.const_shape(index.nodes[i].input[k])
        shapes[name] = tuple(reversed(shp)) if transposed else shp
    if family.name == "gpt2":
        hidden = shapes["wte.weight"][1]
    elif family.name == "bert":
        hidden = shapes["embeddings.word_embeddings.weight"][1]
    else:
        hidden = shapes["embeddings.patch_embeddings.projection.weight"][0]  # vit, deit
    claimed = {(s.node, s.index) for s in slots}
    for i, k, name, _, _ in _fallback_slots(index, claimed, hidden):
        slots.append(Slot(i, k, name, False))
        shapes[name] = index.const_shape(index.nodes[i].input[k])
    if load_values:
        for s in slots:
            if s.param not in params:
                value = index.const(index.nodes[s.node].input[s.index])
                params[s.param] = np.ascontiguousarray(value.T if s.transposed else value)
    layer_ids = {family.layer(n) for n in shapes} - {None}
    if not layer_ids or layer_ids != set(range(max(layer_ids) + 1)):
        _refuse(index.nodes[0], f"layer indices {sorted(layer_ids)}", "blocks numbered 0..L-1")
    layers = max(layer_ids) + 1
    head_dim = _head_dim(index, hidden)
    ffn = None
    for name, shp in shapes.items():
        if name.endswith(("intermediate.dense.weight", "mlp.fc1.weight", "mlp.c_fc.weight")):
            ffn = shp[1] if family.is_conv1d(name.rsplit(".", 1)[0]) else shp[0]
            break
    if ffn is None:
        _refuse(index.nodes[0], "no feed-forward input projection found",
                "intermediate.dense / mlp.fc1 / mlp.c_fc weights")
    absent = set()
    # Linear biases constant-folded away because they were zero
    for name, shp in list(shapes.items()):
        if name.endswith(".weight") and len(shp) == 2 and family.layer(name) is not None:
            bias = name[: -len("weight")] + "bias"
            if bias not in shapes and "LayerNorm" not in name and "ln_" not in name and "layernorm" not in name:
                absent.add(bias)
                out = shp[1] if family.is_conv1d(name[: -len(".weight")]) else shp[0]
                shapes[bias] = (out,)
                if load_values:
                    params[bias] = np.zeros(out, dtype=params[name].dtype)
    labels = _label_blocks(index, family)
    for i, node in enumerate(index.nodes):
        direct = [v for v in node.input if v in index.graph_inputs]
        if labels[i] is not None and direct:
            _refuse(node, f"block {labels[i]} reads graph input {direct[0]!r} directly (a KV cache?)",
                    "blocks that see graph inputs only through the embeddings and the attention mask "
                    "(export with use_cache=False)")
    residual_out, residual_in0 = _residuals(index, labels, layers, hidden)
    if not load_values:
        params = {n: np.zeros(s, dtype=np.float32) for n, s in shapes.items()}
    config = _config(family, params, layers, hidden, head_dim, ffn, index)
    prefix = max(set(prefixes), key=prefixes.count) if prefixes else ""
    return Analysis(family, config, params, slots, index, prefix, hidden, hidden // head_dim,
                    head_dim, ffn, layers, labels, residual_out, residual_in0, absent)
