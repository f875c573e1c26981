def test_l1_quick_holds(run_quick):
    s = run_quick("tokenizers")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["merges_equal"] and m["vocab_equal"] and m["heldout_ids_equal"], m
    assert m["round_trip_lossless"] and m["compression_grows_with_vocab"], m
