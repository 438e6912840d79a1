"""Tests of the candidate tables: loading, checks, ids, controlled splits, hub cache, shards, digest."""

import hashlib
import json
import random
import re

import pandas as pd
import pytest

from paramdelta import corpus, data

# Rows in exactly the WikiMIA format: the text in `input`, `label` 1 = member (seen in training).
WIKIMIA_ROWS = [
    {"input": "The 2023 Turkey-Syria earthquake struck southern and central Turkey on 6 February 2023.", "label": 0},
    {
        "input": "Barack Obama is an American politician who served as the 44th president of the United States.",
        "label": 1,
    },
    {"input": "The 2023 Cricket World Cup was the 13th edition of the tournament, hosted by India.", "label": 0},
    {"input": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.", "label": 1},
    {"input": "2023", "label": 1},  # a text that looks like a number stays the string it is
    {"input": "  Leading and trailing spaces are part of the text.  ", "label": 0},
]
SPEC_FIELDS = {"text": "input", "label": "label"}


def sha_prefix(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def spec(path) -> dict:
    """A local data set as the config gives it after defaults."""
    return {"path": str(path), **SPEC_FIELDS}


def expected_table(rows=WIKIMIA_ROWS) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text_id": [sha_prefix(r["input"]) for r in rows],
            "text": [r["input"] for r in rows],
            "label": [r["label"] for r in rows],
        }
    )


def assert_table(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(table.columns) == ["text_id", "text", "label"]
    assert table["text_id"].tolist() == expected["text_id"].tolist()
    assert table["text"].tolist() == expected["text"].tolist()
    assert table["label"].tolist() == expected["label"].tolist()
    assert all(isinstance(t, str) for t in table["text"])
    assert list(table.index) == list(range(len(expected)))


# Loading local files.


def test_wikimia_jsonl_loads(tmp_path):
    path = write_jsonl(tmp_path / "wikimia.jsonl", WIKIMIA_ROWS)
    table = data.load(spec(path), "wikimia")
    assert_table(table, expected_table())
    assert (table["label"] == 1).sum() == 3 and (table["label"] == 0).sum() == 3


def test_jsonl_csv_parquet_give_the_same_table(tmp_path):
    frame = pd.DataFrame(WIKIMIA_ROWS)
    jsonl = write_jsonl(tmp_path / "rows.jsonl", WIKIMIA_ROWS)
    csv = tmp_path / "rows.csv"
    frame.to_csv(csv, index=False)
    parquet = tmp_path / "rows.parquet"
    frame.to_parquet(parquet)
    tables = [data.load(spec(p), "rows") for p in (jsonl, csv, parquet)]
    for table in tables:
        assert_table(table, expected_table())
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])


def test_numeric_looking_texts_are_kept_verbatim(tmp_path):
    rows = [{"input": "0012", "label": 0}, {"input": "2023", "label": 1}, {"input": "1e5", "label": 0}]
    csv = tmp_path / "numbers.csv"
    csv.write_text("input,label\n0012,0\n2023,1\n1e5,0\n")
    for path in (write_jsonl(tmp_path / "numbers.jsonl", rows), csv):
        table = data.load(spec(path), "numbers")
        assert table["text"].tolist() == ["0012", "2023", "1e5"]
        assert table["text_id"].tolist() == [sha_prefix("0012"), sha_prefix("2023"), sha_prefix("1e5")]


def test_default_field_names(tmp_path):
    path = write_jsonl(tmp_path / "plain.jsonl", [{"text": "a member", "label": 1}, {"text": "not one", "label": 0}])
    table = data.load({"path": str(path), "text": "text", "label": "label"}, "plain")
    assert table["text"].tolist() == ["a member", "not one"]
    assert table["label"].tolist() == [1, 0]


def test_limit_keeps_the_first_rows(tmp_path):
    path = write_jsonl(tmp_path / "wikimia.jsonl", WIKIMIA_ROWS)
    table = data.load({**spec(path), "limit": 3}, "wikimia")
    assert_table(table, expected_table(WIKIMIA_ROWS[:3]))


# Ids.


