"""Snapshot stores: their size on disk under each policy (P3), and how fast they are read back
into delta tables (P5).

P3. A model of Pythia-70M's configuration (GPT-NeoX, hidden 512, 6 layers, 8 heads,
intermediate 2048, vocabulary 50304; randomly initialised and saved as a Hugging Face directory
with a locally trained tokenizer: nothing is downloaded) is trained on a few short texts by the
real training job (``train_job.run``), once per policy: ``full`` and ``delta`` in float32, and
``sketch``. Each store's bytes are counted as ``du`` does (allocated blocks of every file and
folder) and as the files' own sizes; a store of the same job with no texts is the fixed per-store
overhead. Goal: a ``sketch`` store costs at most 1% of a ``full`` float32 one per text. The
features must not depend on the policy: the delta table read from the ``sketch`` store and the
one from the ``full`` store (with the base snapshot that ``store.write_snapshot`` writes of the
base model) are compared column by column for the K grid of config/wikimia.yaml.

P5. ``deltas.read_job_store`` against a raw read of the same bytes (every file of the store read
into memory and every chunk file zstd-decompressed), both from the page cache, on a ``sketch``
store of many texts of a tiny model and on the ``delta`` store of the 70M model. Goal: the
reduction reads at least 50% as fast as the raw read.

The benchmark knows nothing of a store's layout: it writes stores with ``train_job.run``, reads
them with ``deltas.read_job_store`` and raw-reads whatever files they hold.

    python benchmarks/bench_stores.py [--texts 3] [--budget 2] [--many 200] [--threads 1] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from paramdelta import corpus, data, deltas, models, store, target, train_job
from paramdelta.config import defaults, fill_defaults

REPO = Path(__file__).resolve().parents[1]
PYTHIA_70M = dict(hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048, max_positions=2048)
PYTHIA_70M_VOCAB = 50304
TINY = dict(hidden_size=32, num_layers=2, num_heads=4, max_positions=64)
SKETCH_GOAL = 0.01  # sketch bytes / full fp32 bytes, per text
READ_GOAL = 0.5  # read_job_store MB/s / raw read MB/s
MB = 1e6


def k_grid() -> list[int]:
    """features.k of config/wikimia.yaml, else the schema's default."""
    wikimia = yaml.safe_load((REPO / "config" / "wikimia.yaml").read_text())
    return list(fill_defaults(wikimia)["features"]["k"])


