"""The software environments: conda files that stand alone, with the same pins as pip's."""

import re
from pathlib import Path

import pytest
import yaml

ENVS = Path(__file__).resolve().parent.parent / "envs"
RULES = Path(__file__).resolve().parent.parent / "rules"


def pins(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("name", ["train", "report"])
def test_conda_environment_is_self_contained_with_the_pip_pins(name):
    environment = yaml.safe_load((ENVS / f"{name}.yaml").read_text())
    (pip,) = [entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)]
    assert not [line for line in pip if line.startswith("-")], "a file reference does not resolve where conda builds"
    assert pip == pins(ENVS / f"{name}.txt")
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", line) for line in pip), pip
    assert "torch==2.13.0" in pip


def test_the_runtime_environments_leave_out_the_test_and_workflow_tools():
    for name in ("train", "report"):
        packages = {line.split("==")[0].lower() for line in pins(ENVS / f"{name}.txt")}
        assert not packages & {"snakemake", "pytest", "playwright", "snakemake-executor-plugin-slurm"}
    assert "deepspeed" not in {line.split("==")[0] for line in pins(ENVS / "report.txt")}


def test_every_rule_names_an_environment_that_exists():
    for rules in RULES.glob("*.smk"):
        for name in re.findall(r'"\.\./envs/([\w.-]+)"', rules.read_text()):
            assert (ENVS / name).exists(), (rules.name, name)


def test_the_development_requirements_include_both_environments():
    lines = pins(ENVS / "requirements.txt")
    assert "-r train.txt" in lines and "-r report.txt" in lines


def test_report_rules_import_nothing_outside_the_report_environment():
    """The modules behind scores, metrics, baseline_scores and report load with the packages
    only the train environment has blocked."""
    import subprocess
    import sys

    blocked = ["transformers", "deepspeed", "datasets", "huggingface_hub", "tokenizers"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "sys.path.insert(0, 'workflow_scripts')\n"
        "import _common, paramdelta.features, paramdelta.metrics, paramdelta.report, paramdelta.atomic\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ENVS.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
