"""`deepatlas chat --run DIR`: a saved alignment model talks through SmolLM2's ChatModel/ChatSession."""
from __future__ import annotations

import subprocess
import sys

import torch

from deepatlas.alignment.base import ChatLM, load_chat_lm, run_chat_model, save_chat_lm
from deepatlas.chat.session import ChatSession
from deepatlas.chat.template import render_chatml
from deepatlas.models.gpt import GPT, GPTConfig
from deepatlas.text.bpe import CHAT_SPECIAL_TOKENS, ByteLevelBPE


def _tiny(tmp_path):
    torch.manual_seed(0)
    bpe = ByteLevelBPE.train("the cat sat on the mat and the dog sat too", 280, CHAT_SPECIAL_TOKENS)
    lm = ChatLM(GPT(GPTConfig(vocab_size=len(bpe), block_size=64, n_layer=1, n_head=2, n_embd=16)), bpe)
    return save_chat_lm(tmp_path / "run", lm), lm


def test_saved_model_round_trips_and_chats(tmp_path):
    folder, lm = _tiny(tmp_path)
    back = load_chat_lm(folder)
    x = torch.randint(0, len(lm.bpe), (1, 10))
    torch.testing.assert_close(back.model(x), lm.model.eval()(x))
    chat = run_chat_model(folder)
    msgs = [{"role": "user", "content": "the cat"}]
    assert chat.prompt_ids(msgs) == lm.encode(render_chatml(msgs, True))     # same template, no system turn
    session = ChatSession(chat, context=64, max_new_tokens=8)
    pieces = []
    session.reply("the cat", pieces.append)
    assert session.messages[-1]["role"] == "assistant" and "".join(pieces) == session.messages[-1]["content"]


def test_cli_chat_run(tmp_path):
    folder, _ = _tiny(tmp_path)
    out = subprocess.run([sys.executable, "-m", "deepatlas", "chat", "--run", str(folder), "--max-new-tokens", "5"],
                         input="hello\n/exit\n", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "bot> " in out.stdout
    bad = subprocess.run([sys.executable, "-m", "deepatlas", "chat", "--run", str(tmp_path / "none")],
                         input="", capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "holds no chat model" in bad.stderr and "Traceback" not in bad.stderr
