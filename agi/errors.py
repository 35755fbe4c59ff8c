"""Errors raised by the agi package (AGI and AMI).

Everything derives from :class:`AgiError`. As in h11, remote misbehaviour
(:class:`ProtocolError`) and our own misuse (:class:`LocalProtocolError`) are kept
apart, and a hangup is its own class because it is normal control flow.

When is a reply a hangup? (``agi.session`` applies this rule.)

* the ``HANGUP`` line Asterisk writes on a FastAGI socket when the channel goes
  away; it can arrive before the reply to a command in flight, and that reply is
  still read;
* ``511 Command Not Permitted on a dead channel``;
* the connection closing at a line boundary while a reply is awaited (Asterisk
  closes only when the AGI ends, e.g. with ``AGIEXITONHANGUP``).

``200 result=-1`` is *never* a hangup on its own: ``STREAM FILE`` answers
``200 result=-1 endpos=0`` for a missing sound file, ``GET DATA`` answers
``result=-1`` for a failed prompt, ``EXEC`` relays whatever the application
returned. For those commands the session asks ``CHANNEL STATUS``: if the channel
is gone Asterisk writes ``HANGUP`` before it reads the next command, so the probe
separates "hung up" (:class:`AgiHangup`) from "failed" (:class:`CommandFailed`)
without guessing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .events import Response


class AgiError(Exception):
    """Root of every error raised by the agi package."""


# --- FastAGI ---------------------------------------------------------------


class AgiHangup(AgiError):
    """The channel hung up (or Asterisk ended the AGI): normal control flow."""


class ProtocolError(AgiError):
    """The peer broke the AGI protocol: garbage, oversized data, unknown codes.

    Messages never quote the offending bytes: they may hold caller data.
    """


class LocalProtocolError(AgiError):
    """We misused the protocol, e.g. a command before the environment block ended."""


class AgiTimeout(AgiError):
    """Asterisk did not send what we waited for before the deadline."""


class CommandFailed(AgiError):
    """Asterisk rejected or failed a command (510, 520, 503, or a live ``-1``)."""

    def __init__(self, verb: str, message: str, response: Response | None = None):
        # Only the verb goes into the message: arguments may hold caller data.
        super().__init__(f"{verb}: {message}")
        self.verb = verb
        self.response = response


# --- AMI -------------------------------------------------------------------


class NoticeNotInstalled(AgiError):
    """The rule's notice is not installed for its language chain: the call is
    failed closed (not recorded) rather than recorded without a notice."""


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
