"""Attribution by unlearning: the sets, training with and without a set, gradient ascent
(UnTrac, UnTrac-Inv), its first-order relation to GradDot, and the summary tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from paramdelta import models
from paramdelta.attribution import compare, fit, lm, sets, summary, unlearn

PAD = 0


@pytest.fixture(scope="module")
def tiny():
    """A tiny random GPT-NeoX, three training sets and two evaluation sets of token ids."""
    config = models.tiny_config(
        "gpt-neox",
        24,
        hidden_size=8,
        num_layers=1,
        num_heads=2,
        intermediate_size=16,
        max_positions=16,
        pad_token_id=PAD,
    )
    model = models.build_model(config, seed=3).eval()
    generator = torch.Generator().manual_seed(0)

    def examples(n):
        return [
            torch.randint(1, 24, (int(length),), generator=generator).tolist()
            for length in torch.randint(4, 9, (n,), generator=generator)
        ]

    training = {"a": examples(6), "b": examples(5), "c": examples(4)}
    evaluation = {"x": examples(3), "y": examples(4)}
    return model, training, evaluation


def _state(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


# The sets.


def test_number_words():
    assert [sets.number_words(n) for n in (0, 7, 13, 20, 42, 99)] == [
        "zero",
        "seven",
        "thirteen",
        "twenty",
        "forty-two",
        "ninety-nine",
    ]
    with pytest.raises(ValueError):
        sets.number_words(100)


def test_tasks_answer_the_question():
    rng = np.random.default_rng(0)
    for task in sets.TASKS:
        for answer in ("digits", "words"):
            text = sets.task_example(task, answer, __import__("random").Random(int(rng.integers(1000))))
            question, reply = text.split(" A: ")
            if task == "length":
                word = question.split("'")[1]
                expected = len(word)
            else:
                expected = int(question.split("after ")[1].split("?")[0]) + 1
            assert reply == (str(expected) if answer == "digits" else sets.number_words(expected))


def test_sets_are_seeded_and_independent_of_each_other():
    experiment = {
        "training": {
            "one": {"generator": "tasks", "task": "successor", "answer": "words", "n": 5},
            "two": {"generator": "genres", "genres": {"letter": 1, "diary": 2}, "n": 3},
        },
        "evaluation": {"e": {"generator": "tasks", "task": "after", "answer": "digits", "n": 4}},
    }
    first, again = sets.draw(experiment, 0), sets.draw(experiment, 0)
    assert first == again
    assert sets.draw(experiment, 1)["training"]["one"] != first["training"]["one"]
    fewer = {**experiment, "training": {"two": experiment["training"]["two"]}}
    assert sets.draw(fewer, 0)["training"]["two"] == first["training"]["two"]
    assert [len(first["training"]["one"]), len(first["training"]["two"]), len(first["evaluation"]["e"])] == [5, 3, 4]


def test_file_sets_take_a_seeded_sample(tmp_path):
    path = tmp_path / "texts.jsonl"
    pd.DataFrame({"body": [f"text number {i}" for i in range(20)]}).to_json(path, orient="records", lines=True)
    spec = {"path": str(path), "text": "body", "limit": 5}
    assert sets.generate(spec, 0) == sets.generate(spec, 0)
    assert len(sets.generate(spec, 0)) == 5
    assert len(sets.generate({"path": str(path), "text": "body"}, 0)) == 20


# Training with and without a set.


def test_leave_one_out_takes_as_many_steps_as_the_full_mix(tiny):
    model, training, _ = tiny
    config = model.config
    steps = fit.total_steps(sum(map(len, training.values())), epochs=2, batch_size=4)
    assert steps == 2 * 4
    runs = {}
    for leave_out in (None, "a"):
        trained = models.build_model(config, seed=3)
        history, kept = fit.train(
            trained, fit.mix(training, leave_out), steps=steps, lr=1e-2, batch_size=4, seed=0, pad_id=PAD, keep=[4, 8]
        )
        assert len(history) == steps and [step for step, _ in kept] == [4, 8]
        runs[leave_out] = trained
    assert len(fit.mix(training, "a")) == 9
    assert not torch.equal(runs[None].gpt_neox.embed_in.weight, runs["a"].gpt_neox.embed_in.weight)
    assert fit.checkpoint_steps(10, 4) == [2, 5, 8, 10]
    with pytest.raises(ValueError, match="unknown training set"):
        fit.mix(training, "nope")


# Unlearning.


def test_ascent_restores_the_weights_bit_for_bit(tiny):
    model, training, evaluation = tiny
    before = _state(model)
    rows = unlearn.ascend(model, training["a"], evaluation, unlearn.Settings(lr=1e-2, epochs=2), pad_id=PAD, seed=0)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert [row["epoch"] for row in rows] == [0, 0, 1, 1, 2, 2]
    assert not model.training


def test_ascent_restores_the_weights_when_a_step_fails(tiny, monkeypatch):
    model, training, evaluation = tiny
    before = _state(model)
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("out of memory")
        return real(*args)

    real = lm.batch_loss
    monkeypatch.setattr(lm, "batch_loss", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        unlearn.ascend(model, training["a"], evaluation, unlearn.Settings(lr=1e-2), pad_id=PAD, seed=0)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_ascent_is_one_sgd_step_up_the_mean_loss(tiny):
    """Plain SGD, the whole set in one batch, one epoch: θ_1 = θ_0 + η ∇ mean_i L(z_i) (eq. 3),
    and the recorded losses are those of θ_1."""
    model, training, evaluation = tiny
    eta = 0.05
    rows = unlearn.ascend(
        model, training["a"], evaluation, unlearn.Settings("sgd", eta, batch_size=None), pad_id=PAD, seed=0
    )
    stepped = models.build_model(model.config, seed=3).eval()
    stepped.load_state_dict(model.state_dict())
    loss = lm.batch_loss(stepped, training["a"], PAD)
    grads = torch.autograd.grad(loss, list(stepped.parameters()))
    with torch.no_grad():
        for param, grad in zip(stepped.parameters(), grads):
            param += eta * grad
    after = {row["set"]: row["loss"] for row in rows if row["epoch"] == 1}
    expected = unlearn.set_losses(stepped, evaluation, PAD)
    assert after == pytest.approx(expected, rel=1e-6)
    forget_before = lm.losses(model, training["a"], PAD).sum()
    assert lm.losses(stepped, training["a"], PAD).sum() > forget_before  # ascent raises the forgotten set's loss


def test_untrac_with_one_full_batch_sgd_step_is_graddot_to_first_order(tiny):
    """Eq. (9): one SGD step over the whole training set Z gives
    I(Z', Z) ≈ η Σ_j ∇L(z'_j)ᵀ (1/N Σ_i ∇L(z_i)) = (η / N) GradDot(Z', Z), with an error of
    second order in η: the relative gap shrinks about tenfold when η does."""
    model, training, evaluation = tiny
    model = models.build_model(model.config, seed=3).double().eval()  # float64: the gap is not rounding
    graddot = compare.influence(model, training, evaluation, PAD, methods=["graddot"], lissa={}, arnoldi={}).set_index(
        ["evaluation", "training"]
    )["influence"]
    gaps = {}
    for eta in (1e-3, 1e-4):
        pairs = []
        for name, examples in training.items():
            rows = unlearn.ascend(
                model, examples, evaluation, unlearn.Settings("sgd", eta, batch_size=None), pad_id=PAD, seed=0
            )
            influence = summary.unlearning(rows, method="untrac", forgotten=name).set_index("evaluation")["influence"]
            pairs += [(value, eta / len(examples) * graddot[(e, name)]) for e, value in influence.items()]
        exact, first_order = np.array(pairs).T
        # relative to the largest influence: a pair whose GradDot is near zero has no relative error to speak of
        gaps[eta] = np.abs(exact - first_order).max() / np.abs(first_order).max()
        assert (
            np.sign(exact[np.abs(first_order) > 0.1 * np.abs(first_order).max()]).tolist()
            == np.sign(first_order[np.abs(first_order) > 0.1 * np.abs(first_order).max()]).tolist()
        )
    assert gaps[1e-4] < 0.01
    assert gaps[1e-4] < gaps[1e-3] / 5


def test_untrac_inv_measures_the_training_sets(tiny):
    model, training, evaluation = tiny
    rows = unlearn.ascend(
        model, evaluation["x"], training, unlearn.Settings(lr=1e-2, batch_size=None, epochs=3), pad_id=PAD, seed=0
    )
    table = summary.unlearning(rows, method="untrac-inv", forgotten="x")
    assert set(table["training"]) == set(training) and set(table["evaluation"]) == {"x"}
    assert sorted(table["epoch"].unique()) == [1, 2, 3]


def test_every_optimizer_of_table_4_runs(tiny):
    model, training, evaluation = tiny
    for name in unlearn.OPTIMIZERS:
        rows = unlearn.ascend(
            model, training["b"], {"x": evaluation["x"]}, unlearn.Settings(name, 1e-3), pad_id=PAD, seed=0
        )
        assert np.isfinite([row["loss"] for row in rows]).all()
    with pytest.raises(ValueError, match="unknown optimizer"):
        unlearn.make_optimizer(model.parameters(), unlearn.Settings("lbfgs"))


# Summary tables.


def test_truth_is_the_loss_rise_when_a_set_is_left_out():
    table = summary.truth({"x": 10.0}, {"a": {"x": 12.5}, "b": {"x": 9.0}})
    assert table.set_index("training")["influence"].to_dict() == {"a": 2.5, "b": -1.0}


def test_correlation_is_pearson_across_training_sets_per_seed():
    rows = []
    truth = {"a": 3.0, "b": 1.0, "c": 0.0, "d": -2.0}
    for seed, noise in ((0, [0.0, 0.1, -0.1, 0.0]), (1, [0.5, -0.5, 0.2, 0.1])):
        for (name, value), e in zip(truth.items(), noise):
            rows.append({"method": "leave-one-out", "training": name, "influence": value, "seed": seed})
            rows.append({"method": "untrac", "training": name, "influence": 2 * value + e, "seed": seed, "epoch": 1})
    influence = summary.complete(pd.DataFrame(rows), experiment="e", evaluation="x", variant="default")
    table = summary.correlation(influence)
    expected = [
        np.corrcoef(list(truth.values()), [2 * v + e for v, e in zip(truth.values(), noise)])[0, 1]
        for noise in ([0.0, 0.1, -0.1, 0.0], [0.5, -0.5, 0.2, 0.1])
    ]
    row = table.iloc[0]
    assert (row["method"], row["epoch"], row["n_seeds"]) == ("untrac", 1, 2)
    assert row["mean"] == pytest.approx(np.mean(expected))
    assert row["std"] == pytest.approx(np.std(expected, ddof=1))


def test_correlation_of_fewer_than_three_sets_is_undefined():
    rows = [
        {"method": method, "training": name, "influence": value, "seed": 0}
        for method in ("leave-one-out", "graddot")
        for name, value in (("a", 1.0), ("b", 2.0))
    ]
    influence = summary.complete(pd.DataFrame(rows), experiment="e", evaluation="x", variant="default")
    assert summary.correlation(influence)["mean"].isna().all()


# The config and the workflow's plan.

ATTRIBUTION_ONLY = {
    "attribution": {
        "seeds": [0, 1],
        "experiments": {
            "tasks": {
                "model": {"arch": "gpt-neox", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "vocab_size": 128},
                "training": {
                    name: {"generator": "tasks", "task": task, "answer": answer, "n": 8}
                    for name, task, answer in (
                        ("s-digits", "successor", "digits"),
                        ("s-words", "successor", "words"),
                        ("l-digits", "length", "digits"),
                    )
                },
                "evaluation": {"after": {"generator": "tasks", "task": "after", "n": 8}},
                "sensitivity": {"optimizers": ["sgd"]},
            }
        },
    }
}


def test_a_config_may_hold_attribution_alone_but_not_nothing():
    from paramdelta import config as config_checks

    completed = config_checks.validate(ATTRIBUTION_ONLY)
    assert completed["models"] == {} and completed["attribution"]["untrac"]["lr"] == 5e-5
    with pytest.raises(config_checks.ConfigError, match="nothing to run"):
        config_checks.validate({})
    bad = {"attribution": {"experiments": {"t": {**ATTRIBUTION_ONLY["attribution"]["experiments"]["tasks"]}}}}
    bad["attribution"]["experiments"]["t"]["training"] = {"x": {"generator": "tasks", "task": "division", "n": 3}}
    with pytest.raises(config_checks.ConfigError, match="attribution.experiments.t.training.x"):
        config_checks.validate(bad)


@pytest.mark.slow
def test_workflow_plans_one_job_per_run_and_no_membership_jobs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    config = tmp_path / "config.yaml"

    def plan(settings) -> str:
        config.write_text(yaml.safe_dump(settings))
        command = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-n", "--configfile", str(config)]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    out = plan(ATTRIBUTION_ONLY)
    counts = dict(line.split() for line in out.splitlines() if line.startswith("attribution_"))
    # per seed: 1 model, 3 leave-one-out, 3 UnTrac and 1 UnTrac-Inv per unlearning setting (adam, sgd)
    assert counts == {
        "attribution_sets": "2",
        "attribution_model": "2",
        "attribution_leave_out": "6",
        "attribution_untrac": "12",
        "attribution_untrac_inv": "4",
        "attribution_gradients": "2",
        "attribution_summary": "1",
        "attribution_report": "1",
    }
    assert "metrics.csv" not in out  # no models: no membership jobs

    # Scheduler resources come from the experiment; a GPU is asked only when it sets one.
    assert "gpu=" not in out
    experiment = ATTRIBUTION_ONLY["attribution"]["experiments"]["tasks"]
    gpu = {"gpus": 1, "mem_mb": 16000, "runtime": 90, "partition": "gpu", "gpu_model": "h100"}
    out = plan(
        {"attribution": {**ATTRIBUTION_ONLY["attribution"], "experiments": {"tasks": {**experiment, "resources": gpu}}}}
    )
    jobs = out.split("\nrule ")[1:] + out.split("\nlocalrule ")[1:]
    model_jobs = [
        job for job in jobs if job.startswith(("attribution_model", "attribution_untrac", "attribution_gradients"))
    ]
    assert model_jobs
    for job in model_jobs:
        resources = next(line for line in job.splitlines() if line.strip().startswith("resources:"))
        for field in ("mem_mb=16000", "runtime=90", "slurm_partition=gpu", "gpu=1", "gpu_model=h100"):
            assert field in resources, (field, resources)
