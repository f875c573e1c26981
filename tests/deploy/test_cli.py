"""`deepatlas export-web RUN_DIR OUT_DIR`: an L2-style run folder becomes a static site whose
model is the run's GPT (onnxruntime = PyTorch) and whose vocabulary is the run's tokenizer;
`export-web --model smollm2 OUT_DIR` writes a Llama and its byte-level BPE."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'deepatlas[reference]'")

from deepatlas.cli import main  # noqa: E402
from deepatlas.deploy.onnx import greedy_onnx, greedy_torch, session  # noqa: E402
from deepatlas.deploy.web import ORT_WEB_FILES  # noqa: E402
from deepatlas.generation.runfolder import save_char_tokenizer, save_model  # noqa: E402
from deepatlas.models.gpt import GPT, GPTConfig  # noqa: E402


@pytest.fixture
def run_dir(tmp_path):
    chars = sorted(set("Emma was handsome, clever, and rich.\n"))
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=len(chars), block_size=32, n_layer=1, n_head=2, n_embd=16))
    save_model(tmp_path, gpt)
    save_char_tokenizer(tmp_path, chars)
    return tmp_path, gpt.eval(), chars


@pytest.fixture
def fake_ort_web(tmp_path, monkeypatch):
    """Stand-ins for onnxruntime-web's files: the page itself is tested in test_web.py."""
    fake_ort = tmp_path / "ort"
    fake_ort.mkdir()
    for f in ORT_WEB_FILES:
        (fake_ort / f).write_text("//")
    monkeypatch.setenv("DEEPATLAS_ORT_WEB", str(fake_ort))


def test_export_web_writes_the_runs_model_and_vocabulary(run_dir, tmp_path, fake_ort_web):
    folder, gpt, chars = run_dir
    site = tmp_path / "site"
    assert main(["export-web", str(folder), str(site), "--prompt", "Emma", "--new-tokens", "10"]) == 0
    manifest = json.loads((site / "manifest.json").read_text())["gpt"]
    assert manifest["vocab"] == chars and manifest["prompt"] == "Emma" and manifest["new_tokens"] == 10
    assert {"index.html", "app.js", "gpt.onnx", *ORT_WEB_FILES} <= {p.name for p in site.iterdir()}
    prompt = [chars.index(c) for c in "Emma"]
    got, got_logits = greedy_onnx(session(site / "gpt.onnx"), prompt, 10, n_layer=1, n_head=2, head_dim=8)
    want, want_logits = greedy_torch(gpt, prompt, 10)
    assert got == want and max(np.abs(a - b).max() for a, b in zip(got_logits, want_logits)) < 1e-5


def test_export_web_names_what_is_wrong(run_dir, tmp_path, capsys, monkeypatch):
    folder, _, _ = run_dir
    monkeypatch.setenv("DEEPATLAS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("DEEPATLAS_ORT_WEB", raising=False)
    assert main(["export-web", str(folder), str(tmp_path / "a"), "--prompt", "Emma", "--new-tokens", "10"]) == 2
    assert "onnxruntime-web 1.30.0 not found" in capsys.readouterr().err
    assert main(["export-web", str(folder), str(tmp_path / "b"), "--new-tokens", "100"]) == 2
    assert "must be 1..32" in capsys.readouterr().err
    assert main(["export-web", str(tmp_path / "nothing"), str(tmp_path / "c")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_export_web_model_writes_the_llama_and_its_bpe(tmp_path, monkeypatch, fake_ort_web):
    """`export-web --model smollm2 OUT_DIR`: the CLI's wiring, with a random-weight Llama and a small
    BPE standing in for SmolLM2 (the real one is the smollm2-web experiment's full setting)."""
    import deepatlas.deploy.cli as cli
    from deepatlas.chat.tokenizer import GGUFTokenizer
    from deepatlas.models.llama import Llama, LlamaConfig
    from deepatlas.text.bpe import ByteLevelBPE

    bpe = ByteLevelBPE.train(["The capital of France is Paris. " * 5], 290, pretokenizer="smollm")
    torch.manual_seed(0)
    llama = Llama(LlamaConfig(vocab_size=len(bpe), dim=32, n_layer=1, n_head=4, n_kv_head=2, ffn_dim=64,
                              context_length=64)).eval()
    monkeypatch.setattr(cli, "_load_pretrained", lambda model, gguf: (llama, GGUFTokenizer(bpe, None, None, [])))
    site = tmp_path / "site"
    assert main(["export-web", "--model", "smollm2", str(site), "--new-tokens", "6"]) == 0
    manifest = json.loads((site / "manifest.json").read_text())["gpt"]
    assert manifest["tokenizer"] == "tokenizer.json" and manifest["n_head"] == 2 and manifest["new_tokens"] == 6
    assert json.loads((site / "tokenizer.json").read_text())["merges"] == [" ".join(m) for m in bpe.merges]
    prompt = bpe.encode("The capital of France is")
    got, _ = greedy_onnx(session(site / "gpt.onnx"), prompt, 6, n_layer=1, n_head=2, head_dim=8)
    assert got == greedy_torch(llama, prompt, 6)[0]
    assert main(["export-web", "--model", "smollm2", str(site), "--new-tokens", "60"]) == 2   # 60 + 5 > 64


def test_export_web_model_names_what_is_wrong(tmp_path, capsys):
    assert main(["export-web", "--model", "smollm2", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "give only OUT_DIR" in capsys.readouterr().err
    assert main(["export-web", str(tmp_path / "a")]) == 2
    assert "give RUN_DIR OUT_DIR, or --model smollm2 OUT_DIR" in capsys.readouterr().err
    assert main(["export-web", "--model", "smollm2", "--gguf", str(tmp_path / "none.gguf"), str(tmp_path / "a")]) == 2
    assert "none.gguf: no such file" in capsys.readouterr().err
