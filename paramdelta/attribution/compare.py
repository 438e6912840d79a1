"""The UnTrac paper's comparison methods: GradDot, GradCos, TracIn and influence functions (LiSSA
and Arnoldi).

Each scores a training set Z against an evaluation set Z' by a sum over example pairs,
``sum_i sum_j g(z_i)ᵀ A g(z'_j)`` with ``g`` the gradient of an example's loss (``lm``):

- ``graddot``: A = I at the final model; ``gradcos``: the same with unit-length gradients.
- ``tracin``: sum over checkpoints of the checkpoint's learning rate times graddot there.
- ``hif-lissa``, ``hif-arnoldi``: A = (H + λI)⁻¹ at the final model, H the Hessian of the mean
  training loss over every training example (all sets together).

Positive means that training on Z lowers the loss on Z' (a gradient step on z_i changes the
loss of z'_j by -lr·g(z_i)ᵀg(z'_j); upweighting z_i changes it by -g(z_i)ᵀH⁻¹g(z'_j)·ε).

Every method is bilinear, so a pair of sets' influence is ``G_Zᵀ A G_Z'`` with ``G`` a set's sum
of (for GradCos, unit-length) gradients: each example's gradient is needed once, never an
(n_train, n_eval) matrix; a plain sum of gradients is the gradient of the summed loss. GradCos's
per-example gradients come from dattri (its ``AttributionTask``: vmapped functional
gradients); the set-level sums are here, because dattri's attributors form the whole pairwise
matrix (its ``TracInAttributor`` recomputes every evaluation gradient for each training
batch: 55 s for GradDot on the fine-tuning setting, 2 CPU cores, against seconds here). The
influence functions are written here too: dattri solves one inverse-Hessian system per
evaluation example (vmapped) and its Arnoldi takes forward-over-reverse products over every
training example at once, which on a 28k-parameter GPT-NeoX with 128 training and 32 evaluation
examples of ~20 tokens took minutes and over 12-24 GB. This module solves one system per
evaluation set, with reverse-over-reverse Hessian-vector products over batches of examples.

Damping: Arnoldi adds ``damping`` to H. LiSSA follows Koh and Liang's recursion
``h <- v + (1 - damping) h - H h / scale``, whose fixed point, divided by ``scale``, is
(H + damping·scale·I)⁻¹ v: its λ is ``damping * scale``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from paramdelta.attribution import lm
from paramdelta.attribution.lm import Encoded
from paramdelta.attribution.plan import GRADIENT_METHODS as METHODS

BATCH_SIZE = 32
# GradCos's per-example gradients (torch.func through dattri) peaked at 4.4 GB for a
# 231k-parameter model at 8 examples of ~70 tokens (5.6 GB at 32); plain autograd, for the
# other methods, under 1 GB.
PER_EXAMPLE_BATCH = 8


def _loss_func(model):
    """The mean loss of the examples in ``data`` as a function of the parameters: dattri's ``f(params, data)``."""

    def loss(params, data):
        ids, mask = data
        # dattri's vmap hands one example at a time, as (L,).
        ids = ids.reshape(-1, ids.shape[-1]).long()
        mask = mask.reshape(ids.shape)
        logits = torch.func.functional_call(model, params, (ids,)).logits
        return lm.token_losses(logits, ids, mask).mean()

    return loss


def _load(model, state):
    model.load_state_dict(state)
    model.eval()
    return model


def _unit_gradient_sums(model, sets: dict[str, Encoded], pad_id: int, device) -> dict[str, torch.Tensor]:
    """{set: sum over its examples of g(z) / |g(z)|} (float64): dattri's vmapped per-example
    gradients, ``PER_EXAMPLE_BATCH`` examples at a time."""
    from dattri.task import AttributionTask

    task = AttributionTask(_loss_func(model), model, checkpoints=[model.state_dict()], checkpoints_load_func=_load)
    params, _ = task.get_param(ckpt_idx=0)
    per_example = task.get_grad_loss_func(in_dims=(None, 0))
    out = {}
    for name, examples in sets.items():
        total = torch.zeros(params.numel(), dtype=torch.double, device=device)
        for start in range(0, len(examples), PER_EXAMPLE_BATCH):
            ids, mask = lm.pad(examples[start : start + PER_EXAMPLE_BATCH], pad_id)
            grads = per_example(params, (ids.to(device), mask.to(device))).double()
            total += torch.nn.functional.normalize(grads, dim=1).sum(0)
        out[name] = total
    return out


def _gradient_influences(method, model, final, training, evaluation, pad_id, *, checkpoints, device) -> dict:
    """{(evaluation, training): (sum_i g(z_i))ᵀ (sum_j g(z'_j))} of GradDot at the final model,
    GradCos (unit-length gradients) or TracIn (summed over checkpoints, weighted by their
    learning rates). A plain sum of gradients is the gradient of the summed loss: one backward
    pass per batch, with the memory of one gradient."""
    out = {}
    for state, lr in checkpoints if method == "tracin" else [(final, 1.0)]:
        _load(model, state)
        if method == "gradcos":
            train = _unit_gradient_sums(model, training, pad_id, device)
            evals = _unit_gradient_sums(model, evaluation, pad_id, device)
        else:
            curvature = _Curvature(model, pad_id, device)
            train = {name: curvature.gradient(examples) for name, examples in training.items()}
            evals = {name: curvature.gradient(examples) for name, examples in evaluation.items()}
        for e, eval_grad in evals.items():
            for t, train_grad in train.items():
                out[e, t] = out.get((e, t), 0.0) + float(lr) * (train_grad @ eval_grad)
    return out


