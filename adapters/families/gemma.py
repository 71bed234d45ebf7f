"""Gemma, Gemma 2 and Gemma 3 (text): GemmaForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM.

Contract: the Llama layout (:mod:`botcore.adapters.families.llama`) with four
differences, each declared as data:

* **RMSNorm with a +1 offset.** Every norm computes ``x / rms(x) * (1 + w)``;
  the checkpoint stores ``w``. The norm signals are declared
  :attr:`~botcore.adapters.base.Adapter.offsets`: a resize that changes their
  shape resizes the effective gain ``1 + w`` and stores the result minus 1.
  (``gain="function"`` keeps means, so it commutes with the offset; ``"paper"``
  and ``"std"`` do not, and without the offset a kept gain of ones would become
  ``sqrt(2)``-scaled zeros.) When the head is tied, the final norm's factor
  multiplies ``1 + w`` too.
* **Scaled embeddings.** The model multiplies the embedding by
  ``sqrt(hidden_size)`` from its config (a buffer, not a weight), so a new
  ``hidden`` changes that factor. ``embed.word`` is declared
  :attr:`~botcore.adapters.base.Adapter.hidden_powers` ``0.5``: where the
  resize keeps the function it is multiplied by ``sqrt(src_hidden /
  dst_hidden)``, so ``embedding * sqrt(hidden)`` (the residual stream) is the
  source's; elsewhere it is left to the gain (``"std"``: the stored statistics
  of a fresh model of the new width). A tied head reads the stored embedding
  unscaled, so the final norm then gets ``sqrt(src/dst)`` instead of
  ``src/dst``.
* **Extra norms (Gemma 2, 3).** ``post_attention_layernorm`` normalises the
  attention output and ``post_feedforward_layernorm`` the MLP output before the
  residual add (signals ``norm_attn_out.weight``, ``norm_ffn_out.weight``);
  ``pre_feedforward_layernorm`` is the MLP's input norm (``norm2.weight``). In
  Gemma 1 ``post_attention_layernorm`` is the MLP's input norm (``norm2``), as in
  Llama. Gemma 3 adds per-head ``q_norm``/``k_norm`` of size ``head_dim``
  (offset too).
* **Config.** ``head_dim`` is explicit and written; ``hidden_size`` must stay a
  multiple of ``num_attention_heads`` (the config class checks it; refused
  here first). ``query_pre_attn_scalar`` (the attention scale is its inverse
  square root) scales with ``head_dim`` and is kept when head_dim is kept.
  ``attn_logit_softcapping`` and ``final_logit_softcapping`` are kept: a resize
  that keeps the pre-cap logits keeps the capped ones. ``sliding_window`` is
  kept; ``layer_types`` repeats the source's period (Gemma 2 alternates
  sliding/full, Gemma 3 has five sliding layers per full one).

Multimodal Gemma 3 (``Gemma3ForConditionalGeneration``, model_type ``gemma3``
with a vision tower) is refused: resize its text model.

Examples
--------
>>> a = Gemma2Adapter()
>>> a.offset_of("norm_ffn_out.weight"), a.offset_of("ffn_in"), a.hidden_power_of("embed.word")
(1.0, 0.0, 0.5)
>>> cfg = dict(model_type="gemma2", num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
...            num_key_value_heads=2, head_dim=16, intermediate_size=64, query_pre_attn_scalar=16,
...            layer_types=["sliding_attention", "full_attention"])
>>> new = a.write_config(cfg, dict(layers=3, hidden=64, heads=4, kv_heads=2, head_dim=32, ffn=128))
>>> new["query_pre_attn_scalar"], new["layer_types"][-1]
(32, 'sliding_attention')
"""

from __future__ import annotations

from botcore.errors import TargetError, UnsupportedModelError

from ..base import Rule
from .llama import LlamaAdapter
from .qwen3 import head_norm_rules
from .windows import window_config

__all__ = ["Gemma2Adapter", "Gemma3Adapter", "GemmaAdapter"]

_L = r"(?:model\.)?layers\.(?P<layer>\d+)\."

#: The norm signals whose stored weight ``w`` acts as ``1 + w``.
NORMS = r"(?:norm1|norm2|norm_attn_out|norm_ffn_out|norm_final|q_norm|k_norm)\.weight"

_SANDWICH = (
    Rule(_L + r"post_attention_layernorm\.weight", "norm_attn_out.weight", "hidden", "out"),
    Rule(_L + r"pre_feedforward_layernorm\.weight", "norm2.weight", "hidden", "out"),
    Rule(_L + r"post_feedforward_layernorm\.weight", "norm_ffn_out.weight", "hidden", "out"),
)


class GemmaAdapter(LlamaAdapter):
    """Adapter for Gemma (1) causal decoders (see the module docstring)."""

    family = "gemma"
    model_types = ("gemma",)
    rules = LlamaAdapter.rules
    offsets = ((NORMS, 1.0),)
    hidden_powers = ((r"embed\.word", 0.5),)
    tie_default = True
    layer_rule = "periodic"

    def sizes(self, config, params):
        if isinstance(config.get("text_config"), dict) or config.get("vision_config"):
            raise UnsupportedModelError(
                f"model_type={config.get('model_type')!r} is a multimodal Gemma (a vision tower and a "
                "text model); only the text model is supported: resize a Gemma3ForCausalLM "
                "(model_type 'gemma3_text') checkpoint")
        return super().sizes(config, params)

    def write_config(self, config, sizes):
        if sizes["hidden"] % sizes["heads"]:
            raise TargetError(
                f"hidden={sizes['hidden']} is not a multiple of heads={sizes['heads']}, which the "
                f"{self.family} config requires (head_dim={sizes['head_dim']} is separate); choose "
                "heads dividing hidden")
        out = super().write_config(config, sizes)
        out["head_dim"] = sizes["head_dim"]
        out.update(window_config(config, sizes["layers"], rule=self.layer_rule))
        scalar = config.get("query_pre_attn_scalar")
        if scalar is not None:
            src_head_dim = int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])
            new = scalar * sizes["head_dim"] / src_head_dim
            out["query_pre_attn_scalar"] = int(round(new)) if isinstance(scalar, int) else new
        return out

    @classmethod
    def claims(cls, names, config):
        return False  # a Gemma checkpoint's names are Llama's: only model_type tells


class Gemma2Adapter(GemmaAdapter):
    """Adapter for Gemma 2 causal decoders (see the module docstring)."""

    family = "gemma2"
    model_types = ("gemma2",)
    rules = _SANDWICH + LlamaAdapter.rules

    @classmethod
    def claims(cls, names, config):
        names = list(names)
        return any(n.endswith("pre_feedforward_layernorm.weight") for n in names) and not any(
            n.endswith("self_attn.q_norm.weight") for n in names)


class Gemma3Adapter(GemmaAdapter):
    """Adapter for Gemma 3 text decoders (see the module docstring)."""

    family = "gemma3"
    model_types = ("gemma3_text", "gemma3")
    rules = head_norm_rules() + _SANDWICH + LlamaAdapter.rules

    @classmethod
    def claims(cls, names, config):
        names = list(names)
        return any(n.endswith("pre_feedforward_layernorm.weight") for n in names) and any(
            n.endswith("self_attn.q_norm.weight") for n in names)
