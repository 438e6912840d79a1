"""The blind baseline: a bag-of-words classifier on the texts alone, out-of-fold scores."""

import numpy as np
import pandas as pd

from paramdelta import attacks
from paramdelta.atomic import write_parquet
from paramdelta.job import setup

log = setup(snakemake)
table = pd.read_parquet(snakemake.input[0])
blind = snakemake.params.blind
scores = attacks.blind_scores(
    table["text"].tolist(), table["label"].tolist(), n_folds=blind["folds"], seed=blind["seed"]
)
result = pd.DataFrame({"text_id": table["text_id"], "method": "blind", "k": np.nan, "score": scores})
write_parquet(result, snakemake.output[0])
log.info("blind baseline: %d texts, %d folds", len(table), blind["folds"])
