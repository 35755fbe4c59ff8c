"""Placing lab calls through the real Asterisk, driven over AMI.

A lab call is an AMI ``Originate`` of ``Local/<DID>@callvault-lab`` with the
application ``Wait``: the ``;2`` half runs the dialplan (as an inbound trunk call
would), the ``;1`` half plays the caller and is where DTMF is sent from.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from agi.ami import AmiClient, AmiEvent
from agi.dialplan import LAB_CONTEXT


@dataclass
class LabCall:
    did: str
    caller_id: str
    caller_uniqueid: str  # Local ;1: the caller
    callee_uniqueid: str  # Local ;2: runs the dialplan (consent AGI, MixMonitor)
    caller_channel: str = ""
    callee_channel: str = ""

    def is_callee(self, event: AmiEvent) -> bool:
        return event.get("Uniqueid") == self.callee_uniqueid

    def is_caller(self, event: AmiEvent) -> bool:
        return event.get("Uniqueid") == self.caller_uniqueid


class CallDriver:
    def __init__(self, ami: AmiClient, context: str = LAB_CONTEXT):
        self.ami = ami
        self.context = context

    def new_call(self, did: str = "27215550100", caller_id: str = "27215550123") -> LabCall:
        token = secrets.token_hex(6)
        return LabCall(did, caller_id, f"lab-{token}-1", f"lab-{token}-2")

    async def place(self, call: LabCall, *, hold: int = 60, caller_name: str = "Lab Caller",
                    timeout: float = 15.0, caller_plays: str = "") -> LabCall:
        """Originate the call and return once both halves exist. With ``caller_plays``
        (a sound name) the caller plays it once answered (``Playback``), then hangs up;
        otherwise the caller is silent for ``hold`` seconds (``Wait``)."""
        async with self.ami.expect(lambda e: e.name == "Newchannel" and call.is_callee(e)) as two, \
                self.ami.expect(lambda e: e.name == "Newchannel" and call.is_caller(e)) as one:
            await self.ami.action(
                "Originate", Channel=f"Local/{call.did}@{self.context}",
                Application="Playback" if caller_plays else "Wait", Data=caller_plays or str(hold), CallerID=f'"{caller_name}" <{call.caller_id}>', Async="true",
                ChannelId=call.caller_uniqueid, OtherChannelId=call.callee_uniqueid)
            call.callee_channel = (await asyncio.wait_for(two, timeout)).get("Channel")
            call.caller_channel = (await asyncio.wait_for(one, timeout)).get("Channel")
        return call

    def agi_command(self, call: LabCall, prefix: str):
        """Expectation for the callee half starting an AGI command (e.g. "GET DATA")."""
        return self.ami.expect(lambda e: e.name == "AGIExecStart" and call.is_callee(e)
                               and str(e.get("Command")).upper().startswith(prefix.upper()))

    def hangup_of(self, call: LabCall):
        return self.ami.expect(lambda e: e.name == "Hangup" and call.is_callee(e))

    async def send_dtmf(self, call: LabCall, digits: str, duration_ms: int = 150) -> None:
        """Press keys on the caller's side; they reach the callee half's AGI.

        Asterisk plays each digit for its duration before answering, and one AMI
        session handles actions in turn: many calls pressing keys at once queue up,
        hence the generous timeout.
        """
        for digit in digits:
            await self.ami.action("PlayDTMF", Channel=call.caller_channel, Digit=digit,
                                  Duration=str(duration_ms), timeout=60)

    async def hangup(self, call: LabCall) -> None:
        await self.ami.action("Hangup", Channel=call.caller_channel, Cause="16")
