"""The generated manager.conf user, exactly as `callvault dialplan` prints it, in a real
Asterisk 22: every action callvault sends works, every event it listens to arrives during
a real call (and nothing else: the event filter), and Originate of ``System`` is refused.
The manager.conf user callvault used to print (``write = system,...,originate``) let the
same Originate run a shell command: reproduced here, against the same Asterisk.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter

import pytest

from agi.ami import AmiClient, AmiEvent
from agi.dialplan import AMI_EVENTS, manager_stanza
from agi.errors import AmiActionError
from appliance.lab.asterisk import LabAsterisk
from appliance.lab.harness import originate_only_stanza

pytestmark = pytest.mark.asterisk

PRODUCT, OLD, TEST_CALL = "cv-product", "cv-old", "cv-testcall"
# What `callvault dialplan` printed before: system + originate is shell access.
OLD_STANZA = """
[{user}]
secret = {secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = system,call,user,reporting
write = system,call,reporting,originate
"""
DIALPLAN = """
[cv-priv]
exten => 100,1,Answer()
 same => n,Set(CALLERID(num)=27215550999)
 same => n,UserEvent(CallvaultPrivCheck)
 same => n,MixMonitor({spool}/priv-${{UNIQUEID}}.wav)
 same => n,Dial(Local/200@cv-priv)
exten => 200,1,Answer()
 same => n,Wait(60)

[cv-sink]
exten => s,1,Answer()
 same => n,Wait(5)
"""


@pytest.fixture(scope="module")
def pbx(lab):
    """An Asterisk of its own (the lab's root), with the three users side by side."""
    secrets_ = {u: secrets.token_hex(12) for u in (PRODUCT, OLD, TEST_CALL)}
    asterisk = LabAsterisk(lab.root)
    stanzas = (manager_stanza(PRODUCT, secrets_[PRODUCT]) + OLD_STANZA.format(user=OLD, secret=secrets_[OLD])
               + originate_only_stanza(TEST_CALL, secrets_[TEST_CALL]))
    asterisk.write_configs(DIALPLAN.format(spool=asterisk.paths.spool_inside), manager_extra=stanzas)
    asterisk.start()
    asterisk.cli("core waitfullybooted")  # AMI answers before the dialplan is loaded
    try:
        yield asterisk, secrets_
    finally:
        asterisk.stop()


async def login(pbx, user: str | None) -> AmiClient:
    asterisk, secrets_ = pbx
    if user is None:
        client = AmiClient("127.0.0.1", asterisk.ami_port, asterisk.ami_user, asterisk.ami_secret)
    else:
        client = AmiClient("127.0.0.1", asterisk.ami_port, user, secrets_[user])
    client.start()
    await client.wait_connected(10)
    return client


async def originate_system(client: AmiClient, pbx) -> tuple[str, bool]:
    """Originate Application=System touching a file; (the response or error, file created?)."""
    asterisk, _ = pbx
    name = f"pwned-{secrets.token_hex(4)}"
    try:
        response = (await client.action("Originate", Channel="Local/s@cv-sink", Application="System",
                                         Data=f"touch {asterisk.paths.spool_inside}/{name}",
                                         Async="true")).get("Message", "")
    except AmiActionError as e:
        response = f"Error: {e}"
    created = asterisk.paths.spool_host / name
    deadline = time.monotonic() + (8 if not response.startswith("Error") else 2)
    while time.monotonic() < deadline and not created.exists():
        await asyncio.sleep(0.1)
    return response, created.exists()


async def test_generated_user_runs_every_action_and_receives_every_event_of_a_call(pbx):
    product, admin = await login(pbx, PRODUCT), await login(pbx, None)
    seen: list[AmiEvent] = []
    admin_seen: set[str] = set()
    product.on_event("*", seen.append)
    admin.on_event("*", lambda e: admin_seen.add(e.name))
    token = secrets.token_hex(4)
    caller, callee = f"priv-{token}-1", f"priv-{token}-2"

    def arrived(name: str) -> bool:
        return any(e.name == name and e.get("Uniqueid") == callee for e in seen)

    async def until(name: str) -> None:
        try:
            async with asyncio.timeout(15):
                while not arrived(name):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"no {name} for {callee}; got {[(e.name, e.get('Uniqueid')) for e in seen]}, "
                                 f"the all-privileges user got {sorted(admin_seen)}") from None

    try:
        await admin.action("Originate", Channel="Local/100@cv-priv", Application="Wait", Data="30",
                           CallerID='"Priv Check" <27215550123>', Async="true", ChannelId=caller,
                           OtherChannelId=callee)
        await until("BridgeEnter")
        channel = next(e.get("Channel") for e in seen if e.name == "Newchannel" and e.get("Uniqueid") == callee)
        # Every action callvault sends, as the generated user.
        await product.action("MixMonitorMute", Channel=channel, Direction="both", State="1")
        await until("MixMonitorMute")
        await product.action("StopMixMonitor", Channel=channel)
        await until("MixMonitorStop")
        assert (await product.action("CoreSettings"))["AsteriskVersion"].startswith("22.")
        assert any(e.get("Context") == "cv-priv" for e in await product.action_list("ShowDialPlan", Context="cv-priv"))
        assert (await product.action("Ping"))["Response"] == "Success"
        # The Filter action (per-session filters at login) needs write = system: not for this user,
        # whose filter is the stanza's eventfilter lines.
        with pytest.raises(AmiActionError, match="Permission denied"):
            await product.action("Filter", Operation="Add", Filter="Event: Newchannel")
        await admin.action("Hangup", Channel=channel, Cause="16")
        await until("Hangup")
        await until("BridgeLeave")
    finally:
        await product.close()
        await admin.close()
    names = {e.name for e in seen}
    assert set(AMI_EVENTS) <= names, f"missing: {set(AMI_EVENTS) - names}"
    # callvault_ami_events_total: every event received is counted once, by name.
    assert product.events_received == Counter(e.name for e in seen)
    # The event filter: only the events callvault uses reach it; a "call" class event it
    # does not use (DialBegin) reached the all-privileges user but not this one.
    assert names <= set(AMI_EVENTS), f"not filtered: {names - set(AMI_EVENTS)}"
    assert "DialBegin" in admin_seen


async def test_originate_of_system_is_refused_now_and_was_shell_access_before(pbx):
    product, tester, old = await login(pbx, PRODUCT), await login(pbx, TEST_CALL), await login(pbx, OLD)
    try:
        response, created = await originate_system(product, pbx)
        assert response.startswith("Error") and "Permission denied" in response and not created
        response, created = await originate_system(tester, pbx)
        assert response.startswith("Error") and "blacklisted" in response and not created
        # The test-call user does what it is for: Originate of Wait, as the admin page sends it.
        response = await tester.action("Originate", Channel="Local/s@cv-sink", Application="Wait", Data="1",
                                       Async="true")
        assert response["Response"] == "Success"
        # The stanza callvault printed before: Asterisk ran the shell command.
        response, created = await originate_system(old, pbx)
        assert not response.startswith("Error") and created
    finally:
        for client in (product, tester, old):
            await client.close()
