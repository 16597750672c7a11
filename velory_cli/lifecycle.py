"""The transitions between the statuses, how screens word them, and the actions on devices.

``active`` -> ``renewal_started`` -> ``return_confirmed`` -> ``removed``; Dustin's devices go
from ``active`` to ``return_confirmed`` (Dustin runs the renewal); ``retire`` takes any device
not removed out of the assets (lost, stolen, broken, other); ``reinstate`` takes a device
released by mistake back to ``return_confirmed``, and a retired one back to the status it had.
Nothing else moves a status.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from velory_cli.dates import add_months
from velory_cli.errors import ConfigError, InvalidInput, UsageError
from velory_cli.folding import fold
from velory_cli.models import (
    ACTIVE,
    DEVICE_STATUSES,
    OUTCOME_BOUGHT_OUT,
    OUTCOME_OTHER,
    OUTCOME_RETURNED,
    REMOVED,
    RENEWAL_STARTED,
    RETIRE_OUTCOMES,
    RETURN_CONFIRMED,
    SOURCE_STORE,
    Device,
    NoticeKind,
)
from velory_cli.store import StatusChange, Store

# How Velory's own screens word each status, so admins recognise them in tables.
STATUS_LABELS = {
    ACTIVE: "Active",
    RENEWAL_STARTED: "Active – pending return",
    RETURN_CONFIRMED: "Return confirmed",
    REMOVED: "Removed",
}


# A retired device: removed, and why.
RETIRED_LABELS = {outcome: f"Removed – {outcome}" for outcome in RETIRE_OUTCOMES}
RETIRED_LABELS[OUTCOME_OTHER] = "Removed – retired"


def status_label(status: str, outcome: str | None = None) -> str:
    if status == RETURN_CONFIRMED and outcome == OUTCOME_BOUGHT_OUT:
        return "Bought out"
    if status == REMOVED and outcome in RETIRED_LABELS:
        return RETIRED_LABELS[outcome]
    return STATUS_LABELS.get(status, status)


# ---- the transitions table ---------------------------------------------------------------
#
# Every action on a device, the statuses it may start from and the status it leads to (None:
# the status stays). This table is the only place that says which move is allowed: the actions
# below, their refusal messages and the hints about what a device needs first all read it.
# A status-changing action is one more row here, carried out by ``change_status``.
#
# Each row also says when a device already has what the action would give it (``done``): a
# script run again, which is reported unchanged, not refused, whatever the device's status now
# (a device its next line already released included). The same action with other values falls
# through to the refusals as before.

Guard = Callable[[Device], str | None]
# A check by a system outside the register (the MDM's snapshot): a refusal, or details for the
# history entry of a device it lets through.
ExternalGuard = Callable[[Device], tuple[str | None, dict[str, Any] | None]]


@dataclass(frozen=True)
class Asked:
    """The values an action was given, for telling a re-run from a different request."""

    outcome: str | None = None
    model: str | None = None
    new_serial: str | None = None


# Whether the device already has what the action, asked this way, would give it.
Done = Callable[[Device, Asked], bool]
# Why a device that had the action with other values is refused; None when it did not.
Conflict = Callable[[Device, Asked], str | None]


def _not_dustin(device: Device) -> str | None:
    if device.dustin:
        return (
            f"its distributor is {device.distributor}, and Dustin's devices follow Dustin's "
            "own process; velory does not start them"
        )
    return None


def _not_from_store(device: Device) -> str | None:
    if device.source == SOURCE_STORE:
        return (
            "it came from the Velory store and renews through Velory's normal process; "
            "velory does not start it"
        )
    return None


def _not_ordered_yet(device: Device) -> str | None:
    if device.ordered_at:
        return (
            f"a replacement ({device.ordered_model or 'no model'}) was already ordered on "
            f"{device.ordered_at[:10]}; one replacement per renewing device"
        )
    return None


def _ordered(device: Device) -> str | None:
    if not device.ordered_at:
        return "no replacement was ordered for it; run velory order first"
    return None


def _not_delivered(device: Device) -> str | None:
    if device.replacement_serial:
        return f"its replacement {device.replacement_serial} was already delivered"
    return None


def _ordered_as(device: Device, asked: Asked) -> bool:
    return bool(device.ordered_at) and device.ordered_model == asked.model


def _delivered_as(device: Device, asked: Asked) -> bool:
    return (
        device.replacement_serial is not None
        and asked.new_serial is not None
        and fold(device.replacement_serial) == fold(asked.new_serial)
    )


def _confirmed_as(device: Device, asked: Asked) -> bool:
    """Confirmed with this outcome: still so, or released since. A confirmed device from
    before outcomes were kept counts as either."""
    if device.status == RETURN_CONFIRMED:
        return device.outcome in (None, asked.outcome)
    return (
        device.status == REMOVED and asked.outcome is not None and (device.outcome == asked.outcome)
    )


def _confirmed_otherwise(device: Device, asked: Asked) -> str | None:
    if device.status == RETURN_CONFIRMED and device.outcome != asked.outcome:
        return f"it was already confirmed as {device.outcome}; add a note to record otherwise"
    return None


def _retired_as(device: Device, asked: Asked) -> bool:
    return (
        device.status == REMOVED
        and device.outcome in RETIRE_OUTCOMES
        and device.outcome == asked.outcome
    )


def _retired_otherwise(device: Device, asked: Asked) -> str | None:
    if device.status == REMOVED and device.outcome in RETIRE_OUTCOMES:
        return (
            f"it was already retired as {device.outcome}; run velory reinstate first to "
            "retire it otherwise, or add a note"
        )
    return None


def _back_from_removal(device: Device) -> str:
    """Where reinstate takes a device: a retired one back to the status it had, a released
    one to return_confirmed (release needs it)."""
    return device.retired_from or RETURN_CONFIRMED


@dataclass(frozen=True)
class Transition:
    """Where an action may start (``sources``), where it leads (``target``, None: the status
    stays), and what else the device must satisfy (``guards``: a reason to refuse, or None)."""

    sources: tuple[str, ...]
    target: str | None
    guards: tuple[Guard, ...] = ()
    # What a device in none of ``sources`` is told instead of a way there, where no way
    # there makes sense.
    only_from: str | None = None
    # A re-run (see above); None: the device is already at ``target``.
    done: Done | None = None
    # Why the action done before with other values is refused, before the status is looked at.
    conflict: Conflict | None = None
    # Where a Dustin device may also start from: Dustin runs the renewal outside velory, so
    # velory never sees it started.
    dustin_sources: tuple[str, ...] = ()
    # Where this device goes, when that depends on the device (reinstate); else ``target``.
    target_for: Callable[[Device], str] | None = None
    # The status and outcome the device had are kept, for reinstate to give back (retire).
    keeps_way_back: bool = False

    def sources_for(self, device: Device) -> tuple[str, ...]:
        return self.sources + self.dustin_sources if device.dustin else self.sources


TRANSITIONS: dict[str, Transition] = {
    "start": Transition((ACTIVE,), RENEWAL_STARTED, (_not_dustin, _not_from_store)),
    "order": Transition((RENEWAL_STARTED,), None, (_not_ordered_yet,), done=_ordered_as),
    # The old device may be returned before its replacement arrives: deliver still links them.
    "deliver": Transition(
        (RENEWAL_STARTED, RETURN_CONFIRMED),
        None,
        (_ordered, _not_delivered),
        done=_delivered_as,
    ),
    "confirm-return": Transition(
        (RENEWAL_STARTED,),
        RETURN_CONFIRMED,
        done=_confirmed_as,
        conflict=_confirmed_otherwise,
        dustin_sources=(ACTIVE,),
    ),
    "release": Transition((RETURN_CONFIRMED,), REMOVED),
    # Out of the assets without the return flow: lost, stolen, broken, other. Any device not
    # removed, Dustin's and store devices too: the guards of start do not apply.
    "retire": Transition(
        (ACTIVE, RENEWAL_STARTED, RETURN_CONFIRMED),
        REMOVED,
        done=_retired_as,
        conflict=_retired_otherwise,
        keeps_way_back=True,
    ),
    # Undo a release made by mistake, or a retirement (the device turned up). Neither deletes
    # anything, so this loses nothing.
    "reinstate": Transition(
        (REMOVED,),
        RETURN_CONFIRMED,
        only_from="only a released or retired device can be reinstated",
        target_for=_back_from_removal,
    ),
    "note": Transition(DEVICE_STATUSES, None),
    # A removed device is history: reinstate it first, so no edit changes a device out of sight.
    "edit": Transition((ACTIVE, RENEWAL_STARTED, RETURN_CONFIRMED), None),
}


def already_done(device: Device, action: str, asked: Asked = Asked()) -> bool:
    """Whether ``device`` already has what ``action``, asked this way, would give it: a re-run,
    reported unchanged."""
    transition = TRANSITIONS[action]
    if transition.done is not None:
        return transition.done(device, asked)
    return transition.target is not None and device.status == transition.target


def refusal(device: Device, action: str, asked: Asked = Asked()) -> str | None:
    """Why ``action`` cannot be done on ``device`` now, as one line naming the device, its
    status and what it needs first; None when it can."""
    transition = TRANSITIONS[action]
    prefix = f"{device.serial} is {device.status}"
    conflict = transition.conflict(device, asked) if transition.conflict else None
    if conflict:
        return f"{prefix}: {conflict}"
    sources = transition.sources_for(device)
    if device.status not in sources:
        needs = " or ".join(sources)
        hint = transition.only_from or _way_there(device, sources)
        return f"{prefix}: {action} needs {needs}; {hint}"
    for guard in transition.guards:
        reason = guard(device)
        if reason:
            return f"{prefix}: {reason}"
    return None


# Never a step on the way to something else: a release takes the device out of every company
# system, and a retirement out of the assets, so "release it first" is never the advice.
_NOT_A_WAY_THERE = frozenset({"release", "retire"})


def _way_there(device: Device, wanted: tuple[str, ...]) -> str:
    """The shortest run of actions from the device's status to one of ``wanted``, as a hint."""
    paths: dict[str, list[str]] = {device.status: []}
    queue = [device.status]
    while queue:
        status = queue.pop(0)
        for action, transition in TRANSITIONS.items():
            target = transition.target
            if target is None or status not in transition.sources_for(device) or target in paths:
                continue
            if action in _NOT_A_WAY_THERE:
                continue
            paths[target] = [*paths[status], action]
            queue.append(target)
    reachable = [paths[status] for status in wanted if status in paths]
    if not reachable:
        return f"a {device.status} device does not go back there"
    steps = min(reachable, key=len)
    for step in steps:
        for guard in TRANSITIONS[step].guards:
            reason = guard(device)
            if reason:
                return reason
    return "run " + ", then ".join(f"velory {step}" for step in steps) + " first"


