"""The container lifecycle as data.

Theory of operation
-------------------
A container's ``State`` holds Docker's flags (``Running``, ``Paused``,
``Restarting``, ``Dead``, plus ``RemovalInProgress``, which statestore keeps in
the record because the record is shared by every replica).  ``State.Status``
is never set directly: :func:`derive_status` computes it from the flags in the
same order moby's ``State.StateString`` does, so the stored string always
agrees with the flags.

Each action (start, pause, ...) has one row in :data:`TRANSITIONS`: the status
it leads to and the statuses it may start from.  An action from any other
status raises :class:`InvalidStateError` naming both states, with moby's
explanation as a hint.  This table is the only place the lifecycle is defined;
the record methods (``State.set_running`` and friends) consult it and then
apply the flag changes moby applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ._errors import InvalidStateError

STATUSES: Final = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTH_STATUSES: Final = ("starting", "healthy", "unhealthy")
ZERO_TIME: Final = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Transition:
    target: str
    allowed_from: frozenset[str]
    hints: tuple[tuple[str, str], ...] = ()

    def hint(self, current: str) -> str:
        for status, text in self.hints:
            if status == current:
                return text
        return ""


def _t(target: str, allowed: set[str], **hints: str) -> Transition:
    return Transition(target, frozenset(allowed), tuple(sorted(hints.items())))


# action -> transition.  Hints are moby's explanations for the refusals.
TRANSITIONS: Final[dict[str, Transition]] = {
    "start": _t(
        "running",
        {"created", "exited", "restarting"},
        running="container is already running",
        paused="cannot start a paused container, try unpause instead",
        removing="container is marked for removal and cannot be started",
        dead="container is dead and can only be removed",
    ),
    "pause": _t(
        "paused",
        {"running"},
        paused="container is already paused",
        restarting="container is restarting, wait until the container is running",
        created="container is not running",
        exited="container is not running",
    ),
    "unpause": _t("running", {"paused"}, running="container is not paused"),
    "restart": _t(
        "restarting",
        {"running"},
        restarting="container is already restarting",
    ),
    "stop": _t(
        "exited",
        {"running", "paused", "restarting"},
        created="container is not running",
        exited="container is not running",
    ),
    "remove": _t(
        "removing",
        {"created", "exited", "dead", "running", "paused", "restarting"},
        removing="removal of container is already in progress",
    ),
    "die": _t("dead", {"created", "exited", "removing", "running", "paused", "restarting"}),
    # not a status change: health results are only accepted while the process lives
    "health": _t("running", {"running", "paused", "restarting"}, created="container is not running",
                 exited="container is not running"),
}


def derive_status(state: dict[str, Any]) -> str:
    """Docker's status string from the flags (moby ``State.StateString``)."""
    if state.get("Running"):
        if state.get("Paused"):
            return "paused"
        if state.get("Restarting"):
            return "restarting"
        return "running"
    if state.get("RemovalInProgress"):
        return "removing"
    if state.get("Dead"):
        return "dead"
    started = state.get("StartedAt") or ZERO_TIME
    if started == ZERO_TIME:
        return "created"
    return "exited"


def check_transition(
    record_id: str, action: str, state: dict[str, Any], target: str | None = None
) -> None:
    """Raise InvalidStateError unless ``action`` is legal from the current state."""
    tr = TRANSITIONS[action]
    current = derive_status(state)
    if action == "remove" and state.get("RemovalInProgress"):
        current = "removing"
    if current not in tr.allowed_from:
        raise InvalidStateError(
            record_id, action, current, target or tr.target, tr.hint(current)
        )


def new_state() -> dict[str, Any]:
    return {
        "Status": "created",
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "RemovalInProgress": False,
        "Dead": False,
        "Pid": 0,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": ZERO_TIME,
        "FinishedAt": ZERO_TIME,
    }


def apply(record_id: str, action: str, state: dict[str, Any], now: str, **kw: Any) -> None:
    """Check ``action`` against the table, then apply moby's flag changes in place."""
    check_transition(record_id, action, state)
    if action == "start":
        state.update(
            Running=True, Paused=False, Restarting=False, Dead=False, Error="",
            ExitCode=0, Pid=int(kw["pid"]), OOMKilled=False, StartedAt=now,
        )
        if "Health" in state:
            state["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
    elif action == "pause":
        state["Paused"] = True
    elif action == "unpause":
        state["Paused"] = False
    elif action in ("stop", "restart"):
        state.update(
            Running=action == "restart", Restarting=action == "restart", Paused=False, Pid=0,
            FinishedAt=now, ExitCode=int(kw["exit_code"]), OOMKilled=bool(kw.get("oom_killed")),
            Error=str(kw.get("error") or ""),
        )
        if action == "stop" and "Health" in state:
            state["Health"]["Status"] = "unhealthy"
            state["Health"]["FailingStreak"] = 0
    elif action == "remove":
        state["RemovalInProgress"] = True
    elif action == "die":
        state.update(Running=False, Paused=False, Restarting=False, Pid=0,
                     RemovalInProgress=False, Dead=True)
    state["Status"] = derive_status(state)
