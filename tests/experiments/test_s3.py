"""S3 quick run: the checks that are exact or about quality must hold; the timed ones are reported.

Speed lives in `make bench` (bench/bench_serving.py) and in S3's full run, not in a timed test: on
this workplace's AVX2-only machines (AMD EPYC, CI included) the quick run's "fast int4 ≥ 1.3× plain
int4" read 1.31, 1.40 and 1.42 in three quiet runs and failed once beside another test worker, and
"fp32 batch throughput ≥ 2× B=1" read 2.06 at B = 4. The full run (48 tokens, B up to 16) checks all
eight."""
import pytest

from deepatlas.quant.weights import INSTALL_HINT, smollm2_path

TIMED = ("fast int4 ≥ 1.3× plain int4", "fast fp32 ≥ 1.0× plain fp32", "fp32 batch throughput ≥ 2× B=1",
         "prompt lookup pays on the copy prompt")


@pytest.mark.skipif(smollm2_path() is None, reason=f"SmolLM2 GGUF absent: {INSTALL_HINT}")
def test_s3_quick_exact_and_quality_checks_hold(run_quick):
    s = run_quick("s3-inference")
    m = s["metrics"]
    checks = {line[4:]: line[1] == "x" for line in s["notes"].splitlines() if line.startswith("[")}
    assert len(checks) == 8 and set(TIMED) <= set(checks), s["notes"]
    untimed = {c: ok for c, ok in checks.items() if c not in TIMED}
    assert all(untimed.values()), (s["notes"], m)   # the checks first: a long message is cut at its end
    print("timed checks (reported, not asserted):", {c: checks[c] for c in TIMED})
    assert m["spec_lookup_fp32_acceptance"] > 0.3
    assert m["ppl_fp32"] < m["ppl_int4"] * 1.2 and m["ppl_fp32"] > 1.0
