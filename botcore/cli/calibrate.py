"""``botcore resize --calibration TEXT_FILE``: the residual-stream moments for ``rotate=``.

Contract: :func:`moments_for` loads the source as a causal language model with
transformers (a Hugging Face directory, or a GGUF file through ``gguf_file=``; a
post-LN BERT checkpoint as its encoder, ``AutoModel``), tokenises the text file
with the checkpoint's own tokenizer, and returns the ``(hidden, hidden)``
second-moment matrix of its residual stream
(:func:`botcore.adapters.rotation.moments_from_text`), which the resize then uses
to rotate the stream onto its principal subspace before the width changes
(exactly for pre-norm families, approximately for BERT).
Nothing is downloaded (offline), nothing is written; a missing or empty file, a
source transformers cannot load as a causal LM, or a missing tokenizer is one
clear error.
"""

from __future__ import annotations

import os

from ..errors import ShapeError, UnsupportedModelError

__all__ = ["moments_for"]


def _text(path) -> str:
    if not os.path.isfile(path):
        raise ShapeError(f"--calibration {str(path)!r} does not exist; expected a plain text file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise UnsupportedModelError(f"--calibration {str(path)!r} is not UTF-8 text; pass a plain "
                                    "text file") from None
    if not text.strip():
        raise ShapeError(f"--calibration {str(path)!r} is empty; pass a file with text in it")
    return text


def _load(src: str, *, encoder: bool = False):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    folder, extra = (os.path.dirname(os.path.abspath(src)), {"gguf_file": os.path.basename(src)}) \
        if src.lower().endswith(".gguf") else (src, {})
    auto = transformers.AutoModel if encoder else transformers.AutoModelForCausalLM
    try:
        model = auto.from_pretrained(folder, **extra)
    except (OSError, ValueError, KeyError) as exc:
        what = "an encoder" if encoder else "a causal language model"
        raise UnsupportedModelError(
            f"--calibration needs {what} that transformers can load from {src!r} "
            f"({exc.__class__.__name__}); it rotates decoders (Llama, GPT-2 families) and BERT "
            "encoders; leave --calibration out for other models") from None
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **extra)
    except (OSError, ValueError, KeyError) as exc:
        raise UnsupportedModelError(
            f"--calibration needs the checkpoint's tokenizer, which {src!r} does not carry "
            f"({exc.__class__.__name__}); save it beside the weights (tokenizer.save_pretrained)") from None
    return model, tokenizer


def _check_family(reader, family) -> bool:
    """Refuse a family ``rotate=`` cannot rotate; return whether it is rotated approximately (BERT)."""
    from ..adapters.registry import detect_family
    from ..adapters.rotation import APPROXIMATE, check_rotatable

    if reader is None or not hasattr(reader, "tensors"):
        return family in APPROXIMATE
    family = family or detect_family(reader.tensors(), reader.config)
    if family in APPROXIMATE:
        return True
    try:
        check_rotatable(family)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(str(exc).replace("pass rotate=None", "leave out --calibration")) \
            from None
    return False


def moments_for(src, text_path, *, reader=None, family=None):
    """The residual second moments of ``src`` on the text in ``text_path`` (see the module docstring).

    ``reader`` (the opened source) and ``family`` let a model that cannot be rotated be
    refused before transformers loads it.
    """
    text = _text(text_path)
    encoder = _check_family(reader, family)
    model, tokenizer = _load(os.fspath(src), encoder=encoder)
    from ..adapters.rotation import moments_from_text

    return moments_from_text(model, tokenizer, text)
