"""Throughput of the shared-pass scoring of the log-probability attacks against a naive loop.

Shared: ``paramdelta.attacks.score_texts`` runs the model once per text in padded batches
(plus once per lowercased text) and computes loss, zlib, lowercase, Min-K% and Min-K%++ at
every K from those statistics. Naive: for every text and every attack, run the model on
that text alone and compute that attack's score (all its K from the one run), the way the
reference scripts of Min-K% and Min-K%++ do -- 6 forward passes per text (the lowercase
attack needs two). Both run on the same locally built model and texts; the scores are
checked to agree.

    python benchmarks/bench_scoring.py [--texts 200] [--hidden 128] [--batch-size 16] [--threads 1]
"""

import argparse
import time
import zlib

import numpy as np
import pandas as pd
import torch

from paramdelta import corpus, models, target
from paramdelta.attacks import K_GRID, score_texts
from paramdelta.attacks.forward import eval_mode

ATTACKS = ["loss", "zlib", "lowercase", "mink", "minkpp"]


def log_probs_of(model, tokenizer, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One unbatched forward pass: (log p of each actual next token, full log-softmax)."""
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    log_p = model(ids).logits[0, :-1].float().log_softmax(-1)
    return log_p.gather(-1, ids[0, 1:, None]).squeeze(-1), log_p


def lowest_mean(values: torch.Tensor, k: float) -> float:
    n = max(1, int(k * len(values) // 100))
    return values.sort().values[:n].mean().item()


def naive_scores(model, tokenizer, texts: list[str]) -> pd.DataFrame:
    """Every attack on every text, each with its own forward pass(es)."""
    rows = []
    for index, text in enumerate(texts):
        nll = -log_probs_of(model, tokenizer, text)[0].mean().item()
        rows.append((index, "loss", np.nan, -nll))

        nll = -log_probs_of(model, tokenizer, text)[0].mean().item()
        rows.append((index, "zlib", np.nan, -nll / len(zlib.compress(text.encode("utf-8")))))

        nll = -log_probs_of(model, tokenizer, text)[0].mean().item()
        lower_nll = -log_probs_of(model, tokenizer, text.lower())[0].mean().item()
        rows.append((index, "lowercase", np.nan, -nll / lower_nll))

        token_log_probs = log_probs_of(model, tokenizer, text)[0]
        rows += [(index, "mink", float(k), lowest_mean(token_log_probs, k)) for k in K_GRID]

        token_log_probs, log_p = log_probs_of(model, tokenizer, text)
        p = log_p.exp()
        mu = (p * log_p).sum(-1)
        sigma = (p * (log_p - mu[:, None]).square()).sum(-1).sqrt()
        standardised = (token_log_probs - mu) / sigma.clamp(min=1e-6)
        rows += [(index, "minkpp", float(k), lowest_mean(standardised, k)) for k in K_GRID]
    return pd.DataFrame(rows, columns=["text_id", "method", "k", "score"])


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=16)
    # One thread by default: for a model this small more threads mostly add contention, and
    # the timing should not depend on how busy the machine's other cores are.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = target.train_tokenizer(corpus.generate_corpus(2000, 0), args.vocab)
    config = models.tiny_config(
        "gpt-neox",
        len(tokenizer),
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=4,
        max_positions=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = models.build_model(config, seed=0)
    texts = corpus.generate_corpus(args.texts, 1)
    lengths = [len(tokenizer(text)["input_ids"]) for text in texts]

    with eval_mode(model):
        naive_scores(model, tokenizer, texts[:4])  # warm-up
        naive, naive_seconds = timed(lambda: naive_scores(model, tokenizer, texts))
    score_texts(model, tokenizer, texts[:4], ATTACKS, batch_size=args.batch_size)  # warm-up
    shared, shared_seconds = timed(lambda: score_texts(model, tokenizer, texts, ATTACKS, batch_size=args.batch_size))

    key = ["method", "k", "text_id"]
    difference = np.abs(naive.sort_values(key)["score"].to_numpy() - shared.sort_values(key)["score"].to_numpy()).max()

    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(
        f"GPT-NeoX hidden {args.hidden}, {args.layers} layers, vocabulary {len(tokenizer)}, "
        f"{parameters / 1e6:.2f} M parameters; torch {torch.get_num_threads()} thread(s)"
    )
    print(f"{len(texts)} texts, {min(lengths)}-{max(lengths)} tokens (mean {np.mean(lengths):.0f})")
    print(f"attacks: {', '.join(ATTACKS)} (K in {', '.join(f'{k:g}' for k in K_GRID)}): {len(shared)} scores")
    print()
    table = pd.DataFrame(
        {
            "forward passes / text": [6, 2],
            "batch size": [1, args.batch_size],
            "seconds": [naive_seconds, shared_seconds],
            "texts / s": [len(texts) / naive_seconds, len(texts) / shared_seconds],
        },
        index=pd.Index(["naive loop", "shared pass"], name="scoring"),
    )
    print(table.to_string(float_format=lambda value: f"{value:.2f}"))
    print()
    print(f"speed-up: {naive_seconds / shared_seconds:.1f}x; largest score difference {difference:.1e}")


if __name__ == "__main__":
    main()
