"""Curation: exact and MinHash/LSH dedup (vs exact Jaccard and datasketch), quality, PII."""
import random
import re

import numpy as np
import pytest

from deepatlas.data.curation import (CharTrigramLM, LSHIndex, MinHasher, estimate_jaccard,
                                     exact_dedup, find_pii, jaccard, lsh_candidate_probability,
                                     near_dedup, quality_failures, scrub_pii, shingles)


@pytest.fixture(scope="module")
def paragraphs():
    from deepatlas.data.austen import austen_corpus

    paras = [re.sub(r"\s+", " ", p).strip() for p in austen_corpus()[:300_000].split("\n\n")]
    return [p for p in paras if len(p.split()) >= 40]


def _edit(text: str, rate: float, rng: random.Random) -> str:
    """Replace a fraction `rate` of the words by a random other word."""
    words = text.split()
    return " ".join(rng.choice(["very", "much", "quite", "dear"]) if rng.random() < rate else w for w in words)


def test_exact_dedup_on_normalised_text():
    docs = ["Emma Woodhouse, handsome.", "emma  woodhouse handsome", "EMMA WOODHOUSE; HANDSOME!",
            "Emma Woodhouse, clever.", "Emma Woodhouse, handsome."]
    assert exact_dedup(docs) == [0, 3]


def test_minhash_estimates_jaccard_like_datasketch(paragraphs):
    from datasketch import MinHash

    rng = random.Random(0)
    hasher = MinHasher(256, seed=3)
    errs, errs_ds = [], []
    for i, p in enumerate(paragraphs[:60]):
        q = _edit(p, rng.choice([0.02, 0.05, 0.1, 0.2, 0.4]), rng)
        a, b = shingles(p, 3), shingles(q, 3)
        exact = jaccard(a, b)
        est = estimate_jaccard(hasher.signature(a), hasher.signature(b))
        ma, mb = MinHash(256, seed=3), MinHash(256, seed=3)
        ma.update_batch([s.encode() for s in a])
        mb.update_batch([s.encode() for s in b])
        errs.append(est - exact)
        errs_ds.append(ma.jaccard(mb) - exact)
    errs, errs_ds = np.array(errs), np.array(errs_ds)
    # standard error √(J(1−J)/k) ≤ 0.031 for k = 256: unbiased and as accurate as datasketch
    assert abs(errs.mean()) < 0.015 and np.abs(errs).mean() < 0.035
    assert np.abs(errs).mean() < 1.3 * np.abs(errs_ds).mean() + 0.005


def test_lsh_candidates_equal_datasketch(paragraphs):
    from datasketch import MinHash, MinHashLSH

    rng = random.Random(1)
    docs = paragraphs[:80] + [_edit(p, 0.03, rng) for p in paragraphs[:30]]   # J ≈ 0.85
    hasher = MinHasher(128, seed=5)
    sigs = [hasher.signature(shingles(d, 3)) for d in docs]
    ours = LSHIndex(bands=16, rows=8)
    theirs = MinHashLSH(num_perm=128, params=(16, 8))
    for i, s in enumerate(sigs):
        ours.insert(i, s)
        theirs.insert(i, MinHash(hashvalues=s, scheme="legacy"))
    for i, s in enumerate(sigs):
        assert ours.query(s) == set(theirs.query(MinHash(hashvalues=s, scheme="legacy")))
    assert sum(len(ours.query(s)) > 1 for s in sigs) >= 55    # the 30 edited pairs found both ways


