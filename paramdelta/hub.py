"""Hub models and data sets: fetched once, pinned to a commit, then read offline by every job.

`python -m paramdelta.hub fetch --configfile CONFIG` downloads every Hugging Face hub model and
data set a configuration names (`models.<slug>.path`, `models.<slug>.build.base`,
`baselines.reference`, `datasets.<name>.hf`) with `huggingface_hub.snapshot_download` at the
configured revision, and records the commit that revision resolved to in a small JSON manifest
under data/hub/. Planning reads only these manifests and the data sets' parquet tables
(`missing`, `model_source`, `data.read_hub`); compute jobs call `offline()` and load each model
from its local snapshot directory, so no job touches the network and every job of a run loads
the same weights.

The weights go to the Hugging Face cache: HF_HUB_CACHE, by default $HF_HOME/hub (~/.cache/huggingface/hub),
or --cache-dir. On a cluster that cache must be on a filesystem the compute nodes see, since a
manifest names its snapshot directory by absolute path. The manifests and tables stay in data/hub/
relative to the workflow directory.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from paramdelta import data
from paramdelta.atomic import atomic_file, write_parquet

FETCH_COMMAND = "python -m paramdelta.hub fetch --configfile CONFIG"
MODEL_MANIFESTS = data.HUB_CACHE / "models"
DEFAULT_REVISION = "main"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")

# Weights the PyTorch loader never reads: a repository may hold the same model for TensorFlow,
# Flax, ONNX, GGUF or in Meta's own format too, each copy as large as the PyTorch one.
FOREIGN_WEIGHTS = [
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.onnx",
    "*.onnx_data",
    "*.gguf",
    "*.tflite",
    "*.mlmodel",
    "onnx/*",
    "coreml/*",
    "original/*",
]
# Where a repository has safetensors weights, transformers loads them and never the pickled copy.
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ["pytorch_model*.bin", "pytorch_model*.bin.index.json"]

_HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]{0,95}", re.ASCII)
_COMMIT = re.compile(r"[0-9a-f]{40}")


class HubError(ValueError):
    """A hub model or data set is unusable or not fetched; the message names it and what to run."""


class UnpinnedRevision(UserWarning):
    """A hub model or data set has no pinned revision: a later fetch may resolve it to another commit."""


@dataclass(frozen=True)
class HubItem:
    """One model or data set on the hub that a configuration names."""

    field: str  # the config entry that names it, e.g. "models.pythia-6.9b" or "baselines.reference"
    label: str  # how a person names it, e.g. "model pythia-6.9b"
    repo_id: str
    revision: str | None
    split: str | None = None  # data sets only
    pinnable: bool = True  # the config has a revision field for it

    @property
    def is_dataset(self) -> bool:
        return self.split is not None

    def describe(self) -> str:
        split = f", split {self.split}" if self.is_dataset else ""
        return f"{self.label} ({self.repo_id}{split} @ {self.revision or DEFAULT_REVISION})"


def is_hub_id(path: str) -> bool:
    """Whether a model path names a hub repository ('org/name' or 'name') rather than a path on this machine."""
    return not os.path.exists(path) and bool(_HUB_ID.fullmatch(path)) and "--" not in path and ".." not in path


def hub_items(config: dict) -> list[HubItem]:
    """Every hub model and data set a (validated) configuration names, in config order."""
    items = []
    for slug, spec in config.get("models", {}).items():
        if "path" in spec and is_hub_id(spec["path"]):
            items.append(HubItem(f"models.{slug}", f"model {slug}", spec["path"], spec.get("revision")))
        base = spec.get("build", {}).get("base")
        if base and is_hub_id(base):
            items.append(HubItem(f"models.{slug}.build.base", f"base model of {slug}", base, None, pinnable=False))
    reference = config.get("baselines", {}).get("reference")
    if reference and is_hub_id(reference):
        items.append(HubItem("baselines.reference", "reference model", reference, None, pinnable=False))
    for name, experiment in config.get("attribution", {}).get("experiments", {}).items():
        path = experiment["model"].get("path")
        if path and is_hub_id(path):
            field = f"attribution.experiments.{name}.model"
            items.append(
                HubItem(field, f"model of attribution experiment {name}", path, experiment["model"].get("revision"))
            )
    for name, spec in config.get("datasets", {}).items():
        if "hf" in spec:
            items.append(
                HubItem(f"datasets.{name}", f"data set {name}", spec["hf"], spec.get("revision"), split=spec["split"])
            )
    return items


def _flat(name: str) -> str:
    return name.replace("/", "__")


def model_manifest_path(repo_id: str, revision: str | None = None) -> Path:
    """Where a fetched hub model's manifest is kept, relative to the workflow directory."""
    return MODEL_MANIFESTS / f"{_flat(repo_id)}@{_flat(revision or DEFAULT_REVISION)}.json"


