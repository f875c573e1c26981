"""CTC: our forward-algorithm loss = F.ctc_loss (values and gradients); decoders against brute force."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from deepatlas.models.ctc import CTCRecogniser, collapse, ctc_loss, greedy_decode, prefix_beam_decode


def batch(seed=0, T=12, B=4, C=5, L=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, B, C, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, C, (B, L), generator=g)
    targets[0, 1] = targets[0, 0]                       # a repeated symbol needs a blank between
    input_lengths = torch.tensor([T, T - 2, T - 5, T][:B])
    target_lengths = torch.tensor([L, 3, 2, 0][:B])     # includes an empty target
    return logits, targets, input_lengths, target_lengths


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_equals_torch_ctc_loss(reduction):
    logits, targets, il, tl = batch()
    lp = logits.log_softmax(-1)
    ours = ctc_loss(lp, targets, il, tl, reduction=reduction)
    ref = F.ctc_loss(lp, targets, il, tl, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    g1, = torch.autograd.grad(ours.sum(), logits, retain_graph=True)
    g2, = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(g1, g2)


def all_labellings(lp):
    """Brute force: P(y) = Σ over every path π with B(π) = y of Π p_t(π_t)."""
    T, C = lp.shape
    probs = {}
    for path in itertools.product(range(C), repeat=T):
        y = tuple(collapse(list(path)))
        probs[y] = probs.get(y, 0.0) + math.exp(sum(lp[t, s].item() for t, s in enumerate(path)))
    return probs


def test_loss_is_minus_log_of_summed_paths():
    lp = torch.randn(5, 3, dtype=torch.float64).log_softmax(-1)
    probs = all_labellings(lp)
    assert sum(probs.values()) == pytest.approx(1.0)
    loss = ctc_loss(lp[:, None], torch.tensor([[1, 2]]), torch.tensor([5]), torch.tensor([2]), reduction="none")
    assert loss.item() == pytest.approx(-math.log(probs[(1, 2)]))


def test_prefix_beam_finds_the_most_probable_labelling():
    for seed in range(5):
        torch.manual_seed(seed)
        lp = (torch.randn(6, 3, dtype=torch.float64) * 2).log_softmax(-1)
        probs = all_labellings(lp)
        best = max(probs, key=probs.get)
        assert tuple(prefix_beam_decode(lp, beam=50, prune=-1e9)) == best
        greedy = tuple(greedy_decode(lp[:, None], torch.tensor([6]))[0])
        assert probs[tuple(prefix_beam_decode(lp, beam=4))] >= probs[greedy] - 1e-12


def test_collapse_and_greedy():
    assert collapse([1, 1, 0, 1, 2, 2, 0, 0, 3]) == [1, 1, 2, 3]
    lp = torch.log(torch.tensor([[[.1, .9]], [[.8, .2]], [[.1, .9]]]))
    assert greedy_decode(lp, torch.tensor([3])) == [[1, 1]]


def test_recogniser_shapes_and_padding_independence():
    torch.manual_seed(0)
    model = CTCRecogniser(n_symbols=10, n_mels=8, d_model=16, n_head=2, layers=1, dropout=0.0).eval()
    mel = torch.randn(2, 8, 21)
    out, lengths = model(mel, torch.tensor([21, 13]))
    assert out.shape == (11, 2, 11) and lengths.tolist() == [11, 7]
    alone, _ = model(mel[1:, :, :13], torch.tensor([13]))
    torch.testing.assert_close(out[:7, 1], alone[:, 0], atol=1e-5, rtol=1e-5)


def test_bad_targets_named():
    logits, targets, il, tl = batch()
    with pytest.raises(ValueError, match="targets should be"):
        ctc_loss(logits.log_softmax(-1), targets[:2], il, tl)
