"""The UserEvent argument that consent, revoke and the lab dialplan build."""

from __future__ import annotations

from agi import variables as v


def test_user_event_argument():
    assert v.user_event(v.USER_EVENT) == "CallvaultConsent"
    assert v.user_event(v.USER_EVENT, (v.EVENT_CONSENT, v.REVOKED), (v.EVENT_RECORD, v.NO),
                        (v.EVENT_RECORDING_ID, "")) == "CallvaultConsent,Consent: revoked,Record: no,RecordingId: "


def test_lab_dialplan_reports_the_channel_variables_as_event_fields():
    from appliance.lab.harness import lab_dialplan

    assert " same => n,UserEvent(CallvaultLabAfterAgi,Consent: ${CALLVAULT_CONSENT},Record: ${CALLVAULT_RECORD})" \
        in lab_dialplan(4573).splitlines()
