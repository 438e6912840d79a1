"""Tests of fetching hub models and data sets once, pinned to a commit, against a local stand-in for the hub.

Nothing is downloaded from the internet: `FakeHub` serves local directories over HTTP on 127.0.0.1
with the requests huggingface_hub's `snapshot_download` makes, and the fetch command runs as a
subprocess with HF_ENDPOINT pointing at it (huggingface_hub reads HF_ENDPOINT at import).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pytest
import yaml

from paramdelta import data, hub

MODEL_ID = "tiny-org/pythia-tiny"
DATASET_ID = "tiny-org/WikiMIA"
SPLIT = "WikiMIA_length32"
# Fake commit ids: what the stand-in hub says each branch points to.
MODEL_MAIN = "a1" * 20
MODEL_V1 = "b2" * 20
DATA_MAIN = "c3" * 20
DATA_V1 = "d4" * 20

ROWS = [
    {"input": "The 2023 Cricket World Cup was the 13th edition of the tournament, hosted by India.", "label": 0},
    {"input": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.", "label": 1},
    {"input": "2023", "label": 1},  # texts that look like numbers stay the strings they are
    {"input": "0012", "label": 0},
]
README = f"""---
configs:
- config_name: default
  data_files:
  - split: {SPLIT}
    path: data/{SPLIT}-*
  - split: WikiMIA_length64
    path: data/WikiMIA_length64-*
---
# A WikiMIA-shaped data set for tests
"""


# The stand-in for the hub.


def git_blob_id(content: bytes) -> str:
    """The id git (and the hub) gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class FakeHub(ThreadingHTTPServer):
    """A stand-in for the Hugging Face Hub: serves local directories as repositories, on 127.0.0.1.

    It answers what huggingface_hub 2.4's `snapshot_download` (and `HfApi.model_info`) ask, on
    the plain HTTP download path; it sends no Xet headers, so no Xet transfer is tried:

        GET  /api/{models,datasets}/<repo>/revision/<rev>   commit `sha` and file list (`siblings`)
        GET  /api/{models,datasets}/<repo>/tree/<rev>       recursive file list: path, size, git oid
        HEAD /[datasets/]<repo>/resolve/<rev>/<file>        X-Repo-Commit, ETag, Content-Length
        GET  /[datasets/]<repo>/resolve/<rev>/<file>        the file

    A revision is a branch name or a commit id. Unknown repositories, revisions and files are
    answered 404 with the X-Error-Code the hub sends, which huggingface_hub turns into its errors.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HubRequest)
        self.repos: dict[tuple[str, str], dict[str, tuple[str, Path]]] = {}  # (type, id) -> revision -> (commit, dir)
        self.requests: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def publish(self, repo_type: str, repo_id: str, branch: str, commit: str, directory: Path) -> None:
        """Make `directory` the content of `commit`, and point `branch` at it."""
        revisions = self.repos.setdefault((repo_type, repo_id), {})
        revisions[branch] = revisions[commit] = (commit, Path(directory))

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _HubRequest(BaseHTTPRequestHandler):
    server: FakeHub

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def log_message(self, *args) -> None:  # keep the test output quiet; requests are kept in server.requests
        pass

    def _answer(self, send_body: bool) -> None:
        path = urlsplit(self.path).path
        self.server.requests.append(f"{self.command} {unquote(path)}")
        if api := re.fullmatch(r"/api/(model|dataset)s/(.+)/(revision|tree)/([^/]+)", path):
            repo_type, repo_id, kind, revision = api.groups()
        elif resolve := re.fullmatch(r"/(datasets/)?(.+?/.+?)/resolve/([^/]+)/(.+)", path):
            repo_type = "dataset" if resolve.group(1) else "model"
            repo_id, revision, kind = resolve.group(2), resolve.group(3), "resolve"
        else:
            return self._send(404, b"", {"X-Error-Code": "RepoNotFound"}, send_body)
        repo = self.server.repos.get((repo_type, unquote(repo_id)))
        if repo is None:
            return self._send(404, b"", {"X-Error-Code": "RepoNotFound"}, send_body)
        if unquote(revision) not in repo:
            return self._send(404, b"", {"X-Error-Code": "RevisionNotFound"}, send_body)
        commit, directory = repo[unquote(revision)]
        files = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
        if kind == "revision":
            info = {"id": unquote(repo_id), "sha": commit, "siblings": [{"rfilename": f} for f in files]}
            return self._send_json(info, send_body)
        if kind == "tree":
            tree = [
                {
                    "type": "file",
                    "path": f,
                    "size": (directory / f).stat().st_size,
                    "oid": git_blob_id((directory / f).read_bytes()),
                }
                for f in files
            ]
            return self._send_json(tree, send_body)
        filename = unquote(resolve.group(4))
        if filename not in files:
            return self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, send_body)
        content = (directory / filename).read_bytes()
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{git_blob_id(content)}"',
            "Content-Type": "application/octet-stream",
        }
        self._send(200, content, headers, send_body)

    def _send_json(self, value, send_body: bool) -> None:
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"}, send_body)

    def _send(self, status: int, content: bytes, headers: dict[str, str], send_body: bool) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(content))}.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(content)


# Repositories, configs and the fetch command.


def dataset_repo(path: Path, rows: list[dict]) -> Path:
    """A data set repository in the hub's parquet layout, with two splits and README metadata."""
    (path / "data").mkdir(parents=True)
    (path / "README.md").write_text(README)
    pd.DataFrame(rows).to_parquet(path / "data" / f"{SPLIT}-00000-of-00001.parquet", index=False)
    other = pd.DataFrame([{"input": "another split", "label": 1}])
    other.to_parquet(path / "data" / "WikiMIA_length64-00000-of-00001.parquet", index=False)
    return path