# ---- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionResult:
    """What one action did to one device: changed, unchanged (already there) or refused."""

    serial: str
    ok: bool
    changed: bool
    status: str | None
    error: str | None = None
    # The device's outcome after the action (returned, bought_out or None): tables word a
    # return_confirmed device by it.
    outcome: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "ok": self.ok,
            "changed": self.changed,
            "status": self.status,
            "error": self.error,
            "outcome": self.outcome,
        }


@dataclass
class ActionReport:
    """One action on one or many devices. ``messages`` and ``warnings`` are for the admin."""

    action: str
    results: list[ActionResult]
    dry_run: bool = False
    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    new_device: Device | None = None
    # What an edit changed, as its history entry has it: {field: {old, new}}.
    changes: dict[str, dict[str, str | None]] | None = None

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.results if r.ok and r.changed)

    @property
    def unchanged(self) -> int:
        return sum(1 for r in self.results if r.ok and not r.changed)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "action": self.action,
            "dry_run": self.dry_run,
            "succeeded": self.succeeded,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "results": [result.to_dict() for result in self.results],
        }
        if self.action == "deliver":
            data["new_device"] = self.new_device.to_dict() if self.new_device else None
        if self.action == "edit":
            data["changes"] = self.changes or {}
        return data


# A bulk command suggests serials for this many unknown ones; a file of thousands of them is
# the wrong file, not thousands of typing mistakes.
_SUGGESTED_UNKNOWNS = 20


