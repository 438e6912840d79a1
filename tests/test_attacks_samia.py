"""SaMIA pieces by hand: splitting, ROUGE-1 recall, the zlib weighting, seeded batched sampling.

The model-level orientation and reproducibility tests are in test_attacks.py, beside the
model that memorised its members.
"""

import pytest
import torch

from paramdelta.attacks.forward import eval_mode
from paramdelta.attacks.samia import rouge1_recall, samia_score, sample_continuations, split_text, text_seed


def test_split_text_takes_the_first_half_of_the_words():
    assert split_text("one two three four five") == split_text("one  two\nthree four five")
    split = split_text("one two three four five")
    assert (split.prefix, split.prefix_words, split.reference) == ("one two", 2, "three four five")
    assert split_text("one two three four").reference == "three four"
    with pytest.raises(ValueError, match="at least 2 words"):
        split_text("alone")


@pytest.mark.parametrize(
    ("candidate", "reference", "expected"),
    [
        # reference unigrams the, cat, is, on, the, mat (6; "." is not a word); matched: the x2, cat, on, mat.
        ("The cat sat on the mat", "the cat is on the mat .", 5 / 6),
        # clipped: "the" appears twice in the reference, so four in the candidate count twice.
        ("the the the the", "the cat the dog", 2 / 4),
        ("CAT, dog!", "cat dog", 1.0),
        ("", "cat dog", 0.0),
        ("cat", "...", 0.0),
    ],
)
def test_rouge1_recall_by_hand(candidate, reference, expected):
    assert rouge1_recall(candidate, reference) == pytest.approx(expected)


def test_samia_and_samia_zlib_by_hand():
    # ROUGE-1 of "the cat ran": 2/3 for "the cat sat", 0 for "a dog".
    # zlib.compress(b"the cat sat") is 19 bytes, so SaMIA*zlib = (2/3 * 19 + 0 * 13) / 2.
    candidates = ["the cat sat", "a dog"]
    assert samia_score(candidates, "the cat ran", zlib_weighted=False) == pytest.approx(1 / 3)
    assert samia_score(candidates, "the cat ran", zlib_weighted=True) == pytest.approx(19 / 3)


def test_text_seed_depends_on_seed_and_text_only():
    assert text_seed(0, "a text") == text_seed(0, "a text")
    assert len({text_seed(0, "a text"), text_seed(1, "a text"), text_seed(0, "another text")}) == 3
    assert 0 <= text_seed(0, "a text") < 2**63


@pytest.fixture(scope="module")
def prompts(tiny_tokenizer):
    """Prompts of 8 to 59 tokens (the architectures' tiny configs have 64 positions)."""
    from paramdelta import corpus

    documents = corpus.generate_corpus(4, 2)
    texts = [" ".join(document.split()[: 3 + 3 * i]) for i, document in enumerate(documents)]
    return [tiny_tokenizer(text)["input_ids"] for text in texts]


def test_sampling_with_left_padding_equals_sampling_alone(arch_model, tiny_tokenizer, prompts, single_thread):
    limits, seeds = [4, 9, 12, 3], [11, 12, 13, 14]
    options = dict(n_samples=3, eos_token_id=None, padding=tiny_tokenizer.pad_token_id)
    together = sample_continuations(arch_model, prompts, limits, seeds, **options)
    alone = [
        sample_continuations(arch_model, [prompt], [limit], [seed], **options)[0]
        for prompt, limit, seed in zip(prompts, limits, seeds)
    ]
    assert together == alone
    assert [[len(sample) for sample in samples] for samples in together] == [[n] * 3 for n in limits]
    with pytest.raises(ValueError, match="context"):
        sample_continuations(arch_model, prompts[3:], [6], [0], **options)


def test_top_1_sampling_equals_greedy_generate(arch_model, tiny_tokenizer, prompts, single_thread):
    """With top-k 1 the sampler is greedy decoding: it must agree with Hugging Face's own
    (unpadded) generate, which checks the cache and positions of the batched loop."""
    options = dict(n_samples=2, eos_token_id=None, padding=tiny_tokenizer.pad_token_id, top_k=1)
    sampled = sample_continuations(arch_model, prompts[:3], [5, 5, 5], [0, 1, 2], **options)
    with eval_mode(arch_model):
        for prompt, samples in zip(prompts[:3], sampled):
            greedy = arch_model.generate(
                torch.tensor([prompt]),
                do_sample=False,
                max_new_tokens=5,
                min_new_tokens=5,
                pad_token_id=tiny_tokenizer.pad_token_id,
                eos_token_id=None,
            )
            assert samples == [greedy[0, len(prompt) :].tolist()] * 2


def test_text_longer_than_the_window_is_read_up_to_its_first_window(arch_model, tiny_tokenizer, single_thread):
    """Sampling cannot go past the context: a long text gives its first window's words to
    SaMIA, and is scored instead of failing."""
    from paramdelta.attacks.samia import first_window, samia_scores

    long_text = " ".join(f"word{i % 37}" for i in range(300))
    window = 64  # the tiny models' context
    assert len(tiny_tokenizer(long_text)["input_ids"]) > window
    head = first_window(long_text, tiny_tokenizer, window)
    assert long_text.startswith(head) and len(tiny_tokenizer(head)["input_ids"]) <= window
    longer = " ".join(long_text.split()[: len(head.split()) + 1])
    assert len(tiny_tokenizer(longer)["input_ids"]) > window
    assert first_window("a short text", tiny_tokenizer, window) == "a short text"
    scores = samia_scores(arch_model, tiny_tokenizer, [long_text, "one two three four five six"], n_samples=2)
    assert len(scores) == 4 and scores.score.notna().all()
