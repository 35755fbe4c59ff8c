import re
import subprocess

import pytest

from announcements.catalog import PROMPT_NAMES, builtin_catalog, fallback_chain, load_catalog
from announcements.errors import CatalogError, UnknownPrompt

LANGS = ("en", "af", "tn", "es", "fr", "de", "pt")


def test_builtin_covers_every_language_and_prompt():
    cat = builtin_catalog()
    assert set(LANGS) <= set(cat.codes)
    for lang in LANGS:
        language = cat.language(lang)
        assert language.voice, lang
        assert set(language.texts) == set(PROMPT_NAMES), lang
        assert all(t.strip() for t in language.texts.values())


@pytest.mark.parametrize("lang", LANGS)
def test_builtin_voice_is_one_espeak_ng_has(lang):
    voice = builtin_catalog().language(lang).voice
    proc = subprocess.run(["espeak-ng", "-q", "-v", voice, "a"], capture_output=True, text=True)
    assert proc.returncode == 0 and "does not exist" not in proc.stderr


@pytest.mark.parametrize("lang", LANGS)
def test_notices_say_which_key_to_press(lang):
    texts = builtin_catalog().language(lang).texts
    one, two = "1", "2"
    assert re.search(rf"\b{one}\b", texts["notice-opt-in"])
    assert re.search(rf"\b{two}\b", texts["notice-opt-in"])
    assert re.search(rf"\b{two}\b", texts["notice-opt-out"])
    assert not re.search(rf"\b{one}\b", texts["notice-opt-out"])
    assert not re.search(r"\d", texts["notice-implied"])


@pytest.mark.parametrize("lang", LANGS)
def test_fallback_chains_start_with_the_language_and_end_in_english(lang):
    chain = fallback_chain(lang)
    assert chain[0] == lang and chain[-1] == "en"
    assert len(set(chain)) == len(chain)


def test_fallback_for_regions_and_unknown_languages():
    assert fallback_chain("af-ZA") == ("af", "en")
    assert fallback_chain("af_za") == ("af", "en")
    assert fallback_chain("zu") == ("en",)
    assert fallback_chain("en") == ("en",) == builtin_catalog().fallback_chain("en")  # read without the catalog


def test_admin_file_overrides_and_extends(tmp_path):
    f = tmp_path / "prompts.toml"
    f.write_text(
        """
[languages.af.prompts]
will-record = "Baie dankie. Die oproep word opgeneem."

[languages.zu]
name = "isiZulu"
fallback = ["af"]

[languages.zu.prompts]
will-record = "Ngiyabonga."

[languages.pt-br]
voice = "pt-br"
fallback = ["pt"]
""",
        encoding="utf-8",
    )
    cat = load_catalog(f)
    assert cat.text("af", "will-record") == "Baie dankie. Die oproep word opgeneem."
    assert cat.text("af", "will-not-record") == builtin_catalog().text("af", "will-not-record")
    zu = cat.language("zu")
    assert zu.voice is None and zu.name == "isiZulu" and dict(zu.texts) == {"will-record": "Ngiyabonga."}
    assert cat.fallback_chain("zu") == ("zu", "af", "en")
    assert cat.fallback_chain("pt-BR") == ("pt-br", "pt", "en")
    assert cat.files[-1] == str(f)
    # the built-in catalog is not changed by loading another
    assert "zu" not in builtin_catalog().codes


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ('[languages.af.prompts]\nnotice-optin = "x"', "languages.af.prompts.notice-optin", "did you mean 'notice-opt-in'"),
        ('[languages.AF]\nname = "x"', "languages.AF", "lower-case tag"),
        ('[languages.af]\nfallback = ["xx"]', "languages.af.fallback", "unknown language 'xx'"),
        ('[languages.af]\nfallback = "en"', "languages.af.fallback", "list of language codes"),
        ('[languages.af]\nvoice = "-w /etc/passwd"', "languages.af.voice", "espeak-ng voice"),
        ('[languages.en]\nfallback = ["af"]', "languages.en.fallback", "last resort"),
        ('[languages.af.prompts]\nwill-record = "  "', "languages.af.prompts.will-record", "non-empty"),
        ('[languages.af]\nspeed = 3', "languages.af.speed", "allowed keys"),
        ('[voices]\naf = "af"', "voices", "top-level"),
        ("[languages.af\n", "", "not valid TOML"),
    ],
)
def test_validation_errors_name_file_key_value_and_fix(tmp_path, body, key, words):
    f = tmp_path / "prompts.toml"
    f.write_text(body, encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalog(f)
    message = str(info.value)
    assert message.startswith(str(f))
    assert key in message and words in message
    assert info.value.file == str(f) and info.value.key == key


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="cannot be read"):
        load_catalog(tmp_path / "nope.toml")


def test_unknown_language_and_prompt_name():
    cat = builtin_catalog()
    with pytest.raises(UnknownPrompt, match="unknown language 'zu'"):
        cat.language("zu")
    with pytest.raises(UnknownPrompt, match="did you mean 'will-record'"):
        cat.text("en", "will-recrod")


def test_keyed_notices_say_the_rules_keys():
    catalog = builtin_catalog()
    assert catalog.spoken("en", "notice-opt-in") == catalog.language("en").texts["notice-opt-in"]
    text = catalog.spoken("en", "notice-opt-in-k56")
    assert "press 5" in text and "press 6" in text and not re.search(r"[12]", text)
    assert catalog.spoken("de", "notice-opt-out-k56").startswith(
        "Dieses Gespräch wird zur Qualitätssicherung und Schulung aufgezeichnet. Drücken Sie 6,")
    with pytest.raises(UnknownPrompt, match="unknown prompt name 'notice-opt-in-k55'"):
        catalog.spoken("en", "notice-opt-in-k55")


def test_a_keyed_notice_from_a_text_without_key_placeholders_is_refused(tmp_path):
    own = tmp_path / "prompts.toml"
    own.write_text('[languages.en.prompts]\nnotice-opt-in = "Press 1 to allow, 2 to refuse."\n')
    catalog = load_catalog(own)
    assert catalog.spoken("en", "notice-opt-in") == "Press 1 to allow, 2 to refuse."
    with pytest.raises(UnknownPrompt, match=r"notice-opt-in-k56 cannot be made for language 'en': .* no "
                                            r"\{allow\} and \{refuse\}"):
        catalog.spoken("en", "notice-opt-in-k56")