@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory, tiny_model_dir):
    """The stand-in hub with a tiny model (branches main and v1) and a data set (main, and an older commit)."""
    repos = tmp_path_factory.mktemp("hub-repos")
    model_v1 = shutil.copytree(tiny_model_dir, repos / "model-v1")
    (model_v1 / "VERSION").write_text("v1\n")
    (model_v1 / "tf_model.h5").write_bytes(b"TensorFlow weights")  # not for PyTorch: left out
    (model_v1 / "pytorch_model.bin").write_bytes(b"pickled copy")  # safetensors exist: left out
    with FakeHub() as server:
        server.publish("model", MODEL_ID, "main", MODEL_MAIN, tiny_model_dir)
        server.publish("model", MODEL_ID, "v1", MODEL_V1, model_v1)
        server.publish("dataset", DATASET_ID, "main", DATA_MAIN, dataset_repo(repos / "data-main", ROWS))
        server.publish("dataset", DATASET_ID, "v1", DATA_V1, dataset_repo(repos / "data-v1", ROWS[:2]))
        yield server


def hub_config(tiny_model_dir: Path, model_revision: str | None = None, data_revision: str | None = None) -> dict:
    """A hub model, a local model and a hub data set, as the config file gives them."""
    dataset = {"hf": DATASET_ID, "split": SPLIT, "text": "input", "label": "label"}
    model = {"path": MODEL_ID}
    if data_revision:
        dataset["revision"] = data_revision
    if model_revision:
        model["revision"] = model_revision
    return {
        "datasets": {"wikimia32": dataset},
        "models": {"pythia-tiny": model, "local": {"path": str(tiny_model_dir)}},
    }


