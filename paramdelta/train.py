"""Continual pre-training of the target model on one text at a time (METHOD.md section 1).

For every text: restore the base weights bit for bit, start a fresh optimizer,
train on that text alone (batch size 1, labels = input ids, long texts split
into consecutive chunks, one optimizer step per chunk) for an epoch budget or
until the training loss stops improving, and hand back the fp32 parameters.

Two engines share one loop: plain PyTorch, and DeepSpeed (ZeRO-2 by default),
whose optimizer keeps the fp32 master weights itself. Master weights are fp32
in both whatever the compute precision: the change lr * steps is far below the
resolution of bf16, so a delta between two bf16 copies would measure rounding.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import secrets
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from paramdelta.config import budget_epochs, deepspeed_first_step_bytes, defaults, offloads_optimizer

BIT16 = {"bf16": torch.bfloat16, "fp16": torch.float16}

_TRAIN = defaults("train")  # config/schema.yaml's, where the train defaults are written


@dataclass(frozen=True)
class Settings:
    """The config's `train` fields that the training loop reads; a field not given takes the
    schema's default."""

    optimizer: str = _TRAIN["optimizer"]
    fused: bool = _TRAIN["fused"]
    offload_adam: str = _TRAIN["offload_adam"]  # or "deepspeed": DeepSpeed's CPU Adam under ZeRO-Offload
    lr: float = _TRAIN["lr"]
    betas: tuple[float, float] = tuple(_TRAIN["betas"])
    eps: float = _TRAIN["eps"]
    weight_decay: float = _TRAIN["weight_decay"]
    weight_decay_on: str = _TRAIN["weight_decay_on"]  # or "matrices": not biases or normalisation weights (1-D tensors)
    momentum: float = _TRAIN["momentum"]
    schedule: str = _TRAIN["schedule"]
    grad_clip: float = _TRAIN["grad_clip"]
    patience: int = _TRAIN["patience"]
    min_delta: float = _TRAIN["min_delta"]
    max_epochs: int = _TRAIN["max_epochs"]
    best_state: str = _TRAIN["best_state"]  # early stopping's best state: auto, keep or replay
    precision: str = _TRAIN["precision"]
    seed: int = _TRAIN["seed"]

    @classmethod
    def from_config(cls, train: dict) -> Settings:
        """From a `train` section: the workflow's completed one, or some fields of one (the
        others the schema's defaults); fields the loop does not read are ignored."""
        known = {name: train[name] for name in cls.__dataclass_fields__ if name in train}
        if "betas" in known:
            known["betas"] = tuple(known["betas"])
        return cls(**known)


@dataclass
class TextRun:
    """What one text's training did: `after` holds the fp32 parameters to snapshot, or
    `stats` only their per-layer statistics (when the job keeps nothing else)."""

    text_id: str
    n_tokens: int
    n_chunks: int
    budget: str
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    # Under `es`: the loss of the parameters at the end of each epoch, evaluated after its
    # steps (what early stopping compares, so the state kept is the one whose loss is lowest).
    end_losses: list[float] = field(default_factory=list)
    best_epoch: int = 0
    skipped_steps: int = 0  # fp16: steps the loss scaler skipped (an overflow); 0 otherwise
    failure: str | None = None
    failed_epoch: int | None = None
    seconds: float = 0.0
    after: dict[str, torch.Tensor] | None = None
    stats: dict[str, np.ndarray] | None = None
    # With a trace (snapshots.trajectory): each layer's ||theta - theta_base|| after every epoch.
    trajectory: list[np.ndarray] = field(default_factory=list)
    # Early stopping that replayed its best epoch (Settings.best_state): whether the replay ended
    # with the weights and loss the first pass had there, bit for bit; None where nothing was replayed.
    replay_exact: bool | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def epochs_run(self) -> int:
        return len(self.losses)

    def attrs(self) -> dict:
        """JSON-safe summary for the snapshot store."""
        return {
            "text_id": self.text_id,
            "status": "ok" if self.ok else "failed",
            "failure": self.failure,
            "failed_epoch": self.failed_epoch,
            "n_tokens": self.n_tokens,
            "n_chunks": self.n_chunks,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "final_loss": self.losses[self.best_epoch - 1] if self.ok and self.losses else None,
            "best_loss": self.end_losses[self.best_epoch - 1] if self.ok and self.end_losses else None,
            "skipped_steps": self.skipped_steps,
            "replay_exact": self.replay_exact,
            "seconds": round(self.seconds, 4),
        }


def chunk(token_ids: list[int], max_length: int) -> list[torch.Tensor]:
    """Split a tokenised text into consecutive chunks of at most max_length tokens.

    Chunks are balanced (sizes differ by at most one) so that no chunk is a lone
    token, which has no next token to predict.
    """
    n_chunks = math.ceil(len(token_ids) / max_length)
    ids = torch.tensor(token_ids, dtype=torch.long)
    return [piece.unsqueeze(0) for piece in torch.tensor_split(ids, n_chunks)]


def lr_at(step: int, total_steps: int, settings: Settings) -> float:
    """Learning rate of optimizer step `step` (0-based): cosine decay to zero over the run, no warm-up."""
    if settings.schedule == "constant":
        return settings.lr
    return 0.5 * settings.lr * (1.0 + math.cos(math.pi * step / total_steps))


def extensions_dir_for_this_cpu() -> None:
    """Where TORCH_EXTENSIONS_DIR is not set, point it at a directory of this CPU type's own.

    DeepSpeed compiles its CPU Adam with -march=native into torch's extensions directory, by
    default one a Python and CUDA version in the home directory, which a cluster's nodes share: a
    build made on one CPU type and found there by a job on another would die of an illegal
    instruction. The CPU's instruction set (its flags) names the directory."""
    if "TORCH_EXTENSIONS_DIR" in os.environ:
        return
    import hashlib
    import platform
    import sys

    from torch.utils.cpp_extension import get_default_build_root

    try:
        with open("/proc/cpuinfo") as stream:
            cpu = next((line for line in stream if line.startswith(("flags", "Features"))), "")
    except OSError:
        cpu = ""
    cpu = cpu or platform.processor() or platform.machine()
    accelerator = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
    versions = f"py{sys.version_info.major}{sys.version_info.minor}_{accelerator}"
    tag = hashlib.sha1(cpu.encode()).hexdigest()[:12]
    os.environ["TORCH_EXTENSIONS_DIR"] = os.path.join(get_default_build_root(), versions, f"cpu-{tag}")


