"""Tests of the synthetic corpus: determinism, variety, length and speed."""

from paramdelta.corpus import _GENRES, MAX_WORDS, MIN_WORDS, _generate_labelled, generate_corpus


def test_same_seed_same_corpus():
    assert generate_corpus(200, seed=7) == generate_corpus(200, seed=7)


def test_different_seeds_differ():
    first, second = generate_corpus(200, seed=1), generate_corpus(200, seed=2)
    assert len(set(first) & set(second)) == 0


def test_prefix_is_stable():
    # A larger corpus for the same seed begins with the smaller one.
    assert generate_corpus(500, seed=3)[:100] == generate_corpus(100, seed=3)


def test_no_duplicates_and_non_empty():
    corpus = generate_corpus(3000, seed=0)
    assert len(corpus) == 3000
    assert len(set(corpus)) == 3000
    assert all(text.strip() for text in corpus)


def test_word_counts_and_sentences():
    for text in generate_corpus(1000, seed=5):
        assert MIN_WORDS <= len(text.split()) <= MAX_WORDS
        assert text[0].isupper() or text[0].isdigit()  # diary entries open with a date
        assert text.endswith(".")
        assert "{" not in text and "}" not in text


def test_many_templates_used():
    labelled = _generate_labelled(3000, seed=0)
    genres = {genre for genre, _ in labelled}
    assert len(_GENRES) >= 12
    assert genres == set(_GENRES)
    openings = {text.split()[0] for _, text in labelled}
    assert len(openings) > 100  # documents do not all start alike
    vocabulary = {word for _, text in labelled for word in text.split()}
    assert len(vocabulary) > 3000
