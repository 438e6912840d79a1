"""One training job: continual pre-training of one model on each text of a shard, from the
exact base weights every time, and one snapshot store holding what each text did.

`run(spec)` is the whole job. `launch(spec, processes)` runs it in this process, or with
several processes (one per GPU) as the ranks of torch.distributed.run (torchrun), started
inside the job's allocation. The ranks train with DeepSpeed ZeRO, which spreads the memory
over them: ZeRO-2 shards the optimizer state and gradients, ZeRO-3 the weights too. Every
rank trains on the same text with batch size 1, so their gradients are identical and
averaging them changes nothing: the store is the one a single process writes. Only rank 0
writes it; the others train in lockstep and write nothing.

The spec is a plain JSON-able dict (written to a file for the ranks):

    texts            text ids of the job, in order
    dataset_table    the data set table (parquet: text_id, text, ...)
    model_path       what models.load_with_tokenizer loads (a directory or hub id) ...
    revision         ... at this revision (None: the default one)
    engine           "torch" (one process only) or "deepspeed"
    train            the completed config's `train` section (Settings.from_config; max_length, parallel_texts)
    deepspeed_config the DeepSpeed JSON (deepspeed engine; None otherwise)
    zero_stage       overrides the JSON's ZeRO stage (None: keep it)
    policy           what the store keeps per text: "sketch", "delta" or "full"
    snapshot_dtype   torch dtype name of stored tensors ("delta", "full")
    ks               top-K% of the sketch statistics
    model, dataset   names recorded in the store
    budget           epoch budget ("3") or "es" (early stopping)
    output           path of the store (a Zarr directory)
    threads          CPU threads of the job, shared among its processes
    device           "auto", "cpu" or "cuda" (config train.device)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import torch

log = logging.getLogger("paramdelta.train_job")  # not __main__ in the ranks

REQUIRED_KEYS = (
    "texts",
    "dataset_table",
    "model_path",
    "engine",
    "train",
    "policy",
    "snapshot_dtype",
    "ks",
    "model",
    "dataset",
    "budget",
    "output",
    "threads",
    "device",
)
OPTIONAL_KEYS = {"revision": None, "deepspeed_config": None, "zero_stage": None, "trajectory": False}

# Set by torchrun for its ranks; a launcher started from a process that has them (a test run
# after a one-process DeepSpeed job, say) must not hand them down.
_RANK_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def check_spec(spec: dict) -> dict:
    """The spec with its optional keys filled in; a missing or unknown key is an error."""
    missing = [key for key in REQUIRED_KEYS if key not in spec]
    unknown = sorted(set(spec) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if missing or unknown:
        raise ValueError(f"training job spec: missing keys {missing}, unknown keys {unknown}")
    spec = {**OPTIONAL_KEYS, **spec}
    if spec["engine"] not in ("torch", "deepspeed"):
        raise ValueError(f"training job spec: engine {spec['engine']!r} is neither 'torch' nor 'deepspeed'")
    if spec["engine"] == "deepspeed" and not spec["deepspeed_config"]:
        raise ValueError("training job spec: the deepspeed engine needs a deepspeed_config (a DeepSpeed JSON)")
    return spec


def _refuse_unsharded(engine: str, processes: int) -> None:
    if processes > 1 and engine != "deepspeed":
        raise ValueError(
            f"a training job with {processes} processes needs the deepspeed engine, not {engine!r}: only "
            f"DeepSpeed ZeRO shards the training over the processes (set the model's engine: deepspeed, or gpus: 1)"
        )


def deterministic() -> None:
    """Deterministic kernels where torch has them (a warning where it has none), as the job
    trains; before the first CUDA call of the process.

    On a GPU cuBLAS is deterministic only with a fixed workspace configuration, read from the
    environment when torch first calls it: without one, every matrix product of a job warns
    and a rerun may give other bits. A value already set (the user's) is kept."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN, to expose reads of memory no
    # op wrote: a debugging aid that costs a fill per allocation, several per step.
    torch.utils.deterministic.fill_uninitialized_memory = False


def run(spec: dict) -> None:
    """Train on every text of the job and write its store (rank 0 only, atomically).

    Under torchrun this runs on every rank (RANK and WORLD_SIZE in the environment): the
    ranks do the same work in the same order, so every collective DeepSpeed makes is made
    by all of them; rank 0 alone writes the store and logs the texts. A job that runs out of
    memory fails with what to change (out_of_memory).
    """
    try:
        _run(spec)
    except torch.OutOfMemoryError as error:
        raise RuntimeError(out_of_memory(spec, error)) from error


def out_of_memory(spec: dict, error: BaseException) -> str:
    """The message of a job that ran out of memory: where, and the settings that need less.

    A retry does not help on a GPU: the workflow retries with more host memory and time
    (models.<name>.mem_mb and runtime times the attempt), never with more GPU memory."""
    model, engine = spec["model"], spec["engine"]
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    what = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    job = f"the training job of {model} ({engine} engine, {world_size} process(es), {spec['train']['precision']})"
    on_gpu = spec["device"] != "cpu" and torch.cuda.is_available()
    if not on_gpu:
        return (
            f"{job} ran out of host memory ({what}): raise models.{model}.mem_mb (a retry asks for the attempt "
            f"number times it); `python -m paramdelta.estimate --configfile ...` prints each job's peak host memory"
        )
    device = torch.cuda.current_device()
    peak = torch.cuda.max_memory_allocated(device) / 1e9
    total = torch.cuda.get_device_properties(device).total_memory / 1e9
    ways = []
    parallel = int(spec["train"].get("parallel_texts", 1))
    if parallel > 1:
        ways.append(f"fewer texts side by side (train.parallel_texts, now {parallel})")
    offload = "train.deepspeed_config: config/deepspeed_zero2_offload.json"
    if engine == "torch":
        ways.append(f"DeepSpeed ZeRO-2 over two GPUs a job (models.{model}.engine: deepspeed, models.{model}.gpus: 2)")
        ways.append(f"ZeRO-Offload, the optimizer on the host (models.{model}.engine: deepspeed, {offload})")
    else:
        ways.append(f"more GPUs a job (models.{model}.gpus, now {world_size})")
        ways.append(f"ZeRO-3, which shards the weights too (models.{model}.zero_stage: 3)")
        ways.append(f"ZeRO-Offload, the optimizer on the host ({offload})")
    ways.append("shorter chunks for long texts (train.max_length)")
    return (
        f"{job} ran out of GPU memory ({peak:.1f} GB allocated at the peak, of {total:.1f} GB): {what}. "
        f"A retry would fail the same way: it asks SLURM for more host memory and time, not GPU memory. "
        f"Set-ups that need less: {'; '.join(ways)}. `python -m paramdelta.estimate --configfile ... --gpu h100` "
        f"prints each set-up's memory a GPU"
    )


def _run(spec: dict) -> None:
    # Imported here: a launcher of several ranks needs none of it (transformers takes seconds).
    import pandas as pd

    from paramdelta import data, deltas, models, store, train

    spec = check_spec(spec)
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    _refuse_unsharded(spec["engine"], world_size)
    settings = train.Settings.from_config(spec["train"])
    budget = spec["budget"]
    torch.set_num_threads(max(1, int(spec["threads"]) // world_size))
    deterministic()

    table = pd.read_parquet(spec["dataset_table"]).set_index("text_id")
    missing = [t for t in spec["texts"] if t not in table.index]
    if missing:
        raise ValueError(f"{spec['dataset_table']}: text ids {missing} of this job are not in the data set table")

    model, tokenizer = models.load_with_tokenizer(spec["model_path"], revision=spec["revision"])
    layers = models.model_layers(model)  # before DeepSpeed partitions the parameters (ZeRO-3)
    max_length = spec["train"].get("max_length") or models.context_length(model)
    device = train.pick_device(spec["device"])
    parallel_texts = int(spec["train"]["parallel_texts"])
    if parallel_texts > 1 and spec["engine"] != "torch":
        raise ValueError(f"train.parallel_texts = {parallel_texts} needs the torch engine, not {spec['engine']!r}")
    if parallel_texts > 1:
        from paramdelta.side_by_side import SideBySideEngine

        engine = SideBySideEngine(model, settings, device, parallel_texts)
    elif spec["engine"] == "deepspeed":
        ds_config = train.deepspeed_config(spec["deepspeed_config"], settings, spec["zero_stage"])
        engine = train.DeepSpeedEngine(model, settings, device, ds_config)
        if engine.world_size != world_size:
            raise RuntimeError(
                f"DeepSpeed runs {engine.world_size} processes, the environment says WORLD_SIZE={world_size}"
            )
    else:
        engine = train.TorchEngine(model, settings, device)
    policy, ks = spec["policy"], list(spec["ks"])
    snapshot_dtype = getattr(torch, spec["snapshot_dtype"])
    # A sketch keeps per-layer statistics only, computed where the parameters are, from the
    # engine's base (early stopping keeps a copy of its best state on the device when one
    # fits, else only that state's statistics: train.train_text). ||base||^2 per layer is the
    # same for every text: taken once (deltas.Summariser).
    summarise = deltas.Summariser(layers, engine.base, ks) if policy == "sketch" else None
    # snapshots.trajectory: each layer's change after every epoch (one pass over the parameters).
    trace = (
        (lambda named, stacked=False: deltas.layer_l2(layers, engine.base, named, stacked=stacked))
        if spec["trajectory"]
        else None
    )

    attrs = {
        "kind": "train",
        "policy": policy,
        "model": spec["model"],
        "model_path": spec["model_path"],
        "revision": spec["revision"],
        "dataset": spec["dataset"],
        "budget": budget,
        "engine": spec["engine"],
        "seed": settings.seed,
        "train": spec["train"],
        "ks": ks,
        "layers": [
            {
                "name": layer.name,
                "group": layer.group,
                "block": layer.block,
                "numel": layer.numel,
                "params": list(layer.params),
            }
            for layer in layers
        ],
        "texts": list(spec["texts"]),
        "device": str(engine.device),
        "world_size": world_size,
    }
    writer = store.atomic_group(spec["output"], attrs) if rank == 0 else nullcontext(None)
    if parallel_texts > 1:
        results = _side_by_side(engine, tokenizer, table, spec["texts"], budget, max_length, summarise, trace)
    else:
        # On every rank: training and the gathers of its states are collectives.
        results = (
            train.run_text(
                engine, tokenizer, text_id, table.at[text_id, "text"], budget, settings, max_length, summarise, trace
            )
            for text_id in spec["texts"]
        )
    with writer as root:
        records = (
            None
            if root is None
            else train.JobRecords(
                root, policy=policy, layers=layers, base=engine.base, ks=ks, snapshot_dtype=snapshot_dtype
            )
        )
        for text_id, result in zip(spec["texts"], results):
            if records is not None:
                records.add(result, data.text_sha256(table.at[text_id, "text"]))
                if result.ok:
                    log.info(
                        "text %s: %d epochs (best %d), loss %.4f, %.2f s",
                        text_id,
                        result.epochs_run,
                        result.best_epoch,
                        result.losses[result.best_epoch - 1],
                        result.seconds,
                    )
                else:
                    log.warning("text %s failed at epoch %s: %s", text_id, result.failed_epoch, result.failure)
            # The text's state is in the store now: dropped before the next text trains (zip keeps
            # its last pair until it has the next one), so a state kept on the GPU (early
            # stopping's best copy) is not held twice.
            result.after = None
            if world_size > 1:
                # While rank 0 writes (a 7B delta: minutes), the others wait here, in the world
                # group, whose timeout is DEEPSPEED_TIMEOUT, not in the next text's gradient
                # reduction on the group ZeRO makes for itself, which NCCL gives up on after 10.
                torch.distributed.barrier()
        if records is not None:
            records.close()


def _side_by_side(engine, tokenizer, table, text_ids, budget, max_length, summarise, trace):
    """Every text's run, the texts trained side by side (texts too short to train fail alone)."""
    from paramdelta import train

    runs, trainable = {}, []
    for text_id in text_ids:
        token_ids = tokenizer(table.at[text_id, "text"])["input_ids"]
        if len(token_ids) < 2:
            runs[text_id] = train.too_short(text_id, len(token_ids), budget)
        else:
            trainable.append((text_id, train.chunk(token_ids, max_length)))
    for (text_id, _), run in zip(trainable, engine.train(trainable, budget, summarise, trace)):
        runs[text_id] = run
    return [runs[text_id] for text_id in text_ids]


def launch(spec: dict, processes: int, log_path: str | None = None) -> None:
    """Run the job in this process (processes == 1) or as `processes` ranks of torchrun.

    With several processes the spec goes to a temporary JSON beside the output, and the
    launcher's and the ranks' output is appended to `log_path` (when given). If any rank
    fails, torchrun stops the others and this raises, naming the exit code; no store
    appears at the output path, and the temporary stores of ranks killed before they could
    clean up are removed.
    """
    spec = check_spec(spec)
    if processes < 1:
        raise ValueError(f"a training job needs at least one process, not {processes}")
    _refuse_unsharded(spec["engine"], processes)
    if processes == 1:
        run(spec)
        return
    visible = torch.cuda.device_count() if spec["device"] != "cpu" and torch.cuda.is_available() else processes
    if visible < processes:
        raise RuntimeError(
            f"training job {spec['output']}: {processes} processes, one a GPU, but this job sees "
            f"{visible} GPU(s) (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}): "
            f"a job's GPUs must all be on its node"
        )

    output = Path(spec["output"])
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, spec_path = tempfile.mkstemp(prefix=f"{output.name}.spec-", suffix=".json", dir=output.parent)
    with os.fdopen(handle, "w") as stream:
        json.dump(spec, stream)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        # The ranks reach the launcher's store on this node by the loopback address, not by the
        # node's fully qualified name (which a cluster node may not resolve to itself).
        "--local-addr=127.0.0.1",
        f"--nproc_per_node={processes}",
        "-m",
        "paramdelta.train_job",
        spec_path,
    ]
    log.info("training with %d processes: %s", processes, " ".join(command))
    stream = open(log_path, "a") if log_path else None
    start = stream.tell() if stream else 0
    try:
        code = _wait(
            subprocess.Popen(
                command,
                env=_rank_environment(spec, processes),
                stdout=stream,
                stderr=subprocess.STDOUT if stream else None,
            )
        )
    finally:
        if stream is not None:
            stream.close()
        os.remove(spec_path)
    if code != 0:
        _remove_temporaries(output)
        where = f"see {log_path}" if log_path else "see the ranks' output above"
        cause = _first_error(log_path, start) if log_path else None
        raise RuntimeError(
            f"training job {output} with {processes} processes failed: torch.distributed.run exited with code "
            f"{code}" + (f" after {cause}" if cause else "") + f"; {where}"
        )
    if not output.is_dir():
        raise RuntimeError(f"training job with {processes} processes ended without writing {output}")


# A traceback's last line, as a rank prints it (torch prefixes each line of a rank's error with
# its rank): "[rank1]: RuntimeError: ...".
_EXCEPTION_LINE = re.compile(
    r"^(?:\[rank(?P<rank>\d+)\]:\s*)?(?P<error>(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception|Interrupt)(?:: .*)?)$"
)


# torchrun's summary of a failed launch: the first rank to fail, and how it ended.
_ROOT_CAUSE = re.compile(
    r"Root Cause.*?rank\s*:\s*(?P<rank>\d+).*?exitcode\s*:\s*(?P<code>-?\d+)[^\n]*?(?P<signal>\(SIG\w+\))?\s*$",
    re.S | re.M,
)


def _first_error(log_path: str, start: int) -> str | None:
    """What made the launch fail, from what it wrote to the log from byte `start` on: the first
    exception a rank raised, as Python's last traceback line prints it; else (a rank killed by a
    signal, say) the rank and exit code of torchrun's root cause, whose summary of the failure
    (ChildFailedError) names no exception."""
    try:
        with open(log_path, errors="replace") as stream:
            stream.seek(start)
            text = stream.read()
    except OSError:
        return None
    for line in text.splitlines():
        match = _EXCEPTION_LINE.match(line.strip())
        if match and "ChildFailedError" not in line:
            error = match["error"] if len(match["error"]) <= 500 else match["error"][:500] + "..."
            return f"rank {match['rank']}'s {error}" if match["rank"] else error
    cause = _ROOT_CAUSE.search(text)
    if cause:
        return f"rank {cause['rank']} exited with code {cause['code']}" + (
            f" {cause['signal']}" if cause["signal"] else ""
        )
    return None


def _wait(launcher: subprocess.Popen) -> int:
    """The launcher's exit code. Interrupted (Ctrl-C, an error), stop it with SIGTERM, which
    it passes on to the ranks: killed outright, it would leave them running, orphaned."""
    try:
        return launcher.wait()
    except BaseException:
        launcher.terminate()
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            launcher.kill()
        raise


def _rank_environment(spec: dict, processes: int) -> dict[str, str]:
    """The launcher's environment: no inherited rank variables, and each rank's share of the
    CPU threads (torchrun would set one). The ranks run this interpreter, where paramdelta is
    installed."""
    env = {name: value for name, value in os.environ.items() if name not in _RANK_VARIABLES}
    env["OMP_NUM_THREADS"] = str(max(1, int(spec["threads"]) // processes))
    return env


def _remove_temporaries(output: Path) -> None:
    # store.atomic_group's temporary siblings: a rank killed outright (torchrun's SIGKILL after
    # its grace period) leaves its own behind. This job is the only writer of its output.
    for leftover in output.parent.glob(f"{output.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _terminated(signum: int, frame) -> None:
    # torchrun stops the other ranks with SIGTERM when one fails: raising unwinds
    # store.atomic_group, which removes the temporary store.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """One rank under torchrun: `python -m paramdelta.train_job SPEC.json`."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m torch.distributed.run ... -m paramdelta.train_job SPEC.json")
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO if rank == "0" else logging.WARNING,
        format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    signal.signal(signal.SIGTERM, _terminated)
    with open(args[0]) as stream:
        spec = json.load(stream)
    run(spec)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
