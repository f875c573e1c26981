import pytest
import torch
from hypothesis import given, settings, strategies as st

from deepatlas.data.lm import LMDataset, char_lm_dataset


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=2, max_size=200), st.floats(0.1, 0.9))
def test_char_dataset_round_trips_and_splits_at_the_end(text, val_fraction):
    tokenizer, ds = char_lm_dataset(text, val_fraction)
    ids = torch.cat([ds.split("train"), ds.split("val")])
    assert ids.dtype == torch.long and len(ids) == len(text)
    assert tokenizer.decode(ids.tolist()) == text
    assert tokenizer.decode(ds.split("val").tolist()) == text[len(text) - int(len(text) * val_fraction):]


def test_split_is_the_last_tenth():
    ds = LMDataset(torch.arange(1000), val_fraction=0.1)
    assert torch.equal(ds.split("train"), torch.arange(900))
    assert torch.equal(ds.split("val"), torch.arange(900, 1000))
    with pytest.raises(ValueError, match="'train', 'val'|train, val"):
        ds.split("test")


def test_batches_are_shifted_windows_and_deterministic():
    ds = LMDataset(torch.arange(5000) * 7 % 1009)  # any id stream, e.g. BPE ids
    x, y = ds.get_batch("train", step=3, micro=1, batch_size=8, block_size=32, seed=5)
    assert x.shape == y.shape == (8, 32) and x.dtype == torch.long
    torch.testing.assert_close(x[:, 1:], y[:, :-1])
    # every row is a contiguous window of the train stream
    train = ds.split("train").tolist()
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        o = next(i for i in range(len(train)) if train[i:i + 32] == row_x)
        assert train[o + 1:o + 33] == row_y
    # same arguments -> same batch, regardless of global RNG state; any change -> another batch
    torch.manual_seed(123)
    x2, _ = ds.get_batch("train", 3, 1, 8, 32, seed=5)
    assert torch.equal(x, x2)
    for args in [("train", 4, 1), ("train", 3, 0), ("val", 3, 1)]:
        assert not torch.equal(x, ds.get_batch(*args, 8, 32, seed=5)[0])
    assert not torch.equal(x, ds.get_batch("train", 3, 1, 8, 32, seed=6)[0])
    get = ds.batch_fn("val", 4, 16, seed=1)
    assert torch.equal(get(2, 0)[0], ds.get_batch("val", 2, 0, 4, 16, 1)[0])


def test_block_size_too_large_is_a_clear_error():
    _, ds = char_lm_dataset("hello world, " * 10)
    with pytest.raises(ValueError, match="block_size 64"):
        ds.get_batch("val", 0, 0, 2, 64)