# A build of DeepSpeed's CPU Adam takes minutes; its lock file this much older is a build's that died.
STALE_BUILD_LOCK_S = 30 * 60


def clear_stale_build_lock(name: str) -> None:
    """Remove the lock file a killed build of torch extension `name` left in TORCH_EXTENSIONS_DIR.

    torch builds an extension under a lock file in its build directory and removes it when the
    build ends; a job killed while it built (cancelled, preempted, out of time) leaves the file,
    and every later job that loads the extension from there waits on it forever, without a
    message. A lock older than any build takes (STALE_BUILD_LOCK_S) is removed, with a warning
    that names it; a younger one is a build under way, which the job waits for as torch does."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if not root:
        return
    lock = os.path.join(root, name, "lock")
    try:
        age = time.time() - os.stat(lock).st_mtime
    except FileNotFoundError:
        return
    if age <= STALE_BUILD_LOCK_S:
        return
    # Moved aside first, atomically: of several jobs that found it stale, one takes it (a name of
    # its own on a filesystem the nodes share). What it took is checked again, so that a fresh
    # lock made in between (another job's build) goes back.
    aside = f"{lock}.stale-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.rename(lock, aside)
    except FileNotFoundError:  # another job took it first
        return
    except OSError as error:
        raise RuntimeError(
            f"{lock} was left {age / 60:.0f} minutes ago by a build of {name} that never finished, and "
            f"this job cannot remove it ({error}); every build would wait on it: remove it by hand"
        ) from error
    try:
        age = time.time() - os.stat(aside).st_mtime
    except FileNotFoundError:  # gone already: nothing of it is left to remove
        return
    if age <= STALE_BUILD_LOCK_S:
        try:
            os.link(aside, lock)  # back where it was, unless a newer one is there already
        except FileExistsError:
            pass
        except OSError:  # no hard links here: renamed back, unless a newer one is there
            if not os.path.lexists(lock):
                os.rename(aside, lock)
                return
        os.unlink(aside)
        return
    try:
        os.unlink(aside)
    except FileNotFoundError:
        pass
    warnings.warn(
        f"removed {lock}: left {age / 60:.0f} minutes ago by a build of {name} that never finished "
        "(a job killed while it compiled); the build starts again",
        stacklevel=2,
    )


def _make_optimizer(
    params, settings: Settings, *, stacked: bool = False, deepspeed_cpu_adam: bool = False
) -> torch.optim.Optimizer:
    """torch's AdamW or SGD; with `fused`, the implementation that updates every tensor in
    one kernel (CPU and CUDA), else torch's default. They agree to float rounding: a few
    ulp of the parameters, far below the change a step makes. `deepspeed_cpu_adam`: AdamW is
    DeepSpeed's CPU Adam instead (its parameters must be in host memory: ZeRO-Offload's).

    With weight_decay_on "matrices", decay applies only to tensors of two or more dimensions
    (weight matrices, embeddings); biases and normalisation weights, the 1-D tensors of a
    transformer, are not decayed, as Hugging Face Trainer does. `stacked`: every tensor has
    a leading copy dimension (side_by_side), not counted."""
    params = list(params)
    if settings.weight_decay_on == "matrices":
        matrices = [p for p in params if p.dim() - stacked >= 2]
        others = [p for p in params if p.dim() - stacked < 2]
        groups = [{"params": matrices}] + ([{"params": others, "weight_decay": 0.0}] if others else [])
    else:
        groups = [{"params": params}]
    if deepspeed_cpu_adam and settings.optimizer == "adamw":
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        extensions_dir_for_this_cpu()
        clear_stale_build_lock("cpu_adam")
        return DeepSpeedCPUAdam(
            groups,
            lr=settings.lr,
            betas=settings.betas,
            eps=settings.eps,
            weight_decay=settings.weight_decay,
            adamw_mode=True,
        )
    fused = settings.fused or None
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay, fused=fused
        )
    return torch.optim.AdamW(
        groups, lr=settings.lr, betas=settings.betas, eps=settings.eps, weight_decay=settings.weight_decay, fused=fused
    )


def _restart(optimizer: torch.optim.Optimizer) -> None:
    """Put an optimizer back to the state of a new one, in place: its step counts and moments
    zeroed. The same as a new optimizer for AdamW (whose state starts at zero) and for SGD
    without dampening (a zero momentum buffer times momentum, plus the gradient, is the
    gradient the first step would copy), without allocating (and, on a CPU, page-faulting)
    the moments again for every text."""
    # One foreach call per device and dtype (moments on the device, step counts possibly on
    # the host), not one call per tensor.
    groups: dict[tuple, list[torch.Tensor]] = {}
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                groups.setdefault((value.device, value.dtype), []).append(value)
            elif key == "step":  # a Python count (DeepSpeed's CPU Adam)
                state[key] = type(value)(0)
    with torch.no_grad():
        for tensors in groups.values():
            torch._foreach_zero_(tensors)


class TorchEngine:
    """Plain PyTorch: fp32 parameters, optional bf16/fp16 autocast for forward and backward."""

    def __init__(self, model: torch.nn.Module, settings: Settings, device: torch.device):
        self.settings = settings
        self.device = device
        self.model = model.to(device=device, dtype=torch.float32)
        self.model.train()
        self.params = dict(self.model.named_parameters())
        # Memory still to come on the device: gradients, and the optimizer's moments (AdamW
        # two, SGD with momentum one) in fp32, beside the weights already there; under bf16/fp16
        # autocast, the 16-bit copies of the weights a step casts and keeps for its backward.
        moments = 2 if settings.optimizer == "adamw" else int(settings.momentum > 0)
        fp32 = _fp32_bytes(self.params.values())
        state = (1 + moments) * fp32 + (fp32 // 2 if settings.precision in BIT16 else 0)
        # The exact base, restored bit for bit before every text, in the narrowest dtype that
        # holds it exactly (base_dtype: the checkpoint's 16 bits for a model loaded from one): on
        # the device when it fits beside the training state (a device-to-device copy), else in
        # host memory. So is early stopping's best state (`keep`), when one more copy fits.
        dtypes = {name: base_dtype(p.detach()) for name, p in self.params.items()}
        base_bytes = sum(p.numel() * dtypes[name].itemsize for name, p in self.params.items())
        self.base_on_device = _spare_bytes(device) > state + base_bytes
        if self.base_on_device:
            self.base = {name: p.detach().to(dtypes[name], copy=True) for name, p in self.params.items()}
        else:  # in page-locked host memory: restores cross the host link at its full rate
            slabs = HostSlabs()
            self.base = {
                name: _host_copy(p.detach(), pin=device.type == "cuda", slabs=slabs, dtype=dtypes[name])
                for name, p in self.params.items()
            }
        # Asked again now that the base is allocated: room for one more copy beside it.
        self.copy_on_device = self.base_on_device and _spare_bytes(device) > state + fp32
        self.scaler: torch.amp.GradScaler | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.skipped_steps = 0

    def reset(self) -> None:
        with torch.no_grad():
            for name, p in self.params.items():
                # Asynchronous from page-locked host memory: the steps that follow are queued
                # behind the copies on the same stream, and the base is never written.
                p.copy_(_widened_on(self.base[name], p.device), non_blocking=True)
        if self.optimizer is None:
            self.optimizer = _make_optimizer(self.params.values(), self.settings)
        else:
            _restart(self.optimizer)
        # A fresh loss scale too: a scale lowered by one text's overflow must not carry over to the next.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.settings.precision == "fp16")
        self.skipped_steps = 0

    def _autocast(self):
        if self.settings.precision in BIT16:
            return torch.autocast(self.device.type, dtype=BIT16[self.settings.precision])
        return nullcontext()

    def step(self, input_ids: torch.Tensor, lr: float) -> torch.Tensor:
        """One optimizer step on a chunk; returns its loss, a 0-dim tensor where it was computed
        (reading it waits for the device: train_text reads an epoch's losses at once)."""
        input_ids = input_ids.to(self.device)
        with self._autocast():
            loss = self.model(input_ids=input_ids, labels=input_ids).loss
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params.values(), self.settings.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # The scale only ever drops after an overflow, whose step the scaler skipped.
        if scale is not None and self.scaler.get_scale() < scale:
            self.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def evaluate(self, chunks: list[torch.Tensor]) -> float:
        """Mean loss of the current parameters over the chunks, in eval mode, no gradients."""
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                losses = [self.model(input_ids=c.to(self.device), labels=c.to(self.device)).loss.item() for c in chunks]
        finally:
            self.model.train()
        return sum(losses) / len(losses)

    def state(self, into: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The fp32 parameters on the CPU; copied into `into` when given (no new allocation)."""
        return _cpu_state(((name, p.detach()) for name, p in self.params.items()), into)

    def keep(self, into: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """A copy of the fp32 parameters for early stopping's best state: on the device when
        one more copy fits there (copy_on_device), else on the CPU; into `into` when given."""
        if not self.copy_on_device:
            return self.state(into)
        if into is None:
            return {name: p.detach().clone() for name, p in self.params.items()}
        for name, p in self.params.items():
            into[name].copy_(p.detach())
        return into

    def named_fp32(self) -> Iterable[tuple[str, torch.Tensor]]:
        """The fp32 parameters where they are (for statistics computed on the device)."""
        return ((name, p.detach()) for name, p in self.params.items())

    def fingerprint(self) -> torch.Tensor:
        """An exact digest of the fp32 parameters, where they are (bit_sums)."""
        return bit_sums(self.params.values())

    def agree(self, flag: bool) -> bool:
        """`flag` on every process of the job (one here)."""
        return flag


_BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def bit_sums(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Each tensor's bit patterns summed as integers (int64, a vector of one sum a tensor), where the
    tensors are: one pass over them, no transfer, and exact, so the same sums whatever order a
    device adds in. Two states whose tensors differ in any one value give other sums; early
    stopping's replay compares them (train._replay)."""
    return torch.stack([t.detach().view(_BITS[t.dtype]).sum(dtype=torch.int64) for t in tensors])


def _fp32_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return 4 * sum(t.numel() for t in tensors)


def _spare_bytes(device: torch.device) -> float:
    """Free memory of a CUDA device less a tenth of its size kept for activations and the
    allocator; unbounded elsewhere (the host's memory is what a job asked SLURM for). Free
    counts the blocks torch's allocator holds cached but unused: the driver sees them as taken,
    yet the next allocations reuse them."""
    if device.type != "cuda":
        return math.inf
    free, total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return free + cached - 0.1 * total


def base_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The narrowest of bfloat16, float16 and float32 that holds every value of the fp32 `tensor`
    exactly: 16 bits for a weight loaded from a 16-bit checkpoint (its fp32 values are an exact
    upcast), float32 otherwise (a randomly initialised or an fp32 model, a NaN). The base kept
    in it is the fp32 base bit for bit, at half the memory and half the traffic of every
    restore and every statistic that reads it from host memory. Checked a block at a time (a
    7B model's embedding whole would take 6 bytes a value more at the job's peak), its first
    values alone first: most tensors that are not exact show it there."""
    flat = tensor.reshape(-1)
    for dtype in (torch.bfloat16, torch.float16):
        if all(torch.equal(part.to(dtype).to(tensor.dtype), part) for part in (flat[:4096], *flat.split(1 << 22))):
            return dtype
    return torch.float32


def _on_gpu(base: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`base` sent to `device` where that is a GPU and it is elsewhere (asynchronously, from
    page-locked host memory), else as it is: never device to host ahead of a copy that would
    read it on the host before it landed."""
    if base.device == device or device.type != "cuda":
        return base
    return base.to(device, non_blocking=True)


def _widened_on(base: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`base` ready to be copied into fp32 weights on `device`: a 16-bit base in host memory
    bound for a GPU crosses as it is, at half the bytes of fp32, to be widened there by the copy
    that reads it (a blocking copy torch would widen on the host, through pageable memory). An
    fp32 base as it is: the copy into the weights moves it."""
    return base if base.dtype == torch.float32 else _on_gpu(base, device)


def _cpu_state(
    tensors: Iterable[tuple[str, torch.Tensor]], into: dict[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    # For a 7B model one copy is 28 GB: early stopping refreshes one buffer, never a second one.
    # Taken one tensor at a time, so that a tensor gathered whole on the accelerator (DeepSpeed)
    # is freed before the next is gathered.
    if into is None:
        slabs = HostSlabs()
        return {name: _host_copy(t, pin=t.is_cuda, slabs=slabs) for name, t in tensors}
    for name, t in tensors:
        into[name].copy_(t)
    return into


_PINNING_FAILED = False


def _pinned_bytes(n: int) -> torch.Tensor:
    return torch.empty(n, dtype=torch.uint8, pin_memory=True)


class HostSlabs:
    """Page-locked host memory for the fp32 tensors of one state, carved from slabs whose sizes are
    powers of two. torch's pinned allocator rounds every allocation up to a power of two, so
    tensors pinned one by one would take up to twice their size (Llama-2-7B's 172 MiB MLP
    weights take 256 MiB each: a third more for the whole base); packed first fit into 1 GiB
    slabs they take a few percent more. A tensor handed out is a view: its slab lives as long as
    any of them. `allocate(n)`: n bytes of uint8 (page-locked; tests pass another)."""

    SLAB = 1 << 30
    ALIGN = 512  # bytes: each tensor starts on a boundary that copies to a GPU like

    def __init__(self, allocate: Callable[[int], torch.Tensor] = _pinned_bytes):
        self._allocate = allocate
        self.slabs: list[list] = []  # [uint8 tensor, bytes used]

    def empty(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        numel = math.prod(shape)
        size = -(-dtype.itemsize * numel // self.ALIGN) * self.ALIGN
        slab = next((slab for slab in self.slabs if slab[0].numel() - slab[1] >= size), None)
        if slab is None:
            slab = [self._allocate(max(self.SLAB, 1 << max(0, size - 1).bit_length())), 0]
            self.slabs.append(slab)
        start = slab[1]
        slab[1] += size
        return slab[0][start : start + dtype.itemsize * numel].view(dtype).view(tuple(shape))


def _host_copy(
    tensor: torch.Tensor, pin: bool, slabs: HostSlabs | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A copy of `tensor` in host memory, as `dtype` (fp32 unless told; cast where `tensor` is, so
    only the copy's bytes cross the link). With `pin`, page-locked: copies between it and a
    GPU run at the link's full rate (pageable memory goes through CUDA's staging buffers) and
    can be asynchronous; carved from `slabs` when given (a state's many tensors: HostSlabs). It
    is allocated page-locked and filled, not copied and then pinned, so a 7B model's 28 GB base
    never stands twice in host memory. Where pinning fails (no CUDA, a memory-lock limit),
    pageable, with one warning a process."""
    global _PINNING_FAILED
    if pin and not _PINNING_FAILED:
        try:
            if slabs is not None:
                host = slabs.empty(tensor.shape, dtype)
            else:
                host = torch.empty(tensor.shape, dtype=dtype, pin_memory=True)
        except RuntimeError as error:
            _PINNING_FAILED = True
            warnings.warn(f"host copies of the weights are pageable (pinning failed: {error})", stacklevel=2)
        else:
            return host.copy_(tensor.detach().to(dtype))
    return tensor.detach().to("cpu", dtype, copy=True)


def init_distributed_single_process() -> None:
    """Join torch.distributed for DeepSpeed: the launcher's group under torchrun (RANK and the
    rest set), else a one-process group of our own, so DeepSpeed runs without a launcher.

    CPU: gloo. CUDA: nccl, each rank on its own GPU (cuda:LOCAL_RANK).
    """
    import deepspeed

    if "RANK" not in os.environ:
        # Port 0: the one process's store listens on a port the system picks as it binds. A port
        # found free first and bound later can be taken in between by another job on the node.
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="0", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # Rank 0 writes each text's record while the other ranks wait in the next collective: a
    # large model's delta or full snapshot can take longer than DeepSpeed's default 10 minutes.
    # A rank that dies is noticed by the launcher at once, whatever the timeout.
    minutes = int(os.environ.get("DEEPSPEED_TIMEOUT", "60"))
    deepspeed.init_distributed(dist_backend=backend, timeout=datetime.timedelta(minutes=minutes))


def deepspeed_config(path: str, settings: Settings, zero_stage: int | None = None) -> dict:
    """The DeepSpeed JSON config with the run's settings imposed (batch 1, precision, clipping)."""
    with open(path) as handle:
        config = json.load(handle)
    config.update(train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, gradient_clipping=settings.grad_clip)
    config["bf16"] = {"enabled": settings.precision == "bf16"}
    config["fp16"] = {**config.get("fp16", {}), "enabled": True} if settings.precision == "fp16" else {"enabled": False}
    if zero_stage is not None:
        config.setdefault("zero_optimization", {})["stage"] = zero_stage
    # The optimizer is ours, made from the run's settings (DeepSpeedEngine): torch's AdamW/SGD as
    # in the plain engine, or under ZeRO-Offload DeepSpeed's CPU Adam if train.offload_adam says so.
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    config["zero_allow_untested_optimizer"] = True
    # DeepSpeed refuses torch's optimizer under ZeRO-Offload unless told it is meant.
    config["zero_force_ds_cpu_optimizer"] = False
    return config


def deepspeed_state_to_come(settings: Settings, config: dict, fp32_bytes: int, world_size: int) -> float:
    """Device bytes a DeepSpeed ZeRO optimizer allocates at its first backward and step, after
    deepspeed.initialize (config.deepspeed_first_step_bytes: the reduction buckets, and this rank's
    gradient partitions and moments, AdamW two, SGD with momentum one, unless ZeRO-Offload keeps
    them in host memory). Without it, a base moved to the device after initialize fits there only
    until the first step: a 7B model under ZeRO-2 on two 80 GB GPUs would run out of memory."""
    moments = 2 if settings.optimizer == "adamw" else int(settings.momentum > 0)
    return deepspeed_first_step_bytes(
        config, fp32_bytes // 4, world_size, precision=settings.precision, moments=moments
    )


class DeepSpeedEngine:
    """DeepSpeed ZeRO: the optimizer holds the fp32 master weights (model weights may be bf16).

    Under a launcher (torchrun) every rank builds one engine and trains on the same chunk
    as the others, in lockstep: their gradients are identical, so averaging them changes
    nothing and the result is the one-process result. ZeRO only spreads the memory: ZeRO-2
    shards the optimizer state and gradients over the ranks, ZeRO-3 the weights too.
    `step` and `state` communicate, so every rank must call them in the same order; the
    loss `step` returns is rank 0's on every rank, so that early stopping decides alike
    everywhere (a rank that stopped early would leave the others waiting forever).
    """

    def __init__(self, model: torch.nn.Module, settings: Settings, device: torch.device, config: dict):
        import deepspeed
        import torch.distributed as dist
        from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

        self._full_fp32 = safe_get_full_fp32_param
        self._set_full_fp32 = safe_set_full_fp32_param
        init_distributed_single_process()
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.settings = settings
        model = model.to(dtype=torch.float32)
        model.train()
        # The base is taken before DeepSpeed casts the module to bf16/fp16 (and, under ZeRO-3,
        # partitions it), exactly, in the narrowest dtype that holds it (base_dtype): every rank
        # keeps the whole of it, on the CPU.
        self.base = {
            name: p.detach().to("cpu", base_dtype(p.detach()), copy=True) for name, p in model.named_parameters()
        }
        if settings.offload_adam == "deepspeed" and not offloads_optimizer(config):
            raise ValueError(
                "train.offload_adam 'deepspeed' (DeepSpeed's CPU Adam) needs a DeepSpeed config that offloads "
                "the optimizer to the CPU (zero_optimization.offload_optimizer.device: cpu)"
            )
        optimizer = _make_optimizer(
            model.parameters(), settings, deepspeed_cpu_adam=settings.offload_adam == "deepspeed"
        )
        self.engine, self.optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        self.zero_stage = self.engine.zero_optimization_stage()
        self._master_on_host = offloads_optimizer(config)  # ZeRO-Offload
        self.params = dict(self.engine.module.named_parameters())
        self.device = self.engine.device
        # The base moves to the device if it fits there beside the training state (restores
        # and statistics then never cross PCIe), counting what the optimizer allocates only
        # at its first step. A best state is kept on the host (`keep`), or only its statistics.
        base_bytes = sum(t.numel() * t.element_size() for t in self.base.values())
        to_come = deepspeed_state_to_come(settings, config, _fp32_bytes(self.base.values()), self.world_size)
        self.base_on_device = _spare_bytes(self.device) > base_bytes + to_come
        if self.base_on_device:
            self.base = {name: t.to(self.device) for name, t in self.base.items()}
        elif self.device.type == "cuda":
            # Page-locked, one tensor at a time: each pageable tensor is freed as its copy is made.
            slabs = HostSlabs()
            for name in list(self.base):
                self.base[name] = _host_copy(self.base[name], pin=True, slabs=slabs, dtype=self.base[name].dtype)
        self.copy_on_device = False
        # The loss scaler as it starts (fp16: scale, hysteresis, overflow counters; a fixed
        # scale of 1 otherwise), put back for every text so that no text's skipped steps
        # depend on the texts before it. ZeRO keeps it in `loss_scaler`; DeepSpeed's fp16
        # optimizer without ZeRO in `loss_scale_config`.
        self._scaler_attr = next((a for a in ("loss_scaler", "loss_scale_config") if hasattr(self.optimizer, a)), None)
        if self._scaler_attr is None and settings.precision == "fp16":
            raise RuntimeError("DeepSpeed fp16: no loss scaler found on its optimizer to restart for every text")
        self._fresh_scaler = copy.deepcopy(getattr(self.optimizer, self._scaler_attr)) if self._scaler_attr else None
        self.skipped_steps = 0

    def reset(self) -> None:
        # One engine serves every text: reinitialising DeepSpeed per text would stack its
        # gradient hooks. Write the exact fp32 base into the module (rounded to 16 bits with
        # bf16/fp16) and into the fp32 master weights, and drop the optimizer state: the same
        # as a fresh start. No communication: every rank holds the whole base and writes its
        # own shards.
        with torch.no_grad():
            if self.zero_stage == 3:
                for name, p in self.params.items():
                    self._reset_partitioned(p, self.base[name])
                # ZeRO++'s secondary copies of the slices (hpZ), if any, are rebuilt from them.
                self.optimizer.invalidate_secondary_tensor()
            else:
                # The master refreshed from the module first (any part of it no parameter's
                # fragment covers), then every fragment overwritten: with bf16/fp16 the module
                # holds the base rounded to 16 bits, the master the exact fp32 base. Each tensor
                # of a base in host memory crosses to the GPU once, for both writes; a master in
                # host memory (ZeRO-Offload) is written from the host copy, by a blocking copy.
                master = getattr(self.optimizer, "refresh_fp32_params", None)
                if master is not None:
                    master()
                for name, p in self.params.items():
                    base = _on_gpu(self.base[name], p.device)
                    p.copy_(base, non_blocking=True)
                    self._set_full_fp32(p, self.base[name] if self._master_on_host else base)
        # The optimizer's state zeroed in place, as a new one starts: under ZeRO-Offload its
        # moments are in host memory, which freeing and allocating again for every text would
        # page-fault anew (54 GB at 7B).
        _restart(getattr(self.optimizer, "optimizer", self.optimizer))
        if self._scaler_attr:
            setattr(self.optimizer, self._scaler_attr, copy.deepcopy(self._fresh_scaler))
        self.skipped_steps = 0

    def _reset_partitioned(self, p: torch.nn.Parameter, base: torch.Tensor) -> None:
        """ZeRO-3: write the base into this rank's slice of `p` in the module (p.ds_tensor) and
        in the fp32 master, and into the whole of p while it is gathered (ZeRO-3 keeps small
        parameters gathered all the time).

        DeepSpeed's safe_set_full_fp32_param cannot serve here: it reads a slice of the full
        value past its end on the rank whose slice is padded (numel not a multiple of the
        world size). The master slice is found as it finds it (deepspeed 0.19).
        """
        master, _ = self.optimizer._get_fp32_opt_state_partition(p, release_swap_buffers=False)
        size = p.ds_tensor.numel()
        if master.numel() != size:
            raise RuntimeError(
                f"ZeRO-3 slice of {tuple(p.ds_shape)} parameter: {size} module values, {master.numel()} master values"
            )
        flat = base.reshape(-1)
        start = min(self.optimizer._get_param_partition_rank(p) * size, flat.numel())
        piece = torch.zeros(size, dtype=torch.float32, device=base.device)  # where the base is: no round trip
        piece[: min(size, flat.numel() - start)] = flat[start : start + size]
        p.ds_tensor.copy_(piece.view_as(p.ds_tensor))
        master.copy_(piece.view_as(master))
        if p.numel() == p.ds_numel:
            p.copy_(base)

    def step(self, input_ids: torch.Tensor, lr: float) -> torch.Tensor:
        """One optimizer step on a chunk on every rank; returns rank 0's loss, a 0-dim tensor on
        the device (as TorchEngine.step)."""
        input_ids = input_ids.to(self.device)
        loss = self.engine(input_ids=input_ids, labels=input_ids).loss
        self.engine.backward(loss)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        skipped = self.engine.skipped_steps
        self.engine.step()
        self.skipped_steps += self.engine.skipped_steps - skipped  # fp16: an overflow skips the step
        return self._rank0(loss.detach())

    def evaluate(self, chunks: list[torch.Tensor]) -> float:
        """Mean loss of the current parameters over the chunks, in eval mode, no gradients
        (rank 0's, on every rank)."""
        self.engine.eval()
        try:
            with torch.no_grad():
                losses = [
                    self._rank0(self.engine(input_ids=c.to(self.device), labels=c.to(self.device)).loss.detach()).item()
                    for c in chunks
                ]
        finally:
            self.engine.train()
        return sum(losses) / len(losses)

    def _rank0(self, loss: torch.Tensor) -> torch.Tensor:
        """Rank 0's loss, on every rank (the ranks compute the same loss, but early stopping
        must not depend on whether they agree to the last bit); a 0-dim tensor on the device."""
        if self.world_size == 1:
            return loss
        import torch.distributed as dist

        value = loss.to(self.device, torch.float64).reshape(1)
        dist.broadcast(value, src=0)
        return value.reshape(())

    def state(self, into: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The fp32 master weights, gathered whole, on the CPU; copied into `into` when given (no
        new allocation). Only rank 0 writes the store: the other ranks take part in the gathers
        (collectives) and keep nothing, so a node does not hold a host copy of every state per rank."""
        if self.rank != 0:
            for _ in self.named_fp32():
                pass
            return {}
        return _cpu_state(self.named_fp32(), into)

    # The gathered master weights are the engine's to reuse: a best state is kept on the host.
    keep = state

    def named_fp32(self) -> Iterable[tuple[str, torch.Tensor]]:
        """The fp32 master weights gathered whole, one tensor at a time (a collective: every
        rank must iterate them all, in order)."""
        return ((name, self._full_fp32(p).detach()) for name, p in self.params.items())

    def fingerprint(self) -> torch.Tensor:
        """An exact digest of this rank's part of the training state, where it is (bit_sums, no
        communication): its partition of the fp32 master on the GPU; under ZeRO-Offload, whose
        master is in host memory (a pass over it at every new best epoch would cost seconds),
        its 16-bit module weights on the GPU, which any difference of the master that survives
        their rounding changes."""
        master = getattr(self.optimizer, "single_partition_of_fp32_groups", None) or getattr(
            self.optimizer, "fp32_partitioned_groups_flat", None
        )
        if master and not self._master_on_host:
            return bit_sums(master)
        return bit_sums(getattr(p, "ds_tensor", p) for p in self.params.values())

    def agree(self, flag: bool) -> bool:
        """Whether `flag` holds on every rank (a collective: every rank must call it)."""
        if self.world_size == 1:
            return flag
        import torch.distributed as dist

        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())


Summarise = Callable[[Iterable[tuple[str, torch.Tensor]]], dict[str, np.ndarray]]
# The per-epoch trajectory: (named parameters, stacked) -> per-layer change (deltas.layer_l2).
Trace = Callable[..., np.ndarray]


def train_text(
    engine,
    text_id: str,
    chunks: list[torch.Tensor],
    budget: str,
    settings: Settings,
    summarise: Summarise | None = None,
    trace: Trace | None = None,
) -> TextRun:
    """Train on one text from the exact base: a fixed epoch budget, or `es` (early stopping).

    With early stopping the parameters of the best-loss epoch are kept in memory and
    returned; nothing is written per epoch (thesis A.2.2). The loss compared is that of the
    parameters at the end of each epoch, evaluated after its steps (as the thesis's Trainer
    evaluated after every epoch), so the state kept is the one whose loss is lowest.

    With `summarise` (a job that keeps only per-layer statistics), the run hands back
    `summarise` of the parameters instead, computed where they are; early stopping keeps a
    copy of the best state on the device when one fits (engine.copy_on_device), else only
    the best epoch's statistics. Or, where `replays` says so, it keeps nothing: once the run
    stops, the text is trained again from the base to its best epoch (see _replay). With
    `trace`, each layer's change from the base after every epoch goes into `run.trajectory`
    (early stopping: every epoch run, past the best one too).
    """
    run = TextRun(text_id=text_id, n_tokens=sum(c.shape[1] for c in chunks), n_chunks=len(chunks), budget=budget)
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    engine.reset()
    # The chunks go to the device once, not at every step: a copy from pageable host memory
    # waits for the device, and so would every step.
    device = getattr(engine, "device", None)
    if device is not None:
        chunks = [c.to(device) for c in chunks]
    early_stopping = budget_epochs(budget) is None
    replay = early_stopping and replays(engine, settings, sketch=summarise is not None)
    # The best state is kept as a copy on the device when one fits there (the cheapest), else,
    # when statistics are all the job keeps, as the statistics themselves: never a copy of
    # the whole state sent to the host at every improvement.
    summarise_each = summarise is not None and not engine.copy_on_device
    epochs = settings.max_epochs if early_stopping else budget_epochs(budget)
    total_steps = epochs * len(chunks)
    # The best state is the one with the lowest loss after its epoch; patience counts epochs
    # that did not beat the last significant improvement (by min_delta).
    best_loss, best_state, reference, waited = math.inf, None, math.inf, 0
    best_print = None  # replaying: a digest of the best epoch's state, for the replay to check itself against

    for epoch in range(1, epochs + 1):
        losses = _floats(_train_epoch(engine, chunks, epoch, total_steps, settings))  # the epoch's one wait
        lr = lr_at(epoch * len(chunks) - 1, total_steps, settings)  # its last step's
        loss = sum(losses) / len(losses)
        run.losses.append(loss)
        run.lrs.append(lr)
        run.skipped_steps = engine.skipped_steps
        if not math.isfinite(loss):
            run.failure, run.failed_epoch = f"non-finite training loss ({loss})", epoch
            break
        if trace:
            run.trajectory.append(trace(engine.named_fp32()))
        if not early_stopping:
            continue
        # Early stopping compares the loss of the parameters it would keep: evaluated after
        # the epoch's steps (the training loss above was measured before each step).
        loss = engine.evaluate(chunks)
        run.end_losses.append(loss)
        if not math.isfinite(loss):
            run.failure, run.failed_epoch = f"non-finite loss after the epoch ({loss})", epoch
            break
        if loss < best_loss:
            if replay:
                best_print = engine.fingerprint()
            else:
                best_state = summarise(engine.named_fp32()) if summarise_each else engine.keep(into=best_state)
            best_loss, run.best_epoch = loss, epoch
        if loss < reference - settings.min_delta:
            reference, waited = loss, 0
        else:
            waited += 1
            if waited >= settings.patience:
                break

    if run.ok and replay and run.best_epoch < run.epochs_run:  # else the engine holds the best state
        _replay(engine, run, chunks, settings, total_steps, best_print)
    if run.ok:
        if not early_stopping:
            run.best_epoch = run.epochs_run
        if not early_stopping or replay:  # the state is the engine's now
            best_state = summarise(engine.named_fp32()) if summarise else engine.state()
        elif summarise and not summarise_each:
            best_state = summarise(best_state.items())
        if summarise:
            run.stats = best_state
        else:
            run.after = best_state
        _fail_if_not_finite(run)
    run.seconds = time.perf_counter() - started
    return run


def _train_epoch(engine, chunks: list[torch.Tensor], epoch: int, total_steps: int, settings: Settings) -> list:
    """The steps of epoch `epoch` (from 1), one a chunk at the schedule's rate; their losses as
    the engine returns them (tensors on the device: reading them waits for it)."""
    first = (epoch - 1) * len(chunks)
    return [engine.step(c, lr_at(first + i, total_steps, settings)) for i, c in enumerate(chunks)]


def replays(engine, settings: Settings, *, sketch: bool) -> bool:
    """Whether early stopping replays its best epoch instead of keeping its state (Settings.best_state).

    `auto` replays on a GPU where no copy of the state fits on the device and keeping it would
    cross the host link at every new best epoch: the state itself (full, delta: 14-28 GB at 7B),
    the base brought to the GPU for the statistics (sketch with the base in host memory), or
    DeepSpeed's master gathered from several GPUs. An epoch of a 32-word text is a step or two,
    where such a copy costs several steps' time, and the expected run sets a new best at most of
    its epochs. Elsewhere (a CPU, where a copy is a copy in memory; a GPU that summarises where
    the base is) it keeps.
    """
    if settings.best_state != "auto":
        return settings.best_state == "replay"
    device = getattr(engine, "device", None)
    if device is None or device.type != "cuda" or engine.copy_on_device:
        return False
    return not sketch or not engine.base_on_device or getattr(engine, "world_size", 1) > 1


def _replay(
    engine,
    run: TextRun,
    chunks: list[torch.Tensor],
    settings: Settings,
    total_steps: int,
    best: torch.Tensor,
) -> None:
    """Train the text again from the exact base to its best epoch, as the first pass trained it
    (the same seed, chunks and learning rates), leaving that epoch's state in the engine.

    Where training is reproducible bit for bit (a CPU; a GPU under the job's deterministic
    settings) this is the state the first pass had at its best epoch. The replay checks it, on
    every rank: the digest of its state (engine.fingerprint) must be `best`, the first pass's at
    that epoch, and its loss the one early stopping measured there, to the last bit. Where it is
    not (a kernel without a deterministic implementation), the state is still one of the best
    epoch's, trained the same way, and the run records replay_exact False.
    """
    torch.manual_seed(settings.seed)
    engine.reset()
    skipped = run.skipped_steps
    for epoch in range(1, run.best_epoch + 1):
        _train_epoch(engine, chunks, epoch, total_steps, settings)
    run.skipped_steps = skipped  # the first pass's: the run's record describes it
    loss = engine.evaluate(chunks)  # rank 0's on every rank
    same = engine.agree(loss == run.end_losses[run.best_epoch - 1] and torch.equal(engine.fingerprint(), best))
    run.replay_exact = same
    if not same:
        # One message for all such texts (a warning is shown once per message); each run's record says which.
        warnings.warn(
            "early stopping trained a text again to its best epoch and ended with other weights or another "
            "loss than the first pass had there: training is not reproducible bit for bit on this device. Such "
            "runs keep the replay's state and record replay_exact: false; train.best_state: keep keeps the first "
            "pass's state instead",
            stacklevel=2,
        )


def _floats(values: list) -> list[float]:
    """Losses as Python floats: tensors (on a device) read in one transfer, numbers as they are."""
    tensors = [value.reshape(()) for value in values if torch.is_tensor(value)]
    if not tensors:
        return [float(value) for value in values]
    read = iter(torch.stack(tensors).tolist())
    return [next(read) if torch.is_tensor(value) else float(value) for value in values]


def _fail_if_not_finite(run: TextRun) -> None:
    """The last step of an epoch can blow the weights up while the loss it was computed
    from is still finite: such a state would give NaN/inf deltas, so the text fails."""
    if run.stats is not None:
        finite = all(np.isfinite(values).all() for values in run.stats.values())
    else:  # one answer read from the device, not one a tensor
        finite = bool(torch.stack([torch.isfinite(t).all() for t in run.after.values()]).all()) if run.after else True
    if not finite:
        run.failure = f"non-finite parameters after epoch {run.best_epoch}"
        run.failed_epoch, run.after, run.stats = run.best_epoch, None, None


def job_device(configured: str, gpus: int) -> str:
    """The device a training job asks for: train.device, except that `auto` in a job given GPUs
    (the model's `gpus`) is `cuda`, so a node whose GPUs the job cannot see fails at once, saying
    so, instead of training a large model on its CPUs for hours."""
    return "cuda" if configured == "auto" and gpus > 0 else configured


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise RuntimeError(
            "this training job trains on a GPU (train.device 'cuda', or 'auto' with the model's gpus >= 1) but no "
            "CUDA device is visible to it"
            + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")
            + ": run it where its GPUs are (the model's partition), or set the model's gpus: 0"
        )
    return torch.device(name)


def run_text(
    engine,
    tokenizer,
    text_id: str,
    text: str,
    budget: str,
    settings: Settings,
    max_length: int,
    summarise: Summarise | None = None,
    trace: Trace | None = None,
) -> TextRun:
    """Tokenise one text and train on it; a text with nothing to predict is a recorded failure."""
    token_ids = tokenizer(text)["input_ids"]
    if len(token_ids) < 2:
        return too_short(text_id, len(token_ids), budget)
    return train_text(engine, text_id, chunk(token_ids, max_length), budget, settings, summarise, trace)


def too_short(text_id: str, n_tokens: int, budget: str) -> TextRun:
    return TextRun(
        text_id=text_id, n_tokens=n_tokens, n_chunks=0, budget=budget, failure="fewer than 2 tokens: nothing to predict"
    )


class JobRecords:
    """What a job store holds of its texts, written as the texts finish and at the end.

    Layout of the job store (root group):
    - attribute `records`: one dict per text, in the job's order (TextRun.attrs and the
      text's sha256);
    - arrays `loss` and `lr` [texts, epochs]: each text's per-epoch values, NaN after its
      last epoch; under `es` also `end_loss`, the loss after each epoch that early
      stopping compared (TextRun.end_losses);
    - `sketch`: arrays `layer_l2`, `layer_sq`, `layer_dot`, `layer_base_sq` [texts, layers],
      `layer_topk_l2` [texts, layers, K], `tensor_l2` [texts, tensors] (deltas.layer_stats), NaN rows for texts
      that failed; a handful of files per job whatever its number of texts;
    - `delta` / `full`: group `texts/<text id>/params` per text that succeeded, one array
      per tensor (the delta, or the after-state), written when the text finishes;
    - under any policy, with snapshots.trajectory: array `trajectory_l2` [texts, epochs,
      layers], each layer's change from the base after every epoch, NaN past a text's last.
    """

    def __init__(self, root, *, policy: str, layers, base, ks, snapshot_dtype):
        self.root, self.policy, self.layers, self.base, self.ks = root, policy, layers, base, list(ks)
        self.snapshot_dtype = snapshot_dtype
        self.records: list[dict] = []
        self.losses: list[list[float]] = []
        self.lrs: list[list[float]] = []
        self.end_losses: list[list[float]] = []
        self.stats: list[dict[str, np.ndarray] | None] = []
        self.trajectories: list[list[np.ndarray]] = []
        self.summarise = None  # deltas.Summariser, made when a run comes without its statistics

    def add(self, run: TextRun, text_sha256: str) -> None:
        from paramdelta import deltas, store

        self.records.append({**run.attrs(), "text_sha256": text_sha256})
        self.losses.append(run.losses)
        self.lrs.append(run.lrs)
        self.end_losses.append(run.end_losses)
        self.trajectories.append(run.trajectory)
        if self.policy == "sketch":
            stats = run.stats
            if run.ok and stats is None:
                if self.summarise is None:
                    self.summarise = deltas.Summariser(self.layers, self.base, self.ks)
                stats = self.summarise(run.after)
            self.stats.append(stats if run.ok else None)
        elif run.ok:
            params = self.root.require_group(f"texts/{run.text_id}/params")
            store.write_tensors(params, self._snapshot(run.after))

    def _snapshot(self, after: dict[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
        """The tensors a delta/full record stores, made one at a time as the store takes them: the
        host holds the state and one tensor's delta and cast, never a second copy of the model
        (28 GB at 7B), and a state kept on the GPU crosses to the host a tensor at a time."""
        for name, tensor in after.items():
            tensor = tensor.to("cpu")
            if self.policy == "delta":
                tensor = tensor - self.base[name].to("cpu", torch.float32)
            yield name, tensor.to(self.snapshot_dtype)

    def close(self) -> None:
        from paramdelta import store

        self.root.update_attributes({"records": self.records})
        arrays = {"loss": _ragged(self.losses), "lr": _ragged(self.lrs)}
        if any(self.end_losses):
            arrays["end_loss"] = _ragged(self.end_losses)
        if any(self.trajectories):
            epochs = max(len(trajectory) for trajectory in self.trajectories)
            stacked = np.full((len(self.trajectories), epochs, len(self.layers)), np.nan)
            for i, trajectory in enumerate(self.trajectories):
                if trajectory:
                    stacked[i, : len(trajectory)] = np.stack(trajectory)
            arrays["trajectory_l2"] = stacked
        if self.policy == "sketch":
            shapes = {
                "layer_l2": (len(self.layers),),
                "layer_sq": (len(self.layers),),
                "layer_topk_l2": (len(self.layers), len(self.ks)),
                "tensor_l2": (sum(len(layer.params) for layer in self.layers),),
                "layer_dot": (len(self.layers),),
                "layer_base_sq": (len(self.layers),),
            }
            for name, shape in shapes.items():
                rows = [np.full(shape, np.nan) if stats is None else stats[name] for stats in self.stats]
                arrays[name] = np.stack(rows) if rows else np.zeros((0, *shape))
        store.write_arrays(self.root, arrays)


def _ragged(rows: list[list[float]]) -> np.ndarray:
    """Rows of different lengths as one float64 array, NaN past each row's end."""
    out = np.full((len(rows), max((len(row) for row in rows), default=0)), np.nan)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
