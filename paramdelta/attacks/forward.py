"""The shared forward pass: per-token statistics of texts under a causal LM, computed once.

Every log-probability attack reads the same statistics (mimir's shape: the model wrapper
computes token log-probabilities once and the attacks consume them). For a text with tokens
x_0 .. x_{T-1} (as the tokenizer encodes it, special tokens included) position t = 1 .. T-1
holds

* ``log_probs[t-1]`` = log p(x_t | x_<t); the first token has no context and is not scored;
* ``mu[t-1]``    = sum_z p(z | x_<t) log p(z | x_<t), the mean log-probability under the
  model's own next-token distribution;
* ``sigma[t-1]`` = the standard deviation of log p(z | x_<t) under that distribution
  (Min-K%++, Zhang et al. 2024).

All three come from one fp32 ``log_softmax`` of the logits. mu and sigma cost two more
passes over the vocabulary per position; a pass whose attacks only need ``log_probs`` (the
lowercased texts) skips them.

A text longer than the window (the model's context, or ``train.max_length``) is handled the
way training handles it: split into the same consecutive, balanced chunks
(``paramdelta.train.chunk``), each run as a sequence of its own; the statistics of the
chunks are concatenated, so the first token of every chunk is unscored. Every attack then
sees the whole text, and the loss attack scores exactly the tokens training learns from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from paramdelta import models
from paramdelta.config import defaults

BATCH_SIZE = defaults("baselines", "batch_size")  # config/schema.yaml's texts per forward batch


@dataclass(frozen=True)
class TokenStats:
    """Per-token statistics of one text under one model (see the module docstring)."""

    token_ids: np.ndarray  # int64, shape (T,)
    log_probs: np.ndarray  # float64, shape (T - 1,)
    mu: np.ndarray | None = None  # float64, shape (T - 1,); None where not computed
    sigma: np.ndarray | None = None

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood per scored token (nats): the causal-LM loss."""
        return float(-self.log_probs.mean())


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off and no autograd for the block; the model's training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def pad_id(tokenizer) -> int:
    """The id used for padding: the tokenizer's pad token, else its end-of-text token.

    Padded positions are masked out, so any valid id works; the tokenizer is not modified.
    """
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


def _encode(tokenizer, texts: Sequence[str], window: int) -> list[list[list[int]]]:
    """Token ids of every text as the tokenizer encodes it alone (special tokens included),
    split into the chunks training uses when it is longer than ``window`` tokens.

    A text needs two tokens for one to be scored.
    """
    from paramdelta.train import chunk

    encoded = [tokenizer(text)["input_ids"] for text in texts]
    too_short = [i for i, ids in enumerate(encoded) if len(ids) < 2]
    if too_short:
        raise ValueError(f"texts at positions {too_short} have fewer than 2 tokens: nothing to score")
    return [[piece[0].tolist() for piece in chunk(ids, window)] for ids in encoded]


def _joined(parts: list[TokenStats]) -> TokenStats:
    """The statistics of a text's chunks, in order, as one text's."""
    if len(parts) == 1:
        return parts[0]

    def cat(name):
        values = [getattr(part, name) for part in parts]
        return None if values[0] is None else np.concatenate(values)

    return TokenStats(cat("token_ids"), cat("log_probs"), cat("mu"), cat("sigma"))


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first) to reduce padding."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _right_padded(sequences: list[list[int]], padding: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), padding, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)


def _float64(tensor: torch.Tensor) -> np.ndarray:
    return tensor.double().cpu().numpy()


def _row_stats(logits: torch.Tensor, ids: torch.Tensor, moments: bool) -> TokenStats:
    """Statistics of one text from its own (unpadded) logits, shape (T, vocab)."""
    log_p = torch.log_softmax(logits[:-1].float(), dim=-1)
    token_log_probs = log_p.gather(-1, ids[1:, None]).squeeze(-1)
    if not moments:
        return TokenStats(ids.cpu().numpy(), _float64(token_log_probs))
    p = log_p.exp()
    mu = (p * log_p).sum(-1)
    # The centred form equals sum p (log p)^2 - mu^2 but cannot go negative by cancellation.
    sigma = (p * (log_p - mu[:, None]).square()).sum(-1).sqrt()
    return TokenStats(ids.cpu().numpy(), _float64(token_log_probs), _float64(mu), _float64(sigma))


def token_stats(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = BATCH_SIZE,
    moments: bool = True,
    max_length: int | None = None,
) -> list[TokenStats]:
    """Per-token statistics of every text, in input order, from one forward pass per text.

    Texts are sorted by length and run in right-padded batches of ``batch_size`` (padding
    comes after the text, so causal attention keeps it out of every real position and
    positions start at 0 as in an unpadded run). The logits of a batch are released before
    the next batch runs: at a 50k vocabulary they are the largest tensor of the pass.
    ``moments=False`` leaves ``mu`` and ``sigma`` out (None). A text longer than
    ``max_length`` (default: the model's context) runs as the chunks training uses.
    """
    window = min(max_length or models.context_length(model), models.context_length(model))
    chunked = _encode(tokenizer, texts, window)
    # Every chunk is a sequence of its own: (text, chunk) pairs run in the same batches.
    pieces = [(index, ids) for index, chunks in enumerate(chunked) for ids in chunks]
    device = next(model.parameters()).device
    results: list[TokenStats | None] = [None] * len(pieces)
    with eval_mode(model):
        for batch in length_batches([len(ids) for _, ids in pieces], batch_size):
            input_ids, attention_mask = _right_padded([pieces[i][1] for i in batch], pad_id(tokenizer), device)
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            for row, index in enumerate(batch):
                length = len(pieces[index][1])
                results[index] = _row_stats(logits[row, :length], input_ids[row, :length], moments)
            del logits
    per_text: list[list[TokenStats]] = [[] for _ in texts]
    for (index, _), stats in zip(pieces, results):
        per_text[index].append(stats)
    return [_joined(parts) for parts in per_text]
