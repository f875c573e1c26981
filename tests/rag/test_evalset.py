from deepatlas.experiments.s1_rag import Config, _docs
from deepatlas.rag.evalset import answer_correct, make_questions
from deepatlas.rag.generate import parse_citations, verify_citations
from deepatlas.rag.chunking import Chunk


def test_full_question_set_is_large_deterministic_and_supported():
    docs = _docs(Config())
    qs = make_questions(docs, seed=0, per_doc=3, max_questions=400)
    assert len(qs) >= 150 and qs == make_questions(docs, seed=0, per_doc=3, max_questions=400)
    test = [q for q in qs if q.split == "test"]
    assert 0.25 < len(test) / len(qs) < 0.55
    by_id = {d.doc_id: d for d in docs}
    for q in qs:
        assert " ".join(q.support.split()) in " ".join(by_id[q.doc_id].text.split())
        assert q.answers[0] in q.support and "____" in q.question or q.kind == "fact"
    assert {q.kind for q in qs} == {"cloze", "fact"}


def test_answers_and_citations():
    q = make_questions(_docs(Config(austen_books="", bible_books="Ge", bible_chapters=5)))[0]
    assert answer_correct(f"It was {q.answers[0]}.", q) and not answer_correct("nobody", q)
    assert parse_citations("Adam [2], see [1] and [2] and [7]", 3) == [2, 1]
    passages = [Chunk(0, "a", "A", "1", "Seth begat Enos."), Chunk(1, "a", "A", "1", "Adam knew Eve.")]
    assert verify_citations("Enos [2]", [2], passages) == [1]       # moved to the passage holding "Enos"
    assert verify_citations("Eve [2]", [2], passages) == [2]
    assert verify_citations("Noah [1]", [1], passages) == [1]       # no passage holds it: the model's own
