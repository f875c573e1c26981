"""Encoder-decoder Transformer: label smoothing equals torch's, masks do what they claim,
beam search equals exhaustive search, beam 1 equals greedy."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from deepatlas.models.seq2seq_decode import beam_search, greedy_decode, length_penalty_of
from deepatlas.models.transformer import Transformer, TransformerConfig, label_smoothed_cross_entropy

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


def _table_step(V: int, K: int, seed: int = 0):
    """A fixed random next-token distribution for every (source, prefix): a stand-in model."""
    def step(tokens: torch.Tensor) -> torch.Tensor:
        rows = []
        for i, prefix in enumerate(tokens.tolist()):
            g = torch.Generator().manual_seed(hash((seed, i // K, *prefix)) % (2 ** 31))
            rows.append((torch.randn(V, generator=g) * 2).log_softmax(-1))
        return torch.stack(rows)
    return step


def _exhaustive(V: int, eos: int, max_len: int, source: int, alpha: float) -> tuple[list[int], float]:
    """Score every possible output (ending in EOS, or cut at max_len) and return the best."""
    step = _table_step(V, 1)
    best, best_score = None, float("-inf")
    for n in range(1, max_len + 1):
        for seq in itertools.product(range(V), repeat=n):
            if eos in seq[:-1] or (n < max_len and seq[-1] != eos):
                continue  # unfinished before max_len: not an output
            logp = 0.0
            for t in range(n):
                prefix = torch.tensor([[0, *seq[:t]]])
                logp += step_source(step, prefix, source)[seq[t]].item()
            score = logp / length_penalty_of(torch.tensor(n), alpha).item()
            if score > best_score:
                best, best_score = [s for s in seq if s != eos], score
    return best, best_score


def step_source(step, prefix, source):
    # row index `source` with K = 1 selects that source's table
    return step(prefix.expand(source + 1, -1))[source]


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_with_room_for_everything_equals_exhaustive_search(alpha):
    V, eos, max_len, B = 3, 2, 4, 2
    K = V ** max_len  # every hypothesis fits in the beam
    seqs, scores = beam_search(_table_step(V, K), B, bos=0, eos=eos, max_len=max_len, beam_size=K,
                               length_penalty=alpha)
    for b in range(B):
        best, best_score = _exhaustive(V, eos, max_len, b, alpha)
        assert seqs[b] == best
        assert scores[b] == pytest.approx(best_score, abs=1e-4)


def test_beam_of_one_equals_greedy_and_wider_beams_score_at_least_as_well():
    V, eos, B = 6, 1, 5
    greedy = greedy_decode(_table_step(V, 1, seed=3), B, bos=0, eos=eos, max_len=6)
    beam1, s1 = beam_search(_table_step(V, 1, seed=3), B, bos=0, eos=eos, max_len=6, beam_size=1,
                            length_penalty=0.0)
    assert beam1 == greedy
    _, s4 = beam_search(_table_step(V, 4, seed=3), B, bos=0, eos=eos, max_len=6, beam_size=4,
                        length_penalty=0.0)
    assert all(b >= a - 1e-6 for a, b in zip(s1, s4))
    assert any(b > a + 1e-6 for a, b in zip(s1, s4))  # on this table the beam finds better outputs


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
