"""VIB's KL equals torch.distributions; the loss is CE + β·KL; the encoder's σ is what it says."""
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence

from deepatlas.foundations.bottleneck import VIB, gaussian_kl_to_standard


def test_kl_equals_torch_distributions():
    torch.manual_seed(0)
    mu, log_var = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    ref = kl_divergence(Independent(Normal(mu, (0.5 * log_var).exp()), 1),
                        Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1))
    torch.testing.assert_close(gaussian_kl_to_standard(mu, log_var), ref)


def test_vib_loss_is_ce_plus_beta_kl():
    torch.manual_seed(0)
    model = VIB(10, 3, k=4, hidden=16)
    x, y = torch.randn(8, 10), torch.randint(0, 3, (8,))
    torch.manual_seed(1)
    j, ce, kl = model.loss(x, y, beta=0.1)
    torch.manual_seed(1)
    mu, log_var = model.encode(x)
    z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
    torch.testing.assert_close(ce, F.cross_entropy(model.decoder(z), y))
    torch.testing.assert_close(j, ce + 0.1 * kl)
    # σ = softplus(s − 5)
    s = model.encoder(x).chunk(2, -1)[1]
    torch.testing.assert_close((0.5 * log_var).exp(), F.softplus(s - 5) + 1e-8, rtol=1e-5, atol=1e-6)
    p = model.predict_proba(x)
    torch.testing.assert_close(p.sum(-1), torch.ones(8))
