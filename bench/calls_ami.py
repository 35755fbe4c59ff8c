"""The AMI side of one event, in-process, for the calls benchmark.

What `callvault serve` spends on an event Asterisk sends it, from the bytes on the
socket to the handlers: panoramisk's protocol (split, parse, dispatch) and
``AmiClient._dispatch``, with the handlers serve registers (the live calls' one per
``AMI_EVENTS`` name, the archiver intake's Hangup and MixMonitorStop) doing nothing,
so the figure is the session's own cost. ``Newstate`` is an event serve does not use:
what each event the manager.conf filter keeps out would cost; ``Newchannel`` one it uses.
The events are Asterisk 22's, as the lab's PJSIP calls raise them.
"""

from __future__ import annotations

import asyncio
import time

EVENTS = {
    "Newstate": {"Privilege": "call,all", "Timestamp": "1765115000.123456", "Channel": "PJSIP/lab-phone-0000002a",
                 "ChannelState": "6", "ChannelStateDesc": "Up", "CallerIDNum": "2782000001",
                 "CallerIDName": "<unknown>", "ConnectedLineNum": "<unknown>", "ConnectedLineName": "<unknown>",
                 "Language": "en", "AccountCode": "", "Context": "callvault-consent", "Exten": "s",
                 "Priority": "2", "Uniqueid": "1765115000.84", "Linkedid": "1765115000.84"},
}
EVENTS["Newchannel"] = {**EVENTS["Newstate"], "ChannelState": "0", "ChannelStateDesc": "Down",
                        "Context": "callvault-lab", "Exten": "27215550100", "Priority": "1"}
PER_CHUNK = 4  # events per socket read, about what a call's burst of events arrives as


def raw(name: str) -> bytes:
    lines = [f"Event: {name}"] + [f"{k}: {v}" for k, v in EVENTS[name].items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def cost_per_event(name: str, n: int = 20_000) -> float:
    """Microseconds of CPU per ``name`` event (best of three runs of ``n``)."""
    from panoramisk.ami_protocol import AMIProtocol

    from agi.ami import AmiClient, _Manager
    from agi.dialplan import AMI_EVENTS

    async def measure() -> float:
        client = AmiClient("127.0.0.1", 1, "bench", "unused")
        manager = _Manager(client, loop=asyncio.get_running_loop(), **client._cfg)
        manager.register_event("*", client._dispatch)
        for event in (*AMI_EVENTS, "Hangup", "MixMonitorStop"):
            client.on_event(event, lambda e: None)
        protocol = AMIProtocol()
        protocol.connection_made(None)
        protocol.factory = manager
        chunk = raw(name) * PER_CHUNK
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            for _ in range(n // PER_CHUNK):
                protocol.data_received(chunk)
            best = min(best, time.process_time() - t0)
        assert sum(client.events_received.values()) == 3 * (n // PER_CHUNK) * PER_CHUNK
        return best / (n // PER_CHUNK * PER_CHUNK) * 1e6

    return asyncio.run(measure())
