"""Training on the mix of training sets, and leave-one-out retraining (the truth, eq. 1).

The model trained on every training set is the one attribution explains; the model trained
without set Z starts from the same weights, sees the rest in the same seeded way, and takes the
same number of optimizer steps (the paper fixes the steps, not the epochs), cycling through the
smaller mix. AdamW at a constant learning rate, so TracIn's step size is the same at every
kept checkpoint.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import torch

from paramdelta.attribution import lm


def total_steps(n_examples: int, epochs: int, batch_size: int) -> int:
    """Optimizer steps of ``epochs`` passes over ``n_examples`` (the last batch may be short)."""
    return epochs * math.ceil(n_examples / batch_size)


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """``count`` steps spread evenly over training, the last one included."""
    return sorted({max(1, round(steps * k / count)) for k in range(1, count + 1)})


def _batches(examples: lm.Encoded, batch_size: int, rng: random.Random) -> Iterator[lm.Encoded]:
    """Seeded shuffled passes over the examples, without end."""
    while True:
        order = list(range(len(examples)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            yield [examples[i] for i in order[start : start + batch_size]]


def mix(training: dict[str, lm.Encoded], leave_out: str | None = None) -> lm.Encoded:
    """The training examples of every set but ``leave_out``, in the config's set order."""
    if leave_out is not None and leave_out not in training:
        raise ValueError(f"unknown training set {leave_out!r}; known: {list(training)}")
    return [example for name, examples in training.items() if name != leave_out for example in examples]


def train(
    model: torch.nn.Module,
    examples: lm.Encoded,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    pad_id: int,
    keep: list[int] | tuple[int, ...] = (),
) -> tuple[list[float], list[tuple[int, dict[str, torch.Tensor]]]]:
    """``steps`` AdamW steps over the examples; returns the loss of every step and a CPU copy of
    the weights after each step in ``keep`` (TracIn's checkpoints)."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    model.train()
    history: list[float] = []
    kept: list[tuple[int, dict[str, torch.Tensor]]] = []
    batches = _batches(examples, batch_size, rng)
    for step in range(1, steps + 1):
        loss = lm.batch_loss(model, next(batches), pad_id)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.append(loss.item())
        if not math.isfinite(history[-1]):
            raise FloatingPointError(f"training loss is {history[-1]} at step {step}; lower the learning rate")
        if step in keep:
            kept.append((step, {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}))
    return history, kept
