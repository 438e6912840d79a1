"""Per-text training: the project's job against a bare loop (P1) and a thesis-style job (P2).

P1. The project's training job, ``paramdelta.train_job.run(spec)`` in this process, with
texts_per_job 1 (one spec per text: the model loaded, one store written, per text) and with
texts_per_job = --texts (one spec for all; and once more recording each layer's change after
every epoch, snapshots.trajectory), against the floor: the same forward, backward,
gradient clipping and optimizer step (``paramdelta.train._make_optimizer`` on the same
``Settings``, so the floor follows whatever optimizer the project uses) on the same model and
the same texts, tokenised and chunked as ``train.run_text`` does, with no I/O, no per-text
restore of the base, no fresh optimizer and no store. Goal: job <= 1.25x the floor. The
one-off cost of a job's process start is its own row (a Snakemake job pays it once per job):
``python -c "import paramdelta.train_job, transformers, torch"`` in a subprocess, and, beside
it, all that a fresh process pays before its first text (a one-text job run in a subprocess,
less the same job run warm in this process).

P2. The project's job against a thesis-style job: a Hugging Face ``transformers.Trainer``
started anew per text (model and tokenizer loaded, batch size 1, the project's lr, epochs,
betas, eps, weight decay, gradient clipping and cosine schedule without warm-up, a checkpoint
saved every epoch), then the full parameter state written as one .npy per tensor. It runs in
this process: the process start a script per text would pay is not charged to it. Goal: the
project's job >= 5x faster.

Everything is built here, nothing is downloaded: a tokenizer trained on the project's synthetic
corpus, a randomly initialised model (seed 0) saved as a Hugging Face directory, and texts of
the first --words words of synthetic documents. Budget ``es``: the job runs first, and the
floor and the thesis-style job then run each text for as many epochs as the job did.

    python benchmarks/bench_training.py [--arch gpt-neox|llama] [--hidden 256] [--layers 4]
        [--heads 4] [--vocab 4096] [--vocab-size N] [--texts 25] [--budget 5|es] [--threads 1]
        [--parallel-texts N] [--policy sketch|delta|full] [--repeats 1]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _machine import cpu_model
from _thesis import thesis_text

from paramdelta import config, corpus, data, models, store, target, train, train_job

KS = config.defaults("features", "k")  # the schema's default features.k: the sketch's top-K% statistics
P1_GOAL, P2_GOAL = 1.25, 5.0


# --------------------------------------------------------------------------- set-up


def machine(threads: int) -> str:
    cpu = cpu_model()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    import transformers

    return (
        f"machine: {os.cpu_count()} CPUs ({usable} usable), {cpu}; load average {load}\n"
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}; "
        f"torch threads {threads}"
    )


def make_texts(n: int, words: int) -> list[str]:
    """n distinct texts: the first `words` words of synthetic documents (seed 1, as the tests' texts)."""
    texts: list[str] = []
    documents = corpus.generate_corpus(4 * n + 8, 1)
    for document in documents:
        text = " ".join(document.split()[:words])
        if text not in texts:
            texts.append(text)
        if len(texts) == n:
            return texts
    raise RuntimeError(f"only {len(texts)} distinct {words}-word texts in {len(documents)} documents")


def build_model_dir(args, root: Path) -> tuple[Path, object]:
    """A random-init model (seed 0) and a locally trained tokenizer, saved as one HF directory."""
    tokenizer = target.train_tokenizer(corpus.generate_corpus(2000, 0), args.vocab)
    model_config = models.tiny_config(
        args.arch,
        args.vocab_size or len(tokenizer),
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        max_positions=args.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = models.build_model(model_config, seed=0)
    path = root / "model"
    target.save(model, tokenizer, path)
    return path, tokenizer


def train_settings(args) -> dict:
    """The `train` section the workflow would pass: the schema's defaults with this run's values."""
    return config.fill_defaults(
        {
            "train": {
                "lr": args.lr,
                "patience": args.patience,
                "min_delta": args.min_delta,
                "max_epochs": args.max_epochs,
                "device": "cpu",
                "parallel_texts": args.parallel_texts,
            }
        }
    )["train"]


def job_spec(
    args, model_dir: Path, table: Path, text_ids: list[str], train_section: dict, output: Path, trajectory=False
) -> dict:
    return {
        "trajectory": trajectory,
        "texts": list(text_ids),
        "dataset_table": str(table),
        "model_path": str(model_dir),
        "revision": None,
        "engine": "torch",
        "train": train_section,
        "policy": args.policy,
        "snapshot_dtype": "float32",
        "ks": KS,
        "model": "bench",
        "dataset": "bench",
        "budget": args.budget,
        "output": str(output),
        "threads": args.threads,
        "device": "cpu",
    }


# --------------------------------------------------------------------------- the three trainers


def run_jobs(args, model_dir, table, text_ids, per_job: int, train_section, root: Path, trajectory=False) -> float:
    """Seconds of train_job.run over all texts in jobs of `per_job` texts (stores removed untimed)."""
    seconds = 0.0
    for start in range(0, len(text_ids), per_job):
        output = root / f"job-{per_job}-{start}.zarr"
        spec = job_spec(args, model_dir, table, text_ids[start : start + per_job], train_section, output, trajectory)
        began = time.perf_counter()
        train_job.run(spec)
        seconds += time.perf_counter() - began
        shutil.rmtree(output)
    return seconds


def job_epochs(args, model_dir, table, text_ids, train_section, root: Path) -> dict[str, int]:
    """Epochs the job ran per text (the budget, or where early stopping ended it)."""
    output = root / "epochs.zarr"
    train_job.run(job_spec(args, model_dir, table, text_ids, train_section, output))
    records = store.open_store(output).attrs["records"]  # the job store's per-text records (train.JobRecords)
    epochs = {record["text_id"]: int(record["epochs_run"]) for record in records}
    shutil.rmtree(output)
    return epochs


def floor(
    model_dir,
    tokenizer,
    texts: list[str],
    epochs: list[int],
    settings: train.Settings,
    max_length: int,
    deterministic: bool = False,
) -> float:
    """The bare loop: one model, one optimizer, every text's steps back to back; seconds."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # as train_job.run sets it
    try:
        model = models.load_causal_lm(str(model_dir))
        params = [p for p in model.parameters()]
        chunked = [train.chunk(tokenizer(text)["input_ids"], max_length) for text in texts]
        optimizer = train._make_optimizer(params, settings)
        autocast = (
            (lambda: torch.autocast("cpu", dtype=train.BIT16[settings.precision]))
            if settings.precision in train.BIT16
            else nullcontext
        )
        torch.manual_seed(settings.seed)
        began = time.perf_counter()
        for chunks, n_epochs in zip(chunked, epochs):
            total, step = n_epochs * len(chunks), 0
            for _ in range(n_epochs):
                for input_ids in chunks:
                    with autocast():
                        loss = model(input_ids=input_ids, labels=input_ids).loss
                    loss.backward()
                    if settings.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
                    for group in optimizer.param_groups:
                        group["lr"] = train.lr_at(step, total, settings)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    loss.item()
                    step += 1
        return time.perf_counter() - began
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = previous[1]


def run_thesis(model_dir, texts, epochs, settings, max_length, root: Path) -> float:
    seconds = 0.0
    for index, (text, n_epochs) in enumerate(zip(texts, epochs)):
        output = root / f"thesis-{index}"
        began = time.perf_counter()
        thesis_text(model_dir, text, n_epochs, settings, max_length, output)
        seconds += time.perf_counter() - began
        shutil.rmtree(output)
    return seconds


def subprocess_seconds(command: list[str], repeats: int) -> float:
    """Median wall time of a command run in a fresh process."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="gpt-neox", choices=["gpt-neox", "llama"])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096, help="tokenizer vocabulary asked for (BPE may stop short)")
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="the model's vocabulary (embedding rows; default the tokenizer's): 50304 with --hidden 512 "
        "--layers 6 --heads 8 is Pythia-70M's shape, as in bench_stores.py",
    )
    parser.add_argument("--max-positions", type=int, default=256, help="the model's context (= the chunk length)")
    parser.add_argument("--texts", type=int, default=25)
    parser.add_argument("--words", type=int, default=32, help="words per text")
    parser.add_argument("--budget", default="5", help="epochs, or es (early stopping)")
    # The demo's training settings (config/demo.yaml): lr 3e-5, early stopping that ends well
    # before the cap; the rest are the schema's defaults.
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--min-delta", type=float, default=2e-2)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--policy", default="sketch", choices=["sketch", "delta", "full"])
    parser.add_argument("--parallel-texts", type=int, default=1, help="train.parallel_texts of the job's spec")
    # One thread by default: for models this small a second thread mostly adds contention.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the spec's threads)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds over all setups, the fastest of each kept (a busy machine slows single runs by up to 30%%)",
    )
    parser.add_argument("--starts", type=int, default=2, help="process starts timed (median)")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="job_all",
        choices=["job_all", "job_traj", "job_one", "floor", "thesis"],
        help="cProfile one more run of this setup afterwards (default job_all: one job of all the texts)",
    )
    parser.add_argument("--profile-lines", type=int, default=30)
    args = parser.parse_args()
    if args.budget != "es" and not args.budget.isdigit():
        parser.error(f"--budget {args.budget!r}: an epoch count or es")
    wall = time.perf_counter()
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    print(machine(args.threads))

    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        root = Path(scratch)
        model_dir, tokenizer = build_model_dir(args, root)
        texts = make_texts(args.texts + 1, args.words)
        warm_text, texts = texts[0], texts[1:]
        text_ids = [data.text_id(text) for text in texts]
        table = root / "data.parquet"
        all_texts = [warm_text, *texts]
        pd.DataFrame(
            {
                "text_id": [data.text_id(t) for t in all_texts],
                "text": all_texts,
                "label": [i % 2 for i in range(len(all_texts))],
            }
        ).to_parquet(table)
        warm_id = data.text_id(warm_text)

        train_section = train_settings(args)
        settings = train.Settings.from_config(train_section)
        model = models.load_causal_lm(str(model_dir))
        max_length = train_section.get("max_length") or models.context_length(model)
        n_params = sum(p.numel() for p in model.parameters())
        del model
        tokens = [len(tokenizer(text)["input_ids"]) for text in texts]
        n_chunks = [len(train.chunk(tokenizer(text)["input_ids"], max_length)) for text in texts]
        print(
            f"model: {args.arch}, hidden {args.hidden}, {args.layers} layers, {args.heads} heads, vocabulary "
            f"{args.vocab_size or len(tokenizer)} (tokenizer {len(tokenizer)}), {n_params / 1e6:.2f} M parameters "
            "(random init, seed 0)"
        )
        print(
            f"texts: {len(texts)} of {args.words} words, {min(tokens)}-{max(tokens)} tokens "
            f"(mean {np.mean(tokens):.0f}), {sum(n_chunks)} chunks of <= {max_length}; budget {args.budget}"
        )
        shown = {k: v for k, v in train_section.items() if k not in ("engine", "deepspeed_config")}
        print(f"train: {shown}; policy {args.policy}")
        print(f"optimizer: {settings!r}")

        # Warm-up, untimed: lazy imports (pandas, zarr, the model class, accelerate), first allocations.
        warm_spec = job_spec(args, model_dir, table, [warm_id], train_section, root / "warm.zarr")
        train_job.run(warm_spec)
        shutil.rmtree(root / "warm.zarr")
        floor(model_dir, tokenizer, [warm_text], [1], settings, max_length)

        if args.budget == "es":
            per_text = job_epochs(args, model_dir, table, text_ids, train_section, root)
            epochs = [per_text[t] for t in text_ids]
        else:
            epochs = [int(args.budget)] * len(texts)
        steps = sum(e * c for e, c in zip(epochs, n_chunks))
        print(
            f"epochs per text: {min(epochs)}-{max(epochs)} (mean {np.mean(epochs):.1f}); {steps} optimizer steps in all"
        )
        thesis_text(model_dir, warm_text, 1, settings, max_length, root / "thesis-warm")
        shutil.rmtree(root / "thesis-warm")

        n = len(texts)
        setups = {
            "floor": lambda: floor(model_dir, tokenizer, texts, epochs, settings, max_length),
            "floor_det": lambda: floor(model_dir, tokenizer, texts, epochs, settings, max_length, deterministic=True),
            "job_all": lambda: run_jobs(args, model_dir, table, text_ids, n, train_section, root),
            "job_traj": lambda: run_jobs(args, model_dir, table, text_ids, n, train_section, root, trajectory=True),
            "job_one": lambda: run_jobs(args, model_dir, table, text_ids, 1, train_section, root),
            "thesis": lambda: run_thesis(model_dir, texts, epochs, settings, max_length, root),
        }
        # Repeats in rounds over all setups, the fastest kept: a busy machine slows each alike.
        measured = {name: float("inf") for name in setups}
        for _ in range(args.repeats):
            for name, setup in setups.items():
                measured[name] = min(measured[name], setup())

        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(setups[args.profile])
            for order in ("tottime", "cumulative"):
                report = io.StringIO()
                pstats.Stats(profiler, stream=report).sort_stats(order).print_stats(args.profile_lines)
                print(f"\n{args.profile} ({n} texts), by {order}:\n{report.getvalue()}")

        # Process start: the imports the brief names, and all a fresh one-text job pays before its text.
        imports = subprocess_seconds(
            [sys.executable, "-c", "import paramdelta.train_job, transformers, torch"], args.starts
        )
        spec_path = root / "cold.json"
        cold_output = root / "cold.zarr"
        spec_path.write_text(json.dumps(job_spec(args, model_dir, table, [warm_id], train_section, cold_output)))
        cold_command = [
            sys.executable,
            "-c",
            "import json, sys; from paramdelta import train_job; train_job.run(json.load(open(sys.argv[1])))",
            str(spec_path),
        ]
        cold = []
        for _ in range(args.starts):
            cold.append(subprocess_seconds(cold_command, 1))
            shutil.rmtree(cold_output)
        began = time.perf_counter()
        train_job.run(json.loads(spec_path.read_text()))
        warm_job = time.perf_counter() - began
        shutil.rmtree(cold_output)
        start_all = max(0.0, statistics.median(cold) - warm_job)

    per = {key: value / n for key, value in measured.items()}
    f = per["floor"]
    rows = [
        ("bare loop floor (P1 baseline)", n, per["floor"], None),
        ("  floor, deterministic algorithms on (as the job sets)", n, per["floor_det"], None),
        (f"project job, texts_per_job {n}", n, per["job_all"], ("P1", "job_all")),
        ("  the same, recording the per-epoch trajectory", n, per["job_traj"], None),
        ("project job, texts_per_job 1", 1, per["job_one"], ("P1", "job_one")),
        ("job process start: import paramdelta.train_job, transformers, torch", "-", imports, "start"),
        ("job process start: all a fresh job pays (cold - warm one-text job)", "-", start_all, "start"),
        ("project job, texts_per_job 1, + process start", 1, per["job_one"] + start_all, None),
        ("thesis-style: Trainer per text, checkpoint per epoch, .npy state", 1, per["thesis"], ("P2", None)),
    ]
    header = ["setup", "texts/job", "s per (text, budget)", "ratio to floor", "thesis-style / this", "goal", "met"]
    lines = []
    for name, per_job, seconds, goal in rows:
        ratio = seconds / f
        speedup = "" if goal == "start" else f"{per['thesis'] / seconds:.1f}x"
        if isinstance(goal, tuple) and goal[0] == "P1":
            p1, p2 = ratio <= P1_GOAL, per["thesis"] / seconds >= P2_GOAL
            target_text = f"P1 <= {P1_GOAL:.2f}x floor, P2 >= {P2_GOAL:.0f}x thesis-style"
            met = f"P1 {'yes' if p1 else 'NO'}, P2 {'yes' if p2 else 'NO'}"
        elif isinstance(goal, tuple) and goal[0] == "P2":
            target_text, met = "(P2 baseline)", ""
        elif goal == "start":
            target_text, met = "once per job", ""
        else:
            target_text, met = "", ""
        lines.append([name, str(per_job), f"{seconds:.4f}", f"{ratio:.2f}x", speedup, target_text, met])
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    print()
    for row in [header, *lines]:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:5], widths[1:5])]
        cells += [cell.ljust(width) for cell, width in zip(row[5:], widths[5:])]
        print(" | ".join(cells).rstrip())
    print("(process-start rows: seconds once per job, and how many floor (text, budget)s they are worth)")
    print(f"(each other row: the fastest of {args.repeats} rounds over all the setups, interleaved)")
    print()
    p1_all, p1_one = per["job_all"] / f, per["job_one"] / f
    p2_all, p2_one = per["thesis"] / per["job_all"], per["thesis"] / per["job_one"]
    print(
        f"P1: job/floor = {p1_all:.2f}x (texts_per_job {n}), {p1_one:.2f}x (texts_per_job 1); "
        f"goal <= {P1_GOAL:.2f}x: {'met' if p1_all <= P1_GOAL else 'NOT met'} with {n} per job, "
        f"{'met' if p1_one <= P1_GOAL else 'NOT met'} with 1"
    )
    print(
        f"P2: thesis-style/project = {p2_all:.1f}x (texts_per_job {n}), {p2_one:.1f}x (texts_per_job 1); "
        f"goal >= {P2_GOAL:.0f}x: {'met' if p2_all >= P2_GOAL else 'NOT met'} with {n} per job, "
        f"{'met' if p2_one >= P2_GOAL else 'NOT met'} with 1"
    )
    print(f"wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
