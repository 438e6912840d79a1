"""One training job: continual pre-training of one model on each text of a shard, from the
exact base weights every time, and one snapshot store holding what each text did.

The job is paramdelta.train_job; this script turns the rule into its spec and runs it in
this process, or, when the job has several GPUs, as one DeepSpeed process per GPU.
"""

from paramdelta import train, train_job
from paramdelta.job import setup

log = setup(snakemake)
params = snakemake.params
gpus = int(snakemake.resources.get("gpu", 0) or 0)
engine = params.engine
spec = {
    "texts": list(params.texts),
    "dataset_table": str(snakemake.input.dataset),
    "model_path": params.model["path"],
    "revision": params.model["revision"],
    "engine": engine,
    "train": dict(params.train),
    "deepspeed_config": str(snakemake.input.deepspeed) if engine == "deepspeed" else None,
    "zero_stage": params.model.get("zero_stage"),
    "policy": params.snapshots["store"],
    "snapshot_dtype": params.snapshots["dtype"],
    "trajectory": params.snapshots.get("trajectory", False),
    "ks": list(params.ks),
    "model": snakemake.wildcards.model,
    "dataset": snakemake.wildcards.dataset,
    "budget": snakemake.wildcards.budget,
    "output": str(snakemake.output[0]),
    "threads": snakemake.threads,
    "device": train.job_device(params.train["device"], gpus),
}
train_job.launch(spec, max(1, gpus), log_path=snakemake.log[0] if snakemake.log else None)
