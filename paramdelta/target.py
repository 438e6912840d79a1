"""Build a target model whose training members are known (METHOD.md section 2).

A corpus is split at random into background documents, members and
non-members. A base model is pre-trained on the background (or an existing
model is taken as the base), then continually pre-trained on the members: the
result, the thesis's "myLLM", has seen exactly the members and none of the
non-members, which come from the same distribution. Models and tokenizers are
saved as ordinary Hugging Face directories, so a built target loads through the
same `from_pretrained` path as a hub model.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from paramdelta.atomic import atomic_directory

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(documents: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the documents (nothing downloaded)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer=trainer)
    # Every encoded text starts with the boundary token, as documents did in pre-training.
    eos_id = tokenizer.token_to_id(EOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{EOS} $A", pair=f"{EOS} $A {EOS} $B", special_tokens=[(EOS, eos_id)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, pad_token=PAD)


def _batches(documents: Sequence[str], batch_size: int, rng: random.Random):
    order = list(range(len(documents)))
    rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        yield [documents[i] for i in order[start : start + batch_size]]


def pretrain(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    documents: Sequence[str],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    max_length: int,
) -> list[float]:
    """Plain causal-LM training over documents (padded batches, padding out of the loss).

    AdamW with a cosine schedule and a short warm-up; returns the mean loss per epoch.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    total = epochs * -(-len(documents) // batch_size)
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / total)).item()),
    )
    history = []
    for _ in range(epochs):
        losses = []
        for batch in _batches(documents, batch_size, rng):
            encoded = tokenizer(
                [doc + tokenizer.eos_token for doc in batch],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_length,
            )
            labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
            loss = model(**encoded, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        history.append(sum(losses) / len(losses))
    return history


def save(model, tokenizer, path: str | os.PathLike) -> None:
    """Save model and tokenizer as one Hugging Face directory, atomically."""
    with atomic_directory(path) as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
