"""BERT: BertModel, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification.

Contract: every parameter of these checkpoints (with or without the ``bert.``
prefix) has a rule; attention projections are head-aware (``q``/``k``/``v`` as
``(depth, head, head_dim, in)``, ``o`` as ``(depth, out, in_head, in_head_dim)``).
The MLM decoder is tied to the word embeddings (and its bias to
``cls.predictions.bias``) when the values are equal; the vocabulary, position,
token-type and class axes are fixed. ``embeddings.position_ids`` is a
non-persistent buffer: reported and not written.

Examples
--------
>>> import numpy as np
>>> cfg = dict(model_type="bert", num_hidden_layers=2, hidden_size=8, num_attention_heads=2,
...            intermediate_size=16)
>>> BertAdapter().sizes(cfg, {})
{'layers': 2, 'hidden': 8, 'heads': 2, 'kv_heads': 2, 'head_dim': 4, 'ffn': 16}
"""

from __future__ import annotations

from ..base import Adapter, Rule
from .common import attention_and_ffn, linear_rules, vector_rules

__all__ = ["BertAdapter"]

_P = r"(?:bert\.)?"
_L = _P + r"encoder\.layer\.(?P<layer>\d+)\."


class BertAdapter(Adapter):
    """Adapter for Hugging Face BERT checkpoints (see the module docstring)."""

    family = "bert"
    model_types = ("bert",)
    rules = (
        Rule(_P + r"embeddings\.word_embeddings\.weight", "embed.word", "_,hidden", "fixed,out"),
        Rule(_P + r"embeddings\.position_embeddings\.weight", "embed.position", "_,hidden",
             "fixed,out"),
        Rule(_P + r"embeddings\.token_type_embeddings\.weight", "embed.token_type", "_,hidden",
             "fixed,out"),
        *vector_rules(_P + r"embeddings\.LayerNorm", "embed.norm"),
        *attention_and_ffn(_L, {
            "q": r"attention\.self\.query", "k": r"attention\.self\.key", "v": r"attention\.self\.value",
            "o": r"attention\.output\.dense", "ffn_in": r"intermediate\.dense",
            "ffn_out": r"output\.dense", "norm1": r"attention\.output\.LayerNorm",
            "norm2": r"output\.LayerNorm"}),
        *linear_rules(_P + r"pooler\.dense", "pooler", "hidden,hidden", "out,in"),
        *linear_rules(r"cls\.predictions\.transform\.dense", "mlm.dense", "hidden,hidden",
                      "out,in"),
        *vector_rules(r"cls\.predictions\.transform\.LayerNorm", "mlm.norm"),
        Rule(r"cls\.predictions\.decoder\.weight", "mlm.decoder", "_,hidden", "fixed,in"),
        Rule(r"cls\.predictions\.decoder\.bias", "mlm.decoder.bias", "_", "fixed"),
        Rule(r"cls\.predictions\.bias", "mlm.bias", "_", "fixed"),
        *linear_rules(r"cls\.seq_relationship", "nsp", "_,hidden", "fixed,in"),
        *linear_rules(r"classifier", "classifier", "_,hidden", "fixed,in"),
    )
    ties = (
        (r"cls\.predictions\.decoder\.weight", _P + r"embeddings\.word_embeddings\.weight"),
        (r"cls\.predictions\.decoder\.bias", r"cls\.predictions\.bias"),
    )
    head_tie = r"cls\.predictions\.decoder\.weight"
    head_norms = ("mlm.norm.weight", "mlm.norm.bias")
    drops = (
        (_P + r"embeddings\.position_ids",
         "non-persistent buffer (position indices): not written, the model rebuilds it"),
    )

    def sizes(self, config, params):
        try:
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            return {
                "layers": int(config["num_hidden_layers"]), "hidden": hidden, "heads": heads,
                "kv_heads": heads, "head_dim": hidden // heads, "ffn": int(config["intermediate_size"]),
            }
        except KeyError as err:
            from botcore.errors import UnsupportedModelError

            raise UnsupportedModelError(
                f"the {self.family} config lacks {err.args[0]!r}; pass the checkpoint's "
                "config.json as config="
            ) from None

    def write_config(self, config, sizes):
        out = dict(config)
        out.update(
            num_hidden_layers=sizes["layers"], hidden_size=sizes["hidden"],
            num_attention_heads=sizes["heads"], intermediate_size=sizes["ffn"],
        )
        return out

    @classmethod
    def claims(cls, names, config):
        return any(n.endswith("attention.self.query.weight") for n in names)
