"""Our optimisers equal torch.optim step by step; SAM equals its definition; clipping equals torch's."""
import copy

import pytest
import torch
from torch import nn

from deepatlas.foundations.optim import SAM, SGD, Adam, AdamW, clip_grad_norm_, grad_norm


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def _batches(n=20):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 5, generator=g), torch.randn(16, 3, generator=g)) for _ in range(n)]


def _loss(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


CASES = {
    "sgd": (lambda p: SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_wd": (lambda p: SGD(p, lr=0.1, weight_decay=0.05), lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.05)),
    "momentum": (lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01)),
    "momentum_dampening": (lambda p: SGD(p, lr=0.05, momentum=0.9, dampening=0.3),
                           lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.3)),
    "nesterov": (lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam": (lambda p: Adam(p, lr=1e-2, betas=(0.8, 0.99)), lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99))),
    "adam_l2": (lambda p: Adam(p, lr=1e-2, weight_decay=0.1), lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1)),
    "adamw": (lambda p: AdamW(p, lr=1e-2, weight_decay=0.1), lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_trajectory_equals_torch_optim_for_20_steps(name):
    ours_cls, ref_cls = CASES[name]
    m1 = _model()
    m2 = copy.deepcopy(m1)
    o1, o2 = ours_cls(m1.parameters()), ref_cls(m2.parameters())
    for step, batch in enumerate(_batches()):
        for m, o in ((m1, o1), (m2, o2)):
            o.zero_grad()
            _loss(m, batch).backward()
            o.step()
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            torch.testing.assert_close(p1, p2, rtol=1e-6, atol=1e-6, msg=f"{name} step {step}")
    assert not torch.equal(next(m1.parameters()), next(_model().parameters()))  # it did move


def test_l2_and_decoupled_decay_differ_for_adam_but_not_for_sgd():
    """Loshchilov & Hutter 2019: for SGD, L2 ≡ decay (λ' = λ); for Adam the L2 term is rescaled by 1/√v̂."""
    results = {}
    for name, make in {"adam_l2": lambda p: Adam(p, lr=1e-2, weight_decay=0.1),
                       "adamw": lambda p: AdamW(p, lr=1e-2, weight_decay=0.1),
                       "sgd_l2": lambda p: SGD(p, lr=0.1, weight_decay=0.1)}.items():
        m = _model()
        o = make(m.parameters())
        for batch in _batches(10):
            o.zero_grad(); _loss(m, batch).backward(); o.step()
        results[name] = torch.cat([p.flatten() for p in m.parameters()])
    assert (results["adam_l2"] - results["adamw"]).abs().max() > 1e-3
    # SGD with decoupled decay θ ← (1 − ηλ)θ − ηg is the same map as SGD on g + λθ
    m = _model()
    for batch in _batches(10):
        m.zero_grad(); _loss(m, batch).backward()
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(1 - 0.1 * 0.1).sub_(0.1 * p.grad)
    torch.testing.assert_close(torch.cat([p.flatten() for p in m.parameters()]), results["sgd_l2"])


def test_sam_equals_its_definition_by_hand():
    rho, lr = 0.1, 0.05
    m1 = _model()
    m2 = copy.deepcopy(m1)
    sam = SAM(SGD(m1.parameters(), lr=lr), rho=rho)
    for batch in _batches(5):
        sam.step(lambda: _loss(m1, batch).backward())
        # by hand: ε̂ = ρ g/‖g‖, g' = ∇L(θ + ε̂), θ ← θ − η g'
        params = list(m2.parameters())
        grads = torch.autograd.grad(_loss(m2, batch), params)
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_(rho * g / norm)
        grads_adv = torch.autograd.grad(_loss(m2, batch), params)
        with torch.no_grad():
            for p, g, ga in zip(params, grads, grads_adv):
                p.sub_(rho * g / norm).sub_(lr * ga)
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            torch.testing.assert_close(p1, p2)
    # and SAM is not plain SGD
    m3 = _model()
    o = SGD(m3.parameters(), lr=lr)
    for batch in _batches(5):
        o.zero_grad(); _loss(m3, batch).backward(); o.step()
    assert (next(m3.parameters()) - next(m1.parameters())).abs().max() > 1e-5


@pytest.mark.parametrize("max_norm", [0.1, 1e3])
def test_clip_grad_norm_equals_torch(max_norm):
    m1 = _model()
    m2 = copy.deepcopy(m1)
    for m in (m1, m2):
        _loss(m, _batches(1)[0]).backward()
    n1 = clip_grad_norm_(m1.parameters(), max_norm)
    n2 = torch.nn.utils.clip_grad_norm_(m2.parameters(), max_norm)
    torch.testing.assert_close(n1, n2)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad)
    after = grad_norm(list(m1.parameters())).item()
    assert after <= max_norm + 1e-5 and (max_norm < 1 or abs(after - n1.item()) < 1e-6)


def test_bad_hyperparameters_are_named():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="momentum=1.5"):
        SGD(p, lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta2=1.0"):
        Adam(p, betas=(0.9, 1.0))


# ---- Muon ---------------------------------------------------------------------------------

from deepatlas.foundations.optim import Muon, MuonWithAdamW, newton_schulz  # noqa: E402


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (6, 6)])
@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_equals_torch_optim_muon_bit_for_bit(shape, nesterov):
    torch.manual_seed(0)
    w0 = torch.randn(*shape)
    ours, ref = w0.clone().requires_grad_(), w0.clone().requires_grad_()
    o1 = Muon([ours], lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov, ns_dtype=torch.bfloat16)
    o2 = torch.optim.Muon([ref], lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov)
    for _ in range(20):
        g = torch.randn(*shape)
        ours.grad, ref.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    assert torch.equal(ours, ref)
    assert not torch.equal(ours, w0)