class _Curvature:
    """Summed loss gradients and Hessian-vector products of a model, as flat float64 vectors.

    Float64 vectors keep the Krylov basis and the LiSSA recursion from adding rounding of their
    own; the products themselves run in the model's dtype.
    """

    def __init__(self, model, pad_id: int, device):
        self.model, self.pad_id, self.device = model, pad_id, device
        self.params = list(model.parameters())

    def _batches(self, examples: Encoded):
        for start in range(0, len(examples), BATCH_SIZE):
            ids, mask = lm.pad(examples[start : start + BATCH_SIZE], self.pad_id)
            yield ids.to(self.device), mask.to(self.device)

    def _flat(self, grads) -> torch.Tensor:
        return torch.cat(
            [(torch.zeros_like(p) if g is None else g).flatten().double() for p, g in zip(self.params, grads)]
        )

    def _split(self, vector: torch.Tensor) -> list[torch.Tensor]:
        pieces = torch.split(vector, [p.numel() for p in self.params])
        return [piece.view_as(p).to(p.dtype) for piece, p in zip(pieces, self.params)]

    def gradient(self, examples: Encoded) -> torch.Tensor:
        """sum_i g(z_i): the gradient of the summed loss, one backward pass per batch."""
        total = 0
        for ids, mask in self._batches(examples):
            loss = lm.example_losses(self.model, ids, mask).sum()
            total = total + self._flat(torch.autograd.grad(loss, self.params, allow_unused=True))
        return total

    def hvp(self, examples: Encoded, vectors: list[torch.Tensor]) -> list[torch.Tensor]:
        """H v for each vector, H the Hessian of the mean loss of ``examples`` (reverse over reverse)."""
        out = [torch.zeros_like(v) for v in vectors]
        pieces = [self._split(v) for v in vectors]
        for ids, mask in self._batches(examples):
            loss = lm.example_losses(self.model, ids, mask).sum() / len(examples)
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
            for k, piece in enumerate(pieces):
                dot = sum((g * part).sum() for g, part in zip(grads, piece) if g is not None)
                second = torch.autograd.grad(dot, self.params, retain_graph=True, allow_unused=True)
                out[k] += self._flat(second)
        return out


def _lissa(curvature: _Curvature, train: Encoded, vectors: list[torch.Tensor], lissa: dict) -> list[torch.Tensor]:
    """≈ (H + damping·scale·I)⁻¹ v for each vector by Koh and Liang's recursion, every vector on
    the same sampled batches (one seeded sequence), so that all share one linear operator."""
    generator = torch.Generator().manual_seed(0)
    damping, scale = lissa["damping"], lissa["scale"]
    estimates = [v.clone() for v in vectors]
    for _ in range(lissa["depth"]):
        batch = torch.randperm(len(train), generator=generator)[: lissa["batch_size"]].tolist()
        products = curvature.hvp([train[i] for i in batch], estimates)
        estimates = [v + (1 - damping) * h - hv / scale for v, h, hv in zip(vectors, estimates, products)]
    return [h / scale for h in estimates]


def _arnoldi(curvature: _Curvature, train: Encoded, vectors: list[torch.Tensor], arnoldi: dict) -> list[torch.Tensor]:
    """sum_k u_k u_kᵀ v / (λ_k + damping) for each vector, over the ``rank`` eigenpairs of H + damping·I
    of largest magnitude that Arnoldi iteration (Schioppa et al. 2022) finds, H the Hessian of
    ``batch_size`` training examples sampled once (None: all)."""
    damping = arnoldi["damping"]
    if arnoldi.get("batch_size") is not None and arnoldi["batch_size"] < len(train):
        sample = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: arnoldi["batch_size"]]
        train = [train[i] for i in sorted(sample.tolist())]
    # dattri's start: uniform in [0, 1), seeded.
    start = torch.rand(len(vectors[0]), generator=torch.Generator().manual_seed(0), dtype=torch.double)
    size = min(arnoldi["iterations"], len(start))
    basis = torch.zeros(size + 1, len(start), dtype=torch.double, device=vectors[0].device)
    basis[0] = start / start.norm()
    hessenberg = torch.zeros(size + 1, size, dtype=torch.double)
    for n in range(size):
        (w,) = curvature.hvp(train, [basis[n]])
        scale = w.norm()
        # Gram-Schmidt twice: once loses orthogonality as the Krylov directions converge.
        for _ in range(2):
            coefficients = basis[: n + 1] @ w
            w = w - coefficients @ basis[: n + 1]
            hessenberg[: n + 1, n] += coefficients.cpu()
        norm = w.norm()
        hessenberg[n + 1, n] = norm
        if norm <= 1e-7 * scale:  # an invariant subspace: the Krylov space is complete
            size = n + 1
            break
        basis[n + 1] = w / norm
    # H is symmetric, so its projection is tridiagonal up to rounding: symmetrize as dattri does.
    projected = torch.tril(hessenberg[:size, :size], diagonal=1)
    eigenvalues, coordinates = torch.linalg.eigh((projected + projected.T) / 2)
    eigenvalues = eigenvalues + damping
    keep = eigenvalues.abs().argsort(descending=True)[: arnoldi["rank"]]
    eigenvalues = eigenvalues[keep]
    if not (eigenvalues > 0).all():
        raise FloatingPointError(
            f"hif-arnoldi: kept eigenvalues of H + damping·I {eigenvalues.tolist()} are not all positive; "
            "increase damping or lower rank."
        )
    eigenvectors = coordinates[:, keep].T.to(basis.device) @ basis[:size]
    inverse = (1 / eigenvalues).to(basis.device)
    return [eigenvectors.T @ (inverse * (eigenvectors @ v)) for v in vectors]


