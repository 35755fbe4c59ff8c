"""Config sections (appliance.configsection.Section): what the dataclasses they replace gave."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import config as cfg
from appliance.configsection import key_types
from appliance.configvalues import Secret


def test_defaults_keywords_equality_and_replace():
    spool = cfg.SpoolConfig(dir=Path("/x"))
    assert (spool.dir, spool.scan_interval, spool.asterisk_path) == (Path("/x"), 60.0, "/x")
    assert spool == cfg.SpoolConfig(dir=Path("/x")) != cfg.SpoolConfig()
    assert hash(spool) == hash(cfg.SpoolConfig(dir=Path("/x")))
    changed = spool.replace(asterisk_dir="/inside")
    assert (changed.asterisk_path, spool.asterisk_path) == ("/inside", "/x")
    assert repr(cfg.LogConfig()) == "LogConfig(format='text', level='info')"
    with pytest.raises(TypeError, match="unknown key 'scan_intervall'"):
        cfg.SpoolConfig(scan_intervall=5)


def test_frozen_and_per_instance_defaults():
    c = cfg.Config()
    with pytest.raises(AttributeError, match="frozen"):
        c.agi.listen = "0.0.0.0:4573"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del c.node
    assert c.agi is not cfg.Config().agi and c.agi == cfg.Config().agi
    assert c.node.name  # the host name, made when the section is


def test_key_types_are_the_annotations():
    assert key_types(cfg.AmiConfig)["secret"] == (Secret | None)
    assert key_types(cfg.ArchiveConfig)["recipients"] == tuple[str, ...]
    assert key_types(cfg.Config)["pci"] is cfg.PciConfig
    assert list(cfg.SECTIONS) == [k for k in key_types(cfg.Config) if k != "consent"]
