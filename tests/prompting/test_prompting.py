import random

import pytest

from deepatlas.prompting.kshot import kshot_prompt, sample_shots
from deepatlas.prompting.reasoning import cot_prompt, direct_prompt, extract, vote
from deepatlas.prompting.tasks import TASKS, category_task, sentiment_task


def test_tasks_have_disjoint_pool_and_test():
    for make in TASKS.values():
        task = make()
        pool, test = task.split(12, seed=0)
        assert not set(pool) & set(test) and len(pool) == 12
        assert {e.label for e in task.examples} == set(task.labels)
    assert len(sentiment_task().examples) == 120 and len(category_task().examples) == 36


def test_kshot_prompt_and_balanced_shots():
    task = sentiment_task()
    pool, _ = task.split(12)
    shots = sample_shots(pool, 4, random.Random(1), task.labels)
    assert sorted(s.label for s in shots) == ["negative", "negative", "positive", "positive"]
    assert len(set(shots)) == 4
    p = kshot_prompt(task, shots, "The dinner was fine.")
    assert p.startswith(task.instruction) and p.endswith("Review: The dinner was fine.\nSentiment:")
    assert p.count("Sentiment: ") == 4
    assert kshot_prompt(task, [], "x") == task.instruction + "\n\nReview: x\nSentiment:"


def test_answer_extraction_and_vote():
    assert extract(" 24.\n\nQ: next 99", last=False) == "24"
    assert extract(" 6 * 4 = 24. The answer is 24.", last=True) == "24"
    assert extract(" 1,200 apples", last=True) == "1200" and extract(" none", last=True) is None
    assert vote(["3", None, "4", "4", "3"]) == "3"            # tie: the answer reached first
    assert vote(["5", "7", "7"]) == "7" and vote([None, None]) is None
    assert direct_prompt("Q?").endswith("Q: Q?\nA: The answer is")
    assert cot_prompt("Q?").endswith("A: Let's think step by step.")


@pytest.mark.parametrize("k", [0, 1, 3])
def test_sample_shots_count(k):
    task = category_task()
    pool, _ = task.split(12)
    assert len(sample_shots(pool, k, random.Random(0), task.labels)) == k


def test_sample_shots_when_a_label_runs_out():
    task = category_task()
    pool = [e for e in task.examples if e.label != "color"][:5] + [next(e for e in task.examples if e.label == "color")]
    shots = sample_shots(pool, 6, random.Random(0), task.labels)
    assert sorted(shots, key=str) == sorted(pool, key=str)
    with pytest.raises(ValueError, match="k ≤ 6"):
        sample_shots(pool, 7, random.Random(0), task.labels)