def _set_influences(method, model, training, evaluation, pad_id, *, lissa, arnoldi, device) -> dict:
    """{(evaluation, training): G_Zᵀ A G_Z'} of an influence function, one inverse-Hessian
    product per evaluation set."""
    curvature = _Curvature(model, pad_id, device)
    train = [ids for examples in training.values() for ids in examples]
    eval_grads = [curvature.gradient(examples) for examples in evaluation.values()]
    if method == "hif-lissa":
        solved = _lissa(curvature, train, eval_grads, lissa)
    elif method == "hif-arnoldi":
        solved = _arnoldi(curvature, train, eval_grads, arnoldi)
    else:
        raise ValueError(f"unknown method {method!r}")
    train_grads = {name: curvature.gradient(examples) for name, examples in training.items()}
    return {
        (eval_name, train_name): train_grad @ product
        for eval_name, product in zip(evaluation, solved)
        for train_name, train_grad in train_grads.items()
    }


def influence(
    model,
    training: dict[str, Encoded],
    evaluation: dict[str, Encoded],
    pad_id: int,
    *,
    methods: Sequence[str],
    checkpoints: Sequence[tuple[dict[str, torch.Tensor], float]] = (),
    lissa: dict,
    arnoldi: dict,
    device="cpu",
) -> pd.DataFrame:
    """The influence of every training set on every evaluation set by each method: one row per
    method, evaluation set and training set (columns method, evaluation, training, influence).

    ``model`` is the final model (graddot, gradcos, influence functions), already on ``device``;
    ``checkpoints`` are TracIn's ``(state_dict, lr)`` pairs. ``lissa`` is ``{depth, damping,
    scale, batch_size}`` (batch_size: training examples sampled per Hessian-vector product),
    ``arnoldi`` ``{rank, iterations, damping, batch_size}``; keep rank well below iterations, as the last
    Krylov directions carry spurious near-zero eigenvalues that Arnoldi would invert. The model is
    used in eval mode (no dropout) and left as it was passed: parameters, mode, attention
    implementation and which parameters require gradients.
    """
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; expected some of {', '.join(METHODS)}")
    if "tracin" in methods and not checkpoints:
        raise ValueError("tracin needs checkpoints: (state_dict, lr) pairs")

    final = {name: value.detach().clone() for name, value in model.state_dict().items()}
    was_training = model.training
    attention = model.config._attn_implementation
    requires_grad = [p.requires_grad for p in model.parameters()]
    rows = []
    # dattri seeds the global RNG in places: fork, so the caller's stream is untouched.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        try:
            model.eval()
            # PyTorch's fused attention kernels have no vmap batching rule (per-example gradients)
            # and no double backward (Hessian-vector products).
            model.set_attn_implementation("eager")
            for p in model.parameters():
                p.requires_grad_(True)
            for method in methods:
                model.load_state_dict(final)  # TracIn leaves its last checkpoint loaded
                if method in ("graddot", "gradcos", "tracin"):
                    sums = _gradient_influences(
                        method, model, final, training, evaluation, pad_id, checkpoints=checkpoints, device=device
                    )
                else:
                    sums = _set_influences(
                        method, model, training, evaluation, pad_id, lissa=lissa, arnoldi=arnoldi, device=device
                    )
                values = torch.stack(list(sums.values())).double().cpu()
                if not torch.isfinite(values).all():
                    raise FloatingPointError(
                        f"{method}: non-finite influence. LiSSA diverges unless every eigenvalue of H lies "
                        "in (-damping·scale, (2 - damping)·scale); Arnoldi needs the top-rank eigenvalues of "
                        "H + damping·I positive."
                    )
                rows += [(method, e, t, value) for (e, t), value in zip(sums, values.tolist())]
        finally:
            model.load_state_dict(final)
            model.train(was_training)
            model.set_attn_implementation(attention)
            for p, flag in zip(model.parameters(), requires_grad):
                p.requires_grad_(flag)
    return pd.DataFrame(rows, columns=["method", "evaluation", "training", "influence"])
