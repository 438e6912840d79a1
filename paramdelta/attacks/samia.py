"""SaMIA and SaMIA*zlib (Kaneko et al. 2024, "Sampling-based Pseudo-Likelihood for Membership
Inference Attacks"; code: github.com/nlp-titech/samia).

The model sees only the first half of a text and writes several continuations; a member's
true second half is reproduced more often. Per text:

1. prefix = the first floor(n/2) of its n whitespace-separated words; reference = the rest.
2. ``n_samples`` continuations of the prefix are sampled (temperature 1, top-k 50).
3. Each candidate is scored by ROUGE-1 recall of the reference's unigrams; SaMIA*zlib
   multiplies each candidate's ROUGE-1 by the zlib-compressed byte length of that candidate,
   which down-weights degenerate, repetitive candidates.
4. The score is the mean over candidates (higher = member).

Where the paper leaves a detail open, or the authors' code and the paper part ways:

* Prefix: the first int(n * 0.5) words of ``text.split()``, as both paper ("first half") and
  code do.
* Reference: the text's own words after the prefix. The code instead drops round(L * 0.5)
  words, L the nominal WikiMIA length (32, 64, ...), not the text's word count, and splits
  on single spaces.
* Candidate length: generation stops at the end-of-text token or after as many tokens as the
  reference has (the paper gives no length). The code generates until the end-of-text token
  or 1024 tokens of prompt plus continuation, so its candidates can be far longer than the
  reference, which raises recall for members and non-members alike.
* Candidate text: as in the code, prompt plus continuation are decoded together, split on
  whitespace, and the prefix's number of words is dropped (a continuation that glues onto
  the last prefix word is thereby cut the same way the code cuts it). SaMIA*zlib compresses
  the remaining words joined by single spaces, as the code does.
* ROUGE-1 (the paper's ROUGE-N recall with N = 1): clipped unigram overlap divided by the
  number of reference unigrams, computed here on lowercased word tokens (``\\w+``, so
  punctuation is dropped), close to Google's rouge-score package (which keeps [a-z0-9]+).
  The code compares case-sensitive space-separated tokens with punctuation attached.
* Texts longer than the window (the model's context, or ``train.max_length``): sampling
  cannot continue past the context, so SaMIA reads such a text's first window, the longest
  run of its first words whose tokens fit in it, and splits that into prefix and reference
  (the log-probability attacks and training see the whole text in chunks instead).
* Sampling: each text has its own random generator seeded from (``seed``, text), so its
  candidates are reproducible and do not depend on the batch, the shard or the order of
  texts; the code samples unseeded, one ``generate`` call per candidate. Here the
  ``n_samples`` candidates of a text, and several texts, are drawn in one batch with a
  key-value cache.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from paramdelta import models
from paramdelta.attacks.forward import eval_mode, length_batches, pad_id
from paramdelta.attacks.score import SCORE_COLUMNS
from paramdelta.attacks.zlib_ratio import zlib_length
from paramdelta.config import defaults

METHODS = ("samia", "samia-zlib")
_SAMIA = defaults("baselines", "samia")  # config/schema.yaml's n_samples, seed and batch_size
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class SplitText:
    prefix: str
    prefix_words: int
    reference: str


def first_window(text: str, tokenizer, window: int) -> str:
    """The text itself if it fits in ``window`` tokens, else its longest first-words run that does."""
    if len(tokenizer(text)["input_ids"]) <= window:
        return text
    words = text.split()
    fits, too_long = 0, len(words)
    while too_long - fits > 1:  # binary search on the number of words
        middle = (fits + too_long) // 2
        if len(tokenizer(" ".join(words[:middle]))["input_ids"]) <= window:
            fits = middle
        else:
            too_long = middle
    return " ".join(words[:fits])


def split_text(text: str) -> SplitText:
    """Prefix = the first floor(n/2) whitespace-separated words; reference = the rest."""
    words = text.split()
    if len(words) < 2:
        raise ValueError(f"SaMIA needs at least 2 words to split into prefix and reference, got {text!r}")
    half = len(words) // 2
    return SplitText(" ".join(words[:half]), half, " ".join(words[half:]))


def rouge_tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rouge1_recall(candidate: str, reference: str) -> float:
    """ROUGE-1 recall: reference unigrams matched by the candidate (each at most as often as
    the candidate has it) over the number of reference unigrams; 0 if either has none."""
    candidate_counts = Counter(rouge_tokens(candidate))
    reference_counts = Counter(rouge_tokens(reference))
    total = sum(reference_counts.values())
    if total == 0 or not candidate_counts:
        return 0.0
    return sum((candidate_counts & reference_counts).values()) / total


def samia_score(candidates: Sequence[str], reference: str, *, zlib_weighted: bool) -> float:
    """Mean over candidates of ROUGE-1 recall of ``reference`` (times the candidate's zlib
    length for SaMIA*zlib)."""
    if not candidates:
        raise ValueError("SaMIA needs at least one candidate")
    values = [
        rouge1_recall(candidate, reference) * (zlib_length(candidate) if zlib_weighted else 1)
        for candidate in candidates
    ]
    return float(np.mean(values))


def text_seed(seed: int, text: str) -> int:
    """A 63-bit seed from (seed, text): the same text gets the same samples wherever it is run."""
    digest = hashlib.sha256(f"{seed}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _sample_next(
    logits: torch.Tensor, generators: list[torch.Generator], n_samples: int, top_k: int, temperature: float
) -> torch.Tensor:
    """One token per row; rows [i * n_samples, (i + 1) * n_samples) draw from generator i."""
    logits = logits.float() / temperature
    if top_k < logits.shape[-1]:
        kth_largest = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    draws = [
        torch.multinomial(probs[i * n_samples : (i + 1) * n_samples], 1, generator=generator)
        for i, generator in enumerate(generators)
    ]
    return torch.cat(draws).squeeze(-1)


def _left_padded(prompts: list[list[int]], padding: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), padding, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def sample_continuations(
    model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: Sequence[int],
    seeds: Sequence[int],
    *,
    n_samples: int,
    eos_token_id: int | None,
    padding: int,
    top_k: int = 50,
    temperature: float = 1.0,
) -> list[list[list[int]]]:
    """``n_samples`` sampled continuations (token ids) of each prompt, all in one batch.

    A continuation ends after ``max_new_tokens`` of its prompt or at the end-of-text token
    (not included). Prompts are left-padded, with positions counted from each prompt's first
    real token, so every row sees what it would see alone.
    """
    context = models.context_length(model)
    if any(len(prompt) + limit > context for prompt, limit in zip(prompts, max_new_tokens)):
        raise ValueError(f"a prompt plus its continuation would exceed the model's context of {context} tokens")
    if top_k < 1 or temperature <= 0:
        raise ValueError(f"sampling needs top_k >= 1 and temperature > 0, got {top_k} and {temperature}")
    device = next(model.parameters()).device
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    rows = [list(prompt) for prompt in prompts for _ in range(n_samples)]
    limits = torch.tensor([limit for limit in max_new_tokens for _ in range(n_samples)], device=device)
    input_ids, attention_mask = _left_padded(rows, padding, device)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    drawn = []
    finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
    with eval_mode(model):
        # logits_to_keep=1: only the last position is sampled from; the prompt's full
        # [rows, length, vocabulary] logits would be the largest tensor of the run.
        output = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=1,
        )
        for step in range(int(limits.max())):
            tokens = _sample_next(output.logits[:, -1], generators, n_samples, top_k, temperature)
            drawn.append(tokens)
            if eos_token_id is not None:
                finished |= tokens == eos_token_id
            finished |= limits <= step + 1
            if bool(finished.all()):
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), 1))], dim=-1)
            # A row that has finished keeps being fed until the whole batch has; its outputs
            # are discarded, but its positions must stay inside the position table.
            position_ids = (position_ids[:, -1:] + 1).clamp(max=context - 1)
            output = model(
                input_ids=tokens[:, None],
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=output.past_key_values,
                use_cache=True,
            )
    drawn = torch.stack(drawn, dim=1).tolist()
    continuations = []
    for row, limit in zip(drawn, limits.tolist()):
        row = row[:limit]
        if eos_token_id is not None and eos_token_id in row:
            row = row[: row.index(eos_token_id)]
        continuations.append(row)
    return [continuations[i * n_samples : (i + 1) * n_samples] for i in range(len(prompts))]


def samia_scores(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    n_samples: int = _SAMIA["n_samples"],
    seed: int = _SAMIA["seed"],
    batch_size: int = _SAMIA["batch_size"],
    top_k: int = 50,
    temperature: float = 1.0,
    text_ids: Sequence[Hashable] | None = None,
    max_length: int | None = None,
) -> pd.DataFrame:
    """SaMIA and SaMIA*zlib scores of ``texts`` (higher = member), as a long table.

    Columns as ``score_texts``: ``text_id`` (``text_ids`` or the position), ``method``
    (``samia``, ``samia-zlib``; both from the same candidates), ``k`` (NaN), ``score``.
    ``batch_size`` texts are sampled together, ``batch_size * n_samples`` sequences. A text
    longer than ``max_length`` (default: the model's context) is read up to its first window.
    """
    if text_ids is not None and len(text_ids) != len(texts):
        raise ValueError(f"{len(text_ids)} text_ids for {len(texts)} texts")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    context = models.context_length(model)
    window = min(max_length or context, context)
    splits = [split_text(first_window(text, tokenizer, window)) for text in texts]
    prompts = [tokenizer(split.prefix)["input_ids"] for split in splits]
    limits = []
    for prompt, split in zip(prompts, splits):
        reference_tokens = len(tokenizer(" " + split.reference, add_special_tokens=False)["input_ids"])
        limit = min(max(1, reference_tokens), context - len(prompt))
        if limit < 1:
            raise ValueError(f"the prefix of {split.prefix[:60]!r}... fills the model's context of {context} tokens")
        limits.append(limit)
    candidates: list[list[str]] = [[] for _ in texts]
    for batch in length_batches([len(prompt) for prompt in prompts], batch_size):
        sampled = sample_continuations(
            model,
            [prompts[i] for i in batch],
            [limits[i] for i in batch],
            [text_seed(seed, texts[i]) for i in batch],
            n_samples=n_samples,
            eos_token_id=tokenizer.eos_token_id,
            padding=pad_id(tokenizer),
            top_k=top_k,
            temperature=temperature,
        )
        for index, continuations in zip(batch, sampled):
            for continuation in continuations:
                decoded = tokenizer.decode(
                    prompts[index] + continuation, skip_special_tokens=True, clean_up_tokenization_spaces=False
                )
                candidates[index].append(" ".join(decoded.split()[splits[index].prefix_words :]))
    ids = list(range(len(texts))) if text_ids is None else list(text_ids)
    rows = [
        (text_id, method, np.nan, samia_score(candidates[i], splits[i].reference, zlib_weighted=method == "samia-zlib"))
        for method in METHODS
        for i, text_id in enumerate(ids)
    ]
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
