"""What the workflow needs of the attribution experiments to plan their jobs: method names and
unlearning variants. No torch or transformers here: the Snakefile imports this at every
`snakemake` call, and on a cluster every job parses the Snakefile again."""

from __future__ import annotations

# The gradient-based methods paramdelta.attribution.compare computes (dattri and plain autograd).
GRADIENT_METHODS = ("graddot", "gradcos", "tracin", "hif-lissa", "hif-arnoldi")


def variant_name(optimizer: str, lr: float) -> str:
    """The path component of one unlearning setting, e.g. ``adam-lr5e-05``."""
    return f"{optimizer}-lr{lr:g}"


def variants(attribution: dict, experiment: dict) -> dict[str, dict]:
    """Every unlearning setting an experiment runs: the configured one ("default") and its
    sensitivity sweep's (table 4), each ``{"optimizer", "lr", "variant"}`` (None: as configured),
    keyed by path name."""
    base, sweep = attribution["untrac"], experiment["sensitivity"]
    out = {variant_name(base["optimizer"], base["lr"]): {"optimizer": None, "lr": None, "variant": "default"}}
    for optimizer in sweep["optimizers"]:
        out.setdefault(
            variant_name(optimizer, base["lr"]), {"optimizer": optimizer, "lr": None, "variant": "optimizer"}
        )
    for lr in sweep["lrs"]:
        out.setdefault(variant_name(base["optimizer"], lr), {"optimizer": None, "lr": lr, "variant": "lr"})
    return out
