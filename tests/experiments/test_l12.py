"""L12 quick runs: cleaning the stream lowers val loss at equal tokens; our Unigram vs sentencepiece."""


def test_l12_data_curation_quick_holds(run_quick):
    s = run_quick("data-curation")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["val_loss_clean"] < m["val_loss_dirty"]
    assert m["junk_recall"] > 0.6 and m["duplicate_recall"] > 0.9 and m["paragraphs_lost"] < 0.1
    assert m["pii_replaced"] >= m["pii_inserted"]


def test_l12_unigram_quick_holds(run_quick):
    s = run_quick("unigram-tokenizer")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["viterbi_agreement"] == 1.0 and m["vocab_overlap"] > 0.6
