def test_f8_evolution_quick_holds(run_quick):
    s = run_quick("evolution-nsga2")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["es_evals_to_tol"] is not None and m["quant_es"] < m["quant_gd"]
    assert m["hv_ratio_zdt1"] >= 0.95 and m["sort_equals_brute_force_zdt1"]

