"""Candidate texts: load, check, identify, split into jobs.

A data set is a table with columns `text_id`, `text`, `label` (1 = member).
It comes from a local JSONL/CSV/Parquet file, from the Hugging Face datasets
hub (name + split), or from a controlled split of a corpus (METHOD.md section 2).
Every text gets a stable id, a hash of the text, so that adding texts or
models never renames the work already done.
"""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd

from paramdelta import corpus as corpus_mod

COLUMNS = ["text_id", "text", "label"]


class DataError(ValueError):
    """A data set is unusable; the message names the file and the rows."""


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_id(text: str) -> str:
    """Stable id: the first 16 hex digits of the text's SHA-256."""
    return text_sha256(text)[:16]


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    # No type guessing: a text such as "2023" or "0012" must stay the string it is in the file.
    readers = {
        ".jsonl": lambda: pd.read_json(path, lines=True, dtype=False, encoding="utf-8", encoding_errors="strict"),
        ".json": lambda: pd.read_json(path, dtype=False, encoding="utf-8", encoding_errors="strict"),
        ".csv": lambda: pd.read_csv(path, keep_default_na=False, dtype=str, encoding="utf-8", encoding_errors="strict"),
        ".parquet": lambda: pd.read_parquet(path),
    }
    if suffix not in readers:
        raise DataError(f"data file {path}: unknown format '{suffix}' (use .jsonl, .csv or .parquet)")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty")
    try:
        table = readers[suffix]()
    except UnicodeDecodeError as error:
        raise DataError(f"data file {path} is not UTF-8 text (byte {error.start}: {error.reason})") from None
    except Exception as error:  # pandas and pyarrow raise many kinds; all mean the same here
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"data file {path} cannot be read as {suffix[1:]}: {reason}") from None
    if table.empty:
        raise DataError(f"data file {path} holds no rows")
    return table


TEXT_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")


def read_texts(path: str | Path, field: str = "text") -> list[str]:
    """The texts of a corpus file: the `field` column of a table (read_table's formats), or the
    non-empty lines of a .txt file."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.exists():
            raise DataError(f"text file {path} does not exist")
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise DataError(f"text file {path} holds no text")
        return texts
    table = read_table(path)
    if field not in table.columns:
        raise DataError(f"data file {path} has no field '{field}' (fields: {', '.join(map(str, table.columns))})")
    return [str(text) for text in table[field] if isinstance(text, str) and text.strip()]


HUB_CACHE = Path("data/hub")


def hub_cache_path(name: str, split: str, revision: str | None = None) -> Path:
    """Where a fetched hub split is kept, relative to the workflow directory."""
    return HUB_CACHE / name.replace("/", "__") / f"{split}{'@' + revision if revision else ''}.parquet"


def fetch_hub(name: str, split: str, revision: str | None = None) -> Path:
    """Download a split from the Hugging Face datasets hub into the project's cache (needs network).

    Kept for callers of the old name: paramdelta.hub.fetch_dataset does the work and records the commit.
    """
    from paramdelta import hub

    hub.fetch_dataset(name, split, revision)
    return hub_cache_path(name, split, revision)


def read_hub(name: str, split: str, revision: str | None = None) -> pd.DataFrame:
    """A hub split, read from the project's cache: planning a workflow never touches the network."""
    path = hub_cache_path(name, split, revision)
    if not path.exists():
        from paramdelta.hub import FETCH_COMMAND

        raise DataError(
            f"data set {name} (split {split}) has not been fetched ({path} is missing). "
            f"Run once, on a machine with network: {FETCH_COMMAND}"
        )
    return pd.read_parquet(path)


def _rows(mask: pd.Series) -> str:
    rows = [int(i) for i in mask[mask].index[:10]]
    more = "" if mask.sum() <= 10 else f" and {int(mask.sum()) - 10} more"
    return f"{rows}{more}"


def clean(raw: pd.DataFrame, text_field: str, label_field: str | None, source: str) -> pd.DataFrame:
    """Check the rows and return (text_id, text, label); rows are numbered from 0 as in the source."""
    for field in (text_field, label_field):
        if field is not None and field not in raw.columns:
            raise DataError(f"{source}: no field '{field}'; fields present: {list(raw.columns)}")
    raw = raw.reset_index(drop=True)
    texts = raw[text_field]
    not_text = texts.map(lambda t: not isinstance(t, str))
    if not_text.any():
        raise DataError(f"{source}: field '{text_field}' is not a string in rows {_rows(not_text)}")
    empty = texts.str.strip() == ""
    if empty.any():
        raise DataError(f"{source}: empty text in rows {_rows(empty)}")
    duplicated = texts.duplicated(keep=False)
    if duplicated.any():
        raise DataError(f"{source}: duplicate texts in rows {_rows(duplicated)}")
    if label_field is None:
        labels = pd.Series(-1, index=raw.index)
    else:
        labels = pd.to_numeric(raw[label_field], errors="coerce")
        bad = ~labels.isin([0, 1])
        if bad.any():
            raise DataError(f"{source}: field '{label_field}' must be 0 or 1 (1 = member); rows {_rows(bad)} are not")
    table = pd.DataFrame({"text_id": texts.map(text_id), "text": texts, "label": labels.astype("int8")})
    return table


def controlled_split(
    documents: list[str], candidates: int, member_fraction: float, seed: int
) -> tuple[pd.DataFrame, list[str]]:
    """Split a corpus at random into candidates (members + non-members) and background documents.

    Members and non-members come from one distribution, so membership is the only
    difference between them. Returns (candidate table, background documents).
    """
    if candidates > len(documents):
        raise DataError(
            f"controlled split: {candidates} candidates requested but the corpus has {len(documents)} documents"
        )
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    chosen, background = order[:candidates], order[candidates:]
    n_members = round(candidates * member_fraction)
    labels = [1] * n_members + [0] * (candidates - n_members)
    raw = pd.DataFrame({"text": [documents[i] for i in chosen], "label": labels})
    return clean(raw, "text", "label", "controlled split"), [documents[i] for i in background]


