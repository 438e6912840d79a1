"""The GPU path against the hardware's floor: one prepared run for a lent GPU (issue 8, item 3).

    python benchmarks/bench_gpu.py --out results/bench_gpu.json      # on a GPU machine, within --budget 480 s
    python benchmarks/bench_gpu.py --device cpu --models tiny        # the same code on a CPU, about a minute

On a machine without the project's environment (a lent GPU machine: no network, its own PyTorch),
`sh benchmarks/gpu_wheels.sh` first, here, and docs/performance.md gives the command to run there.

Random-initialised models of real shapes (nothing downloads): Pythia-160M (texts side by side),
Pythia-1.4B, and Llama-2-7B's configuration (estimate.KNOWN_MODELS), each trained by the project's
own engines (train.TorchEngine, train.DeepSpeedEngine, side_by_side.SideBySideEngine) on a chunk of
45 random tokens (a 32-word text), AdamW with gradient clipping, as config/wikimia.yaml trains:

- torch-fp32, torch-bf16: the torch engine, fp32 and bf16 autocast (fp32 master weights), fused AdamW;
- zero2-bf16: DeepSpeed ZeRO-2 on the one GPU (config/deepspeed_zero2.json);
- offload-torch, offload-ds: ZeRO-2 with the optimizer in host memory (ZeRO-Offload,
  config/deepspeed_zero2_offload.json), stepped by torch's fused AdamW or DeepSpeed's CPU Adam;
- side-by-side: N texts trained at once (train.parallel_texts) against one at a time;
- job-bf16: the training job itself, `python -m paramdelta.train_job`, as a workflow rule runs it;
- thesis-bf16: P2's baseline, a Hugging Face Trainer per text with a checkpoint every epoch
  (benchmarks/_thesis.py, as bench_training.py runs it on a CPU), against the torch-bf16 row's
  (text, budget 5) of the same model.

Each (model, set-up) runs in a process of its own (a DeepSpeed engine or an out-of-memory error
leaves nothing behind for the next) and reports: the median step time against the step's floor,
the larger of its memory traffic at the GPU's data-sheet bandwidth (estimate.traffic's bytes a
parameter; the host's and PCIe's parts under ZeRO-Offload at the rates measured first) and its
FLOPs at the data-sheet peak; the peak GPU memory; the base restore, the sketch's statistics and
early stopping's forward pass; and a whole (text, budget 5) as the job runs it (restore, five
steps, the statistics on the device) against five bare steps. A set-up whose memory, counted as
the engines allocate it, would not fit the GPU or the host is skipped and says so. Prints a table
and the set-up that trains a 7B (text, budget) fastest on this GPU; --out keeps every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's paramdelta, installed or not (a lent GPU machine)
TOKENS = 45  # a 32-word text at ~1.4 tokens a word
KS = [1, 2, 5, 10, 20, 30, 40, 50]  # config/wikimia.yaml's features.k


def model_shapes() -> dict[str, tuple[str, dict]]:
    """(architecture, config fields) by name: real shapes (random weights), the Pythia suite's
    sizes made from Pythia-6.9B's configuration in estimate.KNOWN_MODELS, and a tiny one."""
    from paramdelta.estimate import KNOWN_MODELS

    llama, llama_fields, _ = KNOWN_MODELS["meta-llama/Llama-2-7b-hf"]
    pythia, pythia_fields, _ = KNOWN_MODELS["EleutherAI/pythia-6.9b"]
    sizes = {
        "tiny": dict(
            vocab_size=1024, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=256
        ),
        "pythia-160m": dict(vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
        "pythia-1.4b": dict(vocab_size=50304, hidden_size=2048, num_hidden_layers=24, num_attention_heads=16),
    }
    shapes = {
        name: (pythia, {**pythia_fields, **size, "intermediate_size": 4 * size["hidden_size"]})
        for name, size in sizes.items()
    }
    return {**shapes, "llama-2-7b": (llama, llama_fields)}


# set-up -> engine, precision, DeepSpeed JSON, offload_adam, texts side by side
SETUPS = {
    "torch-fp32": ("torch", "fp32", None, "torch", 1),
    "torch-bf16": ("torch", "bf16", None, "torch", 1),
    "zero2-bf16": ("deepspeed", "bf16", "deepspeed_zero2.json", "torch", 1),
    "offload-torch": ("deepspeed", "bf16", "deepspeed_zero2_offload.json", "torch", 1),
    "offload-ds": ("deepspeed", "bf16", "deepspeed_zero2_offload.json", "deepspeed", 1),
    "side-by-side": ("torch", "bf16", None, "torch", 8),
    # The training job itself (measure_job): the torch engine in bf16, as a workflow rule runs it.
    "job-bf16": ("torch", "bf16", None, "torch", 1),
    # P2's baseline (measure_thesis): a Hugging Face Trainer per text, a checkpoint every epoch.
    "thesis-bf16": (None, "bf16", None, "torch", 1),
}
# What a default run measures, most wanted first (a run out of time skips the rest): every set-up
# at 1.4B, texts side by side at 160M, and at 7B the set-ups that can fit one GPU and this host
# (the others are skipped with the memory they would need).
DEFAULT_RUNS = [
    ("pythia-1.4b", "torch-bf16"),
    ("pythia-1.4b", "zero2-bf16"),
    ("llama-2-7b", "torch-bf16"),
    ("llama-2-7b", "zero2-bf16"),
    ("pythia-1.4b", "offload-ds"),
    ("llama-2-7b", "offload-ds"),
    ("pythia-160m", "torch-bf16"),
    ("pythia-160m", "side-by-side"),
    ("pythia-1.4b", "job-bf16"),
    ("pythia-160m", "thesis-bf16"),
    ("pythia-1.4b", "torch-fp32"),
    ("pythia-1.4b", "offload-torch"),
]
# Data-sheet HBM bandwidth (bytes/s) and dense bf16 / fp32 peaks (FLOP/s), by a part of the device name.
DATA_SHEETS = {
    "H200": (4.8e12, 989e12, 67e12),
    "H100 NVL": (3.9e12, 835e12, 60e12),
    "H100 PCIe": (2.0e12, 756e12, 51e12),
    "H100": (3.35e12, 989e12, 67e12),  # SXM ("H100 80GB HBM3")
}
# Disk of a thesis-style text, bytes a parameter: five epochs' checkpoints (fp32 weights and AdamW's
# two moments, all kept, as the Trainer keeps them by default) and the .npy state.
THESIS_DISK = 5 * 12 + 4
PCIE = 50e9  # host <-> GPU copies where none is measured (a CPU run), bytes/s: estimate.COST_MODEL's host_bandwidth


def data_sheet(name: str) -> tuple[float, float, float] | None:
    return next((sheet for part, sheet in DATA_SHEETS.items() if part in name), None)


def needed_bytes(setup: str, params: int) -> tuple[float, float]:
    """(GPU, host) bytes the engines allocate for a model of `params` parameters, before activations:
    on the GPU as estimate.gpu_bytes counts them (AdamW, one GPU: the torch engine 16 B/param and
    2 for bf16 autocast's weight copies, a copy a text side by side; ZeRO-2 in bf16 20; ZeRO-Offload
    4); on the host the base taken there first (4), and under ZeRO-Offload the fp32 master,
    moments and gradients (16)."""
    from paramdelta.estimate import gpu_bytes

    engine, precision, ds, _, width = SETUPS[setup]
    if setup == "job-bf16":  # the job loads the checkpoint into host memory first
        return 18 * params, 8 * params
    if setup == "thesis-bf16":  # the Trainer: fp32 weights, gradients, AdamW's moments; loaded on the host
        return 16 * params, 4 * params
    offload = bool(ds) and "offload" in ds
    gpu = gpu_bytes(engine, precision, "adamw", 0.0, 1, 2, offload, width) * params
    if engine == "torch":
        return gpu, 4 * params * (width == 1)
    return gpu, (20 if offload else 4) * params


# ---------------------------------------------------------------------------------------------
# In a child process: one measurement.


def probe(device_name: str) -> dict:
    """The machine: device, its memory, a measured copy bandwidth, the host's AdamW rate."""
    import torch

    from paramdelta import train

    device = torch.device(device_name)
    out = {"torch": torch.__version__, "cpus": os.cpu_count(), "host_bytes": _host_bytes()}
    try:
        import deepspeed

        out["deepspeed"] = deepspeed.__version__
    except ImportError:
        out["deepspeed"] = None
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        out.update(name=properties.name, memory=properties.total_memory, cuda=torch.version.cuda)
        size = min(4 << 30, properties.total_memory // 8) // 4
    else:
        from _machine import cpu_model

        out.update(name=cpu_model(), memory=out["host_bytes"], cuda=None)
        size = 64 << 20
    source = torch.empty(size, device=device).normal_()
    target = torch.empty_like(source)
    out["copy_bandwidth"] = 2 * 4 * size / _median(lambda: target.copy_(source), 5, device)
    if device.type == "cuda":
        # The host link, as the engines use it: the base restored from host memory, page-locked
        # (train._host_copy) against pageable; a best state copied back.
        size = min(size, 1 << 28)  # 1 GiB of fp32
        pageable = torch.empty(size).normal_()
        pinned = torch.empty(size, pin_memory=True).copy_(pageable)
        on_device = torch.empty(size, device=device)
        for name, copy in (
            ("h2d_pageable", lambda: on_device.copy_(pageable)),
            ("h2d_pinned", lambda: on_device.copy_(pinned, non_blocking=True)),
            ("d2h_pinned", lambda: pinned.copy_(on_device)),
        ):
            out[f"{name}_bandwidth"] = 4 * size / _median(copy, 5, device)
        out["host_bandwidth"] = out["h2d_pinned_bandwidth"]
    else:
        out["host_bandwidth"] = PCIE
    # The host's fused AdamW (ZeRO-Offload's step without DeepSpeed's op), all the host's threads.
    weight = torch.nn.Parameter(torch.zeros(50_000_000))
    weight.grad = torch.randn_like(weight) * 1e-3
    optimizer = train._make_optimizer([weight], train.Settings())
    optimizer.step()
    out["host_adamw_bandwidth"] = 28 * weight.numel() / _median(optimizer.step, 3, torch.device("cpu"))
    return out


def _host_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median(function, repeats: int, device) -> float:
    function()
    _sync(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _phases(engine, chunk, settings, steps: int, device) -> tuple[float, float]:
    """The torch engine's step in two: forward + backward, then clipping + the optimizer (medians)."""
    import torch

    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if settings.precision == "bf16" else None
    chunk = chunk.to(device)
    params = list(engine.params.values())
    first, second = [], []
    for _ in range(steps + 1):  # the first is a warm-up
        engine.optimizer.zero_grad(set_to_none=True)
        _sync(device)
        started = time.perf_counter()
        with autocast or torch.autocast(device.type, enabled=False):
            loss = engine.model(input_ids=chunk, labels=chunk).loss
        loss.backward()
        _sync(device)
        middle = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        engine.optimizer.step()
        _sync(device)
        first.append(middle - started)
        second.append(time.perf_counter() - middle)
    engine.optimizer.zero_grad(set_to_none=True)
    return statistics.median(first[1:]), statistics.median(second[1:])


def _topk_sorted(magnitudes, counts: list[int]):
    """The top-K% norms as the device path took them before: one sorted topk of the largest count
    (a sort of half of each layer), a running float64 sum of squares read at each count."""
    import torch

    largest = torch.topk(magnitudes, max(counts), sorted=True).values
    cumulative = torch.cumsum(largest.to(torch.float64).square(), 0)
    return cumulative[torch.tensor([n - 1 for n in counts], device=magnitudes.device)].sqrt()


def _topk_seconds(engine, layers, device) -> dict:
    """Seconds of the top-K% norms of every layer's change, side by side: the sort-free
    selections of the statistics (deltas._topk_l2_torch) against the sorted topk they replaced,
    each less a pass that only forms the layers' magnitudes."""
    import torch

    from paramdelta import deltas

    def over_layers(norms) -> None:
        for layer in layers:
            pieces = [(engine.params[n].detach() - engine.base[n].to(device)).flatten() for n in layer.params]
            magnitudes = torch.cat(pieces).abs_()
            if norms is not None:
                norms(magnitudes, deltas.topk_counts(magnitudes.numel(), KS))

    alone = _median(lambda: over_layers(None), 2, device)
    return {
        "topk_s": max(0.0, _median(lambda: over_layers(deltas._topk_l2_torch), 2, device) - alone),
        "topk_sorted_s": max(0.0, _median(lambda: over_layers(_topk_sorted), 2, device) - alone),
    }


def measure_job(model_name: str, device_name: str, texts: int) -> dict:
    """The training job as a workflow rule runs it, `python -m paramdelta.train_job SPEC.json`: the
    model saved as a Hugging Face directory in bf16 (as hub checkpoints are) with a locally trained
    tokenizer, a data set table of 32-word texts, budget 5, a sketch store written. Jobs of one
    text (twice: the faster, the first pays for cold caches) and of `texts` texts (at least 5),
    each timed whole, give the job's start (process, imports, the checkpoint loaded, the engine)
    and the cost of each further (text, budget 5)."""

    import pandas as pd

    from paramdelta import config, data

    texts = max(5, texts)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-job-") as scratch:
        root = Path(scratch)
        params, documents = _checkpoint(model_name, device_name, root / "model")
        words = [" ".join(document.split()[:32]) for document in documents[: texts + 1]]
        ids = [data.text_id(text) for text in words]
        table = root / "texts.parquet"
        pd.DataFrame({"text_id": ids, "text": words, "label": [i % 2 for i in range(len(words))]}).to_parquet(table)
        train = config.fill_defaults({"train": {"precision": "bf16", "device": device_name}})["train"]
        seconds = {}
        for run, (n, chosen) in enumerate(((1, ids[:1]), (texts, ids[1:]), (1, ids[:1]))):
            spec = {
                "texts": chosen,
                "dataset_table": str(table),
                "model_path": str(root / "model"),
                "engine": "torch",
                "train": train,
                "policy": "sketch",
                "snapshot_dtype": "float32",
                "ks": KS,
                "model": model_name,
                "dataset": "bench",
                "budget": "5",
                "output": str(root / f"job-{run}.zarr"),
                "threads": os.cpu_count(),
                "device": device_name,
            }
            (root / f"job-{run}.json").write_text(json.dumps(spec))
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "paramdelta.train_job", str(root / f"job-{run}.json")],
                capture_output=True,
                text=True,
            )
            seconds[n] = min(seconds.get(n, math.inf), time.perf_counter() - started)
            if done.returncode != 0:
                raise RuntimeError(f"the training job of {n} text(s) failed: {done.stderr[-1500:]}")
        # The jobs' peak host memory (the largest child's RSS: the jobs are this process's only
        # children) beside what estimate.host_memory counts for the tensors of such a job.
        peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        counted = _host_memory_counted(model_name, device_name, root, table, params)
    per_text = (seconds[texts] - seconds[1]) / (texts - 1)
    return {
        "model": model_name,
        "setup": "job-bf16",
        "params": params,
        "width": 1,
        "texts": texts,
        "job_s": seconds[texts],
        "job_start_s": seconds[1] - per_text,
        "job_text_s": per_text,
        "job_peak_rss_bytes": peak_rss,
        "host_counted_bytes": counted,
    }


def _host_memory_counted(model_name: str, device_name: str, root: Path, table: Path, params: int) -> float:
    """estimate.host_memory of the job measure_job runs, on this device and without the fixed
    amount a process: what the job's peak RSS less it calibrates (the entry's process_host_bytes)."""
    import torch

    from paramdelta import config, estimate

    cfg = config.validate(
        {
            "datasets": {"bench": {"path": str(table)}},
            "models": {"bench": {"path": str(root / "model"), "dtype": "bfloat16", "gpus": int(device_name != "cpu")}},
            "train": {"precision": "bf16", "device": device_name},
        }
    )
    if device_name == "cpu":
        entry = estimate.COST_MODEL["devices"]["cpu-2core"]
    else:
        memory = torch.cuda.get_device_properties(torch.device(device_name)).total_memory
        entry = {**estimate.COST_MODEL["devices"]["h100"], "memory": memory}
    return estimate.host_memory({**entry, "process_host_bytes": 0.0}, cfg, "bench", params)


def _checkpoint(model_name: str, device_name: str, path: Path) -> tuple[int, list[str]]:
    """A random-init model of `model_name`'s shape saved at `path` as a Hugging Face directory in
    bf16 (as hub checkpoints are), with a tokenizer trained on synthetic documents; returns its
    parameters and the documents."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from paramdelta import corpus, target

    kind, fields = model_shapes()[model_name]
    documents = corpus.generate_corpus(400, 0)
    torch.manual_seed(0)
    with torch.device(device_name):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(kind, **fields))
    params = sum(p.numel() for p in model.parameters())
    target.save(model.to(torch.bfloat16), target.train_tokenizer(documents, 1000), path)
    del model
    if torch.device(device_name).type == "cuda":
        torch.cuda.empty_cache()  # the jobs started next find the GPU as a fresh job would
    return params, documents


def measure_thesis(model_name: str, device_name: str, texts: int) -> dict:
    """P2's baseline on this device: each text trained the thesis's way (benchmarks/_thesis.py: a
    Trainer started anew, bf16 autocast over fp32 weights, fused AdamW, a checkpoint of model and
    optimizer after every epoch, the final state as .npy files), budget 5, in this process (no
    process start charged). Median seconds a (text, budget 5), the first text (cold caches) apart."""
    from _thesis import thesis_text

    from paramdelta import train

    settings = train.Settings(lr=3e-5, precision="bf16", fused=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-thesis-") as scratch:
        root = Path(scratch)
        params, documents = _checkpoint(model_name, device_name, root / "model")
        words = [" ".join(document.split()[:32]) for document in documents[: texts + 1]]
        seconds = []
        for i, text in enumerate(words):
            started = time.perf_counter()
            thesis_text(root / "model", text, 5, settings, 2048, root / f"text-{i}", cpu=device_name == "cpu")
            seconds.append(time.perf_counter() - started)
            shutil.rmtree(root / f"text-{i}")  # its checkpoints: 12 bytes a parameter an epoch
    return {
        "model": model_name,
        "setup": "thesis-bf16",
        "params": params,
        "width": 1,
        "texts": texts,
        "thesis_first_s": seconds[0],
        "thesis_text_s": statistics.median(seconds[1:]),
    }


def measure(model_name: str, setup: str, device_name: str, steps: int, texts: int) -> dict:
    if setup == "job-bf16":
        return measure_job(model_name, device_name, texts)
    if setup == "thesis-bf16":
        return measure_thesis(model_name, device_name, texts)
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from paramdelta import deltas, models, train, train_job

    engine_kind, precision, ds, offload_adam, width = SETUPS[setup]
    train_job.deterministic()  # the kernels the job trains with
    device = torch.device(device_name)
    kind, fields = model_shapes()[model_name]
    config = AutoConfig.for_model(kind, **fields)
    torch.manual_seed(0)
    started = time.perf_counter()
    # Made on the device (random init there takes seconds, on the host of a 7B model minutes);
    # DeepSpeed takes a module already there.
    # Its weights rounded to bf16, as a 16-bit hub checkpoint's are once loaded in fp32: the
    # engines keep such a base in 16 bits (train.base_dtype), as they will for the real models.
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16).float()
    params = sum(p.numel() for p in model.parameters())
    layers = models.model_layers(model)
    settings = train.Settings(lr=3e-5, precision=precision, offload_adam=offload_adam, fused=True)
    if width > 1:
        from paramdelta.side_by_side import SideBySideEngine

        engine = SideBySideEngine(model, settings, device, width)
    elif engine_kind == "deepspeed":
        engine = train.DeepSpeedEngine(
            model, settings, device, train.deepspeed_config(str(ROOT / "config" / ds), settings)
        )
    else:
        engine = train.TorchEngine(model, settings, device)
    del model
    built = time.perf_counter() - started
    generator = torch.Generator().manual_seed(0)
    chunks = [torch.randint(0, config.vocab_size, (1, TOKENS), generator=generator) for _ in range(max(texts, width))]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out = {"model": model_name, "setup": setup, "params": params, "build_s": built, "width": width}
    # Where the engine keeps the exact base: the device, or (page-locked) host memory.
    out["base_on"] = next(iter(engine.base.values())).device.type
    out["base_bytes"] = sum(t.numel() * t.element_size() for t in engine.base.values())

    if width > 1:
        # Texts side by side against one at a time, budget 5: seconds per (text, budget).
        items = [(f"t{i}", [chunk]) for i, chunk in enumerate(chunks[:width])]
        summarise = deltas.Summariser(layers, engine.base, KS)
        engine.train(items[:2], "1", summarise)  # warm-up
        together = _median(lambda: engine.train(items, "5", summarise), 2, device) / width
        out.update(text_s=together, texts=width)
    else:
        engine.reset()
        out["restore_s"] = _median(engine.reset, 3, device)
        lr = settings.lr
        for chunk in chunks[:3]:  # warm-up: allocations, kernels chosen, moments made
            engine.step(chunk, lr)
        out["step_s"] = _median(lambda: engine.step(chunks[0], lr), steps, device)
        out["eval_s"] = _median(lambda: engine.evaluate(chunks[:1]), 3, device)
        if engine_kind == "torch":
            out["forward_backward_s"], out["optimizer_s"] = _phases(engine, chunks[0], settings, steps, device)
        summarise = deltas.Summariser(layers, engine.base, KS)
        summarise(engine.named_fp32())  # ||base||^2 per layer, once a job
        out["stats_s"] = _median(lambda: summarise(engine.named_fp32()), 3, device)
        # What early stopping pays at each new best epoch where it replays (train.best_state): a digest.
        out["digest_s"] = _median(engine.fingerprint, 3, device)
        # A whole (text, budget 5) as the job runs it: restore, five steps, the statistics.
        runs = [
            _median(lambda chunk=chunk: train.train_text(engine, "t", [chunk], "5", settings, summarise), 1, device)
            for chunk in chunks[:texts]
        ]
        out.update(text_s=statistics.median(runs), texts=texts)
        # Is training bitwise repeatable here, as early stopping's replay needs? Two runs of one
        # text of 512 tokens (attention over several tiles), under the job's deterministic
        # settings: the same statistics, and the same digest of the state the replay compares?
        length = min(512, config.max_position_embeddings)
        long = torch.randint(0, config.vocab_size, (1, length), generator=generator)
        twice, prints = [], []
        for _ in range(2):
            twice.append(train.train_text(engine, "t", [long], "5", settings, summarise).stats)
            prints.append(engine.fingerprint())
        out["repeatable"] = bool(
            all(np.array_equal(twice[0][key], twice[1][key]) for key in twice[0]) and torch.equal(*prints)
        )
    if device.type == "cuda":  # the peak of what the job does, before the benchmark's own top-K timings
        out["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
        out["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    if width == 1 and engine_kind == "torch":
        out.update(_topk_seconds(engine, layers, device))
    return out


# ---------------------------------------------------------------------------------------------
# The parent: one child per (model, set-up), then the table.


def child(arguments: list[str], timeout: float) -> dict:
    command = [sys.executable, __file__, *arguments]
    path = [str(ROOT), str(ROOT / "benchmarks"), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    # A session of its own: on a timeout the whole group goes, the training jobs a set-up starts
    # and DeepSpeed's compilers among it, not only the child (they would hold the GPU for the rest).
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
        why = "killed (out of host memory?)" if process.returncode in (-9, 137) else f"exit {process.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        why = f"over {timeout:.0f} s"
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):  # printed before it hung or failed in its teardown: kept
            return json.loads(line[len("RESULT ") :])
    tail = [line for line in err.splitlines() if line.strip()][-3:]
    return {"error": f"{why}: {' | '.join(tail)[-300:]}"}


def floors(row: dict, machine: dict) -> dict:
    """The step's floor by phase, in seconds: forward + backward, the longer of its memory traffic
    at the data-sheet bandwidth (the measured copy rate where the device is not in DATA_SHEETS)
    and its FLOPs at the data-sheet peak; the update (clipping, AdamW, ZeRO's copies), its
    traffic, with the host's and PCIe's parts under ZeRO-Offload. estimate.traffic's bytes."""
    from paramdelta.estimate import traffic

    engine, precision, ds, _, width = SETUPS[row["setup"]]
    moved = traffic(engine, precision, "adamw", 0.0, 1.0, 1, 2, bool(ds) and "offload" in ds)
    sheet = data_sheet(machine["name"])
    bandwidth = sheet[0] if sheet else machine["copy_bandwidth"]
    p = row["params"] * width
    forward_backward = moved["forward_backward"] * p / bandwidth
    flops = 6 * p * TOKENS / (sheet[1] if precision == "bf16" else sheet[2]) if sheet else 0.0
    update = moved["optimizer"] * p / bandwidth
    update += moved["host"] * p / machine["host_adamw_bandwidth"] + moved["pcie"] * p / machine["host_bandwidth"]
    return {
        "forward_backward": max(forward_backward, flops),
        "update": update,
        "step": max(forward_backward, flops) + update,  # as estimate.step_seconds counts it
        "flop_bound": flops > forward_backward,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, or cpu to run the same code on a CPU")
    parser.add_argument(
        "--models", nargs="*", help="only these models (tiny, pythia-160m, pythia-1.4b, llama-2-7b), every set-up"
    )
    parser.add_argument("--setups", nargs="*", help=f"only these set-ups: {', '.join(SETUPS)}")
    parser.add_argument("--steps", type=int, default=10, help="timed steps a set-up (median)")
    parser.add_argument("--texts", type=int, default=3, help="(text, budget 5) runs a set-up (median)")
    parser.add_argument("--timeout", type=float, default=240, help="seconds a set-up may take")
    parser.add_argument(
        "--budget",
        type=float,
        default=480,
        help="seconds for the whole run: set-ups that would start later are skipped",
    )
    parser.add_argument("--out", help="write every figure here as JSON")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "SETUP"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.probe or args.one:
        result = probe(args.device) if args.probe else measure(*args.one, args.device, args.steps, args.texts)
        print("RESULT " + json.dumps(result), flush=True)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # DeepSpeed's group: NCCL torn down in order
            dist.destroy_process_group()
        return

    started = time.perf_counter()
    common = ["--device", args.device, "--steps", str(args.steps), "--texts", str(args.texts)]
    machine = child(["--probe", *common], args.timeout)
    if "error" in machine:
        sys.exit(f"bench_gpu: the probe of {args.device} failed: {machine['error']}")
    sheet = data_sheet(machine["name"])
    print(
        f"device: {machine['name']}, {machine['memory'] / 2**30:.0f} GiB; host: {machine['cpus']} CPUs, "
        f"{machine['host_bytes'] / 2**30:.0f} GiB; torch {machine['torch']}, CUDA {machine['cuda']}, "
        f"DeepSpeed {machine['deepspeed']}\n"
        f"copy within the device {machine['copy_bandwidth'] / 1e9:.0f} GB/s (read + write)"
        + (f", data sheet {sheet[0] / 1e12:.2f} TB/s" if sheet else ", not in the data-sheet table")
        + f"; the host's fused AdamW {machine['host_adamw_bandwidth'] / 1e9:.0f} GB/s"
        + (
            f"\nhost -> device {machine['h2d_pinned_bandwidth'] / 1e9:.1f} GB/s page-locked, "
            f"{machine['h2d_pageable_bandwidth'] / 1e9:.1f} GB/s pageable; "
            f"device -> host {machine['d2h_pinned_bandwidth'] / 1e9:.1f} GB/s page-locked"
            if "h2d_pinned_bandwidth" in machine
            else ""
        )
    )
    runs = [(m, s) for m in args.models for s in SETUPS] if args.models else DEFAULT_RUNS
    if args.setups:
        runs = [(m, s) for m, s in runs if s in args.setups]
    shapes = model_shapes()
    rows = []
    print(HEADER)
    for model_name, setup in runs:
        params = _count_params(shapes[model_name])
        gpu, host = needed_bytes(setup, params)
        capacity = machine["memory"] if args.device == "cuda" else machine["host_bytes"]
        row = {"model": model_name, "setup": setup, "params": params}
        left = args.budget - (time.perf_counter() - started)
        if left < 30:
            row["skipped"] = f"out of time (--budget {args.budget:.0f} s)"
        elif args.device == "cuda" and gpu > 0.92 * capacity:
            row["skipped"] = f"needs ~{gpu / 1e9:.0f} GB of GPU memory, has {capacity / 1e9:.0f}"
        elif host > 0.85 * machine["host_bytes"]:
            row["skipped"] = f"needs ~{host / 1e9:.0f} GB of host memory, has {machine['host_bytes'] / 1e9:.0f}"
        elif setup == "thesis-bf16" and importlib.util.find_spec("accelerate") is None:
            row["skipped"] = (
                "the Trainer needs accelerate (make bench installs envs/bench.txt; gpu_wheels.sh brings it)"
            )
        elif setup == "thesis-bf16" and THESIS_DISK * params > 0.8 * shutil.disk_usage(tempfile.gettempdir()).free:
            row["skipped"] = f"needs ~{THESIS_DISK * params / 1e9:.0f} GB of disk for its checkpoints"
        else:
            row.update(child(["--one", model_name, setup, *common], min(args.timeout, left)))
        rows.append(row)
        print(_line(row, machine), flush=True)
        if args.out:  # after every row: a run cut short keeps what it measured
            _write(args.out, machine, rows)

    print("\n".join(_summary(rows, machine, shapes)))
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.out:
        _write(args.out, machine, rows)


def _write(path: str, machine: dict, rows: list[dict]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))


def _count_params(shape: tuple[str, dict]) -> int:
    """Parameters of a model shape, made on the meta device (nothing allocated)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(shape[0], **shape[1]))
    return sum(p.numel() for p in model.parameters())


HEADER = (
    f"{'model':<12} {'set-up':<14} {'params':>7} {'step ms':>9} {'floor ms':>9} {'/floor':>7} {'peak GB':>8} "
    f"{'restore':>8} {'stats':>8} {'es eval':>8} {'text,5 ms':>10} {'/5 steps':>9}\n"
    "(restore, stats, es eval: ms; text,5: a (text, budget 5) as the job runs it; /5 steps: against five steps)"
)


def _line(row: dict, machine: dict) -> str:
    size = f"{row['params'] / 1e9:.2f}B" if row["params"] >= 1e9 else f"{row['params'] / 1e6:.1f}M"
    head = f"{row['model']:<12} {row['setup']:<14} {size:>7}"
    if "skipped" in row:
        return f"{head}  skipped: {row['skipped']}"
    if "error" in row:
        return f"{head}  failed: {row['error']}"
    if "thesis_text_s" in row:
        return (
            f"{head}  thesis-style (Trainer per text, checkpoint per epoch, .npy state): "
            f"{row['thesis_text_s']:.2f} s a (text, budget 5), the first {row['thesis_first_s']:.2f} s"
        )
    if "job_start_s" in row:
        return (
            f"{head}  python -m paramdelta.train_job: {row['job_start_s']:.1f} s to start (imports, load, engine), "
            f"then {row['job_text_s'] * 1e3:.0f} ms a (text, budget 5); {row['texts']} texts in {row['job_s']:.1f} s"
            + (
                f"\n{'':<35}host memory: peak RSS {row['job_peak_rss_bytes'] / 1e9:.2f} GB, of which "
                f"estimate.host_memory counts {row['host_counted_bytes'] / 1e9:.2f} GB of tensors: "
                f"{(row['job_peak_rss_bytes'] - row['host_counted_bytes']) / 1e9:.2f} GB a process besides"
                if "job_peak_rss_bytes" in row
                else ""
            )
        )
    peak = f"{row['peak_gpu_bytes'] / 1e9:8.1f}" if "peak_gpu_bytes" in row else f"{'-':>8}"
    if row["width"] > 1:
        blank = f"{'':>9} {'':>9} {'':>7}"
        return (
            f"{head} {blank} {peak} {'':>8} {'':>8} {'':>8} {row['text_s'] * 1e3:10.1f}  ({row['width']} side by side)"
        )
    floor = floors(row, machine)
    ms = [f"{row[key] * 1e3:8.1f}" for key in ("restore_s", "stats_s", "eval_s")]
    line = (
        f"{head} {row['step_s'] * 1e3:9.1f} {floor['step'] * 1e3:9.1f} {row['step_s'] / floor['step']:6.2f}x {peak} "
        f"{' '.join(ms)} {row['text_s'] * 1e3:10.1f} {row['text_s'] / (5 * row['step_s']):8.2f}x"
    )
    if "topk_s" in row:
        line += (
            f"\n{'':<35}top-K% norms of the statistics {row['topk_s'] * 1e3:.1f} ms without a sort, "
            f"{row['topk_sorted_s'] * 1e3:.1f} ms with the sorted topk before"
        )
    if "digest_s" in row:
        line += (
            f"\n{'':<35}early stopping at a new best epoch: {row['digest_s'] * 1e3:.1f} ms for the replay's digest of "
            f"the state against {row['stats_s'] * 1e3:.1f} ms for its statistics (a replay costs a step an epoch)"
        )
    if "repeatable" in row:
        line += f"\n{'':<35}two runs of a text of up to 512 tokens, budget 5: " + (
            "the same statistics and state bit for bit (early stopping's replay is exact)"
            if row["repeatable"]
            else "statistics or state NOT bit for bit the same (replays would record replay_exact: false)"
        )
    if row.get("base_on") == "cpu" and machine.get("cuda"):
        line += (
            f"\n{'':<35}the base ({row['base_bytes'] / 1e9:.1f} GB) in host memory (no room beside the training "
            "state): restores cross the host link"
        )
    if "optimizer_s" in row:
        line += (
            f"\n{'':<35}forward+backward {row['forward_backward_s'] * 1e3:.1f} ms (floor "
            f"{floor['forward_backward'] * 1e3:.1f}, {'FLOPs' if floor['flop_bound'] else 'memory'}), "
            f"clip+AdamW {row['optimizer_s'] * 1e3:.1f} ms (floor {floor['update'] * 1e3:.1f})"
        )
    return line


def _summary(rows: list[dict], machine: dict, shapes: dict) -> list[str]:
    """Texts side by side against one at a time; each set-up's step and (text, budget 5) scaled
    to 7B by its parameters (the steps are memory-bound: linear in the parameters), beside the
    7B rows that ran; the fastest (text, budget 5) of the largest model that ran."""
    out = [""]
    alone = {r["model"]: r for r in rows if "text_s" in r and r["setup"] == "torch-bf16"}
    for r in rows:
        if "text_s" in r and r["width"] > 1 and r["model"] in alone:
            one = alone[r["model"]]["text_s"]
            out.append(
                f"{r['model']}: {r['width']} texts side by side {1 / r['text_s']:.1f} texts/s against "
                f"{1 / one:.1f} one at a time ({one / r['text_s']:.2f}x), budget 5"
            )
    for r in rows:
        if "thesis_text_s" in r and r["model"] in alone:
            job = alone[r["model"]]["text_s"]
            ratio = r["thesis_text_s"] / job
            out.append(
                f"P2 ({r['model']}): thesis-style {r['thesis_text_s']:.2f} s a (text, budget 5) against the job's "
                f"{job:.3f} s (torch engine, bf16; restore, steps, statistics; its start not counted): {ratio:.1f}x "
                f"(goal >= 5x: {'met' if ratio >= 5 else 'NOT met'})"
            )
    seven = _count_params(shapes["llama-2-7b"])
    for r in rows:
        if "step_s" in r and 1e9 <= r["params"] < seven / 2:  # below 1B a step's fixed costs weigh in
            scale = seven / r["params"]
            out.append(
                f"{r['setup']} scaled from {r['model']} to 7B (x{scale:.1f}, not measured at 7B): "
                f"{r['step_s'] * scale * 1e3:.0f} ms a step, {r['text_s'] * scale:.2f} s a (text, budget 5)"
            )
    out += _estimate_factors(rows, machine)
    measured = [r for r in rows if "step_s" in r]
    if measured:
        largest = max(r["params"] for r in measured)
        best = min((r for r in measured if r["params"] == largest), key=lambda r: r["text_s"])
        out.append(
            f"fastest measured for {best['model']} on one {machine['name']}: {best['setup']}, "
            f"{best['text_s']:.2f} s a (text, budget 5)"
        )
    return out


def _estimate_factors(rows: list[dict], machine: dict) -> list[str]:
    """paramdelta.estimate's device factors as these rows measure them: its step is efficiency x
    the roofline + a fixed cost, so two sizes under the torch engine in bf16 (160M and 1.4B)
    give both; the statistics' rate from the 1.4B row; copies from the probe."""
    bf16 = sorted((r for r in rows if r["setup"] == "torch-bf16" and "step_s" in r), key=lambda r: r["params"])
    if not bf16:
        return []
    large = bf16[-1]
    line = f"for estimate.COST_MODEL's entry of this device (torch engine, bf16): copy_bandwidth {machine['copy_bandwidth']:.3g}"
    line += f", host_bandwidth {machine['host_bandwidth']:.3g}"
    line += f", stats_elements_per_s {large['params'] / large['stats_s']:.3g} (from {large['model']})"
    roof = {r["model"]: floors(r, machine)["step"] for r in bf16}
    if len(bf16) > 1 and roof[large["model"]] > roof[bf16[0]["model"]]:
        small = bf16[0]
        efficiency = (large["step_s"] - small["step_s"]) / (roof[large["model"]] - roof[small["model"]])
        overhead = small["step_s"] - efficiency * roof[small["model"]]
        line += f", efficiency {efficiency:.3g} and step_overhead_s {overhead:.3g} (from {small['model']} and {large['model']})"
        line += f", eval_overhead_s about {small['eval_s']:.3g} ({small['model']}'s whole forward pass)"
    else:
        line += f", efficiency {large['step_s'] / roof[large['model']]:.3g} (step / roofline, fixed cost included)"
    jobs = [r for r in rows if "job_start_s" in r]
    if jobs:
        line += f", job_start_s {jobs[0]['job_start_s']:.3g} ({jobs[0]['model']}'s bf16 checkpoint from local disk)"
        if "job_peak_rss_bytes" in jobs[0]:
            extra = jobs[0]["job_peak_rss_bytes"] - jobs[0]["host_counted_bytes"]
            line += f", process_host_bytes {extra:.3g}"
    return [line]


if __name__ == "__main__":
    main()
