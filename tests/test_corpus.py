"""The story corpus: deterministic, well-formed, varied, with a train/validation split that cannot leak."""

import collections
import hashlib
import os
import random
import re
import statistics
import subprocess
import sys

import pytest

from neofpga.host.training import corpus

N = 20_000
HE_WORDS = {"he", "him", "his", "himself"}
SHE_WORDS = {"she", "her", "herself"}
MALE = set(corpus.BOY_NAMES) | set(corpus.HE_PET_NAMES) | {"boy", "dad", "grandpa", "brother"}
FEMALE = set(corpus.GIRL_NAMES) | set(corpus.SHE_PET_NAMES) | {"girl", "mom", "grandma", "sister", "mother"}


@pytest.fixture(scope="module")
def stories():
    return corpus.generate_stories(1234, N)


@pytest.fixture(scope="module")
def sentences(stories):
    return [corpus.sentences(story) for story in stories]


def words(text):
    return re.findall(r"[A-Za-z]+", text)


def test_same_seed_same_text_other_seed_other_text():
    assert corpus.generate_stories(7, 30) == corpus.generate_stories(7, 30)
    assert corpus.generate_stories(7, 30) != corpus.generate_stories(8, 30)
    rng_a, rng_b = random.Random(5), random.Random(5)
    assert [corpus.generate_story(rng_a) for _ in range(5)] == [corpus.generate_story(rng_b) for _ in range(5)]


def test_text_does_not_depend_on_the_hash_seed():
    code = ("import hashlib; from neofpga.host.training.corpus import generate_stories; "
            "print(hashlib.sha256('\\n'.join(generate_stories(3, 200)).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout
               for seed in ("1", "2")}
    assert len(digests) == 1
    here = hashlib.sha256("\n".join(corpus.generate_stories(3, 200)).encode()).hexdigest()
    assert digests == {here + "\n"}


def test_split_sizes_no_overlap_and_a_seed_independent_rule():
    train, valid = corpus.split_corpus(11, 2000, 30)
    assert len(train) == 2000 and len(valid) == 30
    assert len(set(train)) == len(train) and len(set(valid)) == len(valid)
    assert not set(train) & set(valid)

    def to_valid(story):
        digest = hashlib.sha256(story.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % corpus.VALID_EVERY == 0

    assert all(to_valid(s) for s in valid) and not any(to_valid(s) for s in train)
    assert corpus.split_corpus(11, 2000, 30) == (train, valid)
    assert corpus.STORY_SEPARATOR not in "".join(train + valid)


def test_openings(stories):
    starts = collections.Counter(next(o for o in corpus.OPENINGS if s.startswith(o)) for s in stories)
    assert sum(starts.values()) == len(stories)  # next() raised if a story had no declared opening
    assert starts.most_common(1)[0][0] == "Once upon a time"
    assert 0.35 < starts["Once upon a time"] / len(stories) < 0.55
    assert set(starts) == set(corpus.OPENINGS)


def test_word_counts(stories):
    counts = [len(s.split()) for s in stories]
    assert corpus.MIN_WORDS <= min(counts) and max(counts) <= corpus.MAX_WORDS
    assert 135 < statistics.mean(counts) < 165


def test_plain_ascii_text(stories):
    for story in stories:
        assert story.isascii() and story == story.strip() and "\n\n" not in story
    text = "\n".join(stories)
    for bad in (r"  |[{}\[\]<>|]|\.\.|\s[,.!?]|,[.!?]|[.!?],",  # leftovers of templates, stray punctuation
                r"\b(\w+) \1\b",                                # a repeated word
                r"\ba [aeiou]|\ban [^aeiou\W]"):                  # a wrong article
        found = re.search(bad, text, re.IGNORECASE)
        assert not found, text[max(0, found.start() - 200):found.end() + 200]


def test_quotes_are_balanced(stories):
    for story in stories:
        for paragraph in story.split("\n"):
            assert paragraph.count('"') % 2 == 0, paragraph
        quoted = re.findall(r'"([^"]*)"', story)
        assert all(q and q[0].isupper() and q[-1] in ",.!?" for q in quoted), story


def test_every_sentence_starts_with_a_capital(stories, sentences):
    for story, story_sentences in zip(stories, sentences):
        assert "".join(story_sentences).replace(" ", "") == story.replace(" ", "").replace("\n", "")
        for sentence in story_sentences:
            assert re.match(r'"?[A-Z]', sentence), (sentence, story)
            assert not re.search(r"[.!?] [a-z]", sentence), (sentence, story)


def test_pronouns_and_names_agree(stories, sentences):
    checked = 0
    for story, (first, second, *_) in zip(stories, sentences):
        for noun, name in re.findall(r"\b(girl|boy|dog|cat|bunny|bear|puppy|kitten|mouse|duck) named (\w+)", story):
            expected = {"girl": corpus.GIRL_NAMES, "boy": corpus.BOY_NAMES}.get(
                noun, corpus.HE_PET_NAMES + corpus.SHE_PET_NAMES)
            assert name in expected, story
        if "girl named" in first and second.split()[0] in ("He", "She"):
            assert second.startswith("She"), story
        if "boy named" in first and second.split()[0] in ("He", "She"):
            assert second.startswith("He"), story
        present = {w.lower() for w in words(story)}
        names = set(words(story))
        if not (names | present) & MALE:
            assert not present & HE_WORDS, story
            checked += 1
        if not (names | present) & FEMALE:
            assert not present & SHE_WORDS, story
            checked += 1
    assert checked > N // 20  # many stories have a cast of one gender, so the check means something


def test_variety(stories, sentences):
    assert len(set(stories)) >= 0.999 * len(stories)
    assert corpus.distinct_sentences(stories) > 20_000
    assert len({story_sentences[0] for story_sentences in sentences}) > 2_000  # many different openings


def test_vocabulary_is_small(stories):
    vocabulary = corpus.vocabulary(stories)
    assert 800 <= len(vocabulary) <= 1500
    assert {"once", "upon", "time", "happy", "sad", "scared", "proud", "let's", "mom", "park"} <= vocabulary
