"""The lab: a real Asterisk 22 and a real Ceph RGW, up and down together.

Used by the pytest fixtures and by `callvault lab up|down|call`. A lab's state
(ports, including the PJSIP UDP port test phones call, and credentials) is written to ``<root>/callvault-lab/<name>/lab.json`` so a
later command can find and stop it.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from agi.dialplan import LAB_CONTEXT

from . import rootfs
from .asterisk import LabAsterisk, free_port
from .ceph import LabRgw, S3Endpoint

LAB_TALK_CONTEXT = "callvault-lab-talk"
# Calls answered by agents: the DID's call goes through consent to the agent 1001, whom
# a transfer (AMI BlindTransfer or Atxfer to LAB_TRANSFER_CONTEXT; Dial's t option lets the
# agent transfer) replaces by another agent.
LAB_AGENT_LINE_CONTEXT = "callvault-lab-agent-line"
LAB_AGENTS_CONTEXT = "callvault-lab-agents"
LAB_TRANSFER_CONTEXT = "callvault-lab-transfer"
# Outbound lab calls: the extension is the number dialled; the far end answers,
# plays a tone and waits (its ;2 half is where the called party's keys come from).
LAB_OUT_CONTEXT = "callvault-lab-out"
LAB_FAR_CONTEXT = "callvault-lab-far"
PRODUCT_AMI_USER = "callvault"
# The lab's test-call user: may Originate (admin page test calls), nothing else.
TEST_CALL_AMI_USER = "callvault-testcall"


LAB_AGENT_CONTEXT = "callvault-lab-agent"
# DIDs with these prefixes reach an agent (a Dial: the feature codes work there) or
# an IVR payment step (the Gosub pair) after consent; other DIDs the talk context.
AGENT_DID_PREFIX = "2780"
IVR_DID_PREFIX = "2781"
IVR_PAUSE_SECONDS = 1.5


# Short English texts, so that calls in the lab take about as long as they did
# with a beep (the built-in opt-in notice alone lasts 8 s). Same voice, same build
# and install; tests/announcements plays the built-in texts. The test suite's lab
# and `python -m bench calls` install these.
SHORT_ENGLISH = """
[languages.en.prompts]
notice-opt-in = "Record? {allow} yes, {refuse} no."
notice-opt-out = "Recorded. {refuse}, no."
notice-implied = "This call is recorded."
will-record = "Recording."
will-not-record = "Not recording."
recording-stopped = "Stopped."
recording-paused = "Paused."
recording-resumed = "Resumed."
invalid-choice = "Invalid."
"""


def lab_dialplan(agi_port: int) -> str:
    """The generated contexts, exactly as `callvault dialplan` prints them, plus the
    lab's inbound context (what a trunk's context does on a PBX).

    The extension is the DID. The inbound context does not answer: the consent
    context does, as on a PBX whose trunk context leaves that to it. After consent
    the call stays up (the Local channel's other half is the caller, and decides
    when the call ends).
    """
    from agi import variables as v
    from agi.dialplan import (
        AGENT_CONTEXT,
        CALLEE_CONTEXT,
        CONSENT_CONTEXT,
        OUTBOUND_CONTEXT,
        PCI_PAUSE_CONTEXT,
        PCI_RESUME_CONTEXT,
        callee_context,
        consent_context,
        outbound_context,
        pci_contexts,
    )

    def after(event: str) -> str:  # what the channel's variables say, as consent's UserEvent fields
        return v.user_event(event, (v.EVENT_CONSENT, f"${{{v.CONSENT}}}"), (v.EVENT_RECORD, f"${{{v.RECORD}}}"))

    pci_event = v.user_event("CallvaultLabPci", (v.EVENT_PCI_STATE, f"${{{v.PCI}}}"))
    agi = f"agi://127.0.0.1:{agi_port}"
    return consent_context(agi) + "\n" + outbound_context(agi) + "\n" + callee_context(agi) + "\n" + pci_contexts(agi) + f"""
[{LAB_CONTEXT}]
exten => _X.,1,Gosub({CONSENT_CONTEXT},s,1(${{EXTEN}}))
 same => n,UserEvent({after("CallvaultLabAfterAgi")})
 same => n,Goto({LAB_TALK_CONTEXT},s,1)

