"""The UnTrac paper's comparison methods, computed with dattri: GradDot, GradCos, TracIn and
influence functions (LiSSA and Arnoldi).

Each scores a training set Z against an evaluation set Z' by a sum over example pairs,
``sum_i sum_j g(z_i)ᵀ A g(z'_j)`` with ``g`` the gradient of an example's loss (``lm``):

- ``graddot``: A = I at the final model; ``gradcos``: the same with unit-length gradients.
- ``tracin``: sum over checkpoints of the checkpoint's learning rate times graddot there.
- ``hif-lissa``, ``hif-arnoldi``: A = (H + λI)⁻¹ at the final model, H the Hessian of the mean
  training loss over every training example (all sets together).

Positive means that training on Z lowers the loss on Z' (a gradient step on z_i changes the
loss of z'_j by -lr·g(z_i)ᵀg(z'_j); upweighting z_i changes it by -g(z_i)ᵀH⁻¹g(z'_j)·ε).

Damping: Arnoldi adds ``damping`` to H. LiSSA follows Koh and Liang's recursion
``h <- v + (1 - damping) h - H h / scale``, whose fixed point, divided by ``scale``, is
(H + damping·scale·I)⁻¹ v: its λ is ``damping * scale``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pandas as pd
import torch

from paramdelta.attribution import lm
from paramdelta.attribution.lm import Encoded

METHODS = ("graddot", "gradcos", "tracin", "hif-lissa", "hif-arnoldi")
BATCH_SIZE = 32


def _loss_func(model):
    """The mean loss of the examples in ``data`` as a function of the parameters: dattri's ``f(params, data)``."""

    def loss(params, data):
        ids, mask = data
        # One example arrives as (L,) under TracIn's vmap and as (1, L) under the inner-product
        # attributors' vmap; Arnoldi passes every training example at once, and LiSSA's collate
        # casts the ids to float.
        ids = ids.reshape(-1, ids.shape[-1]).long()
        mask = mask.reshape(ids.shape)
        logits = torch.func.functional_call(model, params, (ids,)).logits
        return lm.token_losses(logits, ids, mask).mean()

    return loss


def _load(model, state):
    model.load_state_dict(state)
    model.eval()
    return model


def _loader(ids: torch.Tensor, mask: torch.Tensor, batch_size: int | None = None):
    dataset = torch.utils.data.TensorDataset(ids, mask)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size or BATCH_SIZE, shuffle=False)


