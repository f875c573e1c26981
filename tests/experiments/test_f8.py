def test_f8_rl_quick_holds(run_quick):
    s = run_quick("cartpole-rl")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["reinforce_all_solved"] and m["dqn_all_solved"]
    assert m.get("gym_max_obs_diff", 0.0) <= 1e-6

