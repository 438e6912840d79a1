"""Token batches and losses, the one definition every attribution method shares.

``L(z)`` of an example is its mean next-token negative log-likelihood (every token after the
first, the end-of-text token included). A set's loss is the sum of its examples' losses, so the
sums over batches of the paper's equations (1), (2) and (4) are sums over examples here.

Batches are right-padded and the model sees no attention mask: under causal attention a
position never attends to the padding after it, so every real token's logits are those of the
unpadded text. That keeps one forward definition for training, for the per-example losses and
for the functional calls (`torch.func`) the gradient methods make, where a mask cannot pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Encoded = list[list[int]]


def encode(tokenizer, texts: Sequence[str], max_length: int) -> Encoded:
    """Token ids of each text followed by the end-of-text token, cut at ``max_length``."""
    encoded = []
    for text in texts:
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        encoded.append(ids[:max_length])
    return encoded


def pad(examples: Encoded, pad_id: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``: the examples right-padded to ``length`` (their longest by default)."""
    length = length or max(len(ids) for ids in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        ids[row, : len(example)] = torch.tensor(example)
        mask[row, : len(example)] = 1
    return ids, mask


def token_losses(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each example's mean next-token NLL, from logits ``(batch, length, vocab)``."""
    logits = logits if logits.dtype == torch.float64 else logits.float()  # bf16/fp16 models: fp32 losses
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    weights = mask[:, 1:].to(nll.dtype)
    return (nll * weights).sum(1) / weights.sum(1).clamp_min(1)


def example_losses(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-example losses of one padded batch (with the autograd graph)."""
    return token_losses(model(input_ids=ids).logits, ids, mask)


def batch_loss(model, examples: Encoded, pad_id: int) -> torch.Tensor:
    """The mean of the examples' losses: the training objective of one batch."""
    device = next(model.parameters()).device
    return example_losses(model, *(tensor.to(device) for tensor in pad(examples, pad_id))).mean()


@torch.no_grad()
def losses(model, examples: Encoded, pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """Every example's loss, evaluated in batches without gradients (float64 on the CPU)."""
    was_training = model.training
    model.eval()
    out = []
    device = next(model.parameters()).device
    for start in range(0, len(examples), batch_size):
        ids, mask = pad(examples[start : start + batch_size], pad_id)
        out.append(example_losses(model, ids.to(device), mask.to(device)).double().cpu())
    model.train(was_training)
    return torch.cat(out)