; An agent answers: the agent's leg gets the pause and resume codes.
exten => _{AGENT_DID_PREFIX}X.,1,Gosub({CONSENT_CONTEXT},s,1(${{EXTEN}}))
 same => n,UserEvent({after("CallvaultLabAfterAgi")})
 same => n,Dial(Local/s@{LAB_AGENT_CONTEXT}/n,,b({AGENT_CONTEXT}^s^1))
 same => n,Hangup()

; An IVR payment step: pause, collect (here: wait), resume.
exten => _{IVR_DID_PREFIX}X.,1,Gosub({CONSENT_CONTEXT},s,1(${{EXTEN}}))
 same => n,UserEvent({after("CallvaultLabAfterAgi")})
 same => n,Playtones(440)
 same => n,Wait(1)
 same => n,Gosub({PCI_PAUSE_CONTEXT},s,1)
 same => n,UserEvent({pci_event})
 same => n,Wait({IVR_PAUSE_SECONDS})
 same => n,Gosub({PCI_RESUME_CONTEXT},s,1)
 same => n,UserEvent({pci_event})
 same => n,Goto({LAB_TALK_CONTEXT},s,1)

; The "conversation": a steady tone (so recordings have audio to check) while
; waiting for keys. Key 0 stands in for the features.conf revoke code, which
; Asterisk only offers on bridged calls.
[{LAB_TALK_CONTEXT}]
exten => s,1,Playtones(440)
 same => n,WaitExten(3600)
exten => 0,1,AGI({agi}/revoke)
 same => n,UserEvent({after("CallvaultLabAfterRevoke")})
 same => n,Goto(s,1)

; Agents: the agent NNNN is the device Local/NNNN@{LAB_AGENTS_CONTEXT}; it answers and
; talks (a tone of its own) until hung up.
[{LAB_AGENT_LINE_CONTEXT}]
exten => _X.,1,Gosub({CONSENT_CONTEXT},s,1(${{EXTEN}}))
 same => n,UserEvent({after("CallvaultLabAfterAgi")})
 same => n,Dial(Local/1001@{LAB_AGENTS_CONTEXT},,t)

; Four digits exactly: an attended transfer (Atxfer, a phone's transfer key) dials as soon
; as no longer extension can match, without waiting for the digit timeout.
[{LAB_TRANSFER_CONTEXT}]
exten => _XXXX,1,Dial(Local/${{EXTEN}}@{LAB_AGENTS_CONTEXT})

[{LAB_AGENTS_CONTEXT}]
exten => _X.,1,Answer()
 same => n,Playtones(620)
 same => n,Wait(3600)

; Outbound: the caller's consent by the number dialled, then Dial with the called
; party's pre-bridge subroutine, as an administrator's outbound route does.
[{LAB_OUT_CONTEXT}]
exten => _X.,1,Gosub({OUTBOUND_CONTEXT},s,1(${{EXTEN}}))
 same => n,UserEvent({after("CallvaultLabAfterAgi")})
 same => n,Dial(Local/${{EXTEN}}@{LAB_FAR_CONTEXT}/n,30,U({CALLEE_CONTEXT}))
 same => n,Hangup()

[{LAB_FAR_CONTEXT}]
exten => _X.,1,Answer()
 same => n,Playtones(440)
 same => n,Wait(3600)

; The agent: answers and talks (a tone at another pitch) until the call ends.
[{LAB_AGENT_CONTEXT}]
exten => s,1,Answer()
 same => n,Playtones(620)
 same => n,Wait(3600)
"""


def originate_only_stanza(username: str, secret: str) -> str:
    """The lab's AMI user for test calls: ``originate`` only (Originate of Wait into the
    lab context). Without ``system``, Asterisk refuses Originate of System, Exec and
    the like. It reads one event: the OriginateResponse an async Originate waits for."""
    return f"""
