"""Every channel variable and event name the product sets or reads, in one place."""

CONSENT = "CALLVAULT_CONSENT"
CONSENT_ID = "CALLVAULT_CONSENT_ID"
RECORD = "CALLVAULT_RECORD"
RECORDING_ID = "CALLVAULT_RECORDING_ID"
RULE = "CALLVAULT_RULE"

CONSENT_VALUES = ("granted", "declined", "implied", "abandoned", "error", "revoked")
RECORD_VALUES = ("yes", "no")

# The UserEvent raised on every consent change; agent pages listen for it.
USER_EVENT = "CallvaultConsent"
