"""Every attribution rule's job (rules/attribution.smk): the rule's name picks the function of
paramdelta.attribution.jobs, which holds the logic."""

import torch

from paramdelta.attribution import jobs
from paramdelta.job import setup

log = setup(snakemake)
torch.set_num_threads(max(1, snakemake.threads))
rule, inputs, output, params, wildcards = (
    snakemake.rule,
    snakemake.input,
    snakemake.output,
    snakemake.params,
    snakemake.wildcards,
)

if rule == "attribution_sets":
    jobs.draw_sets(params.experiment, int(wildcards.seed), output.sets, output.tokenizer)
elif rule == "attribution_model":
    jobs.train_mix(
        params.experiment,
        int(wildcards.seed),
        inputs.sets,
        inputs.tokenizer,
        output.model,
        output.checkpoints,
        output.losses,
    )
elif rule == "attribution_leave_out":
    jobs.leave_out(
        params.experiment, int(wildcards.seed), wildcards.training, inputs.sets, inputs.tokenizer, output.losses
    )
elif rule in ("attribution_untrac", "attribution_untrac_inv"):
    jobs.unlearning(
        "untrac" if rule == "attribution_untrac" else "untrac-inv",
        params.experiment,
        int(wildcards.seed),
        wildcards.training if rule == "attribution_untrac" else wildcards.evaluation,
        params.section,
        params.variant,
        inputs.model,
        inputs.sets,
        output[0],
    )
elif rule == "attribution_gradients":
    jobs.gradient_methods(
        params.experiment,
        params.methods,
        params.lissa,
        params.arnoldi,
        inputs.model,
        inputs.checkpoints,
        inputs.sets,
        output[0],
    )
elif rule == "attribution_summary":
    jobs.summarise(params.attribution, params.root, output.influence, output.correlation)
else:
    raise ValueError(f"workflow_scripts/attribution.py has no job for rule {rule!r}")