def test_banding_s_curve_matches_formula():
    hasher = MinHasher(64, seed=0)
    rng = random.Random(2)
    universe = [f"w{i}" for i in range(400)]
    for target in (0.3, 0.6, 0.8):
        hits, n = 0, 150
        for _ in range(n):
            base = set(rng.sample(universe, 100))
            keep = int(round(200 * target / (1 + target)))      # |A∩B| = keep, |A ∪ B| = 200 − keep
            other = set(rng.sample(sorted(base), keep)) | set(rng.sample(sorted(set(universe) - base), 100 - keep))
            a, b = hasher.signature(base), hasher.signature(other)
            idx = LSHIndex(16, 4)
            idx.insert(0, a)
            hits += 0 in idx.query(b)
        j = keep / (200 - keep)
        assert hits / n == pytest.approx(lsh_candidate_probability(j, 16, 4), abs=0.12)


def test_near_dedup_finds_injected_near_duplicates(paragraphs):
    rng = random.Random(4)
    originals = paragraphs[:100]
    dups = [_edit(p, 0.03, rng) for p in originals[:40]]
    kept, dropped = near_dedup(originals + dups, threshold=0.7, shingle=3)
    assert kept[:100] == list(range(100))                       # no distinct paragraph dropped
    assert all(j == i - 100 for i, j, _ in dropped)             # each dropped one matched its source
    exact = [jaccard(shingles(p, 3), shingles(q, 3)) for p, q in zip(originals, dups)]
    gone = {i - 100 for i, _, _ in dropped}
    assert all(k in gone for k, j in enumerate(exact) if j >= 0.8)      # clear duplicates: all found
    assert all(k not in gone for k, j in enumerate(exact) if j < 0.6)   # far below threshold: kept
    assert len(gone) >= 35


def test_quality_filters_pass_prose_and_reject_junk(paragraphs):
    passed = sum(not quality_failures(p) for p in paragraphs[:300]) / 300
    assert passed > 0.95, passed
    rng = random.Random(0)
    junk = [" ".join("".join(rng.choice("#$%&*@!") for _ in range(5)) for _ in range(30)),
            "\n".join(["Click here to subscribe to our newsletter"] * 6),
            "buy now " * 40, "a b c d e f g h i j k l", "x",
            " ".join(["supercalifragilisticexpialidocious"] * 3 + ["antidisestablishmentarianism"] * 3)]
    for text in junk:
        assert quality_failures(text), text
    lm = CharTrigramLM(paragraphs[:200])
    ok = np.median([lm.perplexity(p) for p in paragraphs[200:260]])
    bad = np.median([lm.perplexity("".join(rng.choice("qzxjkv wy") for _ in range(200))) for _ in range(20)])
    assert bad > 3 * ok


def test_pii_found_in_generated_text_and_never_in_the_corpus():
    from deepatlas.data.austen import austen_corpus
    from deepatlas.data.bible import bible_text

    rng = random.Random(7)
    names, domains = ["john.smith", "e_woodhouse", "fd+news", "mr.knightley99"], ["example.com", "mail.co.uk", "donwell-abbey.org"]
    for _ in range(50):
        email = f"{rng.choice(names)}@{rng.choice(domains)}"
        d = lambda k: "".join(str(rng.randrange(10)) for _ in range(k))  # noqa: E731
        phone = rng.choice([f"+1 {d(3)}-{d(3)}-{d(4)}", f"({d(3)}) {d(3)}-{d(4)}", f"{d(3)}.{d(3)}.{d(4)}",
                            f"+44 {d(2)} {d(4)} {d(4)}", f"0{d(3)} {d(3)} {d(4)}"])
        ip = ".".join(str(rng.randrange(256)) for _ in range(4))
        text = f"Write to {email}, ring {phone} or visit {ip} before the ball."
        clean, counts = scrub_pii(text)
        assert counts == {"EMAIL": 1, "PHONE": 1, "IP": 1}, (text, clean)
        assert clean == "Write to <EMAIL>, ring <PHONE> or visit <IP> before the ball."
    for text in (austen_corpus(), bible_text(with_references=True)):
        assert find_pii(text) == []                             # no false positives on the corpus
    assert find_pii("999.1.1.1, version 1.2.3.4.5, in 1811, Joh3:16, £2,000") == []
