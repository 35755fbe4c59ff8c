"""bech32 (BIP173, no length limit, as age uses it) for ``age1...`` recipients and
``AGE-SECRET-KEY-1...`` identities."""

from __future__ import annotations

from collections.abc import Iterable

from storage.age.errors import KeyFormatError

__all__ = ["bech32_decode", "bech32_encode"]

_B32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_B32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _B32_GEN[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Iterable[int], frm: int, to: int, pad: bool) -> bytes:
    acc = bits = 0
    out = bytearray()
    for v in data:
        acc = (acc << frm) | v
        bits += frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & ((1 << to) - 1))
    if pad:
        if bits:
            out.append((acc << (to - bits)) & ((1 << to) - 1))
    elif bits >= frm or (acc << (to - bits)) & ((1 << to) - 1):
        raise KeyFormatError("bech32: invalid padding")
    return bytes(out)


def bech32_encode(hrp: str, data: bytes) -> str:
    """Encode; an all-uppercase ``hrp`` gives an all-uppercase string (as age does)."""
    lower = hrp.lower()
    words = list(_convert_bits(data, 8, 5, pad=True))
    chk = _polymod(_hrp_expand(lower) + words + [0] * 6) ^ 1
    words += [(chk >> 5 * (5 - i)) & 31 for i in range(6)]
    s = lower + "1" + "".join(_B32[w] for w in words)
    return s.upper() if hrp.isupper() else s


def bech32_decode(s: str) -> tuple[str, bytes]:
    """Decode to (lowercase hrp, data); checks case, charset and checksum."""
    if s.lower() != s and s.upper() != s:
        raise KeyFormatError("bech32: mixed case")
    if any(not 33 <= ord(c) <= 126 for c in s):
        raise KeyFormatError("bech32: invalid character")
    s = s.lower()
    pos = s.rfind("1")
    if pos < 1 or pos + 7 > len(s):
        raise KeyFormatError("bech32: missing separator or checksum")
    hrp, part = s[:pos], s[pos + 1:]
    try:
        words = [_B32.index(c) for c in part]
    except ValueError:
        raise KeyFormatError("bech32: invalid data character") from None
    if _polymod(_hrp_expand(hrp) + words) != 1:
        raise KeyFormatError("bech32: bad checksum")
    return hrp, _convert_bits(words[:-6], 5, 8, pad=False)

