"""Several texts trained side by side on one device (`train.parallel_texts`).

A 70M-1.4B model at batch size 1 on a 32-word text leaves a GPU nearly idle, and on a
CPU most of a tiny model's step is per-call overhead. Here each text still gets its own
copy of the parameters, from the exact base, with its own optimizer state: the copies
are stacked along a new first dimension and trained together, one batched
forward/backward (`torch.func.vmap` of `functional_call`) and one optimizer update for
all of them per step. Nothing is shared between texts but the arithmetic, so each text's
result is the one it gets alone, to float rounding.

What makes the copies line up:
- Texts are grouped by their number of chunks: every copy of a group takes the same
  number of steps per epoch, so the cosine schedule (a function of the step and of the
  run's total steps) gives every copy the same learning rate at every step, and Adam's
  bias correction the same step count.
- Within a group, chunks are right-padded to the longest one. Attention is causal, so a
  real token never sees the padding after it, and padded positions carry the label -100
  that the loss ignores: each copy's loss is its text's loss.
- Gradient clipping takes each copy's own global norm.
- Early stopping is per copy: a copy whose run has ended keeps being stepped with the
  others (cheaper than regrouping), but its losses, its best state and its result are
  frozen at the epoch its run ended. Best states are copies on the device (the models
  this is for are small); statistics are taken once, at the end.

The job's own optimizer (torch's AdamW or SGD) updates the stacked copies: both are
elementwise, so only gradient clipping, which takes a norm over a whole model, is done
per copy before it. Attention runs in the "eager" implementation: fused attention
kernels have no batching rule on every device and vmap would otherwise run them one
copy at a time.

Supported: the torch engine, fp32 or bf16 autocast (fp16's loss scaling is per text and
is not batched), models without dropout (the real configurations of Pythia, GPT-NeoX and
Llama have none).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch.func import functional_call, grad_and_value, vmap

from paramdelta.config import budget_epochs
from paramdelta.train import BIT16, Settings, Summarise, TextRun, Trace, _fail_if_not_finite, _make_optimizer, lr_at


class SideBySideEngine:
    """Trains groups of texts of one job together, each from the exact base."""

    def __init__(self, model: torch.nn.Module, settings: Settings, device: torch.device, width: int):
        if settings.precision == "fp16":
            raise ValueError(
                "train.parallel_texts > 1 works with precision fp32 or bf16, not fp16 (loss scaling is per text)"
            )
        self.settings, self.device, self.width = settings, device, width
        self.model = model.to(device=device, dtype=torch.float32)
        self.model.train()
        if hasattr(self.model, "set_attn_implementation"):
            self.model.set_attn_implementation("eager")
        # The model's own weights are the exact base: functional_call trains the stacked copies
        # in their place and never writes them, so they are not copied (one fp32 model less).
        self.base = {name: p.detach() for name, p in self.model.named_parameters()}
        self._grad = vmap(grad_and_value(self._loss), in_dims=(0, 0, 0))
        self._value = vmap(self._loss, in_dims=(0, 0, 0))

    def _loss(self, params: dict[str, torch.Tensor], input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        autocast = (
            torch.autocast(self.device.type, dtype=BIT16[self.settings.precision])
            if self.settings.precision in BIT16
            else nullcontext()
        )
        with autocast:
            loss = functional_call(self.model, params, (), {"input_ids": input_ids, "labels": labels}).loss
        return loss.float()

    def train(
        self,
        texts: Sequence[tuple[str, list[torch.Tensor]]],
        budget: str,
        summarise: Summarise | None = None,
        trace: Trace | None = None,
    ) -> list[TextRun]:
        """Train every (text id, chunks) and return their runs in the order given."""
        groups: dict[int, list[int]] = {}
        for index, (_, chunks) in enumerate(texts):
            groups.setdefault(len(chunks), []).append(index)
        runs: dict[int, TextRun] = {}
        for indices in groups.values():
            # Similar lengths side by side waste the least padding.
            indices = sorted(indices, key=lambda i: (sum(c.shape[1] for c in texts[i][1]), i))
            for start in range(0, len(indices), self.width):
                batch = indices[start : start + self.width]
                for index, run in zip(batch, self._train_batch([texts[i] for i in batch], budget, summarise, trace)):
                    runs[index] = run
        return [runs[i] for i in range(len(texts))]

    def _train_batch(self, texts, budget: str, summarise: Summarise | None, trace: Trace | None) -> list[TextRun]:
        settings, n = self.settings, len(texts)
        started = time.perf_counter()
        n_chunks = len(texts[0][1])
        inputs = [_padded([chunks[c] for _, chunks in texts], self.device) for c in range(n_chunks)]
        runs = [
            TextRun(text_id=text_id, n_tokens=sum(c.shape[1] for c in chunks), n_chunks=n_chunks, budget=budget)
            for text_id, chunks in texts
        ]
        params = {name: b.unsqueeze(0).repeat(n, *([1] * b.dim())) for name, b in self.base.items()}
        optimizer = _StackedOptimizer(params, settings)

        early_stopping = budget_epochs(budget) is None
        epochs = settings.max_epochs if early_stopping else budget_epochs(budget)
        total_steps = epochs * n_chunks
        running = [True] * n
        best_loss, reference, waited = [math.inf] * n, [math.inf] * n, [0] * n
        best: list = [None] * n
        step = 0
        for epoch in range(1, epochs + 1):
            # Summed where they are computed and read once an epoch: a read waits for the device.
            losses = torch.zeros(n, dtype=torch.float64, device=self.device)
            for input_ids, labels in inputs:
                lr = lr_at(step, total_steps, settings)
                grads, loss = self._grad(params, input_ids, labels)
                optimizer.step(params, grads, lr)
                losses += loss.detach().to(torch.float64)
                step += 1
            losses = (losses / n_chunks).tolist()
            end_losses = self._evaluate(params, inputs) if early_stopping else None
            trajectory = trace(params.items(), stacked=True) if trace else None
            improved = []
            for i, run in enumerate(runs):
                if not running[i]:
                    continue
                loss = losses[i]
                run.losses.append(loss)
                run.lrs.append(lr)
                if not math.isfinite(loss):
                    run.failure, run.failed_epoch, running[i] = f"non-finite training loss ({loss})", epoch, False
                    continue
                if trace:
                    run.trajectory.append(trajectory[i])
                if not early_stopping:
                    continue
                # As train.train_text: early stopping compares the loss after the epoch's steps.
                loss = end_losses[i]
                run.end_losses.append(loss)
                if not math.isfinite(loss):
                    run.failure, run.failed_epoch, running[i] = (
                        f"non-finite loss after the epoch ({loss})",
                        epoch,
                        False,
                    )
                    continue
                if loss < best_loss[i]:
                    best_loss[i], run.best_epoch = loss, epoch
                    improved.append(i)
                if loss < reference[i] - settings.min_delta:
                    reference[i], waited[i] = loss, 0
                else:
                    waited[i] += 1
                    if waited[i] >= settings.patience:
                        running[i] = False
            for i in improved:
                best[i] = {name: p[i].clone() for name, p in params.items()}
            if not any(running):
                break

        for i, run in enumerate(runs):
            if not run.ok:
                continue
            if not early_stopping:
                best[i] = {name: p[i] for name, p in params.items()}
                run.best_epoch = run.epochs_run
            if summarise:
                run.stats = summarise(best[i].items())
            else:
                run.after = {name: t.to("cpu", copy=True) for name, t in best[i].items()}
            _fail_if_not_finite(run)
        # The texts trained together: each is charged an equal share of the batch's time.
        seconds = (time.perf_counter() - started) / n
        for run in runs:
            run.seconds = seconds
        return runs

    def _evaluate(self, params: dict[str, torch.Tensor], inputs) -> list[float]:
        """Each copy's mean loss over its chunks, in eval mode, no gradients."""
        self.model.eval()
        try:
            with torch.no_grad():
                total = sum(
                    self._value(params, input_ids, labels).to("cpu", torch.float64) for input_ids, labels in inputs
                )
        finally:
            self.model.train()
        return (total / len(inputs)).tolist()