def _unknown(store: Store, serial: str, *, suggest: bool = True) -> ActionResult:
    from velory_cli.nearest import no_such_device

    error = no_such_device(store, serial, suggest=suggest)
    return ActionResult(serial, ok=False, changed=False, status=None, error=error)


def _done(device: Device) -> ActionResult:
    """An action that changed the device but not its status (order, deliver, note)."""
    return ActionResult(device.serial, True, True, device.status, outcome=device.outcome)


def _refused(device: Device, error: str) -> ActionResult:
    return ActionResult(
        device.serial,
        ok=False,
        changed=False,
        status=device.status,
        error=error,
        outcome=device.outcome,
    )


def _unchanged(device: Device) -> ActionResult:
    return ActionResult(device.serial, True, False, device.status, outcome=device.outcome)


def _allowed_device(
    store: Store, action: str, serial: str, asked: Asked = Asked()
) -> Device | ActionResult:
    """The device ``action`` may be done on now, or the result that says why not: no device
    has the serial, it already has what was asked (unchanged), or ``TRANSITIONS`` refuses it."""
    device = store.device(serial)
    if device is None:
        return _unknown(store, serial)
    if already_done(device, action, asked):
        return _unchanged(device)
    reason = refusal(device, action, asked)
    return _refused(device, reason) if reason else device