def dataset_manifest_path(name: str, split: str, revision: str | None = None) -> Path:
    """Where a fetched hub split's manifest is kept: beside its parquet table."""
    return data.hub_cache_path(name, split, revision).with_suffix(".json")


def manifest_path(item: HubItem) -> Path:
    if item.is_dataset:
        return dataset_manifest_path(item.repo_id, item.split, item.revision)
    return model_manifest_path(item.repo_id, item.revision)


def fetched(item: HubItem) -> dict | None:
    """The manifest of a fetched item, or None if it was not fetched or what it names is gone.

    A model needs its snapshot directory; a data set needs only its parquet table.
    """
    path = manifest_path(item)
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    needed = Path(manifest["table"]) if item.is_dataset else Path(manifest["path"])
    return manifest if needed.exists() else None


def missing(config: dict) -> list[str]:
    """One line per hub model or data set the configuration names that is not fetched (none: all are)."""
    return [item.describe() for item in hub_items(config) if fetched(item) is None]


def resolve(path: str, revision: str | None = None, what: str = "model") -> dict:
    """Where a model loads from: a local directory as it is, a hub id from its fetched snapshot.

    Returns {"path", "revision", "commit"}: for a hub id the local snapshot directory, the
    revision as requested and the commit it resolved to; for a local directory the path itself
    and commit None. Reads only the manifest: it never touches the network.
    """
    if Path(path).is_dir():
        return {"path": path, "revision": revision, "commit": None}
    if not is_hub_id(path):
        raise HubError(f"{what}: {path} is neither a local directory nor a hub id")
    item = HubItem(what, what, path, revision)
    manifest = fetched(item)
    if manifest is None:
        raise HubError(
            f"{item.describe()} has not been fetched ({manifest_path(item)} is missing or its snapshot is gone). "
            f"Run once, on a machine with network: {FETCH_COMMAND}"
        )
    return {"path": manifest["path"], "revision": revision, "commit": manifest["commit"]}


