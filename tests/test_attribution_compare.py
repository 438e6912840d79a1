"""attribution.compare against direct computations on a model small enough for its exact Hessian."""

from __future__ import annotations

import copy

import pytest
import torch

from paramdelta import models
from paramdelta.attribution import compare, lm

VOCAB = 6
PAD = 0
TRAINING_SIZES = {"a": 3, "b": 4, "c": 3}
EVALUATION_SIZES = {"x": 2, "y": 3}


def _examples(sizes: dict[str, int], generator: torch.Generator) -> dict[str, lm.Encoded]:
    def one():
        length = int(torch.randint(3, 10, (1,), generator=generator))
        return torch.randint(0, VOCAB, (length,), generator=generator).tolist()

    return {name: [one() for _ in range(n)] for name, n in sizes.items()}


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Several batches of training and of evaluation examples, so that blocks and sums span batches."""
    monkeypatch.setattr(compare, "BATCH_SIZE", 4)
    monkeypatch.setattr(compare, "PER_EXAMPLE_BATCH", 3)


@pytest.fixture(scope="module")
def setup():
    """A 228-parameter GPT-NeoX, its training and evaluation sets."""
    config = models.tiny_config(
        "gpt-neox", VOCAB, hidden_size=4, num_layers=1, num_heads=2, intermediate_size=8, max_positions=16
    )
    model = models.build_model(config, seed=0)
    generator = torch.Generator().manual_seed(1)
    return model, _examples(TRAINING_SIZES, generator), _examples(EVALUATION_SIZES, generator)


def _gradients(model, sets: dict[str, lm.Encoded]) -> dict[str, torch.Tensor]:
    """Each example's loss gradient by plain autograd, one example at a time (float64 rows)."""
    model = copy.deepcopy(model).eval()
    out = {}
    for name, examples in sets.items():
        rows = []
        for example in examples:
            model.zero_grad()
            lm.example_losses(model, *lm.pad([example], PAD))[0].backward()
            rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]).double())
        out[name] = torch.stack(rows)
    return out


def _set_sums(training_grads, evaluation_grads, inverse=None) -> dict[tuple[str, str], float]:
    """{(evaluation, training): sum_i sum_j g_iᵀ A g'_j}, A the identity unless given."""
    out = {}
    for eval_name, eval_grads in evaluation_grads.items():
        for train_name, train_grads in training_grads.items():
            right = eval_grads.T if inverse is None else inverse @ eval_grads.T
            out[eval_name, train_name] = (train_grads @ right).sum().item()
    return out


def _assert_table(table, method: str, want: dict, rtol: float):
    rows = table[table.method == method]
    assert [(r.evaluation, r.training) for r in rows.itertuples()] == [
        (e, t) for e in EVALUATION_SIZES for t in TRAINING_SIZES
    ]
    got = torch.tensor([r.influence for r in rows.itertuples()], dtype=torch.double)
    expected = torch.tensor([want[r.evaluation, r.training] for r in rows.itertuples()], dtype=torch.double)
    # Values of both signs and of different sizes, so a sign flip or a mixed-up block fails.
    assert (expected > 0).any() and (expected < 0).any()
    torch.testing.assert_close(got, expected, rtol=rtol, atol=rtol * expected.abs().max().item())


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, model.training, model.config._attn_implementation


def _assert_unchanged(model, snapshot):
    state, training, attention = snapshot
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert model.training == training and model.config._attn_implementation == attention


def test_gradient_methods_equal_direct_inner_products(setup):
    model, training, evaluation = setup
    model.train()
    snapshot = _snapshot(model)
    generator = torch.Generator().manual_seed(2)
    checkpoints = []
    for lr in (0.1, 0.03):
        state = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in model.state_dict().items()}
        checkpoints.append((state, lr))

    table = compare.influence(
        model, training, evaluation, PAD, methods=["graddot", "gradcos", "tracin"], checkpoints=checkpoints,
        lissa={}, arnoldi={},
    )  # fmt: skip

    _assert_unchanged(model, snapshot)
    # Measured errors are near 1e-7 (dattri in float32).
    assert list(table.columns) == ["method", "evaluation", "training", "influence"]
    train_grads, eval_grads = _gradients(model, training), _gradients(model, evaluation)
    _assert_table(table, "graddot", _set_sums(train_grads, eval_grads), rtol=1e-5)
    unit = {name: torch.nn.functional.normalize(g) for name, g in train_grads.items()}
    eval_unit = {name: torch.nn.functional.normalize(g) for name, g in eval_grads.items()}
    _assert_table(table, "gradcos", _set_sums(unit, eval_unit), rtol=1e-5)
    tracin = {}
    for state, lr in checkpoints:
        at = copy.deepcopy(model)
        at.load_state_dict(state)
        for key, value in _set_sums(_gradients(at, training), _gradients(at, evaluation)).items():
            tracin[key] = tracin.get(key, 0.0) + lr * value
    _assert_table(table, "tracin", tracin, rtol=1e-5)


