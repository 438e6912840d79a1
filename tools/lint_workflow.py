"""`snakemake --lint` of the workflow with each config given; exits non-zero on any lint.

    .venv/bin/python tools/lint_workflow.py config/demo.yaml config/wikimia.yaml

The workflow reads every candidate table while Snakemake parses it (rules/common.smk fans
the jobs out by text), so a config that attacks a hub data set parses only once the split is
fetched (`python -m paramdelta.hub fetch`), which needs the network and, for WikiMIA, is done
on the cluster. Each config is linted in a temporary working directory where every hub split
it names is a stand-in of a few rows, with the split's fields, where the fetch leaves it.
The lints are about the rules and the workflow's files, which do not depend on the texts,
and the workflow parses exactly as it does after a fetch: it has no switch for linting that
could hide a check or a rule. A hub base model or reference model (fetched beforehand too)
has no stand-in: the lint then stops with the workflow's own message.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from paramdelta import config as config_checks
from paramdelta import data

ROOT = Path(__file__).resolve().parent.parent
STAND_IN_ROWS = 20  # members and non-members alike: enough for every check of a data set


def stand_in_splits(config: dict, workdir: Path) -> list[str]:
    """Write a stand-in for each hub split the config names; returns what was stood in for."""
    try:
        completed = config_checks.validate(config)
    except config_checks.ConfigError:
        return []  # the workflow names the field when it parses the config
    written = []
    for name, spec in completed["datasets"].items():
        if "hf" not in spec:
            continue
        path = workdir / data.hub_cache_path(spec["hf"], spec["split"], spec.get("revision"))
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {spec["text"]: f"Stand-in text number {i} of the split.", spec["label"]: i % 2}
            for i in range(STAND_IN_ROWS)
        ]
        pd.DataFrame(rows).to_parquet(path)
        written.append(f"{name} ({spec['hf']}, split {spec['split']})")
    return written


def lint(name: str) -> bool:
    """Whether `snakemake --lint` with this config found nothing (and the workflow parsed)."""
    configfile = Path(name).resolve()
    config = yaml.safe_load(configfile.read_text()) or {}
    with tempfile.TemporaryDirectory(prefix="lint-") as workdir:
        stood_in = stand_in_splits(config, Path(workdir))
        if stood_in:
            print(f"{name}: stand-in rows for {', '.join(stood_in)}")
        command = [
            *(sys.executable, "-m", "snakemake", "--lint"),
            *("--snakefile", str(ROOT / "Snakefile"), "--directory", workdir, "--configfile", str(configfile)),
        ]
        result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        print(f"{name}: snakemake --lint failed (exit code {result.returncode}):\n{output}")
        return False
    print(f"{name}: no lints")
    return True


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    results = [lint(name) for name in argv]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