def _change_one(
    store: Store,
    action: str,
    serial: str,
    *,
    now: str,
    actor: str,
    details: dict[str, Any],
    change: Callable[[Device], None],
    asked: Asked = Asked(),
) -> ActionReport:
    """An action on one device that keeps its status (order, note), in one transaction: the
    device, if the action is allowed on it, is changed by ``change`` and gets a history entry
    with ``details``."""
    with store.transaction():
        found = _allowed_device(store, action, serial, asked)
        if isinstance(found, ActionResult):
            return ActionReport(action, [found])
        change(found)
        store.record_history(
            found.id,
            at=now,
            actor=actor,
            action=action,
            from_status=found.status,
            to_status=found.status,
            details=details,
        )
    return ActionReport(action, [_done(found)])


# ---- serial lists --------------------------------------------------------------------------


def unique_serials(serials: Iterable[str]) -> list[str]:
    """The serials without surrounding spaces or blanks, each once (in any spelling ``fold``
    makes one: ``ß1`` and ``SS1``, but not ``ı1`` and ``I1``), in the order first given."""
    seen: set[str] = set()
    unique: list[str] = []
    for raw in serials:
        serial = raw.strip()
        key = fold(serial)
        if serial and key not in seen:
            seen.add(key)
            unique.append(serial)
    return unique


def parse_serial_list(text: str) -> list[str]:
    """Serials one a line; blank lines and ``#`` comments (whole lines, or after a space)
    ignored."""
    serials: list[str] = []
    for line in text.splitlines():
        serial = _TRAILING_COMMENT.split(line, maxsplit=1)[0].strip()
        if serial and not serial.startswith("#"):
            serials.append(serial)
    return serials


_TRAILING_COMMENT = re.compile(r"\s#")


# What a note or a reason may not hold: control characters other than tab and line breaks,
# which would reach an admin's terminal as escape sequences. The importer refuses the same.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# What a one-line value (a serial, a model) may not hold: any control character, line breaks
# and tabs too, as the importer refuses them in every column but the notes.
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def checked_text(text: str, what: str, *, one_line: bool = False) -> str:
    """A note or reason as written, without surrounding spaces and with its line breaks as
    LF (as an import keeps them); UsageError when it holds any other control character.
    ``one_line``: a serial or a model, where line breaks and tabs are refused too."""
    found = (_CONTROL_ONE_LINE if one_line else _CONTROL).search(text)
    if found:
        allowed = (
            "it takes one line of text" if one_line else "only line breaks and tabs are allowed"
        )
        raise UsageError(
            f"{what} holds a control character (U+{ord(found.group()):04X}); {allowed}"
        )
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _one_serial(serial: str) -> str:
    if not serial.strip():
        raise UsageError("the serial is empty")
    return serial.strip()


# ---- the actions ---------------------------------------------------------------------------


def change_status(
    store: Store,
    action: str,
    serials: Iterable[str],
    *,
    now: str,
    actor: str,
    dry_run: bool = False,
    outcome: str | None = None,
    note: str | None = None,
    details: dict[str, Any] | None = None,
    guard: ExternalGuard | None = None,
) -> ActionReport:
    """Move each device along ``TRANSITIONS[action]``, each on its own: a refused device
    changes nothing and the others go on. All changes are written in one transaction.
    ``guard``: what a system outside the register says of a device the transitions allow (a
    refusal, or details for its history entry)."""
    transition = TRANSITIONS[action]
    if transition.target is None:
        raise ValueError(f"{action} does not change a status")
    wanted = unique_serials(serials)
    asked = Asked(outcome=outcome)
    results: list[ActionResult] = []
    changes: list[StatusChange] = []
    already_there: list[Device] = []
    messages: list[str] = []
    with nullcontext() if dry_run else store.transaction():
        found = store.devices_by_serials(wanted)
        unknown = 0
        for serial in wanted:
            device = found.get(fold(serial))
            if device is None:
                unknown += 1
                results.append(_unknown(store, serial, suggest=unknown <= _SUGGESTED_UNKNOWNS))
                continue
            if already_done(device, action, asked):
                results.append(_unchanged(device))
                already_there.append(device)
                continue
            reason = refusal(device, action, asked)
            extra: dict[str, Any] | None = None
            if reason is None and guard is not None:
                reason, extra = guard(device)
            if reason:
                results.append(_refused(device, reason))
                continue
            entry = {**(details or {}), **(extra or {})}
            if outcome:
                entry["outcome"] = outcome
            if note:
                entry["note"] = note
            change = _status_change(transition, device, outcome, entry or None, note)
            changes.append(change)
            results.append(
                ActionResult(device.serial, True, True, change.to_status, outcome=change.outcome)
            )
        if not dry_run and changes:
            store.apply_status_changes(changes, at=now, actor=actor, action=action)
        if note and already_there:
            messages += _keep_note(
                store, already_there, note, now=now, actor=actor, dry_run=dry_run
            )
    return ActionReport(action, results, dry_run=dry_run, messages=messages)


