import torch

from deepatlas.data.digits import load_digits_tensors


def test_fixed_disjoint_split_of_all_1797_digits():
    xtr, ytr, xte, yte = load_digits_tensors()
    assert xtr.shape == (1438, 64) and xte.shape == (359, 64)
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.long
    assert 0.0 <= xtr.min() and xtr.max() == 1.0
    assert set(ytr.tolist()) == set(range(10))
    again = load_digits_tensors()
    torch.testing.assert_close(again[0], xtr)
    torch.testing.assert_close(again[3], yte)
    # no test image is also a training image row (disjoint index sets of one permutation)
    rows = {tuple(r) for r in xtr.tolist()}
    assert sum(tuple(r) in rows for r in xte.tolist()) < 5  # sklearn digits has a few duplicates