def corpus_documents(spec: dict) -> list[str]:
    """Documents of a controlled data set's corpus: generated, or the text field of a file."""
    if "generator" in spec:
        return corpus_mod.generate_corpus(spec["n_documents"], spec["seed"])
    return clean(read_table(spec["path"]), spec["text"], None, spec["path"])["text"].tolist()


def member_files(spec: dict, name: str) -> pd.DataFrame:
    """A MIMIR-style pair of files: every text of `members` labelled 1, of `nonmembers` 0.

    Each file is checked as a data file of its own (rows numbered in it); a text in both is
    an error that names both files.
    """
    parts = []
    for key, label in (("members", 1), ("nonmembers", 0)):
        path = spec[key]
        raw = read_table(path)
        part = clean(raw, spec["text"], None, f"data set '{name}', {key} file {path}")
        parts.append(part.assign(label=label))
    members, nonmembers = parts
    both = members["text_id"].isin(nonmembers["text_id"])
    if both.any():
        rows = _rows(both)
        raise DataError(
            f"data set '{name}': texts of {spec['members']} (rows {rows}) are also in {spec['nonmembers']}; "
            "a text is a member or a non-member, not both"
        )
    return pd.concat(parts, ignore_index=True).astype({"label": "int8"})


def load(spec: dict, name: str = "dataset") -> pd.DataFrame:
    """The candidate table of one configured data set (columns text_id, text, label)."""
    if "controlled" in spec:
        controlled = spec["controlled"]
        source = f"data set '{name}' (controlled split)"
        table, _ = controlled_split(
            corpus_documents(controlled["corpus"]), controlled["candidates"], controlled["members"], controlled["seed"]
        )
    elif "path" in spec:
        source = f"data set '{name}' ({spec['path']})"
        table = clean(read_table(spec["path"]), spec["text"], spec["label"], source)
    elif "members" in spec:
        source = f"data set '{name}' ({spec['members']} and {spec['nonmembers']})"
        table = member_files(spec, name)
    else:
        source = f"data set '{name}' ({spec['hf']}, split {spec['split']})"
        raw = read_hub(spec["hf"], spec["split"], spec.get("revision"))
        table = clean(raw, spec["text"], spec["label"], source)
    if spec.get("limit"):
        table = table.iloc[: spec["limit"]]
    if table["label"].nunique() < 2:
        found = sorted(int(label) for label in table["label"].unique())
        raise DataError(
            f"{source}: needs both members (1) and non-members (0); found only {found} in {len(table)} rows"
        )
    return table.reset_index(drop=True)


def digest(table: pd.DataFrame) -> str:
    """A short hash of a candidate table's ids and labels (ids are hashes of the texts).

    Taken over the rows sorted by id: it changes exactly when a text or a label
    changes, not when the same rows come in another order.
    """
    pairs = sorted(zip(table["text_id"], (int(label) for label in table["label"])))
    joined = "\n".join(f"{t}:{label}" for t, label in pairs)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _cut(run: list[str], texts_per_job: int, level: int) -> list[list[str]]:
    """Cut a run of ids in id order before every id whose hash falls in this level's bucket.

    Level 0 cuts the whole sorted list; each further level looks at other bits of the ids and
    cuts only the pieces longer than twice `texts_per_job`. A cut depends on the id alone,
    never on its position.
    """
    if level > 0 and len(run) <= 2 * texts_per_job:
        return [run]
    bits = 4 * len(run[0])
    if level * 16 >= bits:  # out of hash bits (never in practice): equal pieces
        pieces = math.ceil(len(run) / (2 * texts_per_job))
        return [list(piece) for piece in np.array_split(np.asarray(run, dtype=object), pieces)]
    pieces: list[list[str]] = []
    for tid in run:
        if not pieces or (int(tid, 16) >> (16 * level)) % texts_per_job == 0:
            pieces.append([])
        pieces[-1].append(tid)
    return [part for piece in pieces for part in _cut(piece, texts_per_job, level + 1)]


def shards(text_ids: list[str], texts_per_job: int) -> dict[str, list[str]]:
    """Pack texts into jobs whose contents do not move when texts are added or removed.

    Texts are taken in id order, and a shard starts at every text whose id (a hash) falls
    in a 1-in-`texts_per_job` bucket: the boundaries depend on each text alone, not on its
    position, so adding a text changes only the shard it lands in (or splits that one in
    two) and every other job keeps its texts and is not rerun. Shards hold about
    `texts_per_job` texts; one that would hold more than twice that is cut again at
    boundaries taken from other bits of the ids (so a text that pushes a shard past that
    size reshapes that one shard's pieces, nothing else). A shard is named after its first
    text and a digest of all its texts; with one text per job the shard is the text id.
    """
    ordered = sorted(text_ids)
    if texts_per_job == 1:
        return {tid: [tid] for tid in ordered}
    # The name carries a digest of the shard's texts: a shard whose texts change is a new
    # output, which Snakemake plans for certain (a params change alone is not checked for a
    # job whose data set table is regenerated in the same run).
    return {
        f"s{piece[0]}{hashlib.sha256(' '.join(piece).encode()).hexdigest()[:8]}": piece
        for piece in _cut(ordered, texts_per_job, 0)
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m paramdelta.data fetch --configfile CONFIG`: the old name of `python -m paramdelta.hub fetch`."""
    from paramdelta import hub

    hub.main(argv)


if __name__ == "__main__":
    main()
