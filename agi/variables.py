"""Every channel variable and user event callvault sets, and their allowed values.

The generated dialplan presets ``CONSENT=error`` / ``RECORD=no`` before the AGI
runs, so a channel that never reaches a handler is already failed closed.
"""

from __future__ import annotations

CONSENT = "CALLVAULT_CONSENT"
CONSENT_ID = "CALLVAULT_CONSENT_ID"
RECORD = "CALLVAULT_RECORD"
RECORDING_ID = "CALLVAULT_RECORDING_ID"
RULE = "CALLVAULT_RULE"
# Set by the pause and resume routes: what the recording is now (PCI_VALUES).
PCI = "CALLVAULT_PCI"
# Set by the consent and callee routes when the dialplan plays the confirmation (see
# DIALPLAN_TAIL): the sound to play after the AGI returns, or empty for none.
CONFIRM = "CALLVAULT_CONFIRM"

# The query parameter the generated consent, outbound and callee contexts put on the
# AGI's URL (``agi://host/consent?tail=dialplan``): after the AGI returns, the dialplan
# itself raises USER_EVENT from the channel variables and plays CONFIRM, two commands
# fewer per call. Without it (a dialplan written for an earlier callvault, or by hand)
# the route sends both itself, as AGI commands.
DIALPLAN_TAIL = ("tail", "dialplan")

# The feature code a caller or agent dials to revoke consent (agi.dialplan's
# features.conf; the [pci] codes must not clash with it).
REVOKE_CODE = "*0"

# Values of CONSENT. The first five are outcomes of the consent flow; REVOKED is
# set by the revoke feature, NONE by the status route when the ledger has no entry.
GRANTED = "granted"
DECLINED = "declined"
IMPLIED = "implied"
ABANDONED = "abandoned"
OBJECTED = "objected"  # a standing objection: no notice, never recorded
ERROR = "error"
REVOKED = "revoked"
NONE = "none"
CONSENT_VALUES = (GRANTED, DECLINED, IMPLIED, ABANDONED, OBJECTED, ERROR, REVOKED, NONE)

# Values of RECORD.
YES = "yes"
NO = "no"
RECORD_VALUES = (YES, NO)

# Values of PCI. FAILED: a recording of the call could not be muted or unmuted
# (Asterisk refused, no AMI): it is still being written as before.
PCI_PAUSED = "paused"
PCI_RECORDING = "recording"
PCI_NOT_RECORDED = "not-recorded"
PCI_FAILED = "failed"
PCI_VALUES = (PCI_PAUSED, PCI_RECORDING, PCI_NOT_RECORDED, PCI_FAILED)

# The UserEvent name raised after a consent decision and after a revoke (agent pages
# listen for it), and its fields (AMI headers of the event).
USER_EVENT = "CallvaultConsent"
EVENT_CONSENT_ID = "ConsentId"
EVENT_CONSENT = "Consent"  # a CONSENT value
EVENT_RECORD = "Record"  # a RECORD value
EVENT_RECORDING_ID = "RecordingId"  # comma-separated recording ids, or empty
EVENT_RULE = "Rule"

# Raised by the pause and resume routes once a recording was muted or unmuted.
PCI_EVENT = "CallvaultPci"
EVENT_PCI_STATE = "State"  # a PCI value
EVENT_PCI_TRIGGER = "Trigger"  # dtmf, ivr or agi


def user_event(name: str, *fields: tuple[str, str]) -> str:
    """The argument of the ``UserEvent`` application: ``name,Field: value,...``."""
    return ",".join([name, *(f"{key}: {value}" for key, value in fields)])
