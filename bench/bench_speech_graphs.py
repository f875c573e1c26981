"""M3 / M4 speed: Whisper tiny.en transcription and a GCN layer on a 100k-edge graph.

* whisper_greedy_vs_transformers: greedy transcription of the longest LibriVox recording of
  pocketsphinx-testdata (7.1 s; log-mel + encoder + decoder), ours vs transformers'
  WhisperForConditionalGeneration built from the same weights (our reader's tensors under HF's
  names), both on one thread, same prompt and suppressed tokens; the texts are checked equal.
  Goal: ratio ≥ 1.0 (as fast as transformers).
* whisper_greedy_vs_ctranslate2: the same against CTranslate2's own C++ Whisper (fp32). Reported;
  the goal 0.5 says "within 2× of a dedicated inference engine".
* gcn_forward_100k_edges: one GCNConv forward (20 000 nodes, 100 000 edges, 64 -> 64 features),
  ours vs torch_geometric's GCNConv with copied weights (outputs checked equal). Goal ≥ 0.8.
"""
from __future__ import annotations

import functools

import torch

from bench.common import interleaved_median_times, result

CLIP = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"


@functools.lru_cache(maxsize=1)
def _whisper():
    from deepatlas.audio.transcribe import Transcriber
    from deepatlas.audio.wav import read_audio
    return Transcriber.load(), read_audio(CLIP)


def _one_thread(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return run


@_one_thread
def whisper_greedy_vs_transformers() -> dict:
    from transformers import WhisperConfig, WhisperForConditionalGeneration
    from transformers.generation.utils import GenerationMixin

    from deepatlas.audio.features import log_mel
    from deepatlas.models.whisper import to_hf_state_dict
    tr, audio = _whisper()
    c, s = tr.model.cfg, tr.special
    hf = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=c.n_vocab, num_mel_bins=c.n_mels, d_model=c.d_model, encoder_layers=c.n_audio_layer,
        decoder_layers=c.n_text_layer, encoder_attention_heads=c.n_head, decoder_attention_heads=c.n_head,
        encoder_ffn_dim=4 * c.d_model, decoder_ffn_dim=4 * c.d_model, max_source_positions=c.n_audio_ctx,
        max_target_positions=c.n_text_ctx, eos_token_id=s.eot, pad_token_id=s.eot)).eval()
    hf.load_state_dict(to_hf_state_dict(tr.model), strict=False)
    suppress = sorted(set(s.suppress) | set(range(s.timestamp_begin, c.n_vocab)))

    def ours():
        return tr.transcribe(audio)

    @torch.no_grad()
    def theirs():
        mel = log_mel(audio)[None]
        # GenerationMixin.generate: the plain encoder-decoder search (WhisperForConditionalGeneration's
        # own generate wants a hub generation_config), with the same suppress rules as ours
        ids = GenerationMixin.generate(hf, input_features=mel, decoder_input_ids=torch.tensor([[s.sot, s.no_timestamps]]),
                                       max_new_tokens=224, do_sample=False, num_beams=1, suppress_tokens=suppress,
                                       begin_suppress_tokens=s.suppress_begin, eos_token_id=s.eot)
        return tr.text([t for t in ids[0, 2:].tolist() if t != s.eot])

    if ours() != theirs():
        raise AssertionError(f"texts differ: ours {ours()!r}, transformers {theirs()!r}")
    t = interleaved_median_times({"ours": ours, "hf": theirs}, warmup=1, repeats=3)
    return result("whisper_tiny_en_greedy_7s_1thread", "s", t["ours"], t["hf"],
                  "transformers WhisperForConditionalGeneration", goal=1.0)


@_one_thread
def whisper_greedy_vs_ctranslate2() -> dict:
    import ctranslate2

    from deepatlas.audio.features import log_mel
    from deepatlas.audio.transcribe import whisper_dir
    tr, audio = _whisper()
    ref = ctranslate2.models.Whisper(str(whisper_dir()), device="cpu", compute_type="float32", intra_threads=1)
    prompt = [tr.special.sot, tr.special.no_timestamps]

    def theirs():
        feats = ctranslate2.StorageView.from_array(log_mel(audio)[None].numpy())
        return tr.text(ref.generate(feats, [prompt], beam_size=1)[0].sequences_ids[0])

    if tr.transcribe(audio) != theirs():
        raise AssertionError("ours and CTranslate2 transcribe differently")
    t = interleaved_median_times({"ours": lambda: tr.transcribe(audio), "ct2": theirs}, warmup=1, repeats=3)
    return result("whisper_tiny_en_greedy_7s_1thread_vs_ct2", "s", t["ours"], t["ct2"],
                  "CTranslate2 Whisper fp32 (C++)", goal=0.5)


def gcn_forward_100k_edges() -> dict:
    from torch_geometric.nn import GCNConv as PygGCN

    from deepatlas.models.gnn import GCNConv
    g = torch.Generator().manual_seed(0)
    n, e = 20_000, 100_000
    x = torch.randn(n, 64, generator=g)
    edges = torch.randint(0, n, (2, e), generator=g)
    edges = edges[:, edges[0] != edges[1]]
    ref, ours = PygGCN(64, 64), GCNConv(64, 64)
    ours.lin.weight.data.copy_(ref.lin.weight)
    ours.bias.data.copy_(ref.bias)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, edges), ref(x, edges), atol=1e-4, rtol=1e-4)
        t = interleaved_median_times({"ours": lambda: ours(x, edges), "pyg": lambda: ref(x, edges)},
                                     warmup=2, repeats=7)
    return result("gcn_forward_20k_nodes_100k_edges", "s", t["ours"], t["pyg"], "torch_geometric GCNConv", goal=0.8)


BENCHMARKS = [whisper_greedy_vs_transformers, whisper_greedy_vs_ctranslate2, gcn_forward_100k_edges]
