"""Everything a run's inputs are checked for before any job starts.

The workflow calls `check` while Snakemake parses it (rules/common.smk), so a wrong field,
a missing or unreadable file, or a data set the method cannot score stops the run with
one message naming the culprit, before anything is scheduled. Each check raises
ConfigError or DataError; the first one found is reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from paramdelta import config as config_checks
from paramdelta import data, hub
from paramdelta.config import ConfigError

# The folds of the cross-validated top-K% (metrics.topk_cv_table): each needs a member and a
# non-member of every data set.
CV_FOLDS = 5
K_SELECTIONS = ("topk-elements", "topk-layers")


def check(config: dict, workflow_dir: str | Path | None = None) -> tuple[dict, dict[str, pd.DataFrame]]:
    """The completed config and the candidate table of every data set a model attacks.
    `workflow_dir`: where relative paths not found in the working directory are looked for."""
    completed = config_checks.validate(config)
    check_paths(completed, workflow_dir)
    used = sorted({name for slug in completed["models"] for name in config_checks.model_datasets(completed, slug)})
    tables = {name: data.load(completed["datasets"][name], name) for name in used}
    if any(selection in K_SELECTIONS for selection in completed["features"]["selections"]):
        for name, table in tables.items():
            counts = table["label"].value_counts()
            for label, kind in ((1, "members"), (0, "non-members")):
                if counts.get(label, 0) < CV_FOLDS:
                    raise data.DataError(
                        f"data set '{name}': {counts.get(label, 0)} {kind}, fewer than the {CV_FOLDS} folds that "
                        "cross-validating top-K% needs (add texts, or leave topk-elements and topk-layers out of "
                        "features.selections)"
                    )
    return completed, tables


def deepspeed_path(config: dict, workflow_dir: str | Path | None = None) -> Path:
    """train.deepspeed_config: as given when absolute or found from the working directory,
    else relative to the workflow's directory (where config/deepspeed_zero2.json lives)."""
    path = Path(config["train"]["deepspeed_config"])
    if path.is_absolute() or path.exists() or workflow_dir is None:
        return path
    return Path(workflow_dir) / path


def check_paths(config: dict, workflow_dir: str | Path | None = None) -> None:
    """Local model directories exist, hub items that must be fetched beforehand were, and
    every DeepSpeed JSON in use is a JSON object."""
    for slug, spec in config["models"].items():
        for field, path in (
            (f"models.{slug}.path", spec.get("path")),
            (f"models.{slug}.build.base", spec.get("build", {}).get("base")),
        ):
            if path and not hub.is_hub_id(path) and not Path(path).is_dir():
                raise ConfigError(
                    f"config field '{field}': '{path}' is neither a directory on this machine nor a hub id ('org/name')"
                )
    for name, experiment in config.get("attribution", {}).get("experiments", {}).items():
        path = experiment["model"].get("path")
        if path and not hub.is_hub_id(path) and not Path(path).is_dir():
            raise ConfigError(
                f"config field 'attribution.experiments.{name}.model.path': '{path}' is neither a directory "
                "on this machine nor a hub id ('org/name')"
            )
    reference = config["baselines"].get("reference")
    if reference and not hub.is_hub_id(reference) and not Path(reference).is_dir():
        raise ConfigError(f"config field 'baselines.reference': '{reference}' is neither a directory nor a hub id")
    # Hub models named by models.<slug>.path are fetched by a rule; a hub base model, reference
    # model or attribution model, like a hub data set, is fetched beforehand with the fetch command.
    unfetched = [
        item.describe()
        for item in hub.hub_items(config)
        if item.field.endswith(".build.base")
        or item.field == "baselines.reference"
        or item.field.startswith("attribution.")
        if hub.fetched(item) is None
    ]
    if unfetched:
        raise ConfigError(
            "not fetched: " + "; ".join(unfetched) + f". Run once, on a machine with network: {hub.FETCH_COMMAND}"
        )
    users = [
        slug
        for slug, spec in config["models"].items()
        if (spec.get("engine") or config["train"]["engine"]) == "deepspeed"
    ]
    if users:  # one JSON for every DeepSpeed model: read once
        path = deepspeed_path(config, workflow_dir)
        field = "config field 'train.deepspeed_config'"
        if not path.is_file():
            raise ConfigError(f"{field}: {path} does not exist (model '{users[0]}' uses the deepspeed engine)")
        try:
            parsed = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"{field}: {path} is not JSON ({error})") from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"{field}: {path} holds a JSON {type(parsed).__name__}, not an object")
        if config["train"]["offload_adam"] == "deepspeed" and not config_checks.offloads_optimizer(parsed):
            raise ConfigError(
                f"config field 'train.offload_adam': 'deepspeed' (DeepSpeed's CPU Adam) steps an optimizer offloaded "
                f"to host memory, but {path} does not offload it (zero_optimization.offload_optimizer.device: cpu)"
            )
