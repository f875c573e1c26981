"""models/vlm.py on a tiny random Llama: shapes, where the image tokens go, Flamingo's zero gates,
the resampler, and the cached greedy decoder against recomputation."""
from __future__ import annotations

import pytest
import torch

from deepatlas.models.llama import Llama, LlamaConfig
from deepatlas.models.vit import ViT, conv_stem
from deepatlas.models.vlm import (FlamingoVLM, GatedCrossAttention, LlavaVLM, MLPProjector, PerceiverResampler,
                                  TextOnlyLM, VisionTower, answer_loss, greedy_answers, run_blocks)


def tiny_llm(seed: int = 0) -> Llama:
    torch.manual_seed(seed)
    return Llama(LlamaConfig(vocab_size=50, dim=32, n_layer=4, n_head=4, n_kv_head=2, ffn_dim=64,
                             context_length=64)).eval()


def tiny_tower(stem: bool = False) -> VisionTower:
    torch.manual_seed(1)
    if stem:
        vit = ViT(6, 1, 16, 1, dim=16, depth=1, heads=2, mlp_dim=32)
        return VisionTower(vit, 3, conv_stem(3, 16, 2)).eval()
    return VisionTower(ViT(24, 4, 3, 1, dim=16, depth=1, heads=2, mlp_dim=32), 3).eval()


def test_tower_pools_patch_tokens_onto_the_grid():
    for stem in (False, True):
        tower = tiny_tower(stem)
        x = torch.rand(2, 3, 24, 24)
        out = tower(x)
        assert out.shape == (2, 9, 16)
        z = tower.vit.features(tower.stem(x) if stem else x)[:, 1:]             # (2, 36, 16) on a 6×6 grid
        cell = z.reshape(2, 6, 6, 16)[:, :2, 2:4].mean((1, 2))                   # top centre cell: rows 0-1, cols 2-3
        torch.testing.assert_close(out[:, 1], cell)
    with pytest.raises(ValueError, match="pooled grid"):
        VisionTower(ViT(24, 4, 3, 1, dim=16, depth=1, heads=2, mlp_dim=32), 7)


def test_text_only_equals_the_llm():
    llm = tiny_llm()
    ids = torch.randint(0, 50, (2, 7))
    h = TextOnlyLM(llm).text_hidden(None, ids)
    torch.testing.assert_close(llm.lm_head(h), llm(ids))


def test_llava_places_the_image_tokens_before_the_text():
    llm, tower = tiny_llm(), tiny_tower()
    model = LlavaVLM(tower, llm, MLPProjector(16, 32)).eval()
    x, ids = torch.rand(2, 3, 24, 24), torch.randint(0, 50, (2, 5))
    h = model.text_hidden(x, ids)
    assert h.shape == (2, 5, 32)
    # by hand: [H_v ; E[x]] through the blocks, the last 5 positions
    full = run_blocks(llm, torch.cat([model.projector(tower(x)), llm.embed(ids)], 1))
    torch.testing.assert_close(h, full[:, 9:])
    # precomputed tower features give the same states
    torch.testing.assert_close(model.text_hidden(tower(x), ids), h)
    # the image reaches the text: another image changes the text's states
    assert not torch.allclose(model.text_hidden(torch.rand(2, 3, 24, 24), ids), h)


def test_resampler_shapes_and_any_number_of_features():
    r = PerceiverResampler(16, n_latents=5, depth=2, heads=2)
    for n in (3, 9, 20):
        assert r(torch.randn(2, n, 16)).shape == (2, 5, 16)


def test_flamingo_gates_at_zero_leave_the_llm_unchanged():
    llm, tower = tiny_llm(), tiny_tower()
    model = FlamingoVLM(tower, llm, PerceiverResampler(16, 4, 1, 2), every=2).eval()
    assert model.layer_ids == [0, 2] and len(model.xattn) == 2
    x, ids = torch.rand(2, 3, 24, 24), torch.randint(0, 50, (2, 6))
    logits = llm.lm_head(model.text_hidden(x, ids))
    torch.testing.assert_close(logits, llm(ids), rtol=0, atol=0)                 # bit-equal: the gates are 0
    # a gradient reaches the gates (tanh'(0) = 1), so training can open them
    loss = logits.logsumexp(-1).mean()
    loss.backward()
    assert all(float(g.attn_gate.grad.abs()) > 0 for g in model.xattn)
    # opened gates: the image changes the text's logits
    with torch.no_grad():
        for g in model.xattn:
            g.attn_gate.fill_(0.5)
            g.ff_gate.fill_(0.5)
        assert not torch.allclose(llm.lm_head(model.text_hidden(x, ids)), llm(ids))


