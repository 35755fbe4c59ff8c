"""Keyed index of caller numbers: find a data subject's calls without storing numbers.

``caller_hmac(key, "+27 (82) 123-4567")`` is the hex HMAC-SHA256, under a secret
key, of the normalised number ``"27821234567"``. The catalog stores only this value;
a data-subject search computes it again from the number the person gives.

Normalisation ("E.164-ish"): keep the decimal digits and drop everything else
(spaces, dashes, dots, parentheses, the leading ``+``). It does not know the
caller's country, so the national form ``0821234567`` and the international form
``+27821234567`` give different values: store what the PBX presents (normally
E.164 from the trunk) and, for a search, try the forms the person might have called
from: :func:`number_forms` lists them, given ``[privacy] default_country``. SIP URIs must be reduced to their user part by the caller.

A number with no digits at all (empty, ``anonymous``, ``unknown``, ``restricted``,
Asterisk's ``<unknown>``) is not hashed: it maps to :data:`ANONYMOUS`, so that
withheld numbers are not all indexed under the HMAC of ``""``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

from . import private

__all__ = ["ANONYMOUS", "MIN_KEY_BYTES", "caller_hmac", "load_hmac_key", "normalise_number", "number_forms",
           "subject_hmacs"]

ANONYMOUS = "anonymous"
MIN_KEY_BYTES = 16
_NOT_DIGIT = re.compile(r"[^0-9]")  # ASCII digits only: not str.isdigit()'s other scripts


def normalise_number(number: str | None) -> str | None:
    """Digits of ``number`` (ASCII 0-9 only), or ``None`` if it has none."""
    if not number:
        return None
    digits = _NOT_DIGIT.sub("", number)
    return digits or None


def caller_hmac(key: bytes, number: str | None) -> str:
    """Hex HMAC-SHA256 of the normalised number, or :data:`ANONYMOUS`."""
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"caller HMAC key must be at least {MIN_KEY_BYTES} bytes")
    digits = normalise_number(number)
    if digits is None:
        return ANONYMOUS
    return _hmac_sha256_hex(bytes(key), digits.encode("ascii"))


# One keyed HMAC object per key, copied per number: a copy of a keyed OpenSSL HMAC
# context skips the algorithm lookup OpenSSL 3 makes on every hmac.digest().
_KEYED: dict[bytes, hmac.HMAC] = {}


def _hmac_sha256_hex(key: bytes, message: bytes) -> str:
    keyed = _KEYED.get(key)
    if keyed is None:
        keyed = hmac.new(key, digestmod=hashlib.sha256)
        if len(_KEYED) < 8:  # one key per installation; tests make a few
            _KEYED[key] = keyed
    h = keyed.copy()
    h.update(message)
    return h.hexdigest()


def load_hmac_key(path: Path) -> bytes:
    """The key for caller-number HMACs: created once (0600), then never changed.

    Changing it would make earlier recordings unfindable by phone number. Safe when
    processes race to create it (two classic AGIs, or one and `serve`): the key is
    written to a temporary file and linked into place, so a reader never sees a
    partial key and exactly one creator wins.
    """
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        import secrets  # once per installation: not in every classic AGI process

        private.make_dirs(path.parent)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        fd = private.create_file(tmp, exclusive=True)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won; use its key
        finally:
            tmp.unlink(missing_ok=True)
        key = path.read_bytes()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{path}: HMAC key is {len(key)} bytes; expected 32 (delete it only "
                         "if no recordings exist yet)")
    return key


def number_forms(number: str, default_country: str = "") -> list[str]:
    """Every digit string a PBX may have presented for ``number`` (the forms a
    data-subject search must try), E.164 first.

    ``+CC...`` and ``00CC...`` are international; ``0...`` is national when
    ``default_country`` (a calling code such as ``"27"``) is known, and then also
    stands for ``CC...`` (and the other way round). Without a default country only
    the number's own digits are tried.
    """
    digits = normalise_number(number)
    if digits is None:
        return []
    text = number.strip()
    if text.startswith("+"):
        e164 = digits
    elif digits.startswith("00"):
        e164 = digits[2:]
    elif digits.startswith("0") and default_country:
        e164 = default_country + digits[1:]
    else:
        e164 = digits
    forms = [e164, digits]
    if default_country and e164.startswith(default_country):
        forms.append("0" + e164[len(default_country):])  # the national form
    return list(dict.fromkeys(f for f in forms if f))


def subject_hmacs(key: bytes, number: str, default_country: str = "") -> list[str]:
    """The caller HMACs under which ``number``'s calls may be catalogued."""
    return [caller_hmac(key, form) for form in number_forms(number, default_country)]
