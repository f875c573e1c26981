"""Our Whisper = Hugging Face's WhisperForConditionalGeneration on a tiny random config, copied weights."""
import pytest
import torch

from deepatlas.models.whisper import SpecialTokens, Whisper, WhisperConfig, load_hf_state_dict, sinusoids, to_hf_state_dict

transformers = pytest.importorskip("transformers", reason="transformers not installed: pip install transformers")


def tiny_pair(seed=0):
    from transformers import WhisperConfig as HFConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    hf_cfg = HFConfig(vocab_size=120, num_mel_bins=8, d_model=32, encoder_layers=2, decoder_layers=2,
                      encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                      decoder_ffn_dim=128, max_source_positions=20, max_target_positions=24,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    ref = WhisperForConditionalGeneration(hf_cfg).eval()
    with torch.no_grad():  # HF initialises biases and norms to constants: randomise everything
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    cfg = WhisperConfig(n_mels=8, n_audio_ctx=20, d_model=32, n_head=4, n_audio_layer=2,
                        n_text_ctx=24, n_text_layer=2, n_vocab=120)
    ours = load_hf_state_dict(Whisper(cfg), ref.state_dict()).eval()
    return ref, ours


def test_sinusoids_equal_hf():
    from transformers.models.whisper.modeling_whisper import sinusoids as hf_sinusoids
    torch.testing.assert_close(sinusoids(50, 16), hf_sinusoids(50, 16).float())


def test_logits_equal_hf():
    ref, ours = tiny_pair()
    mel = torch.randn(2, 8, 40)
    tokens = torch.randint(0, 120, (2, 7))
    with torch.no_grad():
        want = ref(input_features=mel, decoder_input_ids=tokens).logits
        enc = ref.model.encoder(mel).last_hidden_state
        torch.testing.assert_close(ours.encode(mel), enc, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(mel, tokens), want, atol=1e-5, rtol=1e-5)
        # token by token through the KV cache = all at once
        cross = ours.cross_kv(ours.encode(mel))
        cache = ours.new_cache(2, 10)
        steps = torch.cat([ours.decode(tokens[:, t:t + 1], cross, cache) for t in range(7)], 1)
        torch.testing.assert_close(steps, want, atol=1e-5, rtol=1e-5)


def test_round_trip_names():
    ref, ours = tiny_pair(1)
    sd = to_hf_state_dict(ours)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(sd[k], v, msg=k)


def test_greedy_equals_argmax_loop_and_beam_is_no_worse():
    ref, ours = tiny_pair(2)
    special = SpecialTokens(eot=2, sot=1, no_timestamps=3, timestamp_begin=100, suppress=[0, 5],
                            suppress_begin=[2])
    mel = torch.randn(1, 8, 40)
    got = ours.generate(mel, special, beams=1, max_new_tokens=8)[0]
    # the same search by hand on HF's logits: argmax with token 0, 5 and timestamps (≥100) banned
    seq = [1, 3]
    with torch.no_grad():
        for _ in range(8):
            logits = ref(input_features=mel, decoder_input_ids=torch.tensor([seq])).logits[0, -1]
            logits[[0, 5]] = float("-inf")
            logits[100:] = float("-inf")
            if len(seq) == 2:
                logits[2] = float("-inf")
            seq.append(int(logits.argmax()))
            if seq[-1] == 2:
                break
    assert got == [t for t in seq[2:] if t != 2]
    assert all(t < 100 and t not in (0, 5) for t in ours.generate(mel, special, beams=3, max_new_tokens=8)[0])


def test_timestamp_rules():
    _, ours = tiny_pair(3)
    special = SpecialTokens(eot=2, sot=1, no_timestamps=3, timestamp_begin=100, suppress_begin=[2])
    out = ours.generate(torch.randn(1, 8, 40), special, timestamps=True, max_new_tokens=12)[0]
    assert out and out[0] >= 100 and out[0] <= 100 + 50  # starts with a timestamp within 1 s
    stamps = [t for t in out if t >= 100]
    assert stamps == sorted(stamps)


def test_bad_mel_named():
    _, ours = tiny_pair()
    with pytest.raises(ValueError, match="mel should be"):
        ours.encode(torch.randn(1, 5, 40))
    with pytest.raises(ValueError, match="audio positions"):
        ours.encode(torch.randn(1, 8, 60))
