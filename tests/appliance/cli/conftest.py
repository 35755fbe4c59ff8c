"""The CLI's recording commands work on the archiver's world (tests/support/archiveenv.py)."""

from archiveenv import identity, make_env  # noqa: F401 (fixtures)