def ensure_model(field: str, repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> dict:
    """The manifest of a hub model, fetched now unless it was before; warns if it is not pinned.

    What the workflow's fetch_model rule runs on the submitting node, so that the compute jobs
    that load the model find it on disk.
    """
    item = HubItem(field, field, repo_id, revision)
    manifest = fetched(item)
    if manifest is None:
        try:
            manifest = fetch_model(repo_id, revision, cache_dir)
        except OSError as error:
            raise HubError(f"{field}: cannot fetch {item.describe()}: {error}") from error
    if revision is None:
        _warn_unpinned(item, manifest)
    return manifest


def model_source(config: dict, slug: str) -> dict:
    """Where a configured model with a `path` loads from: {"path", "revision", "commit"} (see `resolve`)."""
    spec = config["models"][slug]
    if "path" not in spec:
        raise HubError(f"model {slug} is built by the workflow (models.{slug}.build); it has no path to load from")
    return resolve(spec["path"], spec.get("revision"), f"model {slug}")


def offline() -> None:
    """Forbid hub downloads in this process: compute jobs load only what was fetched.

    Sets the variables for child processes and for libraries imported later, and the switches
    of huggingface_hub and datasets if they were imported already (they read them at import).
    """
    for name in OFFLINE_VARIABLES:
        os.environ[name] = "1"
    for module in ("huggingface_hub.constants", "datasets.config"):
        if module in sys.modules:
            sys.modules[module].HF_HUB_OFFLINE = True


def _manifest(item: HubItem, snapshot: str) -> dict:
    commit = Path(snapshot).name  # snapshot_download returns <cache>/<repo folder>/snapshots/<commit>
    if not _COMMIT.fullmatch(commit):
        raise HubError(f"{item.describe()}: unexpected snapshot directory {snapshot} (not named by a commit)")
    return {
        "repo_id": item.repo_id,
        "revision": item.revision,
        "commit": commit,
        "path": str(Path(snapshot).absolute()),
        "fetched": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(content: dict, path: Path) -> None:
    """Write a manifest as JSON, atomically."""
    with atomic_file(path) as partial:
        partial.write_text(json.dumps(content, indent=2) + "\n")


def fetch_model(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> dict:
    """Download a hub model at a revision into the Hugging Face cache and write its manifest (needs network).

    Weights the PyTorch loader would not read are left out (FOREIGN_WEIGHTS, and the pickled copy
    where safetensors exist). Returns the manifest.
    """
    from huggingface_hub import HfApi, snapshot_download

    item = HubItem("model", "model", repo_id, revision)
    info = HfApi().model_info(repo_id, revision=revision or DEFAULT_REVISION)
    files = {sibling.rfilename for sibling in info.siblings or []}
    ignore = FOREIGN_WEIGHTS + (PICKLED_WEIGHTS if files & set(SAFETENSORS_WEIGHTS) else [])
    snapshot = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, ignore_patterns=ignore)
    manifest = _manifest(item, snapshot)
    write_json(manifest, manifest_path(item))
    return manifest


def fetch_dataset(name: str, split: str, revision: str | None = None, cache_dir: str | Path | None = None) -> dict:
    """Download a hub data set at a revision, write one split as the project's parquet table and its manifest.

    The whole repository is downloaded (its README may say which files make which split); the
    split is then read from the local snapshot alone. Needs network. Returns the manifest.
    """
    import datasets  # heavy imports, only for the one step that downloads
    from huggingface_hub import snapshot_download

    item = HubItem("data set", f"data set {name}", name, revision, split=split)
    snapshot = snapshot_download(name, repo_type="dataset", revision=revision, cache_dir=cache_dir)
    manifest = _manifest(item, snapshot)
    table_path = data.hub_cache_path(name, split, revision)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    # datasets keeps its own arrow copy of every split: make it in a scratch directory dropped afterwards.
    with tempfile.TemporaryDirectory(dir=table_path.parent, prefix=".datasets-") as scratch:
        try:
            table = datasets.load_dataset(snapshot, split=split, cache_dir=scratch).to_pandas()
        except ValueError as error:
            raise HubError(f"{item.describe()}: cannot read the split from {snapshot}: {error}") from error
    write_parquet(table, table_path)
    manifest.update(split=split, table=str(table_path))
    write_json(manifest, manifest_path(item))
    return manifest


def _warn_unpinned(item: HubItem, manifest: dict) -> None:
    what = "rows" if item.is_dataset else "weights"
    if item.pinnable:
        advice = f"pin it with revision: {manifest['commit']} so reruns use the same {what}"
    else:
        advice = f"this field takes no revision, so a fresh fetch may resolve {DEFAULT_REVISION} to other {what}"
    warnings.warn(
        f"{item.field}: {item.repo_id} has no pinned revision; fetched {DEFAULT_REVISION} at commit {manifest['commit']}; {advice}",
        UnpinnedRevision,
        stacklevel=3,
    )


def fetch(
    config: dict, cache_dir: str | Path | None = None, update: bool = False, log: Callable[[str], None] | None = None
) -> dict[str, dict]:
    """Fetch every hub model and data set a configuration names; returns their manifests by config field.

    What was fetched before is kept as it was (no network) unless `update`, which resolves the
    revisions again. Warns (UnpinnedRevision) for each one without a pinned revision.
    """
    manifests = {}
    for item in hub_items(config):
        manifest = None if update else fetched(item)
        kept = manifest is not None
        if manifest is None:
            try:
                if item.is_dataset:
                    manifest = fetch_dataset(item.repo_id, item.split, item.revision, cache_dir)
                else:
                    manifest = fetch_model(item.repo_id, item.revision, cache_dir)
            except OSError as error:  # huggingface_hub's HTTP, not-found and connection errors
                raise HubError(f"{item.field}: cannot fetch {item.describe()}: {error}") from error
        if log:
            where = manifest.get("table", manifest["path"])
            log(f"{item.describe()}: commit {manifest['commit']}{' (fetched before)' if kept else ''} -> {where}")
        if item.revision is None:
            _warn_unpinned(item, manifest)
        manifests[item.field] = manifest
    return manifests


def _update(config: dict, overrides: dict) -> None:
    """Merge one config file into another the way Snakemake does: nested mappings key by key."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            _update(config[key], value)
        else:
            config[key] = value


def load_config(paths: list[str]) -> dict:
    """The validated configuration of one or more files, later files updating earlier ones."""
    import yaml

    from paramdelta import config as config_checks

    merged: dict = {}
    for path in paths:
        with open(path) as handle:
            _update(merged, yaml.safe_load(handle) or {})
    return config_checks.validate(merged)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from paramdelta import config as config_checks

    parser = argparse.ArgumentParser(
        prog="python -m paramdelta.hub", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser(
        "fetch", help="download the hub models and data sets a config names, pinned to a commit"
    )
    fetch_parser.add_argument(
        "--configfile", required=True, action="append", help="as given to snakemake; repeat it to merge several"
    )
    fetch_parser.add_argument(
        "--cache-dir",
        help="Hugging Face cache for the snapshots (default HF_HUB_CACHE, else $HF_HOME/hub); on a cluster, "
        "a filesystem the compute nodes see",
    )
    fetch_parser.add_argument(
        "--update", action="store_true", help="resolve revisions again, even for what was fetched before"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.configfile)
    except (OSError, config_checks.ConfigError) as error:
        parser.error(str(error))
    with warnings.catch_warnings():
        warnings.simplefilter("always", UnpinnedRevision)
        warnings.showwarning = lambda message, *_args, **_kwargs: print(f"warning: {message}", file=sys.stderr)
        try:
            fetch(config, args.cache_dir, args.update, log=print)
        except HubError as error:
            parser.exit(1, f"error: {error}\n")


if __name__ == "__main__":
    main()
