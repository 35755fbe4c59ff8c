"""Assertions about an archived recording in a real S3 payload bucket."""

from __future__ import annotations

import datetime

import pytest

from storage.errors import RetentionError


def versions(s3_client, bucket: str, key: str) -> list[str]:
    page = s3_client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key]


def assert_locked_default_za(payload, rec, s3_client) -> None:
    """One version, COMPLIANCE-locked for the default 90 days from the end of the call,
    tagged without personal data, and its deletion refused."""
    info = payload.head(rec.object_key, rec.version_id)
    assert info.retention.mode == "COMPLIANCE"
    expected = datetime.datetime.fromtimestamp(rec.ended_at, datetime.UTC) + datetime.timedelta(days=90)
    assert abs((info.retention.until - expected).total_seconds()) <= 1
    assert info.tags == {"retention": "default", "consent": "granted", "jurisdiction": "ZA"}
    with pytest.raises(RetentionError):
        payload.delete(rec.object_key, rec.version_id)
    with pytest.raises(RetentionError):
        payload.delete(rec.object_key)
    assert versions(s3_client, payload.bucket, rec.object_key) == [rec.version_id]
