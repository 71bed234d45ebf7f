"""Shared pieces of the ONNX tests: tiny models, their exports, ONNX Runtime runs, expected weights.

No tests here. The expected weights are computed independently of botcore
(``tests/reference.py``: the documented Haar resize per axis, written from the
documentation), so a resized graph is checked against a PyTorch model at the
target size that holds those weights, not only against ``resize_model``.
"""

from __future__ import annotations

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

import reference  # noqa: E402

TOL = 1e-4

# transformers 5 in-memory ViT/DINOv2 names -> the names tests/reference.py documents
_CLASSIC = (("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
            ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense"))


def classic(name: str) -> str:
    for new, old in _CLASSIC:
        name = name.replace(new, old)
    return name


def modern(name: str) -> str:
    for new, old in _CLASSIC:
        name = name.replace(old, new)
    return name


def perturb(model, seed):
    """Make every parameter distinct (trained-like), so nothing is folded or de-duplicated."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * 0.05)
    return model.eval()


def export(module, args, path, *, exporter, names, outputs, dims):
    """Export ``module`` like a user would: TorchScript (opset 17; ``torchscript14``: opset 14, where
    LayerNorm is decomposed into primitive operators) or dynamo (opset 20, external data)."""
    module = module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            shapes = {}
            for arg_name, d in zip(_arg_names(module), dims):
                shapes[arg_name] = {a: torch.export.Dim(f"{arg_name}_{n}") for a, n in d.items()} if d else None
            torch.onnx.export(module, tuple(args), str(path), dynamo=True, input_names=names,
                              output_names=outputs, dynamic_shapes=shapes, verbose=False)
        else:
            axes = {n: d for n, d in zip(names, dims) if d}
            torch.onnx.export(module, tuple(args), str(path), dynamo=False,
                              opset_version=14 if exporter == "torchscript14" else 17,
                              input_names=names, output_names=outputs, dynamic_axes=axes)
    module.eval()
    return Path(path)


def _arg_names(module):
    import inspect

    return [p for p in inspect.signature(module.forward).parameters]


def run(path, feeds) -> list:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {k: np.asarray(v) for k, v in feeds.items() if k in names})


def numpy_params(module, prefix="") -> dict:
    return {k[len(prefix):]: v.detach().float().numpy() for k, v in module.state_dict().items()
            if k.startswith(prefix) and not k.endswith(("position_ids", "token_type_ids"))}


def expected_backbone(params: dict, src: dict, dst: dict, *, gain: str) -> dict:
    """Reference weights of a Hugging Face backbone (names as the model holds them)."""
    renamed = any(classic(k) != k for k in params)
    got = reference.resized_model({classic(k): v for k, v in params.items()}, src, dst, gain=gain)
    return {modern(k) if renamed else k: v for k, v in got.items()}


_NOT_IN_GRAPHS = ("position_ids", "token_type_ids", "inv_freq", "mask_token")  # buffers, unused tokens


def load(module, weights: dict, *, prefix="", dtype=torch.float32):
    """Load ``weights`` into ``module``; every parameter a graph can hold must be among them."""
    state = {prefix + k: torch.from_numpy(np.ascontiguousarray(v)).to(dtype) for k, v in weights.items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not [k for k in missing if not k.endswith(_NOT_IN_GRAPHS)], missing
    return module.eval()


def sizes_of(result) -> dict:
    return dict(result.sizes)


def assert_close(got, want, *, tol=TOL, what=""):
    """``got`` equals ``want`` within ``tol`` (max abs difference); with ``BOTCORE_ONNX_REPORT=path``
    set, every measured difference is appended to that file (test, what, max abs difference)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert np.all(np.isfinite(got)), what
    report = os.environ.get("BOTCORE_ONNX_REPORT")
    if report:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(report, "a", encoding="utf-8") as f:
            f.write(f"{test}\t{what or '-'}\t{float(np.max(np.abs(got - want), initial=0.0)):.3g}\n")
    np.testing.assert_allclose(got, want, atol=tol, rtol=0, err_msg=what)
