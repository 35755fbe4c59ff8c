import hashlib
import hmac
import re

import pytest

from storage.hmac_index import (
    ANONYMOUS,
    caller_hmac,
    normalise_number,
    number_forms,
    subject_hmacs,
)

KEY = b"k" * 32


def expected(digits, key=KEY):
    return hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "raw",
    ["+27821234567", "+27 82 123 4567", "+27 (82) 123-4567", "27-82-123-4567", " +27.82.123.4567 ", "27821234567"],
)
def test_formats_of_one_number_agree(raw):
    assert normalise_number(raw) == "27821234567"
    assert caller_hmac(KEY, raw) == expected("27821234567")


def test_national_and_international_forms_differ():
    # Documented: normalisation does not know the country.
    assert caller_hmac(KEY, "0821234567") != caller_hmac(KEY, "+27821234567")


@pytest.mark.parametrize("raw", [None, "", "   ", "anonymous", "Anonymous", "unknown", "<unknown>", "restricted", "+", "()-"])
def test_withheld_numbers_map_to_marker(raw):
    assert normalise_number(raw) is None
    assert caller_hmac(KEY, raw) == ANONYMOUS
    assert caller_hmac(KEY, raw) != expected("")


def test_output_is_hex_sha256_and_keyed():
    value = caller_hmac(KEY, "+1 555 0100")
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert value == expected("15550100")
    assert caller_hmac(b"j" * 32, "+1 555 0100") != value
    assert value != hashlib.sha256(b"15550100").hexdigest()


@pytest.mark.parametrize("size", [16, 32, 63, 64, 65, 200])
def test_the_hmac_is_rfc_2104_for_any_key_length(size):
    # The key's padded hash states are kept between calls: each key still gets its own.
    for seed in (b"a", b"b", b"\xff"):
        key = (seed * size)[:size]
        assert caller_hmac(key, "+27 82 123 4567") == expected("27821234567", key)
        assert caller_hmac(bytearray(key), "0100") == expected("0100", key)


def test_non_ascii_digits_are_dropped():
    assert normalise_number("+27\u0663 82") == "2782"  # Arabic-Indic three is not kept


@pytest.mark.parametrize("key", [b"", b"short", "a-str-key-of-32-characters......"])
def test_weak_or_wrong_key_refused(key):
    with pytest.raises(ValueError, match="key"):
        caller_hmac(key, "+27821234567")


@pytest.mark.parametrize("given, country, forms", [
    ("+27 82 123 4567", "27", ["27821234567", "0821234567"]),
    ("082 123 4567", "27", ["27821234567", "0821234567"]),
    ("0027821234567", "27", ["27821234567", "0027821234567", "0821234567"]),
    ("27821234567", "27", ["27821234567", "0821234567"]),
    ("082 123 4567", "", ["0821234567"]),
    ("+1 (415) 555-0100", "27", ["14155550100"]),
    ("anonymous", "27", []),
])
def test_a_subject_number_is_tried_in_every_form_a_pbx_presents(given, country, forms):
    assert number_forms(given, country) == forms
    key = b"k" * 32
    assert subject_hmacs(key, given, country) == [caller_hmac(key, f) for f in forms]


def test_a_national_number_finds_the_call_the_trunk_presented_in_e164():
    key = b"k" * 32
    stored = caller_hmac(key, "+27821234567")
    assert stored in subject_hmacs(key, "082-123-4567", "27")
    assert stored not in subject_hmacs(key, "082-123-4567", "")  # no country: only as given