def _status_change(
    transition: Transition,
    device: Device,
    outcome: str | None,
    details: dict[str, Any] | None,
    note: str | None,
) -> StatusChange:
    """How ``transition`` moves ``device``: its new status and outcome, and what a retired
    device keeps for reinstate (only a retired device has it; any other move clears it)."""
    assert transition.target is not None
    if transition.target_for is not None:
        target = transition.target_for(device)
    else:
        target = transition.target
    retired_from = retired_from_outcome = None
    if transition.keeps_way_back:
        retired_from, retired_from_outcome = device.status, device.outcome
        new_outcome = outcome
    elif device.retired_from is not None:
        # Back from a retirement: the outcome it had before (a confirmed return's, or none).
        new_outcome = device.retired_from_outcome
    else:
        new_outcome = outcome or device.outcome
    return StatusChange(
        device_id=device.id,
        from_status=device.status,
        to_status=target,
        outcome=new_outcome,
        details=details,
        note=note,
        retired_from=retired_from,
        retired_from_outcome=retired_from_outcome,
    )


def _keep_note(
    store: Store, devices: list[Device], note: str, *, now: str, actor: str, dry_run: bool
) -> list[str]:
    """A re-run script must not lose what it was given: the note for devices already where
    the action leads goes into their notes all the same, once (not where the device has that
    note already). Returns what to tell the admin."""
    held = store.notes_held([(device.id, note) for device in devices])
    new = [device for device in devices if (device.id, note) not in held]
    if not new:
        return []
    if not dry_run:
        store.add_note_many(
            [(device.id, device.status) for device in new], at=now, actor=actor, text=note
        )
    verb = "would be added" if dry_run else "was added"
    if len(new) == 1:
        device = new[0]
        return [f"{device.serial} was already {device.status}: the note {verb} to its notes."]
    from velory_cli.wording import count

    return [
        f"{count(len(new), 'device')} were already {new[0].status}: the note {verb} to their notes."
    ]


def start_renewal(store: Store, serial: str, *, now: str, actor: str) -> ActionReport:
    """The user started the process: ``renewal_started``. Not for Dustin's or store devices."""
    return change_status(store, "start", [_one_serial(serial)], now=now, actor=actor)


def start_renewals(
    store: Store, serials: Iterable[str], *, now: str, actor: str, dry_run: bool = False
) -> ActionReport:
    """``start_renewal`` for many devices, each on its own, in one transaction."""
    return change_status(store, "start", serials, now=now, actor=actor, dry_run=dry_run)


def confirm_returns(
    store: Store,
    serials: Iterable[str],
    *,
    now: str,
    actor: str,
    bought_out: bool = False,
    note: str | None = None,
    dry_run: bool = False,
) -> ActionReport:
    """The old devices were returned (or bought out): ``return_confirmed``, the note kept."""
    return change_status(
        store,
        "confirm-return",
        serials,
        now=now,
        actor=actor,
        dry_run=dry_run,
        outcome=OUTCOME_BOUGHT_OUT if bought_out else OUTCOME_RETURNED,
        note=checked_text(note or "", "the note") or None,
    )


def release_devices(
    store: Store,
    serials: Iterable[str],
    *,
    now: str,
    actor: str,
    dry_run: bool = False,
    force: bool = False,
) -> ActionReport:
    """Marked as released: ``removed``, gone from the hardware view and the company assets.
    A device the latest MDM snapshot still lists is refused, unless ``force`` (then its
    history says so)."""
    from velory_cli.mdm.check import release_guard

    wanted = list(serials)
    return change_status(
        store,
        "release",
        wanted,
        now=now,
        actor=actor,
        dry_run=dry_run,
        guard=release_guard(store, wanted, force=force),
    )