def test_set_sums_equal_dattri_pairwise_attributor(setup):
    """The set-level factorisation against dattri's own (n_train, n_eval) TracIn matrix, summed by block."""
    from dattri.algorithm.tracin import TracInAttributor
    from dattri.task import AttributionTask

    model, training, evaluation = setup
    model = copy.deepcopy(model).eval()
    model.set_attn_implementation("eager")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    table = compare.influence(
        model, training, evaluation, PAD, methods=["graddot", "gradcos"], lissa={}, arnoldi={}
    )  # fmt: skip

    def loader(sets):
        examples = [e for examples in sets.values() for e in examples]
        dataset = torch.utils.data.TensorDataset(*lm.pad(examples, PAD, 10))
        return torch.utils.data.DataLoader(dataset, batch_size=4)

    for method in ("graddot", "gradcos"):
        task = AttributionTask(compare._loss_func(model), model, checkpoints=[state])
        attributor = TracInAttributor(task, torch.ones(1), normalized_grad=method == "gradcos")
        attributor.projector_kwargs = None  # dattri 0.3.0 otherwise always projects to 512 random dimensions
        scores = attributor.attribute(loader(training), loader(evaluation)).double()
        ends = {}
        for sets in (training, evaluation):
            edges = torch.tensor([0] + [len(x) for x in sets.values()]).cumsum(0).tolist()
            ends.update({name: slice(a, b) for name, a, b in zip(sets, edges, edges[1:])})
        want = {(e, t): scores[ends[t], ends[e]].sum().item() for e in evaluation for t in training}
        _assert_table(table, method, want, rtol=1e-5)


def test_influence_functions_match_the_exact_hessian(setup):
    model, training, evaluation = setup
    snapshot = _snapshot(model)
    # The reference in float64. Eager attention: the fused kernel has no forward-mode derivative.
    # The Hessian is a vmap of Hessian-vector products: torch.func.hessian (nested vmaps) gets
    # LayerNorm weight rows wrong in torch 2.13 (asymmetric by up to 0.2 on a model like this,
    # where finite differences agree with the HVPs).
    reference = copy.deepcopy(model).double().eval()
    reference.set_attn_implementation("eager")
    names = [name for name, _ in reference.named_parameters()]
    theta = torch.cat([p.detach().flatten() for p in reference.parameters()])

    def loss(flat, examples):
        params = dict(zip(names, torch.split(flat, [p.numel() for p in reference.parameters()])))
        params = {name: value.view_as(reference.get_parameter(name)) for name, value in params.items()}
        ids, mask = lm.pad(examples, PAD)
        return lm.token_losses(torch.func.functional_call(reference, params, (ids,)).logits, ids, mask).mean()

    everything = [example for examples in training.values() for example in examples]
    gradient = torch.func.grad(lambda flat: loss(flat, everything))
    eye = torch.eye(len(theta), dtype=torch.double)
    hessian = torch.vmap(lambda v: torch.func.jvp(gradient, (theta,), (v,))[1])(eye)
    hessian = (hessian + hessian.T) / 2
    eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
    assert eigenvalues[0] < 0  # not convex: the damping matters

    def grads(sets):
        return {name: torch.stack([torch.func.grad(loss)(theta, [e]) for e in s]) for name, s in sets.items()}

    train_grads, eval_grads = grads(training), grads(evaluation)

    # LiSSA, with every training example in each Hessian-vector product, is a Neumann series for
    # (H + λI)⁻¹: at λ where H + λI has condition number 2 and scale its largest eigenvalue,
    # each step halves the error, and depth 18 leaves at most 2⁻¹⁸ ≈ 4e-6 (1.2e-6 measured).
    span = (eigenvalues[-1] - eigenvalues[0]).item()
    damping = -eigenvalues[0].item() + span
    scale = eigenvalues[-1].item() + damping
    lissa = {"depth": 18, "damping": damping / scale, "scale": scale, "batch_size": len(everything)}
    table = compare.influence(model, training, evaluation, PAD, methods=["hif-lissa"], lissa=lissa, arnoldi={})
    exact = torch.linalg.inv(hessian + damping * eye)
    _assert_table(table, "hif-lissa", _set_sums(train_grads, eval_grads, exact), rtol=1e-5)

    # Arnoldi keeps the top `rank` eigenpairs of H + λI: compare with the exact ones. Full rank
    # cannot match the exact inverse: H has 48 zero eigenvalues here (flat directions of the
    # loss, such as the softmax's shift), a Krylov space holds one direction of that eigenspace,
    # and the eigenvalues Arnoldi finds for the rest are rounding noise.
    damping = -eigenvalues[0].item() + 1.0
    shifted = eigenvalues + damping
    rank = 3
    assert (shifted[-rank] - shifted[-rank - 1]) / shifted[-rank] > 0.05  # the top `rank` are well separated
    arnoldi = {"rank": rank, "iterations": 20, "damping": damping}
    table = compare.influence(model, training, evaluation, PAD, methods=["hif-arnoldi"], lissa={}, arnoldi=arnoldi)
    top = eigenvectors[:, -rank:]
    _assert_table(table, "hif-arnoldi", _set_sums(train_grads, eval_grads, top / shifted[-rank:] @ top.T), rtol=1e-5)
    # Undamped, the negative eigenvalue of H is among the kept ones: refused, not inverted.
    arnoldi = {"rank": 20, "iterations": 20, "damping": 0.0}
    with pytest.raises(FloatingPointError, match="hif-arnoldi"):
        compare.influence(model, training, evaluation, PAD, methods=["hif-arnoldi"], lissa={}, arnoldi=arnoldi)

    _assert_unchanged(model, snapshot)


def test_bad_requests_are_refused(setup):
    model, training, evaluation = setup
    with pytest.raises(ValueError, match="unknown methods"):
        compare.influence(model, training, evaluation, PAD, methods=["trak"], lissa={}, arnoldi={})
    with pytest.raises(ValueError, match="tracin needs checkpoints"):
        compare.influence(model, training, evaluation, PAD, methods=["tracin"], lissa={}, arnoldi={})