def run_fetch(server: FakeHub, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m paramdelta.hub fetch` in `workdir`, against the stand-in hub, with its own Hugging Face cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k not in hub.OFFLINE_VARIABLES}
    env.update(
        HF_ENDPOINT=server.endpoint,
        HF_HOME=str(workdir / "hf-home"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="127.0.0.1",
        no_proxy="127.0.0.1",
    )
    command = [sys.executable, "-m", "paramdelta.hub", "fetch", "--configfile", "config.yaml", *args]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


def new_workdir(path: Path, config: dict) -> Path:
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def fetched(tmp_path_factory, fake_hub, tiny_model_dir):
    """A workflow directory whose unpinned hub model and data set were fetched once by the CLI."""
    from paramdelta import config as config_checks

    workdir = new_workdir(tmp_path_factory.mktemp("fetched") / "workflow", hub_config(tiny_model_dir))
    config = config_checks.validate(hub_config(tiny_model_dir))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        before = hub.missing(config)
    result = run_fetch(fake_hub, workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"workdir": workdir, "config": config, "before": before, "result": result}


def read_manifest(path: Path) -> dict:
    return json.loads(path.read_text())


# Fetching against the stand-in hub.


def test_fetch_downloads_the_model_and_the_data_set(fetched, fake_hub, tiny_model_dir):
    assert fetched["before"] == [
        f"model pythia-tiny ({MODEL_ID} @ main)",
        f"data set wikimia32 ({DATASET_ID}, split {SPLIT} @ main)",
    ]  # the local model is never fetched
    workdir = fetched["workdir"]
    assert f"GET /api/models/{MODEL_ID}/revision/main" in fake_hub.requests
    assert f"GET /{MODEL_ID}/resolve/{MODEL_MAIN}/config.json" in fake_hub.requests
    assert f"GET /datasets/{DATASET_ID}/resolve/{DATA_MAIN}/README.md" in fake_hub.requests
    model = read_manifest(workdir / "data/hub/models/tiny-org__pythia-tiny@main.json")
    assert model["repo_id"] == MODEL_ID and model["revision"] is None and model["commit"] == MODEL_MAIN
    snapshot = Path(model["path"])
    assert snapshot.is_absolute() and snapshot.name == MODEL_MAIN
    assert str(snapshot).startswith(str(workdir / "hf-home" / "hub"))  # the Hugging Face cache of HF_HOME
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(p.name for p in tiny_model_dir.iterdir())
    dataset = read_manifest(workdir / "data/hub/tiny-org__WikiMIA/WikiMIA_length32.json")
    assert dataset["repo_id"] == DATASET_ID and dataset["commit"] == DATA_MAIN and dataset["split"] == SPLIT
    assert Path(dataset["table"]) == data.hub_cache_path(DATASET_ID, SPLIT)
    assert not list((workdir / "data/hub/tiny-org__WikiMIA").glob(".*"))  # no scratch or partial files left


def test_nothing_is_missing_after_the_fetch(fetched, monkeypatch):
    monkeypatch.chdir(fetched["workdir"])
    assert hub.missing(fetched["config"]) == []


def test_unpinned_revisions_warn_naming_what_to_pin(fetched):
    warnings = [line for line in fetched["result"].stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: models.pythia-tiny: {MODEL_ID} has no pinned revision; fetched main at commit {MODEL_MAIN}; "
        f"pin it with revision: {MODEL_MAIN} so reruns use the same weights",
        f"warning: datasets.wikimia32: {DATASET_ID} has no pinned revision; fetched main at commit {DATA_MAIN}; "
        f"pin it with revision: {DATA_MAIN} so reruns use the same rows",
    ]


def test_fetched_data_set_is_what_read_hub_reads(fetched, monkeypatch):
    monkeypatch.chdir(fetched["workdir"])
    raw = data.read_hub(DATASET_ID, SPLIT)
    assert raw["input"].tolist() == [r["input"] for r in ROWS]  # this split only, in order
    assert raw["label"].tolist() == [r["label"] for r in ROWS]
    assert all(isinstance(text, str) for text in raw["input"])  # "2023" and "0012" stay strings
    table = data.load(fetched["config"]["datasets"]["wikimia32"], "wikimia32")
    assert table["text"].tolist() == [r["input"] for r in ROWS]
    assert table["text_id"].tolist() == [data.text_id(r["input"]) for r in ROWS]


def test_model_source_loads_offline(fetched, monkeypatch, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.chdir(fetched["workdir"])
    import huggingface_hub.constants

    # What offline() switches on is switched back after the test.
    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for module in ("huggingface_hub.constants", "datasets.config"):
        if module in sys.modules:
            monkeypatch.setattr(sys.modules[module], "HF_HUB_OFFLINE", sys.modules[module].HF_HUB_OFFLINE)
    hub.offline()
    assert all(os.environ[name] == "1" for name in hub.OFFLINE_VARIABLES)
    assert huggingface_hub.constants.is_offline_mode()

    source = hub.model_source(fetched["config"], "pythia-tiny")
    assert source == {
        "path": read_manifest(hub.model_manifest_path(MODEL_ID))["path"],
        "revision": None,
        "commit": MODEL_MAIN,
    }
    model = AutoModelForCausalLM.from_pretrained(source["path"])
    expected = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), expected.state_dict().values()))
    assert (
        AutoTokenizer.from_pretrained(source["path"]).get_vocab()
        == AutoTokenizer.from_pretrained(str(tiny_model_dir)).get_vocab()
    )
    assert hub.model_source(fetched["config"], "local") == {
        "path": str(tiny_model_dir),
        "revision": None,
        "commit": None,
    }


def test_a_second_fetch_keeps_the_commit_until_update(fetched, fake_hub, tiny_model_dir):
    workdir = fetched["workdir"]
    manifest = workdir / "data/hub/models/tiny-org__pythia-tiny@main.json"
    fetched_before = read_manifest(manifest)
    moved = "e5" * 20
    fake_hub.publish("model", MODEL_ID, "main", moved, tiny_model_dir)  # main moves on at the hub
    try:
        again = run_fetch(fake_hub, workdir)
        assert again.returncode == 0, again.stderr
        assert read_manifest(manifest) == fetched_before
        assert f"commit {MODEL_MAIN} (fetched before)" in again.stdout
    finally:
        fake_hub.publish("model", MODEL_ID, "main", MODEL_MAIN, tiny_model_dir)


def test_pinned_revisions_resolve_to_their_commits(tmp_path, fake_hub, tiny_model_dir, monkeypatch):
    from paramdelta import config as config_checks

    config = hub_config(tiny_model_dir, model_revision="v1", data_revision=DATA_V1)
    workdir = new_workdir(tmp_path / "workflow", config)
    result = run_fetch(fake_hub, workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning:" not in result.stderr

    monkeypatch.chdir(workdir)
    config = config_checks.validate(config)
    assert hub.missing(config) == []
    source = hub.model_source(config, "pythia-tiny")
    assert source["revision"] == "v1" and source["commit"] == MODEL_V1
    snapshot = Path(source["path"])
    assert snapshot.name == MODEL_V1 and (snapshot / "VERSION").read_text() == "v1\n"
    assert (snapshot / "model.safetensors").exists()
    assert not (snapshot / "tf_model.h5").exists() and not (snapshot / "pytorch_model.bin").exists()
    assert hub.model_manifest_path(MODEL_ID, "v1") == Path("data/hub/models/tiny-org__pythia-tiny@v1.json")

    manifest = read_manifest(hub.dataset_manifest_path(DATASET_ID, SPLIT, DATA_V1))
    assert manifest["revision"] == DATA_V1 and manifest["commit"] == DATA_V1
    assert data.read_hub(DATASET_ID, SPLIT, DATA_V1)["input"].tolist() == [r["input"] for r in ROWS[:2]]
    # A commit id is fetched without asking the hub what it resolves to.
    assert f"GET /api/datasets/{DATASET_ID}/revision/{DATA_V1}" not in fake_hub.requests


def test_a_repository_the_hub_does_not_have_is_named(tmp_path, fake_hub, tiny_model_dir):
    config = hub_config(tiny_model_dir)
    config["models"]["pythia-tiny"]["path"] = "tiny-org/no-such-model"
    result = run_fetch(fake_hub, new_workdir(tmp_path / "workflow", config))
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: models.pythia-tiny: cannot fetch model pythia-tiny (tiny-org/no-such-model @ main)"
    )
    assert "Traceback" not in result.stderr and "Repository Not Found" in result.stderr
    assert not (tmp_path / "workflow" / "data" / "hub" / "models").exists()


# Planning without the hub.


def test_is_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local-model").mkdir()
    for hub_id in ("EleutherAI/pythia-6.9b", "meta-llama/Llama-2-7b-hf", "gpt2", "facebook/opt-6.7b"):
        assert hub.is_hub_id(hub_id), hub_id
    for path in (
        "local-model",
        str(tmp_path / "local-model"),
        "./model",
        "/data/models/x",
        "results/models/m/target",
        "a/../b",
        "~/model",
    ):
        assert not hub.is_hub_id(path), path


def test_missing_is_empty_without_hub_items(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"datasets": {"local": {"path": "rows.jsonl"}}, "models": {"local": {"path": str(tiny_model_dir)}}}
    assert hub.missing(config) == []


def test_missing_lists_every_hub_item_and_a_vanished_snapshot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {
        "datasets": {"wiki": {"hf": "a/wiki", "split": "test", "revision": "v2"}},
        "models": {
            "big": {"path": "org/big", "revision": "step1000"},
            "built": {"build": {"dataset": "demo", "base": "org/base"}},
        },
        "baselines": {"reference": "org/ref"},
        "attribution": {"experiments": {"tasks": {"model": {"path": "org/small", "revision": "v1"}}}},
    }
    expected = [
        "model big (org/big @ step1000)",
        "base model of built (org/base @ main)",
        "reference model (org/ref @ main)",
        "model of attribution experiment tasks (org/small @ v1)",
        "data set wiki (a/wiki, split test @ v2)",
    ]
    assert hub.missing(config) == expected
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    manifest = {
        "repo_id": "org/big",
        "revision": "step1000",
        "commit": "f" * 40,
        "path": str(snapshot),
        "fetched": "now",
    }
    hub.write_json(manifest, hub.model_manifest_path("org/big", "step1000"))
    assert hub.missing(config) == expected[1:]
    snapshot.rmdir()
    assert hub.missing(config) == expected


def test_model_source_before_the_fetch_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"models": {"pythia-6.9b": {"path": "EleutherAI/pythia-6.9b"}}}
    with pytest.raises(hub.HubError) as info:
        hub.model_source(config, "pythia-6.9b")
    message = str(info.value)
    assert "model pythia-6.9b (EleutherAI/pythia-6.9b @ main)" in message and hub.FETCH_COMMAND in message
    with pytest.raises(hub.HubError, match="neither a local directory nor a hub id"):
        hub.model_source({"models": {"gone": {"path": "/no/such/model"}}}, "gone")


def test_data_fetch_is_an_alias(monkeypatch):
    calls = []
    monkeypatch.setattr(hub, "main", calls.append)
    data.main(["fetch", "--configfile", "config.yaml"])
    assert calls == [["fetch", "--configfile", "config.yaml"]]


@pytest.mark.slow
def test_workflow_fetches_a_hub_model_once_and_jobs_load_it_offline(tmp_path, fake_hub, tiny_model_dir):
    """The fetch_model rule (on the submitting node) downloads the model; the job that runs it
    loads the snapshot with the hub out of reach."""
    root = Path(__file__).resolve().parent.parent
    texts = tmp_path / "texts.jsonl"
    texts.write_text(
        "".join(f'{{"text": "Candidate {i} went to town {i * 3}.", "label": {i % 2}}}\n' for i in range(10))
    )
    config = {
        "datasets": {"mine": {"path": str(texts)}},
        "models": {"tiny": {"path": MODEL_ID, "revision": "v1"}},
        "budgets": [1],
        "attacks": ["loss"],
    }
    workdir = new_workdir(tmp_path / "workflow", config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k not in hub.OFFLINE_VARIABLES}
    env.update(HF_ENDPOINT=fake_hub.endpoint, HF_HOME=str(workdir / "hf-home"), NO_PROXY="127.0.0.1")
    snakemake = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(root / "Snakefile"),
        "--configfile",
        "config.yaml",
        "--cores",
        "1",
    ]
    logprob = "results/baselines/mine/tiny/logprob.parquet"

    plan = subprocess.run([*snakemake, "-n", logprob], cwd=workdir, env=env, capture_output=True, text=True)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert re.search(r"fetch_model\s+1", plan.stdout), plan.stdout

    fetch = subprocess.run([*snakemake, "results/hub/tiny.json"], cwd=workdir, env=env, capture_output=True, text=True)
    assert fetch.returncode == 0, fetch.stdout[-3000:] + fetch.stderr[-3000:]
    record = json.loads((workdir / "results" / "hub" / "tiny.json").read_text())
    assert record["commit"] == MODEL_V1 and record["revision"] == "v1"

    # The hub is now out of reach: the job must load what was fetched.
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    run = subprocess.run([*snakemake, logprob], cwd=workdir, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert len(pd.read_parquet(workdir / logprob)) == 10
