"""Encoder-decoder Transformer: label smoothing equals torch's, masks do what they claim,
greedy equals the argmax loop, the decoder cache changes no output, sources decode independently.
(The beam search itself is tested in tests/generation/test_beam.py.)"""
import pytest
import torch
import torch.nn.functional as F

from deepatlas.models.transformer import Transformer, TransformerConfig, label_smoothed_cross_entropy
from deepatlas.nn.attention import KVCache

close = torch.testing.assert_close


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_equals_torch(smoothing):
    torch.manual_seed(0)
    logits, target = torch.randn(20, 7), torch.randint(0, 7, (20,))
    target[::4] = 0  # the ignored pad id
    ours = label_smoothed_cross_entropy(logits, target, smoothing, ignore_index=0)
    close(ours, F.cross_entropy(logits, target, label_smoothing=smoothing, ignore_index=0))


def _model(**kw) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(src_vocab=11, tgt_vocab=13, d_model=16, n_head=2, n_encoder_layer=2,
                            n_decoder_layer=2, d_ff=32, dropout=0.0, max_len=32, **kw)
    return Transformer(cfg).eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_is_causal_and_source_padding_is_ignored(norm_first):
    model = _model(norm_first=norm_first)
    src = torch.randint(1, 11, (2, 6))
    tgt = torch.randint(1, 13, (2, 5))
    logits = model(src, tgt)
    changed = tgt.clone()
    changed[:, 3:] = (changed[:, 3:] % 12) + 1
    close(model(src, changed)[:, :3], logits[:, :3])          # the future does not leak
    assert not torch.allclose(model(src, changed)[:, 3:], logits[:, 3:])
    padded = torch.cat([src, torch.zeros(2, 4, dtype=torch.long)], 1)
    close(model(padded, tgt), logits, atol=1e-5, rtol=1e-5)    # pads in the source change nothing


def test_embedding_scale_and_sharing():
    model = _model(tie_output=True)
    assert model.out.weight is model.tgt_embed.weight
    tokens = torch.tensor([[3, 4, 5]])
    expected = model.tgt_embed.weight[tokens] * 16 ** 0.5 + model.positions(3)
    close(model._embed(model.tgt_embed, tokens), expected)
    torch.manual_seed(0)
    shared = Transformer(TransformerConfig(src_vocab=9, tgt_vocab=9, d_model=8, n_head=2,
                                           share_embeddings=True))
    assert shared.src_embed is shared.tgt_embed
    with pytest.raises(ValueError, match="src_vocab == tgt_vocab"):
        Transformer(TransformerConfig(src_vocab=9, tgt_vocab=8, share_embeddings=True))


def test_model_greedy_equals_argmax_loop_and_beam_runs_batched():
    model = _model()
    src = torch.randint(1, 11, (3, 5))
    out = model.greedy(src, bos=1, eos=2, max_len=6)
    for b in range(3):
        tokens = [1]
        for _ in range(6):
            nxt = model(src[b:b + 1], torch.tensor([tokens]))[0, -1].argmax().item()
            tokens.append(nxt)
            if nxt == 2:
                break
        assert out[b] == [t for t in tokens[1:] if t != 2]
    beams = model.beam(src, bos=1, eos=2, max_len=6, beam_size=3)
    single = [model.beam(src[b:b + 1], bos=1, eos=2, max_len=6, beam_size=3)[0] for b in range(3)]
    assert beams == single  # sources in one batch do not interact


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_cache_equals_recomputation(norm_first):
    model = _model(norm_first=norm_first)
    src, tgt = torch.randint(1, 11, (3, 5)), torch.randint(1, 13, (3, 6))
    memory, src_pad = model.encode(src)
    cache = KVCache(2, 3, 2, 6, 8)
    stepwise = torch.cat([model.decode(tgt[:, :2], memory, src_pad, cache=cache)]
                         + [model.decode(tgt[:, t:t + 1], memory, src_pad, cache=cache) for t in range(2, 6)], 1)
    close(stepwise, model.decode(tgt, memory, src_pad), atol=1e-5, rtol=1e-5)
    assert model.greedy(src, 1, 2, 8, use_cache=True) == model.greedy(src, 1, 2, 8, use_cache=False)
    assert model.beam(src, 1, 2, 8, 3, use_cache=True) == model.beam(src, 1, 2, 8, 3, use_cache=False)