[{username}]
secret = {secret}
deny = 0.0.0.0/0.0.0.0
deny = ::/0
permit = 127.0.0.1/32
read = call
write = originate
eventfilter(action(include),name(OriginateResponse)) =
"""


def lab_features(agi_port: int) -> str:
    from agi.dialplan import features_snippet

    # The attended-transfer key: AMI Atxfer sends it as DTMF on the transferor's channel.
    return ("[general]\n\n[featuremap]\natxfer => *2\n\n"
            + features_snippet(f"agi://127.0.0.1:{agi_port}"))


@dataclass
class LabState:
    name: str
    root: str
    ami_port: int
    ami_user: str
    ami_secret: str
    product_ami_user: str
    product_ami_secret: str
    test_call_ami_user: str
    test_call_ami_secret: str
    agi_port: int
    spool_host: str
    spool_inside: str
    sounds_host: str
    s3: dict | None
    sip_port: int = 0  # the PJSIP UDP transport on 127.0.0.1, for the test phones

    @property
    def s3_endpoint(self) -> S3Endpoint | None:
        return S3Endpoint(**self.s3) if self.s3 else None


class Lab:
    def __init__(self, name: str | None = None, *, root: Path | None = None,
                 agi_port: int | None = None, with_s3: bool = True):
        self.root = root or rootfs.default_root()
        self.name = name or f"t{secrets.token_hex(4)}"
        self.agi_port = agi_port or free_port()
        self.with_s3 = with_s3
        self.asterisk: LabAsterisk | None = None
        self.rgw: LabRgw | None = None
        self.product_ami_secret = secrets.token_hex(12)
        self.test_call_ami_secret = secrets.token_hex(12)
        self.timings: dict[str, float] = {}

    @property
    def dir(self) -> Path:
        return self.root / "callvault-lab" / self.name

    def up(self, dialplan: str | None = None, *, progress=print) -> LabState:
        t0 = time.monotonic()
        rootfs.ensure_root(self.root, progress=progress)
        self.timings["root"] = time.monotonic() - t0
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            t1 = time.monotonic()
            self.asterisk = LabAsterisk(self.root, self.name)
            self.asterisk.write_configs(dialplan or lab_dialplan(self.agi_port),
                                        manager_extra=self.manager_stanzas(),
                                        features=lab_features(self.agi_port))
            self.asterisk.start()
            self.timings["asterisk"] = time.monotonic() - t1
            if self.with_s3:
                t2 = time.monotonic()
                self.rgw = LabRgw(self.root, self.name)
                self.rgw.start()
                self.timings["rgw"] = time.monotonic() - t2
        except BaseException:
            self.down()
            raise
        state = self.state()
        (self.dir / "lab.json").write_text(json.dumps(asdict(state), indent=2))
        return state

    def manager_stanzas(self) -> str:
        # The product's AMI user in the lab gets the same least privileges that
        # `callvault dialplan` prints for a real PBX; test calls use their own user.
        from agi.dialplan import manager_stanza  # appliance may import agi

        return manager_stanza(PRODUCT_AMI_USER, self.product_ami_secret) + originate_only_stanza(
            TEST_CALL_AMI_USER, self.test_call_ami_secret)

    def state(self) -> LabState:
        assert self.asterisk is not None
        p = self.asterisk.paths
        return LabState(
            name=self.name, root=str(self.root), ami_port=self.asterisk.ami_port,
            ami_user=self.asterisk.ami_user, ami_secret=self.asterisk.ami_secret,
            product_ami_user=PRODUCT_AMI_USER, product_ami_secret=self.product_ami_secret,
            test_call_ami_user=TEST_CALL_AMI_USER, test_call_ami_secret=self.test_call_ami_secret,
            agi_port=self.agi_port, spool_host=str(p.spool_host), spool_inside=p.spool_inside,
            sounds_host=str(p.sounds_host),
            s3=asdict(self.rgw.endpoint) if self.rgw else None, sip_port=self.asterisk.sip_port)

    def down(self) -> None:
        if self.rgw is not None:
            self.rgw.stop()
            self.rgw = None
        if self.asterisk is not None:
            self.asterisk.stop()
            self.asterisk = None
        release_root(self.root)
        shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def stop_by_name(cls, name: str, root: Path | None = None) -> bool:
        """Stop a lab started by another process (``callvault lab down``)."""
        root = root or rootfs.default_root()
        lab = cls(name, root=root)
        if not lab.dir.exists():
            return False
        LabAsterisk(root, name).stop()
        LabRgw(root, name).stop()
        release_root(root)
        shutil.rmtree(lab.dir, ignore_errors=True)
        return True

    @staticmethod
    def load_state(name: str, root: Path | None = None) -> LabState:
        root = root or rootfs.default_root()
        path = root / "callvault-lab" / name / "lab.json"
        return LabState(**json.loads(path.read_text()))


def release_root(root: Path) -> None:
    """Unmount /proc and /dev in the root once no process runs inside it."""
    real = str(root.resolve())
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            if str((pid_dir / "root").resolve()) == real:
                return
        except OSError:
            continue
    rootfs.unmount_all(root)
