"""The attribution jobs, one function per rule of rules/attribution.smk.

Each job reads the sets its (experiment, seed) drew, tokenised by the experiment's tokenizer,
and writes one small file (the trained model is the only large output). Every output is
written atomically, so an interrupted job leaves nothing a rerun would take as done.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch

from paramdelta import models, target
from paramdelta.atomic import atomic_directory, atomic_file, write_csv
from paramdelta.attribution import compare, fit, lm, sets, summary, unlearn
from paramdelta.attribution.plan import variants

log = logging.getLogger(__name__)


def settings(section: dict, variant: dict) -> unlearn.Settings:
    """A method's unlearning settings (``untrac`` or ``untrac_inv``) with a variant's changes."""
    return unlearn.Settings(
        optimizer=variant["optimizer"] or section["optimizer"],
        lr=variant["lr"] or section["lr"],
        betas=tuple(section["betas"]),
        batch_size=section["batch_size"],
        epochs=section["epochs"],
    )


# The sets and the tokenizer.


def draw_sets(experiment: dict, seed: int, sets_path: str, tokenizer_dir: str) -> None:
    drawn = sets.draw(experiment, seed)
    spec = experiment["model"]
    if "path" in spec:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(models.local_path(spec["path"], spec.get("revision")))
    else:
        texts = [text for role in drawn.values() for texts in role.values() for text in texts]
        tokenizer = target.train_tokenizer(texts, spec["vocab_size"])
    with atomic_directory(tokenizer_dir) as partial:
        tokenizer.save_pretrained(partial)
    with atomic_file(sets_path) as partial:
        Path(partial).write_text(json.dumps(drawn, ensure_ascii=False))
    log.info("drew %s", {role: {name: len(texts) for name, texts in d.items()} for role, d in drawn.items()})


def load_sets(sets_path: str, tokenizer_dir: str, max_length: int):
    """``(tokenizer, {"training": {name: Encoded}, "evaluation": ...})``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    drawn = json.loads(Path(sets_path).read_text())
    encoded = {
        role: {name: lm.encode(tokenizer, texts, max_length) for name, texts in d.items()} for role, d in drawn.items()
    }
    return tokenizer, encoded


# Training on the mix, with and without each training set.