def _lissa_attributor():
    from dattri.algorithm.influence_function import IFAttributorLiSSA

    class CachedLiSSA(IFAttributorLiSSA):
        """dattri's LiSSA attributor with each evaluation batch's inverse-Hessian product computed
        once: its ``attribute`` recomputes it for every batch of training examples, and each is a
        whole LiSSA recursion. Relies on ``attribute`` calling ``transform_test_rep`` right after
        ``generate_test_rep`` for the same batch."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._cache = {}
            self._key = None

        def generate_test_rep(self, ckpt_idx, data):
            self._key = (ckpt_idx, data[0].cpu().numpy().tobytes())
            if self._key in self._cache:
                return None
            return super().generate_test_rep(ckpt_idx, data)

        def transform_test_rep(self, ckpt_idx, test_rep):
            if self._key not in self._cache:
                self._cache[self._key] = super().transform_test_rep(ckpt_idx, test_rep)
            return self._cache[self._key]

    return CachedLiSSA


def _scores(method, task_for, train, evaluation, full_train, *, checkpoints, lissa, arnoldi, device) -> torch.Tensor:
    """The (n_train, n_eval) matrix of g(z_i)ᵀ A g(z'_j) of one method."""
    from dattri.algorithm.influence_function import IFAttributorArnoldi
    from dattri.algorithm.tracin import TracInAttributor

    if method in ("graddot", "gradcos", "tracin"):
        if method == "tracin":
            task = task_for([state for state, _ in checkpoints])
            weights = torch.tensor([float(lr) for _, lr in checkpoints])
        else:
            task = task_for(None)
            weights = torch.ones(1)
        attributor = TracInAttributor(task, weights, normalized_grad=method == "gradcos", device=device)
        # dattri 0.3.0 replaces projector_kwargs=None by a module-level default dict, so it always
        # projects gradients to 512 random dimensions; its attribute() skips the projection only
        # when this attribute is None, which gives exact inner products.
        attributor.projector_kwargs = None
        return attributor.attribute(train, evaluation)
    if method == "hif-lissa":
        attributor = _lissa_attributor()(
            task_for(None),
            device=device,
            batch_size=lissa["batch_size"],
            recursion_depth=lissa["depth"],
            damping=lissa["damping"],
            scaling=lissa["scale"],
        )
    elif method == "hif-arnoldi":
        attributor = IFAttributorArnoldi(
            task_for(None),
            device=device,
            proj_dim=arnoldi["rank"],
            max_iter=arnoldi["iterations"],
            regularization=arnoldi["damping"],
        )
    else:
        raise ValueError(f"unknown method {method!r}")
    attributor.cache(full_train)
    return attributor.attribute(train, evaluation)


def _slices(sets: dict[str, Encoded]) -> dict[str, slice]:
    """Each set's rows among all the sets' examples, in order."""
    ends = itertools.accumulate(len(examples) for examples in sets.values())
    return {name: slice(end - len(sets[name]), end) for name, end in zip(sets, ends)}


def _set_sums(scores: torch.Tensor, training: dict[str, Encoded], evaluation: dict[str, Encoded]):
    """(evaluation, training, sum of its block of ``scores``) for every pair of sets."""
    rows, columns = _slices(training), _slices(evaluation)
    for eval_name, column in columns.items():
        for train_name, row in rows.items():
            yield eval_name, train_name, scores[row, column].sum().item()


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
    scale, batch_size}`` (batch_size: examples per Hessian-vector product), ``arnoldi`` ``{rank,
    iterations, damping}``; keep rank well below iterations, as the last Krylov directions carry
    spurious near-zero eigenvalues that Arnoldi would invert. The model is used in eval mode (no
    dropout) and left as it was passed: parameters, mode and attention implementation.
    """
    from dattri.task import AttributionTask

    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; expected some of {', '.join(METHODS)}")
    if "tracin" in methods and not checkpoints:
        raise ValueError("tracin needs checkpoints: (state_dict, lr) pairs")
    # One common length, so that dattri's loaders batch any examples together (Arnoldi
    # concatenates every training batch).
    train_examples = [ids for examples in training.values() for ids in examples]
    eval_examples = [ids for examples in evaluation.values() for ids in examples]
    length = max(len(ids) for ids in train_examples + eval_examples)
    train = lm.pad(train_examples, pad_id, length)
    test = _loader(*lm.pad(eval_examples, pad_id, length))
    # LiSSA sums its inverse-Hessian products over the batches of the loader it caches, one per
    # batch's own Hessian, so that loader holds every training example in one batch (it samples
    # batch_size of them per step); Arnoldi concatenates its batches anyway.
    full_train = _loader(*train, len(train_examples))
    train = _loader(*train)

    final = {name: value.detach().clone() for name, value in model.state_dict().items()}
    was_training = model.training
    attention = model.config._attn_implementation
    loss = _loss_func(model)

    def task_for(states):
        return AttributionTask(loss, model, checkpoints=states or [final], checkpoints_load_func=_load)

    rows = []
    # dattri's Arnoldi seeds the global RNG and LiSSA samples batches from it: fork, so the
    # caller's stream is untouched, and seed, so results repeat.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        try:
            model.eval()
            # PyTorch's fused attention kernels have no forward-mode derivative (Arnoldi's
            # Hessian-vector products) and no vmap batching rule (per-example gradients).
            model.set_attn_implementation("eager")
            for method in methods:
                scores = _scores(
                    method, task_for, train, test, full_train,
                    checkpoints=checkpoints, lissa=lissa, arnoldi=arnoldi, device=device,
                )  # fmt: skip
                scores = scores.detach().double().cpu()
                if not torch.isfinite(scores).all():
                    raise FloatingPointError(
                        f"{method}: non-finite influence. LiSSA diverges unless every eigenvalue of H lies "
                        "in (-damping·scale, (2 - damping)·scale); Arnoldi needs the top-rank eigenvalues of "
                        "H + damping·I positive."
                    )
                rows += [(method, *row) for row in _set_sums(scores, training, evaluation)]
        finally:
            model.load_state_dict(final)
            model.train(was_training)
            model.set_attn_implementation(attention)
    return pd.DataFrame(rows, columns=["method", "evaluation", "training", "influence"])
