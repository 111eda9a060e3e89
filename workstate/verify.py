"""Placeholder: filled in by the issue that owns `workstate verify`."""

from __future__ import annotations

from .cli import CliCommand

CLI_COMMANDS: tuple[CliCommand, ...] = ()
