"""A job's own log file: what a user reads first when a cluster job fails."""

import subprocess
import sys
import textwrap
from pathlib import Path

from paramdelta import job

SCRIPTS = Path(__file__).resolve().parent.parent / "workflow_scripts"


def test_an_uncaught_error_lands_in_the_rules_log_with_its_traceback(tmp_path):
    log = tmp_path / "logs" / "train.log"
    log.parent.mkdir()
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(f"""
        import types
        from paramdelta.job import setup

        snakemake = types.SimpleNamespace(log=[{str(log)!r}], rule="train")
        log = setup(snakemake)
        log.info("loading the model")

        def load():
            raise ValueError("the model directory has no config.json")

        load()
    """)
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode != 0
    text = log.read_text()
    assert "loading the model" in text
    assert "Traceback" in text and "in load" in text and "ValueError: the model directory has no config.json" in text
    assert "ValueError: the model directory has no config.json" in result.stderr  # still on stderr (the SLURM log)


def test_jobs_run_offline(tmp_path):
    log = tmp_path / "job.log"
    code = textwrap.dedent(f"""
        import os, types
        from paramdelta.job import setup
        setup(types.SimpleNamespace(log=[{str(log)!r}], rule="train"))
        print(os.environ.get("HF_HUB_OFFLINE"), os.environ.get("HF_DATASETS_OFFLINE"))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["1", "1"]


def test_the_scripts_import_the_package_like_any_library():
    for script in SCRIPTS.glob("*.py"):
        text = script.read_text()
        assert "from paramdelta.job import setup" in text, script.name
        assert "sys.path" not in text, script.name


def test_a_job_warns_when_its_package_is_not_the_workflows_checkout(tmp_path):
    assert job.foreign_package(str(SCRIPTS)) is None  # the checkout's own, editable
    assert job.foreign_package(None) is None
    (tmp_path / "workflow_scripts").mkdir()
    assert job.foreign_package(str(tmp_path / "workflow_scripts")) is None  # a workflow without the package
    (tmp_path / "paramdelta").mkdir()
    warning = job.foreign_package(str(tmp_path / "workflow_scripts"))
    assert warning and str(job.PACKAGE) in warning and f"pip install --no-deps -e {tmp_path}" in warning
