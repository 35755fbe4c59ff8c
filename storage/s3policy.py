"""Bucket policies for the two storage roles, "pbx" and "retrieval".

Each role has its own S3 user (principal). The **pbx** role writes new objects and
reads them back to verify them, and can never destroy anything: no delete of an
object or a version, no legal hold, no bypass of GOVERNANCE retention, no change to
the bucket's configuration. The **retrieval** role reads, deletes versions (erasure
and the retention sweeper) and sets legal holds. Bucket configuration (policy,
versioning, Object Lock, lifecycle, replication) is left to the bucket owner (the
admin credentials `callvault storage init` runs with).

``s3:PutObjectRetention`` is granted to the pbx role on the payload bucket because
AWS S3 demands it for a PUT carrying Object Lock headers. It cannot shorten a lock:
COMPLIANCE never shortens, and GOVERNANCE only with ``s3:BypassGovernanceRetention``,
which the pbx role is denied. It can lengthen one.

A PUT to an existing key cannot be refused by policy on every service, so the
header bucket is versioned: a pbx PUT over a header adds a version and the earlier
one stays until the retrieval role deletes it (docs/storage.md, "Storage roles").
"""

from __future__ import annotations

from typing import Any

ROLES = ("pbx", "retrieval")

READ_BUCKET = ["s3:ListBucket", "s3:GetBucketObjectLockConfiguration"]
READ_OBJECTS = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging",
                "s3:GetObjectRetention", "s3:GetObjectLegalHold"]
WRITE_OBJECTS = ["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"]
DESTROY = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectLegalHold", "s3:BypassGovernanceRetention"]
RECONFIGURE = ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutBucketVersioning",
               "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration",
               "s3:PutReplicationConfiguration", "s3:DeleteBucket"]


def bucket_policy(bucket: str, *, payload: bool, pbx: str, retrieval: str) -> dict[str, Any]:
    """The policy document for the payload bucket (``payload=True``, Object Lock) or
    the header bucket, for the pbx and retrieval principals (IAM user ARNs)."""
    b, objects = f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"
    retention = ["s3:PutObjectRetention"] if payload else []

    def st(sid: str, effect: str, who: str, actions: list[str], resource: str) -> dict[str, Any]:
        return {"Sid": sid, "Effect": effect, "Principal": {"AWS": [who]}, "Action": actions,
                "Resource": [resource]}

    return {"Version": "2012-10-17", "Statement": [
        st("PbxReadBucket", "Allow", pbx, READ_BUCKET, b),
        st("PbxWriteAndVerify", "Allow", pbx, READ_OBJECTS + WRITE_OBJECTS + retention, objects),
        st("PbxNeverDestroys", "Deny", pbx, DESTROY, objects),
        st("PbxNeverReconfigures", "Deny", pbx, RECONFIGURE, b),
        st("RetrievalReadBucket", "Allow", retrieval, READ_BUCKET + ["s3:ListBucketVersions"], b),
        st("RetrievalObjects", "Allow", retrieval, READ_OBJECTS + WRITE_OBJECTS + DESTROY[:3] + retention,
           objects),
        st("RetrievalNeverReconfigures", "Deny", retrieval, RECONFIGURE, b),
    ]}
