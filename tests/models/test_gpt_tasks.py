"""GPT-1 input transformations, extract-token head, choice softmax and L3 = L2 + λ·L1."""
import pytest
import torch
import torch.nn.functional as F

from deepatlas.models.gpt import GPT, GPTConfig
from deepatlas.models.gpt_tasks import (IGNORE, GPTTaskModel, TaskTokens, choice_inputs, gpt1_loss, lm_targets,
                                        pad_choices, pad_rows, pair_input)

TOK = TaskTokens.after(10)        # s=10, $=11, e=12, pad=13


def _model(n_out: int) -> GPTTaskModel:
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=14, block_size=32, n_layer=2, n_head=2, n_embd=16))
    return GPTTaskModel(gpt, n_out).eval()


def test_pair_and_choice_transformations():
    assert TOK.ids == (10, 11, 12, 13)
    assert pair_input([1, 2], [3], TOK) == [10, 1, 2, 11, 3, 12]
    rows = choice_inputs([5, 6], [[1], [2, 3], [4]], TOK)
    assert rows == [[10, 5, 6, 11, 1, 12], [10, 5, 6, 11, 2, 3, 12], [10, 5, 6, 11, 4, 12]]
    with pytest.raises(ValueError, match="at least 2 answers"):
        choice_inputs([1], [[2]], TOK)


def test_pad_rows_puts_extract_at_each_rows_last_real_token():
    rows = [pair_input([1, 2, 3], [4], TOK), pair_input([1], [2], TOK)]
    ids, extract = pad_rows(rows, TOK.pad)
    assert ids.shape == (2, 7) and extract.tolist() == [6, 4]
    assert (ids[torch.arange(2), extract] == TOK.extract).all()
    assert ids[1, 5:].tolist() == [TOK.pad, TOK.pad]
    ids3, ext3 = pad_choices([choice_inputs([1], [[2], [3, 4]], TOK)] * 2, TOK.pad)
    assert ids3.shape == (2, 2, 6) and ext3.tolist() == [[4, 5], [4, 5]]
    with pytest.raises(ValueError, match="same number of choices"):
        pad_choices([choice_inputs([1], [[2], [3]], TOK), choice_inputs([1], [[2], [3], [4]], TOK)], TOK.pad)


def test_head_reads_the_extract_token_and_ignores_padding():
    model = _model(2)
    short, long = pair_input([1], [2], TOK), pair_input([1, 2, 3, 4], [5, 6], TOK)
    with torch.no_grad():
        alone, _ = model(*pad_rows([short], TOK.pad))
        batched, _ = model(*pad_rows([long, short], TOK.pad))
        torch.testing.assert_close(batched[1], alone[0], rtol=0, atol=1e-6)
        # h_l^m W_y + b: the head on ln_f's output at the extract position
        ids, ext = pad_rows([long], TOK.pad)
        seen = {}
        hook = model.gpt.ln_f.register_forward_hook(lambda m, i, o: seen.update(h=o))
        logits, lm = model(ids, ext)
        hook.remove()
        torch.testing.assert_close(logits, model.head(seen["h"][:, ext[0]]))
        torch.testing.assert_close(lm, model.gpt(ids))


def test_choice_scores_equal_one_row_at_a_time_and_the_loss_is_the_choice_softmax():
    model = _model(1)
    examples = [choice_inputs([1, 2], [[3], [4, 5], [6], [7, 8, 9]], TOK),
                choice_inputs([2], [[1, 1], [3], [4], [5]], TOK)]
    ids, ext = pad_choices(examples, TOK.pad)
    with torch.no_grad():
        scores, lm = model.choices(ids, ext)
        assert scores.shape == (2, 4) and lm.shape == (8, ids.size(2), 14)
        for b, ex in enumerate(examples):
            for k, row in enumerate(ex):
                one, _ = model(*pad_rows([row], TOK.pad))
                torch.testing.assert_close(scores[b, k], one[0, 0], rtol=0, atol=1e-6)
    labels = torch.tensor([1, 3])
    total, l2, l1 = gpt1_loss(scores, labels, lm, ids, TOK.pad, lm_weight=0.5)
    # L2 = −mean_b log softmax_k(score_bk)[label_b]
    torch.testing.assert_close(l2, -scores.log_softmax(1)[torch.arange(2), labels].mean())
    flat = ids.view(8, -1)
    y = torch.where(flat[:, 1:] == TOK.pad, IGNORE, flat[:, 1:])
    torch.testing.assert_close(l1, F.cross_entropy(lm[:, :-1].flatten(0, 1), y.flatten(), ignore_index=IGNORE))
    torch.testing.assert_close(total, l2 + 0.5 * l1)
    assert gpt1_loss(scores, labels, lm, ids, TOK.pad, lm_weight=0.0)[0] == l2


def test_lm_targets_skip_padding_and_the_last_position():
    ids = torch.tensor([[10, 1, 2, 12, 13, 13]])
    assert lm_targets(ids, 13).tolist() == [[1, 2, 12, IGNORE, IGNORE, IGNORE]]


def test_bad_head_size_is_named():
    with pytest.raises(ValueError, match="n_out=0"):
        GPTTaskModel(GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, n_embd=8)), 0)
