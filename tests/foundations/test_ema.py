"""EMA of weights equal to torch.optim.swa_utils.AveragedModel with an EMA average."""
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from deepatlas.foundations.ema import EMA


def test_ema_equals_averaged_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    ours = EMA(model, decay=0.9)
    ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(7):
        loss = model(torch.randn(16, 5)).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        ours.update(model); ref.update_parameters(model)
    for a, b in zip(list(ours.module.parameters()) + list(ours.module.buffers()),
                    list(ref.module.parameters()) + list(ref.module.buffers())):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    # and it really is an average: not the trained weights
    assert (ours.module[0].weight - model[0].weight).abs().max() > 1e-4
    x = torch.randn(4, 5)
    ours.module.eval(); ref.module.eval()
    torch.testing.assert_close(ours.module(x), ref(x))


def test_ema_closed_form_and_bad_decay():
    w = nn.Linear(1, 1, bias=False)
    ema = EMA(w, decay=0.5)
    for v in (1.0, 2.0, 4.0):
        w.weight.data.fill_(v)
        ema.update(w)
    # θ̄ = 1 → 0.5·1 + 0.5·2 = 1.5 → 0.5·1.5 + 0.5·4 = 2.75
    assert ema.module.weight.item() == pytest.approx(2.75)
    with pytest.raises(ValueError, match="decay"):
        EMA(w, decay=1.0)
