"""UnTrac and UnTrac-Inv: unlearn a set by gradient ascent, record the losses that move.

UnTrac (eq. 2) ascends on a training set Z and measures how the loss on each evaluation set Z'
rises; UnTrac-Inv (eq. 4) ascends on an evaluation set and measures the rise on each training
set. Both are one function: ``ascend(forget, measured)``. The losses are recorded before the
first step and after every epoch, so one run gives the influence at every epoch budget up to
its last (the paper's figures 2 and 3).

The model is put back exactly as it came (a copy of its weights, restored bit for bit), so one
process can run several unlearning runs on one loaded model, as the membership jobs run several
texts on one base model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from paramdelta.attribution import lm

# Optimizers of the paper's table 4; `sgd-momentum` is SGD with momentum 0.9.
OPTIMIZERS = ("adam", "sgd", "sgd-momentum", "rmsprop", "adafactor")


@dataclass(frozen=True)
class Settings:
    """One unlearning run's settings; ``batch_size`` None means the whole set in one batch."""

    optimizer: str = "adam"
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int | None = 1
    epochs: int = 1


def make_optimizer(params, settings: Settings) -> torch.optim.Optimizer:
    name, lr = settings.optimizer, settings.lr
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=settings.betas)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adafactor":
        return torch.optim.Adafactor(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


def set_losses(model, measured: dict[str, lm.Encoded], pad_id: int) -> dict[str, float]:
    """Each set's loss: the sum of its examples' losses."""
    return {name: lm.losses(model, examples, pad_id).sum().item() for name, examples in measured.items()}


def ascend(
    model: torch.nn.Module,
    forget: lm.Encoded,
    measured: dict[str, lm.Encoded],
    settings: Settings,
    *,
    pad_id: int,
    seed: int,
) -> list[dict]:
    """Gradient ascent on ``forget``; rows ``{epoch, set, loss}`` for epoch 0 (before any step)
    up to ``settings.epochs``, ``loss`` being the sum of the set's example losses.

    Batches are drawn in a seeded order; a batch's objective is the mean of its examples'
    losses, maximised (eq. 3). The model runs in eval mode (no dropout) and its weights are
    restored exactly before returning, also when a step fails.
    """
    saved = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    was_training = model.training
    rng = random.Random(seed)
    batch_size = settings.batch_size or len(forget)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], settings)
    rows = [{"epoch": 0, "set": name, "loss": loss} for name, loss in set_losses(model, measured, pad_id).items()]
    try:
        model.eval()
        for epoch in range(1, settings.epochs + 1):
            order = list(range(len(forget)))
            rng.shuffle(order)
            for start in range(0, len(order), batch_size):
                batch = [forget[i] for i in order[start : start + batch_size]]
                (-lm.batch_loss(model, batch, pad_id)).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            losses = set_losses(model, measured, pad_id)
            rows += [{"epoch": epoch, "set": name, "loss": loss} for name, loss in losses.items()]
    finally:
        with torch.no_grad():
            model.load_state_dict(saved)
        model.train(was_training)
    return rows
