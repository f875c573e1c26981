from deepatlas.audio.scoring import edit_distance, error_rate, normalise


def test_edit_distance_cases():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a"]) == 1 and edit_distance(["a", "b"], []) == 2


def test_wer_counts_corpus_edits():
    refs = ["and mister john dashwood", "he was not an ill disposed young man"]
    hyps = ["And Mr. John Dashwood", "He was not an old-sposed young man."]
    assert normalise(hyps[1]) == "he was not an old sposed young man"
    # 0 edits + (ill->old, disposed->sposed) = 2 of 12 words
    assert error_rate(refs, hyps) == 2 / 12
    assert error_rate(["abc"], ["abd"], unit="char") == 1 / 3