def retire_devices(
    store: Store,
    serials: Iterable[str],
    *,
    outcome: str,
    note: str,
    now: str,
    actor: str,
    dry_run: bool = False,
) -> ActionReport:
    """Out of the company's assets without the return flow (lost, stolen, broken, other):
    ``removed``, the outcome and the note kept; from any status but removed, any distributor or
    source. ``reinstate`` brings a retired device back to the status it had.

    The MDM check does not refuse it: a lost or stolen device is the one most likely to stay
    enrolled, and the admin cannot return it to get it out of the MDM first. Each device the
    latest snapshot still lists is retired with a warning to wipe it or remove it from the
    MDM, and its history names the snapshot; ``mdm check`` lists it until it is gone."""
    from velory_cli.mdm.check import enrolment_warnings

    outcome = outcome.strip().lower()
    if outcome not in RETIRE_OUTCOMES:
        raise UsageError(f"--outcome {outcome!r}: use one of {', '.join(RETIRE_OUTCOMES)}")
    note = checked_text(note, "the note")
    if not note:
        raise UsageError("--note is empty; say what happened to the device")
    wanted = list(serials)
    warnings: list[str] = []
    report = change_status(
        store,
        "retire",
        wanted,
        now=now,
        actor=actor,
        dry_run=dry_run,
        outcome=outcome,
        note=note,
        guard=enrolment_warnings(store, wanted, warnings),
    )
    report.warnings += warnings
    return report


def order_replacement(
    store: Store, serial: str, model: str, *, now: str, actor: str
) -> ActionReport:
    """The replacement the user requested in the store: one per renewing device."""
    serial = _one_serial(serial)
    model = checked_text(model, "--model", one_line=True)
    if not model:
        raise UsageError("--model is empty; name the model ordered")
    return _change_one(
        store,
        "order",
        serial,
        now=now,
        actor=actor,
        details={"model": model},
        change=lambda device: store.update_device(
            device.id, {"ordered_model": model, "ordered_at": now, "updated_at": now}
        ),
        asked=Asked(model=model),
    )


# A store device's distributor: Velory itself delivered it.
STORE_DISTRIBUTOR = "Velory"


def deliver_replacement(
    store: Store,
    serial: str,
    new_serial: str,
    *,
    model: str | None = None,
    today: date,
    now: str,
    actor: str,
    term_months: int,
) -> ActionReport:
    """The replacement arrived: a new active store device for the same user, linked both ways
    to the old one, and a personal-data reminder queued for the user."""
    serial = _one_serial(serial)
    new_serial = checked_text(new_serial, "--new-serial", one_line=True)
    model = checked_text(model or "", "--model", one_line=True) or None
    if not new_serial:
        raise UsageError("--new-serial is empty; give the serial of the delivered device")
    if term_months <= 0:
        raise ConfigError(f"term_months must be a positive number of months, not {term_months}")
    report = ActionReport("deliver", [])
    with store.transaction():
        found = _allowed_device(store, "deliver", serial, Asked(new_serial=new_serial))
        if isinstance(found, ActionResult):
            report.results.append(found)
            if found.ok:
                # Delivered before (a re-run): new_device is the one it created then.
                report.new_device = store.device(new_serial)
            return report
        device = found
        existing = store.device(new_serial)
        if existing is not None:
            report.results.append(
                _refused(
                    device,
                    f"{device.serial} is {device.status}: the new serial {existing.serial} is "
                    f"already in the store ({existing.status}); deliver needs a serial velory "
                    "does not know yet",
                )
            )
            return report
        new_model = (model or "").strip() or device.ordered_model
        values: dict[str, Any] = {
            "serial": new_serial,
            "model": new_model,
            "category": device.category,
            "user_email": device.user_email,
            "user_name": device.user_name,
            "distributor": STORE_DISTRIBUTOR,
            "source": SOURCE_STORE,
            "purchase_date": today.isoformat(),
            "renewal_date": add_months(today.isoformat(), term_months),
            "status": ACTIVE,
            "replaces_serial": device.serial,
            "status_changed_at": now,
            "created_at": now,
            "updated_at": now,
        }
        new_id = store.insert_device(values)
        store.record_history(
            new_id,
            at=now,
            actor=actor,
            action="deliver",
            from_status=None,
            to_status=ACTIVE,
            details={"replaces_serial": device.serial, "model": new_model},
        )
        store.update_device(
            device.id,
            {"replacement_serial": new_serial, "delivered_at": now, "updated_at": now},
        )
        store.record_history(
            device.id,
            at=now,
            actor=actor,
            action="deliver",
            from_status=device.status,
            to_status=device.status,
            details={"replacement_serial": new_serial, "model": new_model},
        )
        if device.user_email:
            store.queue_notice(
                device.id,
                kind=NoticeKind.PERSONAL_DATA,
                renewal_date=device.renewal_date or today.isoformat(),
                recipient=device.user_email,
                at=now,
            )
            report.messages.append(
                f"A reminder to {device.user_email} is queued; the next velory notices send "
                "mails it."
            )
        else:
            report.warnings.append(
                f"{device.serial}: the user has no email, so no personal-data reminder was "
                "queued; tell them in person"
            )
        report.new_device = store.device_by_id(new_id)
    report.messages.insert(0, _personal_data_reminder(device))
    report.results.append(_done(device))
    return report


