"""The data sets of an attribution experiment: training sets and evaluation sets.

A set is a list of texts. It is generated here (seeded, so every seed of an experiment draws
its own sample) or read from a data file a lab gives:

- ``{generator: tasks, task: ..., answer: digits|words, n: 256}``: the question-answer tasks of
  the fine-tuning setting (UnTrac paper, section 4.1 and table 1), in this project's own words.
  ``after`` is the evaluation task ("What number comes after 41?"); ``successor`` is the similar
  training task and ``length`` (letters in a word) the dissimilar one, each answered in digits
  or in words. A model trained from scratch knows no meaning, so here a similar task shares
  the evaluation task's wording about numbers ("comes ... after"), as a pre-trained model would
  share its meaning.
- ``{generator: genres, genres: {letter: 3, diary: 1}, n: 200}``: documents of the corpus
  generator's genres in the given proportions (the pre-training setting, section 4.2).
- ``{path: data/x.jsonl, text: text, limit: 500}``: the text field of a .jsonl, .csv or .parquet
  file; ``limit`` keeps a seeded random sample of that many rows.
"""

from __future__ import annotations

import random

from paramdelta import corpus, data

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()  # fmt: skip
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()

# Words whose letters the `length` task counts: 3 to 13 letters.
_WORDS = sorted(
    {
        word
        for word in (*corpus._OCCUPATIONS, *corpus._ITEMS, *corpus._BUILDINGS, *corpus._INGREDIENTS, *corpus._DISHES)
        if word.isalpha() and 3 <= len(word) <= 13
    }
)

TASKS = ("after", "successor", "length")
MAX_NUMBER = 98  # `after` and `successor` ask about 0..98, so every answer is below 100


def number_words(n: int) -> str:
    """0..99 in English words: 7 -> "seven", 42 -> "forty-two"."""
    if not 0 <= n < 100:
        raise ValueError(f"{n} is outside 0..99")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens - 2] + (f"-{_ONES[ones]}" if ones else "")


def _answer(n: int, answer: str) -> str:
    return str(n) if answer == "digits" else number_words(n)


def task_example(task: str, answer: str, rng: random.Random) -> str:
    """One question with its answer, as one text (a causal LM learns both)."""
    if task == "after":
        n = rng.randint(0, MAX_NUMBER)
        return f"Q: What number comes after {n}? A: {_answer(n + 1, answer)}"
    if task == "successor":
        n = rng.randint(0, MAX_NUMBER)
        return f"Q: Which number comes right after {n}? Answer in {answer}. A: {_answer(n + 1, answer)}"
    if task == "length":
        word = rng.choice(_WORDS)
        return f"Q: How many letters are in '{word}'? Answer in {answer}. A: {_answer(len(word), answer)}"
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def generate(spec: dict, seed: int | str) -> list[str]:
    """The texts of one set, deterministic for (spec, seed)."""
    if spec.get("generator") == "tasks":
        rng = random.Random(seed)
        return [task_example(spec["task"], spec["answer"], rng) for _ in range(spec["n"])]
    if spec.get("generator") == "genres":
        return corpus.generate_genre_documents(spec["genres"], spec["n"], seed)
    table = data.clean(data.read_table(spec["path"]), spec["text"], None, spec["path"])
    texts = table["text"].tolist()
    limit = spec.get("limit")
    if limit is not None and limit < len(texts):
        texts = random.Random(seed).sample(texts, limit)
    return texts


def draw(experiment: dict, seed: int) -> dict[str, dict[str, list[str]]]:
    """Every set of an experiment for one seed: ``{"training": {name: texts}, "evaluation": ...}``.

    Each set draws from its own stream (the seed, its role and its name), so adding a set to
    the config changes no other set's texts.
    """
    return {
        role: {name: generate(spec, f"{seed}/{role}/{name}") for name, spec in experiment[role].items()}
        for role in ("training", "evaluation")
    }