def save_model(directory: Path, name: str, tokenizer, vocab_size: int, shape: dict) -> tuple[str, int]:
    config = models.tiny_config(
        "gpt-neox",
        vocab_size,
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = models.build_model(config, seed=0)
    path = directory / name
    target.save(model, tokenizer, path)
    return str(path), sum(p.numel() for p in model.parameters())


def write_dataset(path: Path, texts: list[str]) -> tuple[str, dict[str, int]]:
    ids = [data.text_id(text) for text in texts]
    labels = [index % 2 for index in range(len(texts))]
    pd.DataFrame({"text_id": ids, "text": texts, "label": labels}).to_parquet(path)
    return str(path), dict(zip(ids, labels))


def spec(model_path, table, text_ids, output, *, policy, budget, ks, threads, max_length) -> dict:
    # The schema's default training (the thesis's settings), in fp32 on the CPU.
    train_settings = defaults("train") | {"max_length": max_length, "device": "cpu"}
    return {
        "texts": list(text_ids),
        "dataset_table": table,
        "model_path": model_path,
        "revision": None,
        "engine": "torch",
        "train": train_settings,
        "deepspeed_config": None,
        "zero_stage": None,
        "policy": policy,
        "snapshot_dtype": "float32",
        "ks": list(ks),
        "model": Path(model_path).name,
        "dataset": "bench",
        "budget": str(budget),
        "output": str(output),
        "threads": threads,
        "device": "cpu",
    }


def run_job(job: dict) -> float:
    started = time.perf_counter()
    train_job.run(job)
    return time.perf_counter() - started


def store_size(path: Path) -> dict[str, int]:
    """du's count (allocated blocks of every file and folder, the root included) and the files'
    own sizes."""
    disk, files, count = os.lstat(path).st_blocks * 512, 0, 0
    for folder, subfolders, names in os.walk(path):
        for name in subfolders + names:
            info = os.lstat(os.path.join(folder, name))
            disk += info.st_blocks * 512
            if name in names:
                files += info.st_size
                count += 1
    return {"disk": disk, "files": files, "count": count}


def store_files(path: Path) -> list[str]:
    return [os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names]


def raw_read(path: Path) -> tuple[int, int, int]:
    """Read every file of the store into memory and zstd-decompress every chunk (every file
    that is not Zarr metadata); (bytes read, bytes decompressed, chunks that were not zstd)."""
    from numcodecs import Zstd

    codec = Zstd()
    read = decompressed = not_zstd = 0
    for name in store_files(path):
        with open(name, "rb") as handle:
            payload = handle.read()
        read += len(payload)
        if os.path.basename(name) == "zarr.json":
            continue
        try:
            decompressed += len(codec.decode(payload))
        except Exception:  # a chunk in another codec: read, not decoded
            not_zstd += 1
    return read, decompressed, not_zstd


def best_time(function, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def profile(function, lines: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    function()
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    return stream.getvalue()


def compare_tables(reference: pd.DataFrame, other: pd.DataFrame, ks: list[int]) -> tuple[dict[str, float], bool]:
    """Max |difference| of each statistic column; whether everything else is identical too."""
    numbers = ["l2", "sq", "dot", "base_sq"] + [f"topk_l2_{k}" for k in ks]
    same_keys = reference.drop(columns=numbers).equals(other.drop(columns=numbers))
    differences = {c: float(np.abs(reference[c].to_numpy() - other[c].to_numpy()).max()) for c in numbers}
    return differences, same_keys


def p3(directory: Path, tokenizer, ks: list[int], args) -> dict:
    model_path, n_params = save_model(directory, "pythia-70m-random", tokenizer, PYTHIA_70M_VOCAB, PYTHIA_70M)
    table, labels = write_dataset(directory / "p3.parquet", corpus.generate_corpus(args.texts, 1))
    n = len(labels)
    print(
        f"P3: GPT-NeoX of Pythia-70M's shape, {n_params / 1e6:.2f} M parameters (random init); {n} texts, "
        f"budget {args.budget} epoch(s), max_length {args.max_length}; K grid {ks}; torch {args.threads} thread(s)"
    )

    sizes, empty, seconds, paths = {}, {}, {}, {}
    for policy in ("full", "delta", "sketch"):
        paths[policy] = directory / f"{policy}.zarr"
        job = spec(
            model_path,
            table,
            labels,
            paths[policy],
            policy=policy,
            budget=args.budget,
            ks=ks,
            threads=args.threads,
            max_length=args.max_length,
        )
        seconds[policy] = run_job(job)
        sizes[policy] = store_size(paths[policy])
        try:  # the same job with no texts: what every store costs whatever its texts
            run_job({**job, "texts": [], "output": str(directory / f"{policy}-empty.zarr")})
            empty[policy] = store_size(directory / f"{policy}-empty.zarr")
        except Exception as error:  # noqa: BLE001 - a layout that cannot write an empty store
            print(f"  ({policy}: no store of 0 texts: {type(error).__name__}: {error})")
            empty[policy] = None

    rows = {}
    full_per_text = sizes["full"]["disk"] / n
    for policy in ("full", "delta", "sketch"):
        size, base = sizes[policy], empty[policy]
        overhead = base["disk"] if base else np.nan
        rows[policy] = {
            "job s": seconds[policy],
            "files": size["count"],
            "store du MB": size["disk"] / MB,
            "file bytes MB": size["files"] / MB,
            "overhead du kB": overhead / 1e3,
            "du / text MB": size["disk"] / n / MB,
            "(du - overhead) / text MB": (size["disk"] - overhead) / n / MB,
            "/ full fp32": size["disk"] / n / full_per_text,
        }
    frame = pd.DataFrame(rows).T
    frame.index.name = "policy"
    print()
    print(frame.to_string(float_format=lambda v: f"{v:.4g}"))
    raw_fp32 = n_params * 4
    ratio = rows["sketch"]["du / text MB"] / rows["full"]["du / text MB"]
    marginal = rows["sketch"]["(du - overhead) / text MB"] / rows["full"]["(du - overhead) / text MB"]
    print(f"\n(uncompressed fp32 parameters: {raw_fp32 / MB:.1f} MB a text)")
    print(
        f"sketch / full fp32, du per text: {ratio:.3%} (goal <= {SKETCH_GOAL:.0%}): "
        f"{'MET' if ratio <= SKETCH_GOAL else 'NOT MET'}; without the per-store overhead: {marginal:.4%}"
    )

    # Features: the sketch's table must be the table of the full (and delta) store.
    base_path = directory / "base.zarr"
    model = models.load_causal_lm(model_path, dtype=torch.float32)
    store.write_snapshot(base_path, {name: p.detach() for name, p in model.named_parameters()}, {"kind": "base"})
    del model
    base = store.open_store(base_path)
    tables = {
        # As the workflow reads them: full and delta stores with the base snapshot (for `dot` and `base_sq`).
        policy: deltas.read_job_store(paths[policy], labels, ks, None if policy == "sketch" else base)
        for policy in ("sketch", "full", "delta")
    }
    sketch_table, sketch_texts = tables["sketch"]
    print(f"\nfeatures: delta table of the sketch store ({len(sketch_table)} rows) against the full and delta stores'")
    comparison, verdicts = {}, {}
    for policy in ("full", "delta"):
        table_, texts_ = tables[policy]
        differences, same_keys = compare_tables(sketch_table, table_, ks)
        same_texts = texts_.drop(columns="seconds").equals(sketch_texts.drop(columns="seconds"))
        comparison[f"|sketch - {policy}| max"] = differences
        verdicts[policy] = same_keys and same_texts and all(v == 0 for v in differences.values())
        print(
            f"  {policy}: layer and key columns identical: {same_keys}; per-text records identical "
            f"(all but seconds): {same_texts}"
        )
    numbers = pd.DataFrame(comparison)
    numbers["|sketch| max"] = [sketch_table[c].abs().max() for c in numbers.index]
    print(numbers.to_string(float_format=lambda v: f"{v:.3g}"))
    for policy, passed in verdicts.items():
        print(f"sketch == {policy}, every column exactly (K grid {ks}): {'PASS' if passed else 'FAIL'}")
    return {"delta": paths["delta"], "labels": labels, "base": base_path}


def p5_measure(
    name: str, path: Path, labels: dict[str, int], ks: list[int], repeats: int, base: Path | None = None, threads=1
) -> dict:
    """read_job_store against a raw read of the same files: the store's, and the base snapshot's
    (read once) where the reduction needs it, as the workflow's deltas rule reads them."""
    paths = [path] if base is None else [path, base]

    def raw():
        totals = [raw_read(one) for one in paths]
        return tuple(sum(values) for values in zip(*totals))

    raw()  # into the page cache
    raw_seconds, (read, decompressed, not_zstd) = best_time(raw, repeats)
    group = None if base is None else store.open_store(base)
    table_seconds, (table, _) = best_time(
        lambda: deltas.read_job_store(path, labels, ks, group, threads=threads), repeats
    )
    files = sum(store_size(one)["count"] for one in paths)
    row = {
        "store": name,
        "files": files,
        "MB read": read / MB,
        "MB decompressed": decompressed / MB,
        "raw s": raw_seconds,
        "raw MB/s": read / MB / raw_seconds,
        "read_job_store s": table_seconds,
        "read_job_store MB/s": read / MB / table_seconds,
        "rows": len(table),
        "ms / text": table_seconds * 1e3 / len(labels),
    }
    row["ratio"] = row["read_job_store MB/s"] / row["raw MB/s"]
    if not_zstd:
        print(f"  ({name}: {not_zstd} chunk files were not zstd: read, not decoded)")
    return row


def p5(directory: Path, tokenizer, ks: list[int], args, delta_store: Path | None, delta_labels, base) -> None:
    model_path, n_params = save_model(directory, "tiny", tokenizer, len(tokenizer), TINY)
    table, labels = write_dataset(directory / "p5.parquet", corpus.generate_corpus(args.many, 2))
    path = directory / "many-sketch.zarr"
    seconds = run_job(
        spec(model_path, table, labels, path, policy="sketch", budget=1, ks=ks, threads=args.threads, max_length=24)
    )
    print(
        f"\nP5: sketch store of {len(labels)} texts of a {n_params / 1e3:.0f} k-parameter GPT-NeoX (written in "
        f"{seconds:.1f} s, budget 1); delta store of the 70M model ({len(delta_labels or {})} texts); "
        f"MB/s of the store's bytes, both from the page cache, best of {args.repeats} (delta: "
        f"{args.delta_repeats})"
    )
    rows = [p5_measure(f"sketch, {len(labels)} texts", path, labels, ks, args.repeats)]
    if delta_store is not None:
        # The raw read is one thread; the reduction's `threads` (the deltas rule's) compute
        # statistics beside one more thread that reads ahead.
        for threads in (1, 2):
            rows.append(
                p5_measure(
                    f"delta 70M + base, {len(delta_labels)} texts, threads {threads}",
                    delta_store,
                    delta_labels,
                    ks,
                    args.delta_repeats,
                    base,
                    threads,
                )
            )
    frame = pd.DataFrame(rows).set_index("store")
    print()
    print(frame.to_string(float_format=lambda v: f"{v:.4g}"))
    for store_name, row in frame.iterrows():
        print(
            f"{store_name}: read_job_store at {row['ratio']:.1%} of the raw read (goal >= {READ_GOAL:.0%}): "
            f"{'MET' if row['ratio'] >= READ_GOAL else 'NOT MET'}"
        )
    if args.profile:
        print(f"\ncProfile of deltas.read_job_store, sketch store of {len(labels)} texts:")
        print(profile(lambda: deltas.read_job_store(path, labels, ks), args.profile_lines))
        if delta_store is not None:
            print("\ncProfile of deltas.read_job_store, delta store of the 70M model:")
            group = store.open_store(base)
            print(profile(lambda: deltas.read_job_store(delta_store, delta_labels, ks, group), args.profile_lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=3, help="texts of the 70M stores (P3)")
    parser.add_argument("--budget", type=int, default=2, help="epochs per text (P3)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per chunk")
    parser.add_argument("--many", type=int, default=200, help="texts of the tiny model's sketch store (P5)")
    parser.add_argument("--repeats", type=int, default=5, help="timings of the sketch store, best taken (P5)")
    parser.add_argument("--delta-repeats", type=int, default=2, help="timings of the 70M delta store (P5)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, training and reading")
    parser.add_argument("--skip-p3", action="store_true", help="P5 on the sketch store only")
    parser.add_argument("--profile", action="store_true", help="cProfile read_job_store after P5")
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument("--keep", help="write the models and stores here (kept) instead of a temporary folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ks = k_grid()
    tokenizer = target.train_tokenizer(corpus.generate_corpus(300, 0), 300)

    with tempfile.TemporaryDirectory(prefix="bench-stores-") as temporary:
        directory = Path(args.keep or temporary)
        directory.mkdir(parents=True, exist_ok=True)
        found = {"delta": None, "labels": None, "base": None} if args.skip_p3 else p3(directory, tokenizer, ks, args)
        p5(directory, tokenizer, ks, args, found["delta"], found["labels"], found["base"])


if __name__ == "__main__":
    main()