def test_muon_iterates_in_bf16_only_where_bf16_is_fast(monkeypatch):
    w = torch.randn(4, 6, requires_grad=True)
    monkeypatch.setenv("DEEPATLAS_FAST_BF16", "0")
    assert Muon([w]).ns_dtype == torch.float32
    monkeypatch.setenv("DEEPATLAS_FAST_BF16", "1")
    assert Muon([w]).ns_dtype == torch.bfloat16
    assert Muon([w], ns_dtype=torch.float32).ns_dtype == torch.float32
    with pytest.raises(ValueError, match="ns_dtype"):
        Muon([w], ns_dtype=torch.float16)


def test_newton_schulz_makes_singular_values_near_one():
    torch.manual_seed(0)
    g = torch.randn(40, 20) @ torch.diag(torch.logspace(-1, 1, 20))   # σ spread over ~2 decades
    s = torch.linalg.svdvals(newton_schulz(g, dtype=torch.float32))
    assert s.min() > 0.6 and s.max() < 1.25                            # ≈ UVᵀ: every σ pulled to ~1
    assert torch.linalg.svdvals(g).max() / torch.linalg.svdvals(g).min() > 50
    # 5 steps lift σ ≥ ~1e-3 ‖g‖_F; far smaller ones stay small (the quintic's slope at 0 is a = 3.4)


def test_muon_refuses_vectors_and_newton_schulz_refuses_non_matrices():
    with pytest.raises(ValueError, match="matrices only"):
        Muon([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="matrices"):
        newton_schulz(torch.zeros(2, 3, 4))


def test_muon_with_adamw_state_dict_round_trip():
    def build():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
        opt = MuonWithAdamW([m[0].weight, m[2].weight], [{"params": [m[0].bias, m[2].bias]}],
                            muon_lr=0.02, adamw_lr=1e-3)
        return m, opt

    def steps(m, opt, n, start):
        for i in range(start, start + n):
            g = torch.Generator().manual_seed(i)
            opt.zero_grad()
            m(torch.randn(8, 4, generator=g)).pow(2).mean().backward()
            opt.step()

    a, oa = build()
    steps(a, oa, 6, 0)
    b, ob = build()
    steps(b, ob, 3, 0)
    c, oc = build()
    c.load_state_dict(b.state_dict())
    oc.load_state_dict(copy.deepcopy(ob.state_dict()))
    steps(c, oc, 3, 3)
    for p, q in zip(a.parameters(), c.parameters()):
        assert torch.equal(p, q)
    assert [g["lr_scale"] for g in oa.param_groups] == [20.0, 1.0]


def test_batched_newton_schulz_equals_one_matrix_at_a_time():
    from deepatlas.foundations.optim import newton_schulz_batched

    torch.manual_seed(0)
    for shape in [(4, 12, 7), (3, 7, 12)]:
        g = torch.randn(*shape)
        one = torch.stack([newton_schulz(m, dtype=torch.float32) for m in g])
        torch.testing.assert_close(newton_schulz_batched(g, dtype=torch.float32), one, rtol=1e-4, atol=1e-5)
    w = [torch.randn(6, 4, requires_grad=True), torch.randn(4, 6, requires_grad=True), torch.randn(6, 4, requires_grad=True)]
    v = [p.detach().clone().requires_grad_() for p in w]
    o1, o2 = (Muon(w, lr=0.02, batched=True, ns_dtype=torch.bfloat16),
              Muon(v, lr=0.02, batched=False, ns_dtype=torch.bfloat16))
    for _ in range(5):
        for a, b in zip(w, v):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        o1.step()
        o2.step()
    for a, b in zip(w, v):       # bf16 products: the batched kernels round a little differently
        torch.testing.assert_close(a, b, rtol=0, atol=2e-3)