def _padded(chunks: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids [n, 1, length] right-padded with token 0, and labels with -100 on the padding."""
    length = max(c.shape[1] for c in chunks)
    input_ids = torch.zeros(len(chunks), 1, length, dtype=torch.long)
    labels = torch.full((len(chunks), 1, length), -100, dtype=torch.long)
    for i, c in enumerate(chunks):
        input_ids[i, :, : c.shape[1]] = c
        labels[i, :, : c.shape[1]] = c
    return input_ids.to(device), labels.to(device)


class _StackedOptimizer:
    """The job's optimizer (train._make_optimizer: AdamW or SGD, fused by default) over the
    stacked copies, after clipping each copy's gradients to its own global norm.

    One optimizer serves every copy because their updates differ only through their
    gradients: AdamW and SGD are elementwise, and every copy shares the step count and the
    learning rate (texts of a batch have the same number of steps per epoch)."""

    def __init__(self, params: dict[str, torch.Tensor], settings: Settings):
        self.settings = settings
        self.optimizer = _make_optimizer(list(params.values()), settings, stacked=True)

    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], lr: float) -> None:
        if self.settings.grad_clip > 0:
            _clip_per_copy(list(grads.values()), self.settings.grad_clip)
        for name, p in params.items():
            p.grad = grads[name]
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        for p in params.values():
            p.grad = None


def _clip_per_copy(grads: list[torch.Tensor], max_norm: float) -> None:
    """torch.nn.utils.clip_grad_norm_ for each copy: its gradients scaled by
    min(1, max_norm / (its global L2 norm + 1e-6))."""
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])  # [tensors, n]
    total = torch.linalg.vector_norm(norms, dim=0)
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coefficient.view(-1, *([1] * (g.dim() - 1))))