def _personal_data_reminder(old: Device) -> str:
    """What the admin is reminded of when the replacement of ``old`` arrives: worded for a
    device whose return is already confirmed as well as for one still with the user."""
    if old.outcome == OUTCOME_BOUGHT_OUT:
        return (
            f"{old.serial} was bought out and stays with the user: company accounts and data "
            "must come off it (the user's personal data is theirs)."
        )
    if old.outcome == OUTCOME_RETURNED:
        return (
            f"{old.serial} has been returned already: make sure the personal data on it was "
            "moved off and deleted."
        )
    return (
        f"Personal data must be moved off {old.serial} or deleted from it before it is "
        "returned or bought out."
    )


def reinstate_device(
    store: Store, serial: str, reason: str, *, now: str, actor: str
) -> ActionReport:
    """Undo a release made by mistake (back to ``return_confirmed``) or a retirement (back to
    the status and outcome the device had), the reason in the history.

    A device that is ``return_confirmed`` already is unchanged; any other status is refused,
    since only a removed device can be reinstated.
    """
    reason = checked_text(reason, "the reason")
    if not reason:
        raise UsageError("--reason is empty; say why the release is undone")
    serial = _one_serial(serial)
    # A retired device goes back to whatever status it had, so the status alone cannot tell
    # a re-run: the device's last step can. The same script run again is unchanged (exit 0).
    device = store.device(serial)
    if device is not None and device.status != REMOVED:
        history = store.history(device.id)
        if history and history[-1].action == "reinstate":
            return ActionReport("reinstate", [_unchanged(device)])
    return change_status(
        store,
        "reinstate",
        [serial],
        now=now,
        actor=actor,
        details={"reason": reason},
    )


# The fields ``velory edit`` changes, as its options name them; the other fields of an
# import's row (the serial, the notes) are not edited.
EDITABLE = {
    "model": "--model",
    "category": "--category",
    "user_email": "--email",
    "user_name": "--user-name",
    "distributor": "--distributor",
    "purchase_date": "--purchase-date",
    "renewal_date": "--renewal-date",
}
# What ``""`` may clear: the user, for a spare device. Any other field given empty is a typo.
_CLEARABLE = ("user_email", "user_name")


def edit_device(
    store: Store,
    serial: str,
    fields: dict[str, str],
    *,
    note: str | None = None,
    now: str,
    actor: str,
) -> ActionReport:
    """Change the given fields of a device not removed (``fields``: by column, as written),
    with the checks an import makes; the changes go into its history as ``{field: {old,
    new}}`` (action ``edit``), and a ``note`` into its notes. Setting what it has already is
    unchanged. A bad value is a UsageError and changes nothing.

    A new email needs nothing else here: the notices ledger is settled by the planner of
    ``velory notices send`` from the device as it is, whatever changed it (an import or this),
    so a device handed to another user after its renewal notice went out gets one for the new
    user, and a new renewal date cancels the pending notice and makes a new one due."""
    from velory_cli.importer.columns import FIELDS, NOTES, SERIAL
    from velory_cli.importer.job import check_fields

    serial = _one_serial(serial)
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    if not fields and note is None:
        raise UsageError(
            "nothing to change: give one or more of " + ", ".join(EDITABLE.values()) + ", --note"
        )
    for column, value in fields.items():
        if not value.strip() and column not in _CLEARABLE:
            raise UsageError(f"{EDITABLE[column]} is empty; only --email and --user-name clear")
    if note is not None and not note.strip():
        raise UsageError("--note is empty")
    with store.transaction():
        found = _allowed_device(store, "edit", serial)
        if isinstance(found, ActionResult):
            return ActionReport("edit", [found])
        device = found
        # The import's checks, on the row an import of the new values would be: the dates not
        # given are the stored ones, so a renewal date before the stored purchase date (or the
        # other way round) is caught, and none is worked out from the other.
        given = {**fields}
        for column in ("purchase_date", "renewal_date"):
            if column not in given:
                given[column] = getattr(device, column) or ""
        texts = [given.get(name, "") for name in FIELDS]
        texts[SERIAL] = device.serial
        texts[NOTES] = note or ""
        names = [EDITABLE.get(name, "--note" if name == "notes" else name) for name in FIELDS]
        values, errors = check_fields(texts, names)
        if values is None:
            message = errors[0].message.replace(
                "say how the file writes dates with --dayfirst or --monthfirst",
                "write it as YYYY-MM-DD",
            )
            raise UsageError(f"{errors[0].column}: {message}")
        checked = dict(zip(FIELDS, values, strict=True))
        changes: dict[str, dict[str, str | None]] = {}
        for column in EDITABLE:
            new = checked[column] or None
            old = getattr(device, column)
            # Besides the fields given, the renewal date an import works out from a purchase
            # date, for a device that had none.
            worked_out = column == "renewal_date" and old is None and new is not None
            # One address in any case, as everywhere: a re-run in other capitals is unchanged.
            same = fold(old or "") == fold(new or "") if column == "user_email" else old == new
            if (column in fields or worked_out) and not same:
                changes[column] = {"old": old, "new": new}
        note_text = checked["notes"] or None
        if note_text is not None and store.notes_held([(device.id, note_text)]):
            note_text = None  # a script run again: the note is there already
        if not changes and note_text is None:
            return ActionReport("edit", [_unchanged(device)], changes={})
        if changes:
            store.update_device(
                device.id,
                {column: change["new"] for column, change in changes.items()} | {"updated_at": now},
            )
            store.record_history(
                device.id,
                at=now,
                actor=actor,
                action="edit",
                from_status=device.status,
                to_status=device.status,
                details=changes,
            )
        if note_text is not None:
            store.add_note_many([(device.id, device.status)], at=now, actor=actor, text=note_text)
    return ActionReport("edit", [_done(device)], changes=changes)


