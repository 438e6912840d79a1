"""The UnTrac paper's published numbers (seeds/003, METHOD.md section 4), shown beside this run's
tables so that a reader compares their shape; its models and data are not this run's.
"""

from __future__ import annotations

from paramdelta.report.attribution.data import METHODS, PLUS_MINUS, TRUTH, method_label
from paramdelta.report.tables import Cell, Table, header

# Table 2: Pearson r with leave-one-out, mean ± std over 4 runs; OPT-125M pre-trained on eight
# corpora, first of equal size (40,000 examples each), then of unequal size (16,000 to 96,000).
TABLE_2_MODEL = "OPT-125M pre-trained on 8 real corpora"
TABLE_2_EVALUATIONS = ("ToxiGen", "WinoBias", "TruthfulQA")
TABLE_2 = {
    "graddot": ((-0.123, 0.008), (0.418, 0.018), (0.156, 0.022), (-0.250, 0.007), (0.446, 0.015), (-0.524, 0.003)),
    "gradcos": ((-0.050, 0.008), (0.524, 0.014), (0.447, 0.015), (-0.337, 0.007), (0.496, 0.012), (-0.401, 0.004)),
    "hif-arnoldi": ((-0.068, 0.023), (0.559, 0.010), (0.250, 0.024), (-0.343, 0.005), (0.584, 0.014), (-0.362, 0.006)),
    "hif-lissa": ((-0.040, 0.328), (0.389, 0.117), (-0.178, 0.173), (0.071, 0.091), (-0.092, 0.042), (-0.098, 0.058)),
    "tracin": ((0.207, 0.010), (0.082, 0.013), (0.591, 0.014), (-0.187, 0.005), (0.183, 0.019), (0.081, 0.010)),
    "untrac": ((0.419, 0.063), (0.743, 0.086), (0.314, 0.223), (0.403, 0.033), (0.518, 0.122), (0.246, 0.082)),
    "untrac-inv": ((0.372, 0.008), (0.813, 0.012), (0.582, 0.016), (0.393, 0.037), (0.275, 0.125), (0.360, 0.017)),
}  # fmt: skip

# Table 3: influence standardised across the four training tasks, mean over runs; T5 (3B)
# fine-tuned on the tasks of its table 1 (256 examples each), the evaluation task beside them.
TABLE_3_MODEL = "T5 (3B) fine-tuned on four synthetic tasks"
TABLE_3_TRAININGS = (
    "1: similar task, same format",
    "2: similar task, other format",
    "3: dissimilar task, same format",
    "4: dissimilar task, other format",
)
TABLE_3 = {
    "graddot": (0.864, -0.107, 0.836, -1.594),
    "gradcos": (1.456, -0.508, 0.291, -1.240),
    "hif-lissa": (-1.294, 1.517, -0.111, -0.111),
    "tracin": (-0.331, 1.690, -0.443, -0.916),
    "untrac": (1.330, 0.600, -0.913, -1.018),
    "untrac-inv": (1.688, -0.212, -0.651, -0.826),
    TRUTH: (1.416, 0.462, -1.031, -0.847),
}

# Table 4: r of UnTrac and UnTrac-Inv as one hyperparameter changes from the default (Adam,
# learning rate 5e-5); OPT-125M, equal-size training sets, evaluation set ToxiGen.
TABLE_4_MODEL = "OPT-125M, equal-size training sets, evaluated on ToxiGen"
TABLE_4_OPTIMIZERS = ("SGD", "SGD w/ momentum", "RMSProp", "Adam", "Adafactor")
TABLE_4_LRS = ("5e-06", "1e-05", "5e-05", "1e-04", "5e-04")
TABLE_4 = {
    "untrac": (
        (-0.147, 0.014), (-0.239, 0.011), (0.418, 0.063), (0.419, 0.063), (0.345, 0.179),
        (-0.127, 0.302), (0.312, 0.311), (0.419, 0.063), (0.377, 0.040), (0.329, 0.015),
    ),
    "untrac-inv": (
        (-0.100, 0.069), (-0.099, 0.070), (-0.231, 0.012), (0.376, 0.008), (0.313, 0.003),
        (0.100, 0.084), (0.197, 0.067), (0.376, 0.008), (0.137, 0.019), (0.027, 0.015),
    ),
}  # fmt: skip


def _published(mean: float, std: float) -> str:
    return f"{mean:.3f}{PLUS_MINUS}{std:.3f}"


def table_2() -> Table:
    head = [
        [Cell("method", header=True, rowspan=2), Cell("equal sizes", header=True, colspan=3),
         Cell("unequal sizes", header=True, colspan=3)],
        header(TABLE_2_EVALUATIONS * 2),
    ]  # fmt: skip
    body = [[Cell(method_label(method), label=True), *(Cell(_published(*value)) for value in TABLE_2[method])]
            for method in METHODS]  # fmt: skip
    return Table(head, body)


def table_3() -> Table:
    rows = [method for method in METHODS if method in TABLE_3] + [TRUTH]
    body = [[Cell(method_label(method), label=True), *(Cell(f"{value:.3f}") for value in TABLE_3[method])]
            for method in rows]  # fmt: skip
    return Table([header(["method", *TABLE_3_TRAININGS])], body)


def table_4() -> Table:
    head = [
        [Cell("method", header=True, rowspan=2), Cell("optimizer", header=True, colspan=len(TABLE_4_OPTIMIZERS)),
         Cell("learning rate", header=True, colspan=len(TABLE_4_LRS))],
        header(TABLE_4_OPTIMIZERS + TABLE_4_LRS),
    ]  # fmt: skip
    body = [[Cell(method_label(method), label=True), *(Cell(_published(*value)) for value in values)]
            for method, values in TABLE_4.items()]  # fmt: skip
    return Table(head, body)
