# Parameter-change membership inference: was this text in the model's training data?
# Each stage is one file under rules/; its logic lives in the paramdelta package.

from snakemake.utils import min_version

min_version("9.0")


# No default config file: a config given with --configfile stands alone, never merged into
# another. The demo is `--configfile config/demo.yaml` (what `make demo` runs).
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/target.smk"
include: "rules/train.smk"
include: "rules/deltas.smk"
include: "rules/features.smk"
include: "rules/baselines.smk"
include: "rules/metrics.smk"
include: "rules/attribution.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        attribution_outputs(),
