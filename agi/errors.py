"""Errors raised by the agi package (AGI and AMI)."""


class AgiError(Exception):
    """Root of every error raised by the agi package."""


class AmiError(AgiError):
    """Root of AMI session errors."""


class AmiNotConnected(AmiError):
    """No logged-in AMI session right now."""


class AmiActionError(AmiError):
    """Asterisk answered an action with an error."""

    def __init__(self, action: str, message: str, response: dict | None = None):
        super().__init__(f"AMI {action} failed: {message}")
        self.action = action
        self.message = message
        self.response = response or {}
