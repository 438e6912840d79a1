"""Measure the `cpu-2core` entry of paramdelta.estimate's cost model on this machine.

    python benchmarks/calibrate_estimate.py            # about a minute; run it alone on the machine

Prints the rates the estimate's CPU entry is made of, each from the code the training job runs:

- memory traffic: one AdamW step (gradient clipping and the job's AdamW, train._make_optimizer) of a GPT-NeoX
  model of about 30M parameters, turned into bytes/s with the estimate's own count of bytes per
  parameter (paramdelta.estimate.traffic);
- compute: forward + backward of a 256-token chunk of the same model, as FLOP/s (6 x params x tokens);
- fixed cost of a step: a whole train.TorchEngine.step of the demo's model (about 200k parameters,
  where the floors above are negligible), less what the two floors predict; the same for early
  stopping's evaluation (TorchEngine.evaluate, a forward pass without gradients);
- host copies (restoring the base, taking a state), the sketch statistics (deltas.layer_stats) and
  a delta/full store write (store.write_tensors, zstd), in bytes or elements per second;
- the start of a training job: importing paramdelta.train_job and loading a tiny model, in a fresh process;
- the host memory of a whole training job (peak RSS of a fresh process) beside estimate.host_memory's count.

Times are CPU time of this process (time.process_time; the job start: the child's user + system
time), the best of a few repeats, so that other work on a shared machine inflates them little; with
one torch thread (--threads 1, the default: the demo's jobs run one thread each) CPU time is the
time the work takes alone.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _machine import cpu_model

from paramdelta import deltas, estimate, models, store, train
from paramdelta.config import defaults


def best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        function()
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}")

    # Memory traffic and compute, on a model large enough to be out of the fixed costs.
    config = models.tiny_config("gpt-neox", 4096, hidden_size=512, num_layers=8, num_heads=8, max_positions=512)
    model = models.build_model(config, 0)
    params = sum(p.numel() for p in model.parameters())
    optimizer = train._make_optimizer(model.parameters(), train.Settings())  # as the training job makes it
    ids = torch.randint(0, 4096, (1, 256))

    def forward_backward():
        model(input_ids=ids, labels=ids).loss.backward()

    def optimizer_step():
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    forward_backward()
    optimizer_step()  # the moments exist from here on
    fb = best(forward_backward, args.repeats)
    step = best(optimizer_step, args.repeats)
    optimizer_bytes = estimate.traffic("torch", "fp32", "adamw", 0.0, 1.0, 1, 0)["optimizer"]
    flops = 6 * params * ids.shape[1] / fb
    bandwidth = optimizer_bytes * params / step
    print(
        f"model of {params / 1e6:.1f} M parameters: forward+backward of {ids.shape[1]} tokens {fb * 1e3:.0f} ms "
        f"-> {flops / 1e9:.1f} GFLOP/s; clip + AdamW step {step * 1e3:.0f} ms at {optimizer_bytes} B/param "
        f"-> {bandwidth / 1e9:.2f} GB/s"
    )

    # The fixed cost of a whole step: the demo's model on a 60-token text, where the floors are tiny.
    demo = models.tiny_config("gpt-neox", 1024, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256)
    tiny = models.build_model(demo, 0)
    tiny_params = sum(p.numel() for p in tiny.parameters())
    engine = train.TorchEngine(tiny, train.Settings(), torch.device("cpu"))
    engine.reset()
    chunk = torch.randint(0, 1024, (1, 60))
    whole = best(lambda: [engine.step(chunk, 3e-5) for _ in range(20)], args.repeats) / 20
    bytes_per_param = sum(estimate.traffic("torch", "fp32", "adamw", 0.0, 1.0, 1, 0).values())
    floors = bytes_per_param * tiny_params / bandwidth + 6 * tiny_params * chunk.shape[1] / flops
    print(
        f"demo model ({tiny_params / 1e3:.0f} k parameters), one training step of 60 tokens: {whole * 1e3:.2f} ms, "
        f"of which the floors predict {floors * 1e3:.2f} ms -> fixed {(whole - floors) * 1e3:.2f} ms a step"
    )
    # Early stopping's evaluation after each epoch: one forward pass without gradients a chunk.
    evaluation = best(lambda: [engine.evaluate([chunk]) for _ in range(20)], args.repeats) / 20
    forward_floor = 4 * tiny_params / bandwidth + 2 * tiny_params * chunk.shape[1] / flops
    print(
        f"demo model, early stopping's evaluation of a 60-token chunk: {evaluation * 1e3:.2f} ms, of which the "
        f"floors predict {forward_floor * 1e3:.2f} ms -> fixed {(evaluation - forward_floor) * 1e3:.2f} ms a forward pass"
    )

    # Host-side work between texts.
    source = torch.randn(50_000_000)
    target = torch.empty_like(source)
    copy = best(lambda: target.copy_(source), args.repeats)
    print(f"copy of {source.numel() * 4 / 1e6:.0f} MB fp32: {source.numel() * 4 / copy / 1e9:.2f} GB/s")
    layer = models.Layer(index=0, name="layer", group="mlp", block=0, params=("w",), numel=4_194_304)
    before = {"w": torch.randn(2048, 2048)}
    after = {"w": before["w"] + 1e-4 * torch.randn(2048, 2048)}
    ks = defaults("features", "k")  # the schema's default top-K% grid
    stats = best(lambda: deltas.layer_stats([layer], before, after, ks), args.repeats)
    print(f"layer_stats, K up to {max(ks)}%: {layer.numel / stats / 1e6:.1f} M elements/s")
    delta = {"w": (after["w"] - before["w"]).repeat(4, 1)}
    with tempfile.TemporaryDirectory() as scratch:

        def write():
            with store.atomic_group(Path(scratch) / "s.zarr") as group:
                store.write_tensors(group, delta)

        written = best(write, max(2, args.repeats // 2))
    size = sum(t.numel() * 4 for t in delta.values())
    print(f"store.write_tensors of {size / 1e6:.0f} MB fp32 delta (zstd): {size / written / 1e6:.0f} MB/s")

    # The start of a job: a fresh interpreter importing the training job and loading a model.
    with tempfile.TemporaryDirectory() as scratch:
        from paramdelta import corpus
        from paramdelta import target as target_mod

        tokenizer = target_mod.train_tokenizer(corpus.generate_corpus(200, 0), 300)
        target_mod.save(
            models.build_model(models.tiny_config("gpt-neox", len(tokenizer)), 0), tokenizer, Path(scratch) / "m"
        )
        code = (
            "import paramdelta.train_job; from paramdelta import models; "
            f"models.load_with_tokenizer({str(Path(scratch) / 'm')!r})"
        )
        starts = []
        for _ in range(2):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            starts.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    print(f"job start (imports, load a tiny model): {min(starts):.1f} s")

    # Host memory: a whole training job in a fresh process, its peak RSS against estimate.host_memory.
    host_memory(args.threads)


def host_memory(threads: int) -> None:
    """Peak RSS of a training job of a 29M-parameter model on the CPU (sketch and delta, one text,
    two epochs), each in a fresh process, beside what estimate.host_memory counts for it."""
    import json

    import pandas as pd

    from paramdelta import config as config_checks
    from paramdelta import corpus
    from paramdelta import target as target_mod

    device = estimate.COST_MODEL["devices"]["cpu-2core"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        tokenizer = target_mod.train_tokenizer(corpus.generate_corpus(200, 0), 4096)
        shape = models.tiny_config("gpt-neox", 4096, hidden_size=512, num_layers=8, num_heads=8, max_positions=512)
        model = models.build_model(shape, 0)
        params = sum(p.numel() for p in model.parameters())
        target_mod.save(model, tokenizer, root / "m")
        del model
        table = root / "texts.parquet"
        pd.DataFrame({"text_id": ["t0"], "text": [" ".join(corpus.generate_corpus(1, 1)[0].split()[:32])]}).to_parquet(
            table
        )
        train_section = config_checks.fill_defaults({"train": {"device": "cpu"}})["train"]
        for policy in ("sketch", "delta"):
            spec = {
                "texts": ["t0"],
                "dataset_table": str(table),
                "model_path": str(root / "m"),
                "engine": "torch",
                "train": train_section,
                "policy": policy,
                "snapshot_dtype": "float32",
                "ks": defaults("features", "k"),
                "model": "m",
                "dataset": "d",
                "budget": "2",
                "output": str(root / f"{policy}.zarr"),
                "threads": threads,
                "device": "cpu",
            }
            (root / "spec.json").write_text(json.dumps(spec))
            code = (
                "import resource, sys; from paramdelta import train_job; train_job.main([sys.argv[1]]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
            )
            done = subprocess.run(
                [sys.executable, "-c", code, str(root / "spec.json")], capture_output=True, text=True, check=True
            )
            measured = float(done.stdout.split()[-1])
            cfg = config_checks.validate(
                {
                    "datasets": {"d": {"path": str(table)}},
                    "models": {"m": {"path": str(root / "m")}},
                    "snapshots": {"store": policy},
                    "train": {"device": "cpu"},
                }
            )
            counted = estimate.host_memory(device, cfg, "m", params)
            print(
                f"host memory of a training job ({params / 1e6:.1f} M parameters, {policy}): peak RSS "
                f"{measured / 2**20:,.0f} MiB, estimate.host_memory {counted / 2**20:,.0f} MiB "
                f"({counted / measured:.2f}x)"
            )


if __name__ == "__main__":
    main()
