def test_f1_quick_holds(run_quick):
    s = run_quick("autograd-mlp")
    assert s["held"], s["metrics"]
    assert s["metrics"]["max_grad_diff"] < 1e-8
