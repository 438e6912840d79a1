"""The training fast path, before and after, in one run: what one epoch of one text costs.

Three levers of paramdelta.train, each timed against what it replaced, on the same model
and texts (random init, a locally trained tokenizer; nothing downloads):

- optimizer: a training step with torch's default AdamW against the fused one
  (`train.fused`), and the largest parameter difference after the run (goal: <= 1e-6);
- early stopping's best state: a copy of the whole fp32 state to host memory at an
  improving epoch (what the job did) against a copy on the device (`keep`, when it fits)
  and against only the per-layer statistics (`sketch` with no room for a copy). On a CPU
  "host" and "device" are the same memory, so the first two cost alike here; the row says
  what the statistics cost;
- texts side by side (`train.parallel_texts`): texts per second of a budget-5 run, one at
  a time against N at a time, and the largest parameter difference between the two;
- the host's AdamW step under ZeRO-Offload (DeepSpeed keeps the optimizer in host memory and
  steps it there): one step of a flat fp32 state of --offload-params parameters with torch's
  default AdamW, its fused one, and DeepSpeed's CPU Adam (`train.offload_adam: deepspeed`),
  each made by train._make_optimizer as the job makes it, and the largest difference from
  torch's default after 5 steps.

    python benchmarks/bench_fast_path.py [--hidden 64 --layers 2 --vocab 1024] [--texts 50]
        [--offload-params 50000000] [--threads 1]

Prints the machine first; every figure is from this one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import torch
from _machine import cpu_model

from paramdelta import corpus, deltas, models, target, train
from paramdelta.config import defaults

KS = defaults("features", "k")  # the schema's default top-K% grid of the sketch


def machine() -> str:
    return f"{os.cpu_count()} CPUs, {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def build(args, directory: str):
    documents = corpus.generate_corpus(400, 3)
    tokenizer = target.train_tokenizer(documents[:300], args.vocab)
    config = models.tiny_config(
        args.arch,
        len(tokenizer),
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        max_positions=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    path = os.path.join(directory, "model")
    target.save(models.build_model(config, seed=0), tokenizer, path)
    model, tokenizer = models.load_with_tokenizer(path)
    texts = [" ".join(doc.split()[: args.words]) for doc in documents[300 : 300 + args.texts]]
    items = [(f"t{i}", train.chunk(tokenizer(text)["input_ids"], 256)) for i, text in enumerate(texts)]
    return path, items


def timed(function, repeats: int) -> float:
    function()  # warm-up: first allocations, lazy imports
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def max_diff(a: dict, b: dict) -> float:
    return max((a[name] - b[name]).abs().max().item() for name in a)


def host_steps(n: int, settings: train.Settings) -> list[tuple]:
    """ZeRO-Offload's AdamW step on the host: torch's default, torch's fused, DeepSpeed's CPU Adam."""
    generator = torch.Generator().manual_seed(0)
    gradients = [torch.randn(n, generator=generator) * 1e-3 for _ in range(5)]
    variants = {
        "torch's default AdamW": dataclasses.replace(settings, fused=False),
        "torch's fused AdamW (train.fused)": dataclasses.replace(settings, fused=True),
        "DeepSpeed's CPU Adam (train.offload_adam)": dataclasses.replace(settings, offload_adam="deepspeed"),
    }
    times, states, rows = {}, {}, []
    for name, variant in variants.items():
        weight = torch.nn.Parameter(torch.zeros(n))
        try:
            optimizer = train._make_optimizer([weight], variant, deepspeed_cpu_adam=variant.offload_adam == "deepspeed")
        except Exception as error:  # DeepSpeed's op could not be built here: say so, time the rest
            rows.append((f"host step, {name}", float("nan"), float("nan"), f"not available: {error}"))
            continue
        for gradient in gradients:  # the first steps allocate the moments: not timed
            weight.grad = gradient
            optimizer.step()
        states[name] = {"w": weight.detach().clone()}
        times[name] = timed(optimizer.step, 5)
    baseline = next(iter(variants))
    for name in times:
        difference = max_diff(states[baseline], states[name])
        note = f"{n / 1e6:.0f} M parameters, {torch.get_num_threads()} thread(s); max |diff| after 5 steps {difference:.1e}"
        rows.append((f"host step, {name}", times[name], times[baseline] / times[name], note))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="gpt-neox", choices=["gpt-neox", "llama"])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--texts", type=int, default=50)
    parser.add_argument("--words", type=int, default=32)
    parser.add_argument("--parallel-texts", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--offload-params", type=int, default=50_000_000, help="the host step's state (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")

    with tempfile.TemporaryDirectory() as directory:
        path, items = build(args, directory)
        load = lambda: models.load_causal_lm(path)  # noqa: E731
        n_params = sum(p.numel() for p in load().parameters())
        tokens = sum(c.shape[1] for _, chunks in items for c in chunks) / len(items)
        print(
            f"model: {args.arch}, hidden {args.hidden}, {args.layers} layers, {n_params / 1e6:.3f} M parameters; "
            f"{len(items)} texts of {args.words} words ({tokens:.0f} tokens on average)"
        )
        settings = train.Settings(lr=3e-5)
        rows = []

        # 1. The optimizer: one training step, default against fused.
        step_times, after = {}, {}
        for fused in (False, True):
            s = dataclasses.replace(settings, fused=fused)
            engine = train.TorchEngine(load(), s, torch.device("cpu"))
            engine.reset()
            chunk = items[0][1][0]
            step_times[fused] = timed(lambda engine=engine, chunk=chunk, s=s: engine.step(chunk, s.lr), 20)
            after[fused] = train.train_text(engine, "t", items[0][1], "5", s).after
        rows.append(("training step, torch's default AdamW", step_times[False], 1.0, ""))
        rows.append(
            (
                "training step, fused AdamW (train.fused)",
                step_times[True],
                step_times[False] / step_times[True],
                f"max |diff| after 5 steps {max_diff(after[False], after[True]):.1e} (goal <= 1e-6)",
            )
        )

        # 2. Early stopping's best state at an improving epoch.
        engine = train.TorchEngine(load(), settings, torch.device("cpu"))
        engine.reset()
        layers = models.model_layers(engine.model)
        host = engine.state()
        kept = engine.keep()
        copy_host = timed(lambda: engine.state(into=host), 20)
        copy_device = timed(lambda: engine.keep(into=kept), 20)
        statistics = timed(lambda: deltas.layer_stats(layers, engine.base, engine.named_fp32(), KS), 5)
        rows.append(("best state: copy to host memory (before)", copy_host, 1.0, "per improving epoch"))
        rows.append(
            ("best state: copy on the device (keep)", copy_device, copy_host / copy_device, "CPU: the same memory")
        )
        rows.append(
            ("best state: per-layer statistics only", statistics, copy_host / statistics, "sketch, no room for a copy")
        )

        # 3. Texts side by side against one at a time, budget 5.
        one_engine = train.TorchEngine(load(), settings, torch.device("cpu"))
        started = time.perf_counter()
        alone = [train.train_text(one_engine, text_id, chunks, "5", settings) for text_id, chunks in items]
        one_at_a_time = (time.perf_counter() - started) / len(items)
        from paramdelta.side_by_side import SideBySideEngine

        side = SideBySideEngine(load(), settings, torch.device("cpu"), args.parallel_texts)
        side.train(items[: min(2, len(items))], "1")  # warm-up
        started = time.perf_counter()
        together = side.train(items, "5")
        side_by_side = (time.perf_counter() - started) / len(items)
        difference = max(max_diff(a.after, b.after) for a, b in zip(alone, together))
        rows.append(("text, budget 5, one at a time (before)", one_at_a_time, 1.0, f"{1 / one_at_a_time:.1f} texts/s"))
        rows.append(
            (
                f"text, budget 5, {args.parallel_texts} side by side",
                side_by_side,
                one_at_a_time / side_by_side,
                f"{1 / side_by_side:.1f} texts/s; max |diff| {difference:.1e} (goal <= 1e-6)",
            )
        )

    if args.offload_params:
        rows += host_steps(args.offload_params, settings)

    width = max(len(row[0]) for row in rows)
    print(f"\n{'':{width}}  {'ms':>9}  {'speed-up':>8}  note")
    for name, seconds, speedup, note in rows:
        print(f"{name:{width}}  {seconds * 1e3:9.3f}  {speedup:7.2f}x  {note}")


if __name__ == "__main__":
    main()
