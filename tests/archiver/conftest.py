"""The archiver's world (tests/support/archiveenv.py): local and RGW stores, a catalog,
a ledger and a spool."""

from archiveenv import archive_env, identity, make_env, rgw_buckets, rgw_settings  # noqa: F401 (fixtures)
