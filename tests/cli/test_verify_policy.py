"""``workstate verify --policy K=V`` (issue 18, point 4): the model runs under the policy given, and a bad one is a
usage error naming the fields or the field's values."""

from __future__ import annotations

import io
import re

import pytest

from workstate.cli import main


def _states(argv: list[str]) -> int:
    out = io.StringIO()
    assert main(["verify", "--workers", "1", "--items", "1", "--depth", "5", "--quiet", *argv], out) == 0
    (found,) = re.findall(r"states explored: ([\d,]+)", out.getvalue())
    return int(found.replace(",", ""))


def test_the_policy_reaches_the_model() -> None:
    # With no start timeout at all, an acked item can never lapse back to queued: fewer states are reachable.
    assert _states(["--policy", "on_start_timeout=keep_starting"]) != _states([])


def test_a_bad_policy_names_what_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--depth", "2", "--policy", "on_lease_expiry=never"], io.StringIO()) == 2
    assert "on_lease_expiry takes requeue | stop" in capsys.readouterr().err
    assert main(["verify", "--depth", "2", "--policy", "colour=red"], io.StringIO()) == 2
    err = capsys.readouterr().err
    assert "no Policy field 'colour'" in err and "default_ttl_seconds" in err
