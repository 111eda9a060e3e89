import pytest

from workstate.cli import main
from workstate.rules import DECLARATION


def test_the_walk_tells_a_whole_life(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for expected in (
        "Ack(worker_id='w2') -> 409 queued  [4.2 ack-claimed-by-another]",
        "-> 200 starting  [4.2 ack-replay]",
        "-> 412 active  [4.3 heartbeat-precondition-failed]",
        "Heartbeat() -> 200 stopping  [4.3 heartbeat-while-stopping]",
        "Stop() -> 200 stopped  [4.4 stop-confirms]",
        "-> queued  [5 start-timeout]",
        "effect: DispatchRequested()",
    ):
        assert expected in out
    assert main(["walk"]) == 0
    assert capsys.readouterr().out == out


def test_rules_lists_every_rule_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(DECLARATION)
    assert [line.split("]")[0].split()[-1] for line in lines] == [line[0] for line in DECLARATION]


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fly"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
