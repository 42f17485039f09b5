"""Unit and property tests of the watermark algorithm on arrays (no files)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.watermark import Keyring, WatermarkConfig, WatermarkKey, detect_frames, embed_frames
from provenance.watermark.core import Embedder
from provenance.watermark.keys import KeyringError
from provenance.watermark.payload import (
    CODED_BITS,
    Message,
    PayloadError,
    conv_encode,
    list_viterbi_decode,
    message_bits,
    parse_message_bits,
    parse_payload_hex,
    viterbi_decode,
)

KEY = WatermarkKey(0, bytes(range(32)))
RING = Keyring((KEY,), 0)
PAYLOAD = bytes.fromhex("0123456789abcdef")


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture with edges: stands in for natural content."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.uniform(40, 215, (max(2, h // 16), max(2, w // 16))).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    detail = cv2.GaussianBlur(rng.normal(0, 24, (h, w)).astype(np.float32), (0, 0), 0.8)
    return np.clip(base + detail, 0, 255).astype(np.uint8)


def clip(h: int, w: int, n: int, seed: int = 0) -> list[np.ndarray]:
    img = textured(h, w, seed)
    return [np.roll(img, 3 * i, axis=1) for i in range(n)]


def jpeg(y: np.ndarray, quality: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", y, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)


# --- payload and code -------------------------------------------------------------------------

def test_message_known_answer() -> None:
    bits = message_bits(Message(PAYLOAD, key_id=3))
    assert bits.size == 80
    assert "".join(map(str, bits[:8])) == "00010011"  # version 1, key id 3
    assert np.packbits(bits[8:72]).tobytes() == PAYLOAD
    assert conv_encode(bits).size == CODED_BITS == 258
    # fixed expected values: CRC-8/SMBUS of bytes 13 01 23 .. ef is 0x10 (checked by hand with a
    # byte-wise CRC), and the coded bits; a change to either breaks every mark already out there
    assert "".join(map(str, bits[72:])) == "00010000"
    assert np.packbits(conv_encode(bits)).tobytes().hex() == (
        "0077cd1bd7c77ca6707a2a7fa72bc84e4a01a0cbb6a647b97b460e9250319c0000"
    )


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=8, max_size=8), st.integers(0, 15), st.integers(0, 2**32 - 1))
def test_payload_round_trip_with_noise(data: bytes, key_id: int, seed: int) -> None:
    msg = Message(data, key_id)
    coded = conv_encode(message_bits(msg))
    soft = (1.0 - 2.0 * coded) + np.random.default_rng(seed).normal(0, 0.5, coded.size)
    assert parse_message_bits(viterbi_decode(soft)) == msg


def test_list_decoder_paths_are_distinct_best_first_and_start_with_viterbi() -> None:
    coded = conv_encode(message_bits(Message(PAYLOAD, 2)))
    soft = (1.0 - 2.0 * coded) * 0.6 + np.random.default_rng(4).normal(0, 1.0, coded.size)
    paths = list_viterbi_decode(soft, 8)
    assert len(paths) == 8 and np.array_equal(paths[0], viterbi_decode(soft))
    assert len({p.tobytes() for p in paths}) == 8
    metrics = [float(np.dot(soft, 1.0 - 2.0 * conv_encode(p))) for p in paths]
    assert metrics == sorted(metrics, reverse=True)


def test_list_decoder_recovers_messages_the_plain_decoder_loses() -> None:
    """At a noise level where plain Viterbi fails its CRC about one time in ten (three cells per
    coded bit, as in a frame), taking the first of the 4 best paths whose CRC holds recovers most
    of those, and none comes back wrong."""
    rng = np.random.default_rng(0)
    plain = listed = wrong = 0
    for _ in range(300):
        msg = Message(rng.bytes(8), int(rng.integers(16)))
        coded = conv_encode(message_bits(msg))
        soft = 3 * 0.55 * (1.0 - 2.0 * coded) + rng.normal(0, np.sqrt(3), coded.size)
        plain += parse_message_bits(viterbi_decode(soft)) == msg
        found = next((m for p in list_viterbi_decode(soft, 4) if (m := parse_message_bits(p)) is not None), None)
        listed += found == msg
        wrong += found is not None and found != msg
    assert plain < 285 and listed >= plain + 12 and wrong == 0, (plain, listed, wrong)


def test_crc_rejects_corrupted_message() -> None:
    bits = message_bits(Message(PAYLOAD, 1))
    bits[10] ^= 1
    assert parse_message_bits(bits) is None


@pytest.mark.parametrize("text", ["", "123", "zz23456789abcdef", "0123456789abcdef00"])
def test_bad_payload_hex(text: str) -> None:
    with pytest.raises(PayloadError):
        parse_payload_hex(text)


def test_payload_hex_accepts_prefix_and_case() -> None:
    assert parse_payload_hex("0x0123456789ABCDEF") == PAYLOAD


# --- keys -------------------------------------------------------------------------------------

def test_keyring_round_trip_and_rotation() -> None:
    import tomllib

    ring = Keyring.from_secrets(tomllib.loads(RING.to_toml()))
    assert ring == RING
    rotated = ring.rotated(b"n" * 32)
    assert rotated.active_id == 1 and len(rotated.keys) == 2
    assert "secret" not in repr(rotated.active) or "<hidden>" in repr(rotated.active)
    assert b"n".hex() * 4 not in repr(rotated)


def test_keyring_errors() -> None:
    with pytest.raises(KeyringError):
        Keyring.from_secrets({})
    with pytest.raises(KeyringError):
        WatermarkKey(16, b"x" * 32)
    with pytest.raises(KeyringError):
        Keyring((KEY,), 5)


# --- embedding ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(128, 128), (120, 213), (360, 640), (640, 360)])
def test_embedding_is_invisible_by_psnr(shape: tuple[int, int]) -> None:
    frames = clip(*shape, 2)
    marked = embed_frames(frames, KEY, PAYLOAD)
    for a, b in zip(frames, marked, strict=True):
        assert a.shape == b.shape and b.dtype == np.uint8
        assert cv2.PSNR(a, b) >= 40.0


def test_flat_areas_get_less_mark_than_texture() -> None:
    img = textured(256, 256)
    img[:, :128] = 128  # left half flat
    emb = Embedder(KEY, PAYLOAD, 256, 256)
    diff = np.abs(emb.embed_luma(img).astype(np.int16) - img)
    assert diff[:, 140:].mean() > 2 * diff[:, :100].mean()


def test_frame_size_mismatch_is_an_error() -> None:
    emb = Embedder(KEY, PAYLOAD, 64, 64)
    with pytest.raises(ValueError):
        emb.embed_luma(np.zeros((32, 32), np.uint8))


# --- detection ------------------------------------------------------------------------------------

def test_round_trip_and_statistics() -> None:
    marked = embed_frames(clip(180, 320, 6), KEY, PAYLOAD)
    r = detect_frames(marked, RING)
    assert r.present and r.payload == PAYLOAD.hex() and r.key_id == 0 and r.version == 1
    assert r.p_value < 1e-6 and r.bit_errors is not None and r.frames_used == 6
    assert abs(r.scale - 1.0) < 0.01


def test_unmarked_is_absent() -> None:
    r = detect_frames(clip(144, 256, 6, seed=5), RING)
    assert not r.present and r.payload is None and r.p_value >= 1e-6


def test_wrong_key_does_not_detect() -> None:
    marked = embed_frames(clip(144, 256, 4), KEY, PAYLOAD)
    other = Keyring((WatermarkKey(0, b"o" * 32),), 0)
    assert not detect_frames(marked, other).present


def test_rotation_old_key_still_detected() -> None:
    marked = embed_frames(clip(144, 256, 4), KEY, PAYLOAD)
    rotated = RING.rotated(b"r" * 32)
    r = detect_frames(marked, rotated)
    assert r.present and r.key_id == 0
    new_marked = embed_frames(clip(144, 256, 4), rotated.active, PAYLOAD)
    r2 = detect_frames(new_marked, rotated)
    assert r2.present and r2.key_id == rotated.active_id


def test_still_image_single_frame() -> None:
    marked = embed_frames([textured(360, 480, 3)], KEY, PAYLOAD)
    r = detect_frames(marked, RING)
    assert r.present and r.payload == PAYLOAD.hex() and r.frames_used == 1
    assert r.extra["geometry"] == "still"
    # one frame is searched at two geometries, and the p-value's union counts both
    assert r.p_value == pytest.approx(2 * 2.0**72 * np.exp(-r.score**2 / 2), rel=0.01)


def test_still_geometry_gives_a_real_photo_the_evidence_video_geometry_lacks() -> None:
    """One 400x300 frame of a busy photo (scikit-image's astronaut: dark, saturated background, fine
    detail): marked at the video geometry the score stays under the threshold (11.3); the still
    geometry sums about four times the tiles."""
    import skimage.data

    y = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)[56:356], (400, 300),
                   interpolation=cv2.INTER_AREA)
    video = WatermarkConfig()
    as_video = detect_frames([Embedder(KEY, PAYLOAD, 300, 400, cfg=video).embed_luma(y)], RING)
    as_still = detect_frames(embed_frames([y], KEY, PAYLOAD), RING)
    assert as_still.present and as_still.extra["geometry"] == "still" and as_still.payload == PAYLOAD.hex()
    assert as_still.score > as_video.score + 4, (as_still.score, as_video.score)


def test_small_video_geometry_survives_a_downscale_the_video_geometry_does_not() -> None:
    """A 128x128 clip (the default generator's size) is marked at the small geometry: its cells
    are coarser than the 160 px working resolution would draw them, and they survive a 50%
    downscale with JPEG q70 on every frame, where the same clip marked at the video geometry
    scores far lower."""
    frames = clip(128, 128, 12, seed=7)
    as_video = WatermarkConfig(small_work_short=WatermarkConfig().work_short)  # small = video: no small geometry

    def attacked(marked: list[np.ndarray]) -> list[np.ndarray]:
        return [jpeg(cv2.resize(y, (64, 64), interpolation=cv2.INTER_AREA), 70) for y in marked]

    small = detect_frames(attacked(embed_frames(frames, KEY, PAYLOAD)), RING)
    video = detect_frames(attacked(embed_frames(frames, KEY, PAYLOAD, cfg=as_video)), RING, as_video)
    assert small.present and small.payload == PAYLOAD.hex(), small
    assert not video.present and small.score > video.score + 2, (small.score, video.score)


def test_a_frame_grabbed_from_a_marked_clip_is_still_read() -> None:
    """A one-frame input is searched at both geometries, so a video frame saved as a picture keeps
    its mark (the still search can also find it: at twice the working size a video tile has twice
    the period, the edge of the crop search)."""
    marked = embed_frames(clip(360, 640, 3), KEY, PAYLOAD)
    r = detect_frames([jpeg(marked[1], 90)], RING)
    assert r.present and r.payload == PAYLOAD.hex()
    video_only = detect_frames([jpeg(marked[1], 90)] * 2, RING)  # two frames: the video geometry alone
    assert video_only.present and video_only.extra["geometry"] == "video"


def _crop(y: np.ndarray, div: int) -> np.ndarray:
    dy, dx = y.shape[0] // div, y.shape[1] // div
    return y[dy : y.shape[0] - dy, dx : y.shape[1] - dx]


# a small, fast version of the attack suite at low resolution
ATTACKS = {
    "jpeg60": lambda y: jpeg(y, 60),
    "downscale50": lambda y: jpeg(cv2.resize(y, (y.shape[1] // 2, y.shape[0] // 2), interpolation=cv2.INTER_AREA), 85),
    "crop10": lambda y: _crop(y, 10),
    "brightness+20": lambda y: np.clip(y.astype(np.int16) + 20, 0, 255).astype(np.uint8),
    "contrast0.8": lambda y: np.clip((y.astype(np.float32) - 128) * 0.8 + 128, 0, 255).astype(np.uint8),
    "scale75_crop5": lambda y: _crop(
        cv2.resize(y, (y.shape[1] * 3 // 4, y.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA), 20),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_suite_small(name: str) -> None:
    marked = embed_frames(clip(270, 480, 8, seed=7), KEY, PAYLOAD)
    r = detect_frames([ATTACKS[name](y) for y in marked[::2]], RING)
    assert r.present, r
    assert r.payload == PAYLOAD.hex()


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([(128, 128), (96, 170), (200, 120)]))
def test_property_unmarked_random_content_never_detected(seed: int, shape: tuple[int, int]) -> None:
    assert not detect_frames([textured(*shape, seed)], RING).present


def test_config_geometry_rejects_tiny_tile() -> None:
    with pytest.raises(ValueError):
        embed_frames([textured(64, 64)], KEY, PAYLOAD, WatermarkConfig(tile_cells=16))


def photo(h: int, w: int) -> np.ndarray:
    """A real photo (scikit-image's bundled 'coffee') at any size: natural texture statistics."""
    import skimage.data

    return cv2.resize(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2GRAY), (w, h), interpolation=cv2.INTER_AREA
                      if w < 600 else cv2.INTER_CUBIC)


def test_small_clip_of_a_real_photo() -> None:
    """128x128 video: a camera moving over a real photo; evidence adds up over frames."""
    base = photo(160, 160)
    frames = [np.ascontiguousarray(base[i % 8 : i % 8 + 128, 3 * i : 3 * i + 128]) for i in range(10)]
    r = detect_frames([jpeg(y, 90) for y in embed_frames(frames, KEY, PAYLOAD)], RING)
    assert r.present and r.payload == PAYLOAD.hex()


@pytest.mark.parametrize("shape", [(2160, 3840), (1280, 720), (720, 1280)])
def test_extreme_sizes_and_aspects_round_trip(shape: tuple[int, int]) -> None:
    original = photo(*shape)
    marked = embed_frames([original], KEY, PAYLOAD)
    assert cv2.PSNR(marked[0], original) >= 40.0
    r = detect_frames([jpeg(marked[0], 90)], RING)
    assert r.present and r.payload == PAYLOAD.hex()
