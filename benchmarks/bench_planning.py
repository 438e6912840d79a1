"""Planning time of the cluster experiment: `snakemake -n --profile slurm` (issue 8, P4).

What it measures: the wall and CPU time of one dry run of the thesis's cluster config
(config/wikimia.yaml: 4 models x 5 budgets) on a WikiMIA-32-sized data set, with
one training job per (model, text, budget) -- `texts_per_job: 1`, 4 x 776 x 5 =
15,520 training jobs -- against the goal of 60 s on 2 cores. Beside it, a
baseline column: the same dry run with the config's own `texts_per_job` (100), so
that the planning cost per job is visible.

How: as tests/test_workflow.py::test_cluster_config_plans_with_slurm_profile
does, a temporary work directory gets a copy of the SLURM profile (slurm/) and
the cached WikiMIA split that `python -m paramdelta.hub fetch` would leave
(`data.hub_cache_path("swj0419/WikiMIA", "WikiMIA_length32")`), here N synthetic
texts of about 32 words with alternating labels; a copy of config/wikimia.yaml
with `texts_per_job` overridden is written beside it. Then

    snakemake --snakefile Snakefile --directory WORKDIR --configfile WORKDIR/P4.yaml --profile slurm -n

runs in that directory, once per column (baseline.yaml, P4.yaml). A dry run downloads nothing and contacts no
SLURM. The printed table has the planned jobs by rule (from the "Job stats"
table of the dry run), the wall and CPU seconds of the dry run, and the goal.
Snakemake plans on one core, so on a machine shared with other work the CPU
seconds (user + system of the snakemake process) are close to what the wall time
would be on an idle one; the load average is printed with the table.

    .venv/bin/python benchmarks/bench_planning.py [--texts 776] [--texts-per-job 1] [--keep]

`--keep` keeps the temporary directory (each dry run's stdout and stderr are in it).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from _machine import cpu_model

from paramdelta import data

ROOT = Path(__file__).resolve().parent.parent

CONFIG = ROOT / "config" / "wikimia.yaml"
GOAL_S = 60.0
WORDS = (
    "the council city river museum war king album film station team season church school province "
    "island company village bridge election novel composer painter railway festival treaty party "
    "river mountain league championship region army ship century district"
).split()


def machine() -> str:
    """CPU count and model, as this script reports them."""
    return f"{os.cpu_count()} CPUs, {cpu_model()}, {platform.machine()}, Python {platform.python_version()}"


def synthetic_texts(n: int, seed: int = 0) -> pd.DataFrame:
    """N distinct texts of about 32 words in WikiMIA's format (input, label), labels alternating."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(30 + rng.randrange(5))]
        rows.append({"input": f"Text {i}: " + " ".join(words) + ".", "label": i % 2})
    return pd.DataFrame(rows)


def make_workdir(root: Path, texts: int) -> None:
    """The profile and the fetched split, as the fetch step leaves them."""
    shutil.copytree(ROOT / "slurm", root / "slurm")
    cache = root / data.hub_cache_path("swj0419/WikiMIA", "WikiMIA_length32")
    cache.parent.mkdir(parents=True)
    synthetic_texts(texts).to_parquet(cache)


def write_config(path: Path, texts_per_job: int | None) -> int:
    """config/wikimia.yaml with texts_per_job overridden (None: the config's own); returns it."""
    config = yaml.safe_load(CONFIG.read_text())
    if texts_per_job is not None:
        config["texts_per_job"] = texts_per_job
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config["texts_per_job"]


def job_stats(stdout: str) -> dict[str, int]:
    """Job counts per rule from a dry run's 'Job stats' table (total included)."""
    counts, in_table = {}, False
    for line in stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
            elif parts and not set(line.strip()) <= {"-", " "}:
                break
    return counts


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run(workdir: Path, texts_per_job: int | None, name: str) -> dict:
    """One `snakemake -n --profile slurm` with the config's texts_per_job overridden (None: kept)."""
    config = workdir / f"{name}.yaml"
    texts_per_job = write_config(config, texts_per_job)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--profile",
        "slurm",
        "-n",
    ]
    stdout, stderr = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        start, cpu_start = time.perf_counter(), children_cpu()
        result = subprocess.run(command, stdout=out, stderr=err, cwd=workdir)
        seconds, cpu = time.perf_counter() - start, children_cpu() - cpu_start
    if result.returncode != 0:
        sys.exit(f"dry run failed ({' '.join(command)}):\n{stderr.read_text()[-3000:]}")
    return {
        "name": name,
        "texts_per_job": texts_per_job,
        "wall": seconds,
        "cpu": cpu,
        "jobs": job_stats(stdout.read_text()),
    }


def table(runs: list[dict], texts: int) -> str:
    """The printed comparison, one column per dry run (keys: name, texts_per_job, wall, cpu, jobs)."""
    rules = sorted({rule for run in runs for rule in run["jobs"] if rule != "total"})

    def goal(run: dict, seconds: float) -> str:
        return "-" if run["name"] == "baseline" else ("yes" if seconds <= GOAL_S else "NO")

    rows = [
        ("texts", lambda run: f"{texts}"),
        ("texts_per_job", lambda run: f"{run['texts_per_job']}"),
        *((f"jobs: {rule}", lambda run, rule=rule: f"{run['jobs'].get(rule, 0):,}") for rule in rules),
        ("jobs: total", lambda run: f"{run['jobs']['total']:,}"),
        ("dry run wall (s)", lambda run: f"{run['wall']:.1f}"),
        ("dry run CPU (s)", lambda run: f"{run['cpu']:.1f}"),
        ("CPU ms per planned job", lambda run: f"{1000 * run['cpu'] / run['jobs']['total']:.2f}"),
        ("goal (s)", lambda run: "-" if run["name"] == "baseline" else f"<= {GOAL_S:.0f}"),
        ("goal met (wall)", lambda run: goal(run, run["wall"])),
        ("goal met (CPU)", lambda run: goal(run, run["cpu"])),
    ]
    lines = [["", *(run["name"] for run in runs)], *([label, *map(cell, runs)] for label, cell in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def render(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    return "\n".join([render(lines[0]), "  ".join("-" * w for w in widths), *map(render, lines[1:])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=776, help="texts in the data set (WikiMIA-32 has 776)")
    parser.add_argument("--texts-per-job", type=int, default=1, help="texts_per_job of the measured run (P4: 1)")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the baseline run with the config's texts_per_job"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench_planning_"))
    try:
        make_workdir(workdir, args.texts)
        runs = [] if args.no_baseline else [dry_run(workdir, None, "baseline")]
        runs.append(dry_run(workdir, args.texts_per_job, "P4"))
        print(f"machine: {machine()}")
        print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"snakemake -n --profile slurm, config/wikimia.yaml (4 models x 5 budgets), {args.texts} synthetic texts\n"
        )
        print(table(runs, args.texts))
    finally:
        if args.keep:
            print(f"\nwork directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