def test_text_id_is_sha256_prefix():
    text = "The 2023 Turkey-Syria earthquake struck southern and central Turkey on 6 February 2023."
    assert data.text_id(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    assert data.text_id("hello") == "2cf24dba5fb0a30e"  # sha256("hello") = 2cf24dba5fb0a30e26e83b2ac5b9e29e...
    assert data.text_sha256("hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert data.text_id("héllo ünïcode") == sha_prefix("héllo ünïcode")


def test_text_ids_are_16_hex_and_distinct(tmp_path):
    table = data.load(spec(write_jsonl(tmp_path / "w.jsonl", WIKIMIA_ROWS)), "w")
    assert all(re.fullmatch(r"[0-9a-f]{16}", tid) for tid in table["text_id"])
    assert table["text_id"].is_unique
    assert data.text_id("a") != data.text_id("a ")  # whitespace is part of the text


# Errors: each names the file and the rows.


def load_error(tmp_path, rows, name="bad.jsonl") -> str:
    path = write_jsonl(tmp_path / name, rows)
    with pytest.raises(data.DataError) as info:
        data.load(spec(path), "bad")
    message = str(info.value)
    assert name in message
    return message


def test_empty_text_is_an_error(tmp_path):
    rows = [{"input": "fine", "label": 0}, {"input": "", "label": 1}, {"input": "also fine", "label": 1}]
    message = load_error(tmp_path, rows)
    assert "empty" in message and "[1]" in message


def test_whitespace_only_text_is_an_error(tmp_path):
    rows = [{"input": "fine", "label": 0}, {"input": "ok", "label": 1}, {"input": " \n\t ", "label": 1}]
    message = load_error(tmp_path, rows)
    assert "empty" in message and "[2]" in message


def test_duplicate_texts_name_both_rows(tmp_path):
    rows = [
        {"input": "first", "label": 0},
        {"input": "repeated text", "label": 1},
        {"input": "second", "label": 1},
        {"input": "repeated text", "label": 0},
    ]
    message = load_error(tmp_path, rows)
    assert "duplicate" in message and "[1, 3]" in message


@pytest.mark.parametrize("bad_label", [2, -1, "yes", 0.5])
def test_labels_other_than_0_or_1_are_an_error(tmp_path, bad_label):
    rows = [{"input": "a", "label": 0}, {"input": "b", "label": 1}, {"input": "c", "label": bad_label}]
    message = load_error(tmp_path, rows)
    assert "'label'" in message and "[2]" in message


def test_missing_label_in_a_row_is_an_error(tmp_path):
    rows = [{"input": "a", "label": 0}, {"input": "b"}, {"input": "c", "label": 1}]
    message = load_error(tmp_path, rows)
    assert "'label'" in message and "[1]" in message


def test_missing_label_in_csv_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("input,label\na,0\nb,\nc,1\n")
    with pytest.raises(data.DataError, match=r"bad\.csv.*'label'.*\[1\]"):
        data.load(spec(path), "bad")


def test_missing_text_field_lists_the_fields_present(tmp_path):
    rows = [{"text": "a", "label": 0, "source": "x"}, {"text": "b", "label": 1, "source": "y"}]
    message = load_error(tmp_path, rows)
    assert "'input'" in message
    for field in ("text", "label", "source"):
        assert f"'{field}'" in message


def test_missing_label_field_lists_the_fields_present(tmp_path):
    rows = [{"input": "a", "member": 0}, {"input": "b", "member": 1}]
    message = load_error(tmp_path, rows)
    assert "'label'" in message and "'member'" in message


def test_text_that_is_not_a_string_is_an_error(tmp_path):
    rows = [{"input": "a", "label": 0}, {"input": 17, "label": 1}, {"label": 1}]
    message = load_error(tmp_path, rows)
    assert "not a string" in message and "[1, 2]" in message


def test_unknown_suffix_is_an_error(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("a\nb\n")
    with pytest.raises(data.DataError, match=r"rows\.txt.*'\.txt'"):
        data.load(spec(path), "rows")


def test_missing_file_is_an_error(tmp_path):
    path = tmp_path / "absent.jsonl"
    with pytest.raises(data.DataError, match=r"absent\.jsonl.*does not exist"):
        data.load(spec(path), "absent")


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_only_is_an_error(tmp_path, label):
    rows = [{"input": f"text {i}", "label": label} for i in range(4)]
    message = load_error(tmp_path, rows, name="oneclass.jsonl")
    assert "both members" in message and f"[{label}]" in message


def test_limit_that_leaves_one_class_is_an_error(tmp_path):
    rows = [{"input": "a", "label": 1}, {"input": "b", "label": 1}, {"input": "c", "label": 0}]
    path = write_jsonl(tmp_path / "limited.jsonl", rows)
    with pytest.raises(data.DataError, match=r"limited\.jsonl.*only \[1\]"):
        data.load({**spec(path), "limit": 2}, "limited")


# Controlled splits.


DOCUMENTS = [f"document number {i} about topic {i % 7}" for i in range(60)]


def test_controlled_split_is_deterministic():
    first_table, first_background = data.controlled_split(DOCUMENTS, 20, 0.5, seed=3)
    second_table, second_background = data.controlled_split(DOCUMENTS, 20, 0.5, seed=3)
    pd.testing.assert_frame_equal(first_table, second_table)
    assert first_background == second_background
    other_table, _ = data.controlled_split(DOCUMENTS, 20, 0.5, seed=4)
    assert set(other_table["text"]) != set(first_table["text"])


@pytest.mark.parametrize(
    ("candidates", "fraction", "members"), [(20, 0.5, 10), (20, 0.25, 5), (10, 0.3, 3), (7, 0.5, 4)]
)
def test_controlled_split_member_fraction(candidates, fraction, members):
    table, background = data.controlled_split(DOCUMENTS, candidates, fraction, seed=0)
    assert len(table) == candidates
    assert int((table["label"] == 1).sum()) == members
    assert int((table["label"] == 0).sum()) == candidates - members
    assert len(background) == len(DOCUMENTS) - candidates


def test_controlled_split_partitions_the_corpus():
    table, background = data.controlled_split(DOCUMENTS, 20, 0.5, seed=1)
    candidates = table["text"].tolist()
    assert not set(candidates) & set(background)
    assert sorted(candidates + background) == sorted(DOCUMENTS)
    assert table["text_id"].tolist() == [sha_prefix(t) for t in candidates]


def test_controlled_split_members_and_non_members_from_the_same_documents():
    # Over many seeds every document is sometimes a member and sometimes a non-member:
    # membership is assigned at random, not by position or kind of document.
    documents = DOCUMENTS[:12]
    roles: dict[str, set[int]] = {d: set() for d in documents}
    for seed in range(200):
        table, _ = data.controlled_split(documents, 8, 0.5, seed=seed)
        for text, label in zip(table["text"], table["label"]):
            roles[text].add(int(label))
    assert all(labels == {0, 1} for labels in roles.values())


def test_controlled_split_too_many_candidates():
    with pytest.raises(data.DataError, match="61 candidates.*60 documents"):
        data.controlled_split(DOCUMENTS, 61, 0.5, seed=0)


def test_load_controlled_dataset():
    spec_ = {
        "controlled": {
            "corpus": {"generator": "templates", "n_documents": 40, "seed": 2},
            "candidates": 10,
            "members": 0.5,
            "seed": 5,
        }
    }
    table = data.load(spec_, "demo")
    expected, _ = data.controlled_split(corpus.generate_corpus(40, 2), 10, 0.5, 5)
    pd.testing.assert_frame_equal(table, expected)
    assert set(table["text"]) <= set(corpus.generate_corpus(40, 2))
    assert (table["label"] == 1).sum() == 5


def test_corpus_documents_from_a_file(tmp_path):
    path = write_jsonl(tmp_path / "corpus.jsonl", [{"body": "one"}, {"body": "two"}, {"body": "three"}])
    assert data.corpus_documents({"path": str(path), "text": "body"}) == ["one", "two", "three"]


# Hub data sets come from the project's cache.


def test_hub_dataset_is_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = data.hub_cache_path("swj0419/WikiMIA", "WikiMIA_length32")
    assert path.parts[:2] == ("data", "hub")
    assert "swj0419" in str(path) and "/" not in path.parts[2]
    path.parent.mkdir(parents=True)
    pd.DataFrame(WIKIMIA_ROWS).to_parquet(path)
    table = data.load({"hf": "swj0419/WikiMIA", "split": "WikiMIA_length32", **SPEC_FIELDS}, "wikimia32")
    assert_table(table, expected_table())


def test_hub_revision_is_part_of_the_cache_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data.hub_cache_path("a/b", "train", "v1") != data.hub_cache_path("a/b", "train")
    path = data.hub_cache_path("a/b", "train", "v1")
    path.parent.mkdir(parents=True)
    pd.DataFrame(WIKIMIA_ROWS).to_parquet(path)
    table = data.load({"hf": "a/b", "split": "train", "revision": "v1", **SPEC_FIELDS}, "ab")
    assert len(table) == len(WIKIMIA_ROWS)
    with pytest.raises(data.DataError):
        data.load({"hf": "a/b", "split": "train", **SPEC_FIELDS}, "ab")


def test_missing_hub_cache_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DataError) as info:
        data.load({"hf": "swj0419/WikiMIA", "split": "WikiMIA_length64", **SPEC_FIELDS}, "wikimia64")
    message = str(info.value)
    assert "python -m paramdelta.hub fetch --configfile" in message
    assert "swj0419/WikiMIA" in message and "WikiMIA_length64" in message
    assert not (tmp_path / "data").exists()  # nothing was fetched or created


def test_hub_errors_name_the_data_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = data.hub_cache_path("a/b", "test")
    path.parent.mkdir(parents=True)
    pd.DataFrame([{"input": "x", "label": 0}, {"input": "x", "label": 1}]).to_parquet(path)
    with pytest.raises(data.DataError, match=r"a/b, split test.*duplicate.*\[0, 1\]"):
        data.load({"hf": "a/b", "split": "test", **SPEC_FIELDS}, "ab")


# Shards.


IDS = [data.text_id(f"text {i}") for i in range(10)]


def test_one_text_per_job_names_shards_by_id():
    shards = data.shards(IDS, 1)
    assert set(shards) == set(IDS)
    assert all(members == [tid] for tid, members in shards.items())


@pytest.mark.parametrize("per_job", [2, 3, 4, 10, 11])
def test_shards_cover_every_id_once(per_job):
    shards = data.shards(IDS, per_job)
    flat = [tid for members in shards.values() for tid in members]
    assert sorted(flat) == sorted(IDS) and len(flat) == len(set(flat))
    assert all(1 <= len(members) <= 2 * per_job for members in shards.values())
    assert all(re.fullmatch(r"[A-Za-z0-9]+", name) for name in shards)  # the workflow's shard wildcard
    assert all(name.startswith(f"s{members[0]}") for name, members in shards.items())


MANY = [data.text_id(f"candidate {i}") for i in range(2000)]


@pytest.mark.parametrize("per_job", [5, 25])
def test_shards_hold_texts_per_job_on_average(per_job):
    sizes = [len(members) for members in data.shards(MANY, per_job).values()]
    assert 0.7 * per_job <= sum(sizes) / len(sizes) <= 1.3 * per_job
    assert max(sizes) <= 2 * per_job


def changed_shards(before: dict, after: dict) -> dict:
    return {name: members for name, members in after.items() if before.get(name) != members}


@pytest.mark.parametrize("per_job", [5, 25])
def test_adding_texts_changes_only_the_shards_that_receive_them(per_job):
    before = data.shards(MANY, per_job)
    added = [data.text_id(f"new candidate {i}") for i in range(10)]
    after = data.shards(MANY + added, per_job)
    changed = changed_shards(before, after)
    # A changed job holds a new text, or is what is left of an old job that a new text split
    # (the new text starts a shard of its own: the old job's first part keeps only old texts).
    for members in changed.values():
        if not set(members) & set(added):
            (old,) = [old for old in before.values() if members[0] in old]
            assert set(members) < set(old)
            rest = set(old) - set(members)
            assert any(rest & set(other) and set(other) & set(added) for other in changed.values())
    assert len(changed) <= 2 * len(added)
    # Every other job keeps its name and its texts.
    assert sum(1 for name in after if name not in changed) >= len(before) - 2 * len(added)


def test_a_text_added_inside_a_shard_changes_that_shard_alone():
    before = data.shards(MANY, 25)
    added = next(tid for tid in (data.text_id(f"extra {i}") for i in range(1000)) if int(tid, 16) % 25)
    after = data.shards(MANY + [added], 25)
    changed = changed_shards(before, after)
    assert len(changed) == 1 and added in next(iter(changed.values()))


@pytest.mark.parametrize("per_job", [1, 3])
def test_shards_do_not_depend_on_input_order(per_job):
    shuffled = IDS[:]
    random.Random(0).shuffle(shuffled)
    assert shuffled != IDS
    assert data.shards(shuffled, per_job) == data.shards(IDS, per_job)


# Digest.


def test_digest_is_16_hex_and_stable(tmp_path):
    table = data.load(spec(write_jsonl(tmp_path / "w.jsonl", WIKIMIA_ROWS)), "w")
    assert re.fullmatch(r"[0-9a-f]{16}", data.digest(table))
    assert data.digest(table) == data.digest(table.copy())


def test_digest_changes_with_a_label(tmp_path):
    table = data.load(spec(write_jsonl(tmp_path / "w.jsonl", WIKIMIA_ROWS)), "w")
    flipped = table.copy()
    flipped.loc[0, "label"] = 1 - flipped.loc[0, "label"]
    assert data.digest(flipped) != data.digest(table)


def test_digest_changes_with_a_text(tmp_path):
    rows = [dict(r) for r in WIKIMIA_ROWS]
    before = data.load(spec(write_jsonl(tmp_path / "before.jsonl", rows)), "w")
    rows[2]["input"] += " Edited."
    after = data.load(spec(write_jsonl(tmp_path / "after.jsonl", rows)), "w")
    assert data.digest(after) != data.digest(before)


def test_digest_changes_when_a_row_is_added_or_removed(tmp_path):
    table = data.load(spec(write_jsonl(tmp_path / "w.jsonl", WIKIMIA_ROWS)), "w")
    assert data.digest(table.iloc[:-1]) != data.digest(table)


def test_digest_ignores_row_order(tmp_path):
    # The same texts and labels in another order are the same data set: nothing to redo.
    reordered_rows = WIKIMIA_ROWS[::-1]
    table = data.load(spec(write_jsonl(tmp_path / "w.jsonl", WIKIMIA_ROWS)), "w")
    reordered = data.load(spec(write_jsonl(tmp_path / "r.jsonl", reordered_rows)), "w")
    assert reordered["text_id"].tolist() != table["text_id"].tolist()
    assert data.digest(reordered) == data.digest(table)


# MIMIR-style member and non-member files (datasets.<name>.members / nonmembers).


def member_spec(tmp_path, members, nonmembers, suffix=".jsonl"):
    paths = []
    for name, texts in (("member", members), ("nonmember", nonmembers)):
        path = tmp_path / f"{name}{suffix}"
        frame = pd.DataFrame({"text": texts})
        if suffix == ".jsonl":
            write_jsonl(path, frame.to_dict("records"))
        else:
            frame.to_parquet(path)
        paths.append(str(path))
    return {"members": paths[0], "nonmembers": paths[1], "text": "text", "label": "label", "domain": "arxiv",
            "overlap": "ngram_13_0.8"}  # fmt: skip


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_member_and_nonmember_files_are_labelled_by_file(tmp_path, suffix):
    spec_ = member_spec(tmp_path, ["We prove a theorem.", "A new bound."], ["A lemma on graphs.", "2023"], suffix)
    table = data.load(spec_, "mimir-arxiv")
    assert table["text"].tolist() == ["We prove a theorem.", "A new bound.", "A lemma on graphs.", "2023"]
    assert table["label"].tolist() == [1, 1, 0, 0]
    assert table["text_id"].tolist() == [sha_prefix(t) for t in table["text"]]


def test_a_text_in_both_files_names_both(tmp_path):
    spec_ = member_spec(tmp_path, ["Same text.", "Member only."], ["Other.", "Same text."])
    with pytest.raises(data.DataError, match=r"rows \[0\]\) are also in .*nonmember.jsonl"):
        data.load(spec_, "mimir")


def test_a_bad_row_in_a_member_file_names_the_file(tmp_path):
    spec_ = member_spec(tmp_path, ["Fine.", "  "], ["Other."])
    with pytest.raises(data.DataError, match=r"members file .*member.jsonl: empty text in rows \[1\]"):
        data.load(spec_, "mimir")


def test_member_files_in_the_config(tmp_path):
    from paramdelta import config as config_checks

    spec_ = member_spec(tmp_path, ["a b c"], ["d e f"])
    raw = {"datasets": {"mimir": {k: v for k, v in spec_.items() if k not in ("text", "label")}},
           "models": {"m": {"path": "EleutherAI/pythia-160m"}}}  # fmt: skip
    completed = config_checks.validate(raw)
    assert completed["datasets"]["mimir"]["overlap"] == "ngram_13_0.8"
    del raw["datasets"]["mimir"]["nonmembers"]
    with pytest.raises(config_checks.ConfigError, match="datasets.mimir.*members, nonmembers"):
        config_checks.validate(raw)