def _device() -> torch.device:
    """The job's GPU when the scheduler gave it one (the experiment's ``resources.gpus``), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _initial_model(experiment: dict, tokenizer, seed: int):
    spec = experiment["model"]
    if "path" in spec:
        return models.load_causal_lm(spec["path"], revision=spec.get("revision")).to(_device())
    build = {**spec, "max_positions": max(spec["max_positions"], experiment["max_length"])}
    return models.build_model(models.build_config(build, tokenizer), seed).to(_device())


def _train(experiment: dict, seed: int, tokenizer, encoded: dict, leave_out: str | None, keep=()):
    train = experiment["train"]
    model = _initial_model(experiment, tokenizer, seed)
    n_all = sum(len(examples) for examples in encoded["training"].values())
    steps = fit.total_steps(n_all, train["epochs"], train["batch_size"])
    history, kept = fit.train(
        model,
        fit.mix(encoded["training"], leave_out),
        steps=steps,
        lr=train["lr"],
        batch_size=train["batch_size"],
        seed=seed,
        pad_id=tokenizer.pad_token_id,
        keep=keep(steps) if callable(keep) else keep,
    )
    log.info("trained without %s: %d steps, loss %.4f -> %.4f", leave_out, steps, history[0], history[-1])
    return model, kept


def _evaluation_losses(model, encoded: dict, pad_id: int) -> dict[str, float]:
    return unlearn.set_losses(model, encoded["evaluation"], pad_id)


def train_mix(experiment: dict, seed: int, sets_path, tokenizer_dir, model_dir, checkpoints_path, losses_path) -> None:
    tokenizer, encoded = load_sets(sets_path, tokenizer_dir, experiment["max_length"])
    count = experiment["train"]["checkpoints"]
    model, kept = _train(
        experiment, seed, tokenizer, encoded, None, keep=lambda steps: fit.checkpoint_steps(steps, count)
    )
    lr = experiment["train"]["lr"]
    with atomic_file(checkpoints_path) as partial:
        torch.save([{"step": step, "lr": lr, "state": state} for step, state in kept], partial)
    target.save(model, tokenizer, model_dir)
    with atomic_file(losses_path) as partial:
        Path(partial).write_text(json.dumps(_evaluation_losses(model, encoded, tokenizer.pad_token_id)))


def leave_out(experiment: dict, seed: int, training: str, sets_path, tokenizer_dir, losses_path) -> None:
    tokenizer, encoded = load_sets(sets_path, tokenizer_dir, experiment["max_length"])
    model, _ = _train(experiment, seed, tokenizer, encoded, training)
    with atomic_file(losses_path) as partial:
        Path(partial).write_text(json.dumps(_evaluation_losses(model, encoded, tokenizer.pad_token_id)))


# Unlearning and the gradient methods on the trained model.


def _trained(model_dir: str, experiment: dict, sets_path: str):
    model, tokenizer = models.load_with_tokenizer(model_dir)
    _, encoded = load_sets(sets_path, model_dir, experiment["max_length"])
    return model.to(_device()), tokenizer, encoded


def unlearning(method, experiment, seed, forgotten, section, variant, model_dir, sets_path, out) -> None:
    """UnTrac (``method`` "untrac"): ascend on one training set, measure every evaluation set;
    UnTrac-Inv ("untrac-inv"): ascend on one evaluation set, measure every training set."""
    model, tokenizer, encoded = _trained(model_dir, experiment, sets_path)
    forget, measured = ("training", "evaluation") if method == "untrac" else ("evaluation", "training")
    rows = unlearn.ascend(
        model,
        encoded[forget][forgotten],
        encoded[measured],
        settings(section, variant),
        pad_id=tokenizer.pad_token_id,
        seed=seed,
    )
    write_csv(pd.DataFrame(rows), out)


def gradient_methods(experiment, methods, lissa, arnoldi, model_dir, checkpoints_path, sets_path, out) -> None:
    model, tokenizer, encoded = _trained(model_dir, experiment, sets_path)
    model.eval()
    checkpoints = [(c["state"], c["lr"]) for c in torch.load(checkpoints_path, weights_only=True)]
    table = compare.influence(
        model,
        encoded["training"],
        encoded["evaluation"],
        tokenizer.pad_token_id,
        methods=methods,
        checkpoints=checkpoints,
        lissa=lissa,
        arnoldi=arnoldi,
        device=_device(),
    )
    write_csv(table, out)


# The tables of every experiment and seed.


def summarise(attribution: dict, root: str, influence_out: str, correlation_out: str) -> None:
    """influence.csv and correlation.csv from every job's file under ``root``
    (results/attribution), laid out as rules/attribution.smk writes them."""
    methods = attribution["methods"]
    parts = []
    for name, experiment in attribution["experiments"].items():
        for seed in attribution["seeds"]:
            here = Path(root, name, f"seed{seed}")
            fields = {"experiment": name, "seed": seed}
            full = json.loads((here / "losses" / "full.json").read_text())
            left = {z: json.loads((here / "losses" / f"without-{z}.json").read_text()) for z in experiment["training"]}
            parts.append(summary.complete(summary.truth(full, left), variant="default", **fields))
            for key, variant in variants(attribution, experiment).items():
                for method, forgotten_sets in (
                    ("untrac", experiment["training"]),
                    ("untrac-inv", experiment["evaluation"]),
                ):
                    if method not in methods:
                        continue
                    section = attribution["untrac" if method == "untrac" else "untrac_inv"]
                    used = settings(section, variant)
                    for forgotten in forgotten_sets:
                        rows = pd.read_csv(here / method / key / f"{forgotten}.csv")
                        parts.append(
                            summary.complete(
                                summary.unlearning(rows, method=method, forgotten=forgotten),
                                variant=variant["variant"],
                                optimizer=used.optimizer,
                                lr=used.lr,
                                **fields,
                            )
                        )
            if any(m in compare.METHODS for m in methods):
                gradients = pd.read_csv(here / "gradient-methods.csv")
                parts.append(summary.complete(gradients, variant="default", **fields))
    influence = pd.concat(parts, ignore_index=True)
    write_csv(influence, influence_out)
    write_csv(summary.correlation(influence), correlation_out)
