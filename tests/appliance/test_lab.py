"""The lab harness brings up real peers that behave like production ones."""

from __future__ import annotations

import datetime as dt
import secrets

import botocore.exceptions
import pytest

from agi.ami import AmiClient
from agi.errors import AmiActionError

from waiting import until

pytestmark = [pytest.mark.asterisk]


async def test_product_ami_user_logs_in_with_least_privileges(lab_state):
    client = AmiClient("127.0.0.1", lab_state.ami_port, lab_state.product_ami_user,
                       lab_state.product_ami_secret)
    client.start()
    try:
        await client.wait_connected(10)
        settings = await client.action("CoreSettings")
        assert settings["AsteriskVersion"].startswith("22.")
        assert isinstance(await client.action_list("CoreShowChannels"), list)
        # Arbitrary CLI commands are not among the product's privileges.
        with pytest.raises(AmiActionError):
            await client.command("core show uptime")
    finally:
        await client.close()


async def test_wrong_secret_is_reported_as_auth_failed(lab_state):
    client = AmiClient("127.0.0.1", lab_state.ami_port, lab_state.product_ami_user, "wrong",
                       reconnect_min=5, reconnect_max=5)
    client.start()
    try:
        await until(lambda: client.status.state.value == "auth-failed", what="the login to be refused",
                    detail=lambda: client.status)
        assert "refused" in client.status.last_error
    finally:
        await client.close()


@pytest.mark.s3
def test_rgw_object_lock_round_trip_and_refused_delete(s3_client):
    bucket = f"lab-{secrets.token_hex(4)}"
    s3_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    put = s3_client.put_object(Bucket=bucket, Key="rec", Body=b"payload", ChecksumAlgorithm="SHA256",
                               ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    got = s3_client.get_object(Bucket=bucket, Key="rec")
    assert got["Body"].read() == b"payload"
    assert got["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        s3_client.delete_object(Bucket=bucket, Key="rec", VersionId=put["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert s3_client.get_object(Bucket=bucket, Key="rec", VersionId=put["VersionId"])["Body"].read() == b"payload"


def test_dev_users_are_made_once_with_working_passwords(tmp_path):
    from appliance.lab.devsetup import DEV_USERS, dev_users
    from storage.dburl import open_database
    from storage.users import Users

    logins = dev_users(tmp_path)
    assert logins.stat().st_mode & 0o777 == 0o600
    first = logins.read_text()
    assert dev_users(tmp_path) == logins and logins.read_text() == first  # nothing added twice
    pairs = [line.split() for line in first.splitlines()]
    assert [name for name, _ in pairs] == [name for name, _, _ in DEV_USERS]
    db = open_database(f"sqlite:///{tmp_path / 'callvault.db'}")
    try:
        users = Users(db)
        for name, password in pairs:
            assert users.authenticate(name, password).name == name
            assert users.authenticate(name, password + "x") is None
        assert users.get("agent").agent_ids == ("did:27215550100",)
    finally:
        db.close()
