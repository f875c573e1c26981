"""`deepatlas sample`: streams what generate() would choose; bad input is a one-line error."""
from __future__ import annotations

import pytest
import torch

from deepatlas.cli import main
from deepatlas.generation.decode import SamplingSettings, generate, stream_long
from deepatlas.generation.runfolder import load_language_model, save_char_tokenizer, save_model
from deepatlas.models.gpt import GPT, GPTConfig

CHARS = list(" abcdefghij")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("l2run")
    torch.manual_seed(0)
    save_model(d, GPT(GPTConfig(vocab_size=len(CHARS), block_size=24, n_layer=1, n_head=2, n_embd=16)))
    save_char_tokenizer(d, CHARS)
    return d


def test_sample_prints_the_greedy_continuation(run_dir, capsys):
    lm = load_language_model(run_dir)
    expected = "".join(CHARS[i] for i in generate(lm.model, [lm.encode("abc")], 15)[0])
    assert main(["sample", str(run_dir), "--prompt", "abc", "--greedy", "--max-new-tokens", "15"]) == 0
    assert capsys.readouterr().out == "abc" + expected + "\n"


def test_sample_streams_past_the_context_with_a_seed(run_dir, capsys):
    lm = load_language_model(run_dir)
    s = SamplingSettings(greedy=False, temperature=0.7, top_k=5)
    expected = lm.decode(list(stream_long(lm.model, lm.encode("a"), 40, s, seed=3)))
    assert main(["sample", str(run_dir), "--prompt", "a", "--temperature", "0.7", "--top-k", "5",
                 "--seed", "3", "--max-new-tokens", "40"]) == 0
    out = capsys.readouterr().out
    assert out == "a" + expected + "\n" and len(expected) == 40     # context is only 24


@pytest.mark.parametrize("args, words", [
    (["--prompt", "xyz"], "'x'"), (["--temperature", "0"], "greedy"), (["--top-p", "2"], "top_p"),
    (["--max-new-tokens", "0"], "max-new-tokens"), (["--prompt", ""], "empty"),
    (["--prompt", "a" * 25], "context is 24 tokens"),
])
def test_bad_input_is_a_one_line_error(run_dir, capsys, args, words):
    assert main(["sample", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_missing_run_folder(tmp_path, capsys):
    assert main(["sample", str(tmp_path)]) == 2
    assert "gpt-pretrain" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate-model", "garbage-tokenizer"])
def test_damaged_run_folder_is_a_one_line_error(run_dir, tmp_path, capsys, damage):
    import shutil

    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    if damage == "truncate-model":
        weights = broken / "model" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        (broken / "tokenizer.json").write_text("{bad")
    assert main(["sample", str(broken), "--prompt", "abc"]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and err.count("\n") == 1