def test_gated_cross_attention_formula():
    g = GatedCrossAttention(8, 6, 2)
    with torch.no_grad():
        g.attn_gate.fill_(0.3)
        g.ff_gate.fill_(-0.7)
    y, media = torch.randn(2, 4, 8), torch.randn(2, 3, 6)
    mid = y + torch.tanh(torch.tensor(0.3)) * g.attn(g.norm_attn(y), media)
    torch.testing.assert_close(g(y, media), mid + torch.tanh(torch.tensor(-0.7)) * g.ff(g.norm_ff(mid)))


def test_answer_loss_is_the_cross_entropy_of_the_marked_tokens():
    llm = tiny_llm()
    model = TextOnlyLM(llm)
    ids = torch.randint(0, 50, (2, 6))
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 4:], mask[1, 2] = True, True
    logits = llm(ids)
    want = torch.nn.functional.cross_entropy(torch.stack([logits[0, 3], logits[0, 4], logits[1, 1]]),
                                             torch.stack([ids[0, 4], ids[0, 5], ids[1, 2]]))
    torch.testing.assert_close(answer_loss(model, None, ids, mask), want)
    with pytest.raises(ValueError, match="first token"):
        answer_loss(model, None, ids, torch.ones(2, 6, dtype=torch.bool))


@pytest.mark.parametrize("design", ["text", "llava", "flamingo"])
def test_cached_greedy_equals_recomputing(design):
    llm, tower = tiny_llm(), tiny_tower()
    model = {"text": lambda: TextOnlyLM(llm), "llava": lambda: LlavaVLM(tower, llm, MLPProjector(16, 32)),
             "flamingo": lambda: FlamingoVLM(tower, llm, PerceiverResampler(16, 4, 1, 2), every=2)}[design]().eval()
    if design == "flamingo":
        for g in model.xattn:
            torch.nn.init.constant_(g.attn_gate, 1.0)
    x, prompts = torch.rand(3, 3, 24, 24), torch.randint(0, 50, (3, 4))
    got = greedy_answers(model, None if design == "text" else x, prompts, max_new=5, stop_id=49)
    ids = prompts
    with torch.no_grad():
        for _ in range(5):   # recompute the whole sequence at each step
            nxt = llm.lm_head(model.text_hidden(None if design == "text" else x, ids)[:, -1]).argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], 1)
    for row, new in zip(ids[:, 4:].tolist(), got):
        assert new == (row[:row.index(49)] if 49 in row else row)


def test_bf16_autocast_keeps_the_loss_close():
    llm, tower = tiny_llm(), tiny_tower()
    model = LlavaVLM(tower, llm, MLPProjector(16, 32)).eval()
    x, ids = torch.rand(2, 3, 24, 24), torch.randint(0, 50, (2, 6))
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, 3:] = True
    fp32 = answer_loss(model, x, ids, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = answer_loss(model, x, ids, mask)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, rtol=2e-2, atol=2e-2)     # bf16 keeps ~3 significant digits


def test_flamingo_gates_get_their_own_learning_rate():
    """vqa.build marks the tanh gates with lr_scale; core/train's AdamW puts them in their own group,
    and after one step at rate lr each gate has moved ≈ lr_scale·lr (Adam's first step is ±lr)."""
    from deepatlas.core.train import TrainConfig, make_optimizer
    from deepatlas.multimodal.vqa import VQAConfig, build

    llm = tiny_llm()
    model = build("flamingo", VQAConfig(gate_lr_scale=10.0, xattn_every=1), llm, tiny_tower())
    opt = make_optimizer(model, TrainConfig(lr=1e-3, weight_decay=0.01))
    gates = {id(p) for x in model.xattn for p in (x.attn_gate, x.ff_gate)}
    scaled = [g for g in opt.param_groups if g.get("lr_scale", 1.0) == 10.0]
    assert {id(p) for g in scaled for p in g["params"]} == gates
    assert all("lr_scale" not in g for g in opt.param_groups if g not in scaled)
    for g in opt.param_groups:
        g["lr"] = 1e-3 * g.get("lr_scale", 1.0)
    for x in model.xattn:
        x.attn_gate.grad, x.ff_gate.grad = torch.tensor(-1.0), torch.tensor(1.0)
    opt.step()
    for x in model.xattn:
        torch.testing.assert_close(x.attn_gate.detach(), torch.tensor(1e-2), rtol=1e-3, atol=0)
        torch.testing.assert_close(x.ff_gate.detach(), torch.tensor(-1e-2), rtol=1e-3, atol=0)
