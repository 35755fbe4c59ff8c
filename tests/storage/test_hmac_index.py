import hashlib
import hmac
import re

import pytest

from storage.hmac_index import ANONYMOUS, caller_hmac, normalise_number

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


def test_non_ascii_digits_are_dropped():
    assert normalise_number("+27\u0663 82") == "2782"  # Arabic-Indic three is not kept


@pytest.mark.parametrize("key", [b"", b"short", "a-str-key-of-32-characters......"])
def test_weak_or_wrong_key_refused(key):
    with pytest.raises(ValueError, match="key"):
        caller_hmac(key, "+27821234567")