def parse_note_lines(text: str, source: str) -> list[tuple[str, str]]:
    """``SERIAL<TAB>TEXT`` lines, as (serial, note); blank lines and lines starting with ``#``
    ignored (a ``#`` after the tab is the note's own). A line that is not one is InvalidInput
    naming ``source`` and the line: nothing is written."""
    notes: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{source} line {number}"
        serial, tab, note = line.partition("\t")
        if not tab:
            raise InvalidInput(
                f"{where}: no tab between the serial and the note; write SERIAL<TAB>TEXT "
                "(or give one --note TEXT for every serial listed)"
            )
        try:
            serial = checked_text(serial, "the serial", one_line=True)
            note = checked_text(note, "the note")
        except UsageError as exc:
            raise InvalidInput(f"{where}: {exc.message}") from None
        if not serial:
            raise InvalidInput(f"{where}: the serial is empty")
        if not note:
            raise InvalidInput(f"{where}: the note for {serial} is empty")
        notes.append((serial, note))
    return notes


def add_notes(
    store: Store,
    notes: Iterable[tuple[str, str]],
    *,
    now: str,
    actor: str,
    dry_run: bool = False,
) -> ActionReport:
    """Notes on many devices, given as (serial, text), each on its own and all in one
    transaction, whatever the devices' status. A note the device has already (a file given
    again) is unchanged, and the same line twice is one note."""
    wanted: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for serial, text in notes:
        key = (fold(serial.strip()), text)
        if serial.strip() and key not in seen:
            seen.add(key)
            wanted.append((serial.strip(), text))
    results: list[ActionResult] = []
    with nullcontext() if dry_run else store.transaction():
        found = store.devices_by_serials([serial for serial, _ in wanted])
        held = store.notes_held(
            [
                (device.id, text)
                for serial, text in wanted
                if (device := found.get(fold(serial))) is not None
            ]
        )
        new: list[tuple[int, str, str]] = []
        unknown = 0
        for serial, text in wanted:
            device = found.get(fold(serial))
            if device is None:
                unknown += 1
                results.append(_unknown(store, serial, suggest=unknown <= _SUGGESTED_UNKNOWNS))
            elif (device.id, text) in held:
                results.append(_unchanged(device))
            else:
                held.add((device.id, text))
                new.append((device.id, device.status, text))
                results.append(_done(device))
        if new and not dry_run:
            store.add_notes(new, at=now, actor=actor)
    return ActionReport("note", results, dry_run=dry_run)


def add_note(store: Store, serial: str, text: str, *, now: str, actor: str) -> ActionReport:
    """A note on the device, kept with its author and time, whatever its status."""
    serial = _one_serial(serial)
    text = checked_text(text, "the note")
    if not text:
        raise UsageError("the note is empty")
    return _change_one(
        store,
        "note",
        serial,
        now=now,
        actor=actor,
        details={"note": text},
        change=lambda device: store.add_note(device.id, at=now, actor=actor, text=text),
    )
