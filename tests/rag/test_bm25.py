import numpy as np
import pytest

from deepatlas.rag.bm25 import BM25, tokenize, top_k


@pytest.fixture(scope="module")
def corpus():
    from deepatlas.rag.chunking import chunk_documents
    from deepatlas.rag.corpus import bible_documents

    docs = bible_documents(("Ruth",))
    return [tokenize(c.text) for c in chunk_documents(docs, "sentence", 40)]


QUERIES = [["ruth", "boaz", "field"], ["naomi", "moab"], ["bread", "bethlehem", "judah"], ["nonexistentword"]]


def test_scores_equal_bm25s(corpus):
    import bm25s

    ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    ref.index(corpus, show_progress=False)
    ours = BM25(1.5, 0.75, "lucene").index(corpus)
    for q in QUERIES:
        np.testing.assert_allclose(ours.get_scores(q), ref.get_scores(q), rtol=1e-5, atol=1e-6)


def test_scores_equal_rank_bm25(corpus):
    from rank_bm25 import BM25Okapi

    ref = BM25Okapi(corpus, k1=1.5, b=0.75, epsilon=0.25)
    ours = BM25(1.5, 0.75, "robertson", epsilon=0.25).index(corpus)
    for q in QUERIES[:3] + [["the", "and", "ruth", "ruth"]]:
        np.testing.assert_allclose(ours.get_scores(q), ref.get_scores(q), rtol=1e-5, atol=1e-5)


def test_search_ranks_the_best_first():
    bm = BM25().index([["cat", "sat"], ["dog", "dog", "ran"], ["cat", "dog"]])
    ids, scores = bm.search(["dog"], 2)
    assert ids.tolist() == [1, 2] and scores[0] > scores[1]
    assert top_k(np.array([1.0, 3.0, 3.0]), 5)[0].tolist() == [1, 2, 0]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="idf"):
        BM25(idf="nope")
    with pytest.raises(ValueError, match="empty"):
        BM25().index([])
