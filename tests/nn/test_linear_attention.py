"""Linear attention: quadratic, recurrent and chunked (lightning) forms are one function."""
from __future__ import annotations

import pytest
import torch

from deepatlas.nn.linear_attention import feature_map, linear_attention


@pytest.mark.parametrize("decay", [1.0, 0.9])
@pytest.mark.parametrize("normalize", [True, False])
def test_three_forms_equal(decay, normalize):
    g = torch.Generator().manual_seed(1)
    q, k = (torch.randn(2, 3, 45, 8, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 3, 45, 6, generator=g, dtype=torch.float64)
    quad = linear_attention(q, k, v, "quadratic", decay, normalize)
    torch.testing.assert_close(linear_attention(q, k, v, "recurrent", decay, normalize), quad)
    for chunk in (1, 7, 16, 64):
        torch.testing.assert_close(linear_attention(q, k, v, "chunked", decay, normalize, chunk), quad)


def test_quadratic_form_is_the_kernel_formula():
    q, k, v = (torch.randn(1, 1, 5, 4, dtype=torch.float64) for _ in range(3))
    fq, fk = feature_map(q)[0, 0], feature_map(k)[0, 0]
    t = 3   # o_t = Σ_{s≤t} (φ(q_t)·φ(k_s)) v_s / Σ_{s≤t} φ(q_t)·φ(k_s)
    w = fk[: t + 1] @ fq[t]
    expected = (w[:, None] * v[0, 0, : t + 1]).sum(0) / w.sum()
    torch.testing.assert_close(linear_attention(q, k, v, "quadratic", eps=0.0)[0, 0, t], expected)


def test_bad_form_named():
    x = torch.randn(1, 1, 4, 2)
    with pytest.raises(ValueError, match="valid: quadratic, recurrent, chunked"):
        linear_attention(x, x, x, "fast")
    with pytest.raises(ValueError, match="decay"):
        linear_attention(x, x, x, decay=1.5)
