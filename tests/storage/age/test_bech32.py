"""storage.age.bech32: the bech32 strings of age keys (BIP173 vectors, no length limit)."""

from __future__ import annotations

import pytest

from storage.age import KeyFormatError, bech32_decode, bech32_encode


def test_bech32_bip173_vectors():
    assert bech32_decode("A12UEL5L") == ("a", b"")
    assert bech32_decode("a12uel5l") == ("a", b"")
    hrp = "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio"
    assert bech32_decode(hrp + "1tt5tgs")[0] == hrp
    for bad in ["A12uEL5L", "a12uel5m", "pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3"]:
        with pytest.raises(KeyFormatError):
            bech32_decode(bad)
    payload = bytes(range(200))  # longer than BIP173's 90-char limit: age allows it
    assert bech32_decode(bech32_encode("test", payload)) == ("test", payload)
    assert bech32_encode("TEST", payload).isupper()
