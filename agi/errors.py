"""Errors raised by the agi package (AGI and AMI).

Hangup is its own class: a caller hanging up is normal control flow, not a fault.
Remote misbehaviour (``ProtocolError``) is kept apart from our own misuse
(``LocalProtocolError``), as in h11.
"""


class AgiError(Exception):
    """Root of every error raised by the agi package."""


class AgiHangup(AgiError):
    """The channel hung up (HANGUP line, 511, or -1 on a dead channel)."""


class ProtocolError(AgiError):
    """The peer sent something AGI does not allow (garbage, oversize, bad code)."""


class LocalProtocolError(AgiError):
    """We tried to do something the protocol does not allow."""


class AgiTimeout(AgiError):
    """Asterisk did not answer within the deadline."""


class CommandFailed(AgiError):
    """Asterisk refused a command (510 unknown command, 520 bad usage)."""

    def __init__(self, command: str, code: int, text: str):
        super().__init__(f"{command.split(' ')[0]} refused with {code}: {text.splitlines()[0] if text else ''}")
        self.code = code
        self.text = text


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
