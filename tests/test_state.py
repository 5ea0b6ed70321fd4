"""The container lifecycle (pure): the transition table, State.set_*, status derivation, health, execs."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from statestore import Container, ExecConfig, InvalidArgumentError, InvalidStateError, State, _state

ZERO = "0001-01-01T00:00:00Z"
T1 = "2024-05-01T10:00:00.000000001Z"
T2 = "2024-05-01T10:05:00.000000002Z"
T3 = "2024-05-01T10:09:00.000000003Z"
ID_A = "a" * 64

STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
ACTIONS = ("start", "pause", "unpause", "restart", "stop", "remove", "die", "health")

# Independent expectations, written by hand from moby's daemon (start.go, pause.go,
# unpause.go, monitor.go restart handling, state.go SetStopped/SetRemovalInProgress/SetDead)
# rather than read from _state.TRANSITIONS.
MOBY_ALLOWED: dict[str, set[str]] = {
    # start: a created or exited container; "restarting" is the restart manager's own start.
    # Refused: running ("already running"), paused ("try unpause"), removing/dead.
    "start": {"created", "exited", "restarting"},
    "pause": {"running"},
    "unpause": {"paused"},
    # the restart policy only restarts a process that was running
    "restart": {"running"},
    # stop needs a live process: running, paused or restarting
    "stop": {"running", "paused", "restarting"},
    # removal may start from anything but an ongoing removal
    "remove": {"created", "exited", "dead", "running", "paused", "restarting"},
    # a container can die from any status but dead
    "die": {"created", "exited", "removing", "running", "paused", "restarting"},
    # health results only while the process lives
    "health": {"running", "paused", "restarting"},
}

MOBY_HINTS: dict[tuple[str, str], str] = {
    ("start", "running"): "container is already running",
    ("start", "paused"): "cannot start a paused container, try unpause instead",
    ("start", "removing"): "container is marked for removal and cannot be started",
    ("start", "dead"): "container is dead",
    ("pause", "paused"): "container is already paused",
    ("pause", "restarting"): "container is restarting, wait until the container is running",
    ("pause", "created"): "container is not running",
    ("pause", "exited"): "container is not running",
    ("unpause", "running"): "container is not paused",
    ("restart", "restarting"): "container is already restarting",
    ("stop", "created"): "container is not running",
    ("stop", "exited"): "container is not running",
    ("remove", "removing"): "removal of container is already in progress",
    ("health", "created"): "container is not running",
    ("health", "exited"): "container is not running",
}


def in_status(status: str) -> Container:
    """A container brought to ``status`` through legal transitions only."""
    c = Container.new("nginx", name="web", id=ID_A)
    s = c.state
    if status == "created":
        pass
    elif status == "running":
        s.set_running(pid=100, at=T1)
    elif status == "paused":
        s.set_running(pid=100, at=T1)
        s.set_paused()
    elif status == "restarting":
        s.set_running(pid=100, at=T1)
        s.set_restarting(exit_code=1, at=T2)
    elif status == "exited":
        s.set_running(pid=100, at=T1)
        s.set_stopped(exit_code=3, at=T2)
    elif status == "removing":
        s.set_running(pid=100, at=T1)
        s.set_stopped(exit_code=0, at=T2)
        s.set_removal_in_progress()
    elif status == "dead":
        s.set_dead()
    else:  # pragma: no cover
        raise AssertionError(status)
    assert c.status == status
    return c


def do(action: str, s: State) -> None:
    ops: dict[str, Callable[[], None]] = {
        "start": lambda: s.set_running(pid=7, at=T3),
        "pause": s.set_paused,
        "unpause": s.set_unpaused,
        "restart": lambda: s.set_restarting(exit_code=2, at=T3),
        "stop": lambda: s.set_stopped(exit_code=9, at=T3),
        "remove": s.set_removal_in_progress,
        "die": s.set_dead,
        "health": lambda: s.set_health("healthy"),
    }
    ops[action]()


def test_table_covers_every_action_and_status() -> None:
    assert set(_state.TRANSITIONS) == set(ACTIONS)
    assert set(_state.STATUSES) == set(STATUSES)
    for tr in _state.TRANSITIONS.values():
        assert tr.allowed_from <= set(STATUSES)
        assert tr.target in STATUSES


@pytest.mark.parametrize("action", ACTIONS)
def test_table_agrees_with_moby(action: str) -> None:
    assert set(_state.TRANSITIONS[action].allowed_from) == MOBY_ALLOWED[action]


@pytest.mark.parametrize("action,status", list(itertools.product(ACTIONS, STATUSES)))
def test_every_action_from_every_status(action: str, status: str) -> None:
    c = in_status(status)
    before = c.to_dict()
    from_table = status in _state.TRANSITIONS[action].allowed_from
    from_moby = status in MOBY_ALLOWED[action]
    assert from_table == from_moby
    if from_moby:
        do(action, c.state)
        d = c.to_dict()
        assert d["State"]["Status"] == _state.derive_status(d["State"]) == c.status
        expected = {
            "start": "running", "pause": "paused", "unpause": "running", "restart": "restarting",
            "stop": "exited", "die": "dead", "health": status,
            # Running wins over RemovalInProgress in moby's StateString
            "remove": status if status in ("running", "paused", "restarting") else "removing",
        }[action]
        assert c.status == expected
        if action == "remove":
            assert d["State"]["RemovalInProgress"] is True
    else:
        with pytest.raises(InvalidStateError) as ei:
            do(action, c.state)
        err = ei.value
        assert err.current == status
        target = "healthy" if action == "health" else _state.TRANSITIONS[action].target
        assert err.target == target
        assert err.action == action
        assert err.id == ID_A
        assert f"{status} -> {target}" in str(err)
        assert ID_A[:12] in str(err)
        table_hint = _state.TRANSITIONS[action].hint(status)
        if table_hint:
            assert str(err).endswith(table_hint)
        if (action, status) in MOBY_HINTS:
            assert MOBY_HINTS[(action, status)] in str(err)
        # a refused action changes nothing
        assert c.to_dict() == before


def test_remove_twice_is_refused_even_while_running() -> None:
    c = in_status("running")
    c.state.set_removal_in_progress()
    assert c.status == "running"
    with pytest.raises(InvalidStateError, match="removal of container is already in progress") as ei:
        c.state.set_removal_in_progress()
    assert ei.value.current == "removing"
    # stopping the process reveals the removal
    c.state.set_stopped(0, at=T3)
    assert c.status == "removing"


def test_reset_removal_in_progress() -> None:
    c = in_status("removing")
    c.state.reset_removal_in_progress()
    assert c.status == "exited"
    assert c.to_dict()["State"]["Status"] == "exited"
    with pytest.raises(InvalidStateError, match="removal is not in progress"):
        c.state.reset_removal_in_progress()


def test_start_after_removal_reset_is_legal_again() -> None:
    c = in_status("removing")
    with pytest.raises(InvalidStateError):
        c.state.set_running(pid=5)
    c.state.reset_removal_in_progress()
    c.state.set_running(pid=5, at=T3)
    assert c.status == "running"


def test_die_from_removing_clears_the_removal_flag() -> None:
    c = in_status("removing")
    c.state.set_dead()
    d = c.to_dict()["State"]
    assert d["Dead"] is True and d["RemovalInProgress"] is False
    assert c.status == "dead"


# --- derive_status ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags,expected",
    [
        ({"Running": True, "Paused": True}, "paused"),
        ({"Running": True, "Paused": True, "Restarting": True}, "paused"),
        ({"Running": True, "Restarting": True}, "restarting"),
        ({"Running": True}, "running"),
        ({"Running": True, "RemovalInProgress": True, "Dead": True}, "running"),
        ({"Paused": True}, "created"),  # Paused without Running means nothing
        ({"Restarting": True, "StartedAt": T1}, "exited"),
        ({"RemovalInProgress": True}, "removing"),
        ({"RemovalInProgress": True, "Dead": True}, "removing"),
        ({"Dead": True}, "dead"),
        ({"Dead": True, "StartedAt": T1}, "dead"),
        ({}, "created"),
        ({"StartedAt": ZERO}, "created"),
        ({"StartedAt": ""}, "created"),
        ({"StartedAt": None}, "created"),
        ({"StartedAt": T1}, "exited"),
    ],
)
def test_derive_status_examples(flags: dict[str, Any], expected: str) -> None:
    assert _state.derive_status(flags) == expected


def _moby_state_string(running: bool, paused: bool, restarting: bool, removing: bool, dead: bool,
                       started: bool) -> str:
    # moby State.StateString, transcribed as a priority list
    rules = [
        (running and paused, "paused"),
        (running and restarting, "restarting"),
        (running, "running"),
        (removing, "removing"),
        (dead, "dead"),
        (not started, "created"),
    ]
    return next((name for cond, name in rules if cond), "exited")


def test_derive_status_all_flag_combinations() -> None:
    for combo in itertools.product((False, True), repeat=6):
        running, paused, restarting, removing, dead, started = combo
        state = {"Running": running, "Paused": paused, "Restarting": restarting, "RemovalInProgress": removing,
                 "Dead": dead, "StartedAt": T1 if started else ZERO}
        assert _state.derive_status(state) == _moby_state_string(*combo), combo


def test_state_status_never_read_from_the_stored_string() -> None:
    c = in_status("running")
    c.state._d["Status"] = "dead"  # a stale string is ignored: status is derived from the flags
    assert c.status == "running" and c.state.status == "running"


# --- field effects ---------------------------------------------------------------------------


def test_set_running_fields() -> None:
    c = in_status("exited")
    c.state._d.update(Error="boom", OOMKilled=True)
    c.state.set_running(pid=4242, at=T3)
    s = c.to_dict()["State"]
    assert s["Running"] is True and s["Paused"] is False and s["Restarting"] is False and s["Dead"] is False
    assert s["Pid"] == 4242
    assert s["ExitCode"] == 0
    assert s["Error"] == ""
    assert s["OOMKilled"] is False
    assert s["StartedAt"] == T3
    assert s["FinishedAt"] == T2  # kept from the previous run, like docker
    assert s["Status"] == "running"


def test_set_running_uses_the_clock_when_no_time_given() -> None:
    state = _state.new_state()
    s = State(state, ID_A, clock=lambda: 1_000_000_000_000_000_005)
    s.set_running(pid=1)
    assert state["StartedAt"] == "2001-09-09T01:46:40.000000005Z"
    s.set_stopped(0)
    assert state["FinishedAt"] == "2001-09-09T01:46:40.000000005Z"


@pytest.mark.parametrize("pid", [0, -1, True, False, "1", 1.5, None])
def test_set_running_rejects_bad_pids(pid: Any) -> None:
    c = in_status("created")
    before = c.to_dict()
    with pytest.raises(InvalidArgumentError, match="pid"):
        c.state.set_running(pid=pid)
    assert c.to_dict() == before


def test_set_stopped_fields() -> None:
    c = in_status("running")
    c.state.set_stopped(137, oom_killed=True, error="OOM", at=T3)
    s = c.to_dict()["State"]
    assert s["Running"] is False and s["Paused"] is False and s["Restarting"] is False
    assert s["Pid"] == 0
    assert s["ExitCode"] == 137
    assert s["OOMKilled"] is True
    assert s["Error"] == "OOM"
    assert s["StartedAt"] == T1
    assert s["FinishedAt"] == T3
    assert s["Status"] == "exited"
    st = c.state
    assert (st.exit_code, st.oom_killed, st.error, st.pid, st.finished_at) == (137, True, "OOM", 0, T3)


def test_set_stopped_from_paused_clears_paused() -> None:
    c = in_status("paused")
    c.state.set_stopped(0, at=T3)
    assert c.to_dict()["State"]["Paused"] is False
    assert c.status == "exited"


@pytest.mark.parametrize("code", [True, "1", 1.0, None])
def test_set_stopped_rejects_bad_exit_codes(code: Any) -> None:
    c = in_status("running")
    before = c.to_dict()
    with pytest.raises(InvalidArgumentError, match="exit_code"):
        c.state.set_stopped(code)
    assert c.to_dict() == before


def test_set_restarting_fields() -> None:
    c = in_status("running")
    c.state.set_restarting(exit_code=1, oom_killed=True, at=T3)
    s = c.to_dict()["State"]
    assert s["Running"] is True and s["Restarting"] is True and s["Paused"] is False
    assert s["Pid"] == 0 and s["ExitCode"] == 1 and s["OOMKilled"] is True
    assert s["FinishedAt"] == T3 and s["StartedAt"] == T1
    assert c.status == "restarting"
    # the restart manager starts it again
    c.state.set_running(pid=101, at=T3)
    s = c.to_dict()["State"]
    assert s["Running"] is True and s["Restarting"] is False and s["Pid"] == 101 and s["ExitCode"] == 0


def test_pause_and_unpause_flags() -> None:
    c = in_status("running")
    c.state.set_paused()
    assert c.to_dict()["State"]["Paused"] is True and c.state.paused
    assert c.to_dict()["State"]["Pid"] == 100
    c.state.set_unpaused()
    assert c.to_dict()["State"]["Paused"] is False
    assert c.status == "running"


def test_set_dead_fields() -> None:
    c = in_status("paused")
    c.state.set_dead()
    s = c.to_dict()["State"]
    assert s["Dead"] is True and s["Running"] is False and s["Paused"] is False and s["Pid"] == 0
    assert c.status == "dead"


# --- health ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["running", "paused", "restarting"])
def test_health_accepted_while_the_process_lives(status: str) -> None:
    c = in_status(status)
    c.state.set_health("healthy")
    h = c.state.health
    assert h is not None
    assert (h.status, h.failing_streak, h.log) == ("healthy", 0, [])
    assert c.status == status


@pytest.mark.parametrize("status", ["created", "exited", "removing", "dead"])
def test_health_refused_otherwise(status: str) -> None:
    c = in_status(status)
    with pytest.raises(InvalidStateError) as ei:
        c.state.set_health("unhealthy")
    assert ei.value.current == status and ei.value.target == "unhealthy"
    assert c.state.health is None


@pytest.mark.parametrize("bad", ["none", "Healthy", "", None, "sick"])
def test_health_status_is_validated(bad: Any) -> None:
    c = in_status("running")
    with pytest.raises(InvalidArgumentError, match="health status"):
        c.state.set_health(bad)
    assert c.state.health is None


def test_failing_streak_counts_unhealthy_results_and_resets() -> None:
    c = in_status("running")
    streaks = []
    for status in ["starting", "unhealthy", "unhealthy", "unhealthy", "healthy", "unhealthy"]:
        c.state.set_health(status)
        h = c.state.health
        assert h is not None and h.status == status
        streaks.append(h.failing_streak)
    assert streaks == [0, 1, 2, 3, 0, 1]
    c.state.set_health("unhealthy", failing_streak=10)
    h = c.state.health
    assert h is not None and h.failing_streak == 10


def test_health_log_is_capped_to_the_latest_entries() -> None:
    c = in_status("running")
    for i in range(8):
        c.state.set_health("healthy", probe={"ExitCode": 0, "Output": f"probe {i}"})
    h = c.state.health
    assert h is not None
    assert [e["Output"] for e in h.log] == [f"probe {i}" for i in range(3, 8)]
    c.state.set_health("healthy", probe={"Output": "x"}, max_log=2)
    h = c.state.health
    assert h is not None
    assert [e["Output"] for e in h.log] == ["probe 7", "x"]
    c.state.set_health("healthy")  # no probe: the log is kept
    h = c.state.health
    assert h is not None and len(h.log) == 2


def test_health_probe_is_copied() -> None:
    c = in_status("running")
    probe: dict[str, Any] = {"Output": "ok"}
    c.state.set_health("healthy", probe=probe)
    probe["Output"] = "changed"
    h = c.state.health
    assert h is not None and h.log == [{"Output": "ok"}]


# regression: set_health kept log[-max_log:], which with max_log=0 is log[0:], the whole log
def test_health_log_with_max_log_zero_is_empty() -> None:
    c = in_status("running")
    for i in range(3):
        c.state.set_health("healthy", probe={"Output": str(i)})
    c.state.set_health("healthy", probe={"Output": "x"}, max_log=0)
    h = c.state.health
    assert h is not None and h.log == []


def test_start_resets_health_and_stop_marks_it_unhealthy() -> None:
    c = in_status("running")
    c.state.set_health("unhealthy", probe={"Output": "bad"})
    c.state.set_stopped(1, at=T3)
    h = c.state.health
    assert h is not None and h.status == "unhealthy" and h.failing_streak == 0
    c.state.set_running(pid=9, at=T3)
    h = c.state.health
    assert h is not None and (h.status, h.failing_streak, h.log) == ("starting", 0, [])


def test_start_without_healthcheck_adds_no_health() -> None:
    c = in_status("exited")
    c.state.set_running(pid=3, at=T3)
    assert "Health" not in c.to_dict()["State"]
    assert c.state.health is None


def test_state_views_survive_copy() -> None:
    c = in_status("running")
    snapshot = copy.deepcopy(c.to_dict())
    dup = c.copy()
    dup.state.set_stopped(0, at=T3)
    assert c.to_dict() == snapshot


# --- execs ----------------------------------------------------------------------------------


def _exec() -> ExecConfig:
    return ExecConfig.new(ID_A, ["sh"], id="b" * 64)


def test_exec_lifecycle() -> None:
    x = _exec()
    assert x.status == "created" and x.exit_code is None
    x.set_running(pid=55)
    assert x.status == "running" and x.running and x.pid == 55
    x.set_exited(3)
    assert x.status == "exited" and not x.running and x.pid == 0 and x.exit_code == 3


def test_exec_runs_only_once() -> None:
    x = _exec()
    x.set_running(pid=55)
    with pytest.raises(InvalidStateError, match="is already running") as ei:
        x.set_running(pid=56)
    assert (ei.value.current, ei.value.target) == ("running", "running")
    x.set_exited(0)
    with pytest.raises(InvalidStateError, match="has already run") as ei:
        x.set_running(pid=57)
    assert (ei.value.current, ei.value.target) == ("exited", "running")
    assert x.pid == 0 and x.exit_code == 0


def test_exec_exit_requires_running() -> None:
    x = _exec()
    with pytest.raises(InvalidStateError, match="exec is not running") as ei:
        x.set_exited(0)
    assert (ei.value.current, ei.value.target) == ("created", "exited")
    assert x.exit_code is None


@pytest.mark.parametrize("pid", [0, -3, True, "5", None])
def test_exec_bad_pid(pid: Any) -> None:
    x = _exec()
    with pytest.raises(InvalidArgumentError):
        x.set_running(pid)
    assert x.status == "created"


@pytest.mark.parametrize("code", [True, "0", None, 0.0])
def test_exec_bad_exit_code(code: Any) -> None:
    x = _exec()
    x.set_running(pid=1)
    with pytest.raises(InvalidArgumentError):
        x.set_exited(code)
    assert x.running and x.pid == 1


def test_exec_exit_code_zero_is_exited_not_created() -> None:
    x = _exec()
    x.set_running(pid=2)
    x.set_exited(0)
    assert x.status == "exited"
    assert x.to_dict()["ExitCode"] == 0


# regression: set_restarting did not validate exit_code (set_stopped did): True, '1' and 1.5 were stored as 1
# and None raised TypeError instead of InvalidArgumentError
@pytest.mark.parametrize("code", [True, "1", 1.5, None])
def test_set_restarting_rejects_bad_exit_codes(code: Any) -> None:
    c = in_status("running")
    before = c.to_dict()
    with pytest.raises(InvalidArgumentError, match="exit_code"):
        c.state.set_restarting(code)
    assert c.to_dict() == before
