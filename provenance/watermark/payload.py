"""The watermark message and its error-correcting code.

Message layout (80 bits, most significant first)::

    version (4) | key id (4) | data (64) | CRC-8 over the previous 72 bits (8)

The message is protected by a rate-1/3, constraint-length-7 convolutional code (the LTE
generators 133/171/165 octal) with a zero tail, giving ``CODED_BITS`` = 3 * (80 + 6) = 258 coded
bits, decoded by a soft-decision list Viterbi decoder (the few best paths, tried in order until
one passes the CRC). The CRC rejects the rare wrong decodings that the p-value would otherwise
let through.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAYLOAD_VERSION = 1
VERSION_BITS = 4
KEY_ID_BITS = 4
DATA_BITS = 64
CRC_BITS = 8
MESSAGE_BITS = VERSION_BITS + KEY_ID_BITS + DATA_BITS + CRC_BITS  # 80
INFO_BITS = MESSAGE_BITS - CRC_BITS  # 72: what a false alarm could decode to

_K = 7  # constraint length
_GENERATORS = (0o133, 0o171, 0o165)
_RATE = len(_GENERATORS)
CODED_BITS = _RATE * (MESSAGE_BITS + _K - 1)  # 258
_STATES = 1 << (_K - 1)


class PayloadError(ValueError):
    """A payload given by a user is not 64 bits of hex."""


@dataclass(frozen=True)
class Message:
    """What a watermark carries: 64 data bits, the key id that embedded them, a version."""

    data: bytes
    key_id: int
    version: int = PAYLOAD_VERSION

    @property
    def hex(self) -> str:
        return self.data.hex()


def parse_payload_hex(text: str) -> bytes:
    """Parse a user-given payload: exactly 16 hex digits (64 bits)."""
    cleaned = text.strip().lower().removeprefix("0x")
    if len(cleaned) != DATA_BITS // 4:
        raise PayloadError(f"payload must be {DATA_BITS // 4} hex digits (64 bits), got {len(cleaned)}")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise PayloadError(f"payload is not hexadecimal: {text!r}") from None


def _crc8(bits: np.ndarray) -> np.ndarray:
    """CRC-8 (polynomial 0x07, init 0) of a bit array, returned as 8 bits."""
    reg = 0
    for b in bits.tolist():
        top = ((reg >> 7) & 1) ^ int(b)
        reg = (reg << 1) & 0xFF
        if top:
            reg ^= 0x07
    return np.array([(reg >> (7 - i)) & 1 for i in range(8)], dtype=np.uint8)


def _int_bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


def message_bits(msg: Message) -> np.ndarray:
    """The 80 message bits of ``msg`` (CRC included)."""
    if len(msg.data) != DATA_BITS // 8:
        raise PayloadError("payload must be exactly 8 bytes")
    info = np.concatenate(
        [
            _int_bits(msg.version, VERSION_BITS),
            _int_bits(msg.key_id, KEY_ID_BITS),
            np.unpackbits(np.frombuffer(msg.data, dtype=np.uint8)),
        ]
    )
    return np.concatenate([info, _crc8(info)])


def parse_message_bits(bits: np.ndarray) -> Message | None:
    """The message in 80 decoded bits, or None when its CRC does not match."""
    info, crc = bits[:INFO_BITS], bits[INFO_BITS:MESSAGE_BITS]
    if not np.array_equal(_crc8(info), crc):
        return None
    version = int("".join(map(str, info[:VERSION_BITS].tolist())), 2)
    key_id = int("".join(map(str, info[VERSION_BITS : VERSION_BITS + KEY_ID_BITS].tolist())), 2)
    data = np.packbits(info[VERSION_BITS + KEY_ID_BITS :]).tobytes()
    return Message(data=data, key_id=key_id, version=version)


def _output_table() -> np.ndarray:
    """Coded output bits for (state, input bit): shape (STATES, 2, RATE)."""
    table = np.zeros((_STATES, 2, _RATE), dtype=np.uint8)
    for state in range(_STATES):
        for bit in (0, 1):
            reg = (bit << (_K - 1)) | state  # newest bit in the top position
            for g, gen in enumerate(_GENERATORS):
                table[state, bit, g] = bin(reg & gen).count("1") & 1
    return table


_OUT = _output_table()
_NEXT = np.array([[(s >> 1) | (b << (_K - 2)) for b in (0, 1)] for s in range(_STATES)], dtype=np.int64)


def conv_encode(bits: np.ndarray) -> np.ndarray:
    """Rate-1/3 convolutional encoding with a zero tail: (n,) -> (3 * (n + 6),) bits."""
    state = 0
    out = []
    for b in np.concatenate([bits.astype(np.uint8), np.zeros(_K - 1, dtype=np.uint8)]).tolist():
        out.append(_OUT[state, b])
        state = _NEXT[state, b]
    return np.concatenate(out).astype(np.uint8)


# Predecessors of each state: state s' is reached from (s, b) with NEXT[s, b] == s'.
_PREV = np.zeros((_STATES, 2), dtype=np.int64)
_PREV_BIT = np.zeros(_STATES, dtype=np.int64)
for _s in range(_STATES):
    for _b in (0, 1):
        _n = _NEXT[_s, _b]
        _PREV[_n, _s & 1] = _s
        _PREV_BIT[_n] = _b


def list_viterbi_decode(soft: np.ndarray, list_size: int = 1, n_bits: int = MESSAGE_BITS) -> list[np.ndarray]:
    """Soft-decision list Viterbi decoding of a zero-tailed code: the ``list_size`` best paths.

    ``soft`` holds one value per coded bit, positive meaning bit 0 (a correlation with the
    +1/-1 carrier); only the sign and relative size matter. Returns up to ``list_size`` message
    bit arrays (``n_bits`` each), best path metric first; the first is the maximum-likelihood
    codeword. Parallel list Viterbi: every state keeps its ``list_size`` best incoming paths,
    which is exact for the ``list_size`` best paths that end in the zero state.
    """
    steps = n_bits + _K - 1
    size = max(1, int(list_size))
    soft = np.asarray(soft, dtype=np.float64).reshape(steps, _RATE)
    signs = 1.0 - 2.0 * _OUT.astype(np.float64)  # (S, 2, R): +1 for bit 0
    # branch metric of the branch entering s' from predecessor PREV[s', j] with input PREV_BIT[s']
    pred_sign = signs[_PREV, _PREV_BIT[:, None]]  # (S, 2, R)
    metric = np.full((_STATES, size), -np.inf)  # (S, L): the L best path metrics into each state
    metric[0, 0] = 0.0
    choices = np.zeros((steps, _STATES, size), dtype=np.int64)  # index into the 2L candidates
    for t in range(steps):
        branch = pred_sign @ soft[t]  # (S, 2)
        cand = (metric[_PREV] + branch[:, :, None]).reshape(_STATES, 2 * size)  # (S, 2L)
        choices[t] = np.argsort(-cand, axis=1, kind="stable")[:, :size]
        metric = np.take_along_axis(cand, choices[t], axis=1)
    paths = []
    for rank in range(size):
        if not np.isfinite(metric[0, rank]):  # the zero tail ends in state 0
            break
        state, r = 0, rank
        bits = np.zeros(steps, dtype=np.uint8)
        for t in range(steps - 1, -1, -1):
            j, r = divmod(int(choices[t, state, r]), size)
            bits[t] = _PREV_BIT[state]
            state = _PREV[state, j]
        paths.append(bits[:n_bits])
    return paths


def viterbi_decode(soft: np.ndarray, n_bits: int = MESSAGE_BITS) -> np.ndarray:
    """The maximum-likelihood message bits (:func:`list_viterbi_decode` with a list of one)."""
    return list_viterbi_decode(soft, 1, n_bits)[0]
