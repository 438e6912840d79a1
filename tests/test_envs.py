"""The software environments: conda files that stand alone, with the same pins as pip's, and
the workflow's own package installed in each."""

import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ENVS = ROOT / "envs"
RULES = ROOT / "rules"
DEVELOPMENT_TOOLS = {"snakemake", "snakemake-executor-plugin-slurm", "pytest", "playwright", "ruff", "snakefmt"}


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
        assert not packages & DEVELOPMENT_TOOLS
    assert "deepspeed" not in {line.split("==")[0] for line in pins(ENVS / "report.txt")}


def test_every_rule_names_an_environment_that_exists():
    for rules in RULES.glob("*.smk"):
        for name in re.findall(r'"\.\./envs/([\w.-]+)"', rules.read_text()):
            assert (ENVS / name).exists(), (rules.name, name)


def test_the_development_requirements_include_both_environments():
    lines = pins(ENVS / "requirements.txt")
    assert "-r train.txt" in lines and "-r report.txt" in lines
    assert {line.split("==")[0].lower() for line in lines if "==" in line} == DEVELOPMENT_TOOLS


def test_report_rules_import_nothing_outside_the_report_environment():
    """The modules behind scores, metrics, baseline_scores and report load with the packages
    only the train environment has blocked."""
    blocked = ["transformers", "deepspeed", "datasets", "huggingface_hub", "tokenizers"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import paramdelta.job, paramdelta.features, paramdelta.metrics, paramdelta.report, paramdelta.atomic\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ENVS.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_environment_installs_the_package_after_snakemake_creates_it():
    """Snakemake runs envs/<name>.post-deploy.sh in an environment it has just created from
    envs/<name>.yaml; the scripts are one script, and the environments have what it builds with."""
    used = {
        name for rules in RULES.glob("*.smk") for name in re.findall(r'"\.\./envs/([\w.-]+)\.yaml"', rules.read_text())
    }
    assert used == {"train", "report"}
    for name in used:
        assert (ENVS / f"{name}.post-deploy.sh").read_text() == (ENVS / "train.post-deploy.sh").read_text()
        conda = yaml.safe_load((ENVS / f"{name}.yaml").read_text())["dependencies"]
        assert "pip" in conda and "setuptools>=68" in conda
    assert "os.environ.update(PARAMDELTA_SOURCE=workflow.basedir)" in (RULES / "common.smk").read_text()


def test_the_post_deploy_script_installs_the_checkout_editable(tmp_path):
    """What Snakemake does after creating an environment, without conda: the script runs with
    the new environment's python first on PATH and PARAMDELTA_SOURCE set by the workflow; the
    package then imports from the checkout (the environment has no other paramdelta)."""
    environment = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)
    python = environment / "bin" / "python"
    # pip and setuptools, which the conda environment lists, from this interpreter's site-packages:
    # a path in a .pth file, so its own .pth files (this checkout's editable install) are not read.
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True
    ).stdout.strip()
    Path(purelib, "tools.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    where = [python, "-c", "import paramdelta; print(paramdelta.__file__)"]
    assert subprocess.run(where, cwd=tmp_path, capture_output=True).returncode != 0

    env = {**os.environ, "PATH": f"{environment / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PARAMDELTA_SOURCE", None)
    unset = subprocess.run(["bash", ENVS / "train.post-deploy.sh"], env=env, capture_output=True, text=True)
    assert unset.returncode != 0 and "PARAMDELTA_SOURCE" in unset.stderr
    env["PARAMDELTA_SOURCE"] = str(ROOT)
    deployed = subprocess.run(["bash", ENVS / "train.post-deploy.sh"], env=env, capture_output=True, text=True)
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
    imported = subprocess.run(where, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(imported) == ROOT / "paramdelta" / "__init__.py"


def test_an_installed_copy_of_the_package_has_the_files_it_reads(tmp_path):
    """`pip install .` (no checkout beside it): every subpackage, the config schema whose
    defaults the modules read, and the report's templates are in the wheel."""
    source = tmp_path / "source"
    # As it is in the checkout: paramdelta/schema.yaml a link to config/schema.yaml.
    shutil.copytree(
        ROOT / "paramdelta", source / "paramdelta", symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "config", source / "config")
    shutil.copy(ROOT / "pyproject.toml", source)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, source],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = tmp_path.glob("paramdelta-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("paramdelta/schema.yaml") == (ROOT / "config" / "schema.yaml").read_bytes()
    package = ROOT / "paramdelta"
    expected = {
        path.relative_to(ROOT).as_posix()
        for path in [*package.rglob("*.py"), *package.glob("report/templates/**/*")]
        if "__pycache__" not in path.parts and path.is_file()
    }
    assert expected <= names, sorted(expected - names)


def test_the_workflow_plans_without_torch_or_transformers():
    """Every `snakemake` call, and on a cluster every job, parses the Snakefile: the package
    modules it imports (rules/common.smk) load without torch and transformers (5 s a parse)."""
    imports = re.findall(r"^\s*(from paramdelta[\w.]* import [\w, ]+)$", (RULES / "common.smk").read_text(), re.M)
    assert imports
    code = "\n".join(["import sys", *imports, "print(sorted({'torch', 'transformers'} & set(sys.modules)))"])
    result = subprocess.run([sys.executable, "-c", code], cwd=ENVS.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
