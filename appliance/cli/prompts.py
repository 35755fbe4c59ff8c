"""`callvault prompts build|import|install|list`: the recording-notice prompts
(announcements/cli.py holds the commands; docs/prompts.md describes them)."""

from __future__ import annotations

import argparse

from announcements.cli import add_prompts_commands


def add_commands(sub: argparse._SubParsersAction) -> None:
    add_prompts_commands(sub)
