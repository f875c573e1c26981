def test_m4_nodes_quick_holds(run_quick):
    s = run_quick("gnn-node-classification")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["acc_gcn"] > m["acc_mlp"] + 0.2 and m["karate_gcn"] >= 0.8 and m["karate_mlp"] < 0.7


def test_m4_graphs_quick_holds(run_quick):
    s = run_quick("gnn-graph-classification")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["acc_SAGE-sum"] >= 0.85 and m["acc_GAT"] <= 0.45 and m["acc_no message passing"] <= 0.45


def test_m4_oversmoothing_quick_holds(run_quick):
    s = run_quick("gnn-oversmoothing")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["cosine_last"] > 0.99 and m["sgc_best_acc"] - m["sgc_last_acc"] >= 0.2
