"""Options that several commands share: ``--policy NAME=VALUE`` and ``--dialect qoder|anthropic``."""

from __future__ import annotations

import argparse
import enum
from typing import Any

import attrs

from ..dialect import DIALECTS, QODER, Dialect, dialect_named
from ..errors import WorkstateError
from ..policy import Policy


def add_policy_option(parser: argparse.ArgumentParser, help: str = "a Policy field the server uses") -> None:
    """``--policy NAME=VALUE``, repeatable; read with :func:`policy_from_pairs`."""
    parser.add_argument("--policy", action="append", default=[], metavar="NAME=VALUE", help=help)


def policy_from_pairs(pairs: list[str], base: Policy | None = None) -> Policy:
    """``Policy`` from ``name=value`` pairs over ``base`` (``Policy()`` when None; a dialect's ``Dialect.policy``);
    values are read by the type of the field's default."""
    fields: dict[str, Any] = {}
    defaults = {f.name: f.default for f in attrs.fields(Policy)}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in defaults:
            raise WorkstateError(f"--policy takes NAME=VALUE with a Policy field name, got {pair!r}", param="policy")
        default = defaults[name]
        try:
            if isinstance(default, enum.Enum):
                fields[name] = type(default)(text.lower())
            elif isinstance(default, bool):
                fields[name] = {"true": True, "false": False}[text.lower()]
            elif isinstance(default, int):
                fields[name] = int(text)
            else:
                fields[name] = float(text)
        except (ValueError, KeyError):
            raise WorkstateError(f"--policy {name}: cannot read {text!r}", param="policy") from None
    return attrs.evolve(Policy() if base is None else base, **fields)


def add_dialect_option(
    parser: argparse.ArgumentParser, help: str = "the wire dialect: how the API is spelled and which rules apply"
) -> None:
    """``--dialect NAME``, one of :data:`workstate.DIALECTS` (default ``qoder``); read with :func:`dialect_of`."""
    parser.add_argument("--dialect", choices=list(DIALECTS), default=QODER.name, help=f"{help} (default: {QODER.name})")


def dialect_of(args: argparse.Namespace) -> Dialect:
    """The :class:`~workstate.Dialect` that ``--dialect`` named (``qoder`` when the command has no such option)."""
    return dialect_named(getattr(args, "dialect", None) or QODER.name)
