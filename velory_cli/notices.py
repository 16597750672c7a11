"""Renewal notices and personal-data reminders: which are due, the ledger, and the run that
sends them (the mails themselves are composed in ``mails``).

Every notice is one row of the ``notices`` table, unique per device, kind, renewal date and
recipient, so a device gets one renewal notice per renewal date however often cron runs, and one
more when it changes hands after its notice went out. A run:

1. plans, inside one write transaction: queues the notices that became due, cancels pending ones
   whose device was started, removed or given a new renewal date, and re-addresses pending ones
   whose device has a new email;
2. sends, one mail per recipient (several due notices of one user go in one mail): each mail's
   notices are claimed (``pending`` -> ``sending``) in their own short transaction before the
   server sees anything, and marked ``sent`` only once the server accepted the mail.

A claim left by a run that died (its process is gone, or the claim is older than
``CLAIM_TIMEOUT``) is sent again, with the same Message-ID, and the run says so: the one case
where a user can get a notice twice.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from velory_cli import lifecycle
from velory_cli.config import DEFAULT_LEAD_DAYS, MAX_DAYS_AHEAD, Settings
from velory_cli.errors import (
    ConfigError,
    ExitCode,
    OutputUnwritable,
    StoreUnusable,
    TemporaryFailure,
    UsageError,
    VeloryError,
    worst,
)
from velory_cli.folding import fold
from velory_cli.mails import InvalidRecipient, MailComposer, MailStyle
from velory_cli.models import (
    ACTIVE,
    REMOVED,
    RENEWAL_STARTED,
    Device,
    Notice,
    NoticeKind,
    NoticeState,
)

if TYPE_CHECKING:
    from velory_cli.mailer import Outgoing, Transport
    from velory_cli.store import LedgerRow, Store

# Not a ledger state: a device that was due but has no email to send to.
SKIPPED = "skipped"

# A claim older than this is abandoned even when its process seems to live on (another host,
# or a reused process id). One claim covers one SMTP transaction: seconds, not hours.
CLAIM_TIMEOUT = timedelta(hours=1)
# How long a run waits for a busy store to record how a mail fared (seconds). Giving up after the
# server accepted a mail would leave its notice to be sent again by the next run.
RECORD_WAIT = 120.0


def reminder_kind(days: int) -> str:
    return f"{NoticeKind.REMINDER_PREFIX}{days}"


def is_reminder(kind: str) -> bool:
    prefix = NoticeKind.REMINDER_PREFIX
    return kind.startswith(prefix) and kind[len(prefix) :].isdigit()


def is_renewal_kind(kind: str) -> bool:
    """The renewal notice and its reminders: what ``renewal_notices = false`` turns off."""
    return kind == NoticeKind.RENEWAL or is_reminder(kind)


def check_kind(kind: str) -> str:
    kind = kind.strip().lower()
    if kind in (NoticeKind.RENEWAL, NoticeKind.PERSONAL_DATA) or is_reminder(kind):
        return kind
    raise UsageError(f"unknown kind {kind!r}; use renewal, personal_data or reminder_DAYS")


def check_status(status: str) -> str:
    status = status.strip().lower()
    if status not in NoticeState.ALL:
        raise UsageError(f"unknown status {status!r}; use one of {', '.join(NoticeState.ALL)}")
    return status


# ---- settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeRules:
    """Which notices are due on ``as_of``."""

    as_of: date
    lead_days: int = 30
    renewal_notices: bool = True
    reminder_days: tuple[int, ...] = ()


def parse_reminder_days(raw: Any) -> tuple[int, ...]:
    """``reminder_days`` from config.toml (a list) or the environment ("7,1"); () when off."""
    if raw is None or raw == "" or raw is False:
        return ()
    items: list[Any]
    if isinstance(raw, list | tuple):
        items = list(raw)
    else:
        items = [part for part in re.split(r"[\s,]+", str(raw).strip()) if part]
    days: set[int] = set()
    for item in items:
        try:
            value = int(item)
        except (TypeError, ValueError):
            value = 0
        if isinstance(item, bool) or not 0 < value <= 365:
            raise ConfigError(
                f"reminder_days must be whole numbers of days before the renewal date "
                f"(1-365), like [7, 1]; not {raw!r}"
            )
        days.add(value)
    return tuple(sorted(days, reverse=True))


def notice_rules(settings: Settings, as_of: date, lead_days: int | None = None) -> NoticeRules:
    """The rules of this run: ``--lead-days`` over ``lead_days`` in config.toml over 30."""
    if lead_days is None:
        lead_days = settings.integer(
            "lead_days", DEFAULT_LEAD_DAYS, minimum=0, maximum=MAX_DAYS_AHEAD
        )
    if not 0 <= lead_days <= MAX_DAYS_AHEAD:
        raise ConfigError(f"lead_days must be 0 to {MAX_DAYS_AHEAD} days, not {lead_days}")
    return NoticeRules(
        as_of=as_of,
        lead_days=lead_days,
        renewal_notices=settings.flag("renewal_notices", True),
        reminder_days=parse_reminder_days(settings.value("reminder_days")),
    )


def list_notices(
    store: Store, *, status: str | None = None, kind: str | None = None
) -> list[Notice]:
    """The ledger, oldest first: every notice with its state."""
    return store.list_notices(
        status=check_status(status) if status else None,
        kind=check_kind(kind) if kind else None,
    )


# ---- putting failed notices back ---------------------------------------------------------


@dataclass
class RetryReport(lifecycle.ActionReport):
    """``velory notices retry``: an action on devices, and the notices it put back."""

    notices: list[Notice] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["retried"] = len(self.notices)
        data["notices"] = [notice.to_dict() for notice in self.notices]
        return data


def retry_failed(store: Store, serials: Sequence[str], *, every: bool, now: str) -> RetryReport:
    """Put failed notices back to pending for the next run, for when the admin knows the cause
    is gone: those of the devices named, or ``every`` failed notice. Attempts and the last
    error are kept; a device with no failed notice is unchanged, an unknown serial refused."""
    if every and serials:
        raise UsageError("give serials or --all, not both")
    if not every and not serials:
        raise UsageError(
            "name the devices whose failed notices to send again (SERIAL...), or give --all"
        )
    report = RetryReport(action="notices retry", results=[])
    with store.transaction():
        if every:
            report.notices = store.failed_notices()
            by_device: dict[int, str] = {}
            for notice in report.notices:
                by_device.setdefault(notice.device_id, notice.serial)
            for device_id in by_device:
                retried = store.device_by_id(device_id)
                report.results.append(
                    lifecycle.ActionResult(retried.serial, True, True, retried.status)
                )
        else:
            for serial in lifecycle.unique_serials(serials):
                device = store.device(serial)
                if device is None:
                    from velory_cli.nearest import no_such_device

                    error = no_such_device(store, serial)
                    report.results.append(lifecycle.ActionResult(serial, False, False, None, error))
                    continue
                failed = store.failed_notices([device.id])
                report.notices.extend(failed)
                report.results.append(
                    lifecycle.ActionResult(device.serial, True, bool(failed), device.status)
                )
        store.retry_notices([notice.id for notice in report.notices], at=now)
    return report


# ---- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeOutcome:
    """What became of one notice in this run (or would, in a dry run)."""

    serial: str
    kind: str
    recipient: str | None
    status: str
    error: str | None = None
    renewal_date: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "kind": self.kind,
            "recipient": self.recipient,
            "status": self.status,
            "error": self.error,
            "renewal_date": self.renewal_date,
        }


@dataclass
class SendReport:
    """One run of ``velory notices send``."""

    dry_run: bool
    outcomes: list[NoticeOutcome] = field(default_factory=list)
    # False when ``renewal_notices = false``: only personal-data reminders were looked at.
    renewal_notices: bool = True
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    mails: int = 0
    exit_code: int = 0

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.count(NoticeState.SENT),
            "failed": self.count(NoticeState.FAILED),
            "pending": self.count(NoticeState.PENDING),
            "skipped": self.count(SKIPPED),
            "cancelled": self.count(NoticeState.CANCELLED),
            "dry_run": self.dry_run,
            "mails": self.mails,
            "renewal_notices": self.renewal_notices,
            "notices": [outcome.to_dict() for outcome in self.outcomes],
        }


# ---- which notices are due ---------------------------------------------------------------


# Why a due notice is skipped, as the report says it.
_NO_EMAIL = "the device has no user email"
_NO_RECIPIENT = "the notice has no recipient"


# The ledger of some devices, by (device id, kind, renewal date): one row per recipient.
_States = Mapping[tuple[int, str, str], Sequence["LedgerRow"]]


@dataclass
class _Plan:
    new: list[tuple[Device, str]] = field(default_factory=list)
    cancel: list[tuple[Notice, str]] = field(default_factory=list)
    # Notices cancelled because the device's user is someone else now, as they are reported.
    superseded: list[tuple[int, NoticeOutcome]] = field(default_factory=list)
    readdress: dict[int, str] = field(default_factory=dict)
    revived: list[tuple[Device, str]] = field(default_factory=list)
    skipped: list[NoticeOutcome] = field(default_factory=list)
    sendable: list[tuple[Notice, Device]] = field(default_factory=list)
    abandoned: list[tuple[Notice, Device]] = field(default_factory=list)
    # The (device id, kind, renewal date) whose recipients this plan has settled.
    settled: set[tuple[int, str, str]] = field(default_factory=set)

    def skip(
        self,
        device: Device,
        kind: str,
        renewal_date: str | None,
        reason: str,
        recipient: str | None = None,
    ) -> None:
        self.skipped.append(
            NoticeOutcome(device.serial, kind, recipient, SKIPPED, reason, renewal_date)
        )


def _cancel_reason(notice: Notice, device: Device) -> str | None:
    """Why a renewal notice (or reminder) is no longer to be sent; None when it still is."""
    if device.status == REMOVED:
        return "the device was removed"
    if device.status == RENEWAL_STARTED:
        return "the renewal process was started"
    if device.status != ACTIVE:
        return "the return of the device was confirmed"
    if device.renewal_date != notice.renewal_date:
        if device.renewal_date:
            return f"the renewal date changed to {device.renewal_date}"
        return "the device no longer has a renewal date"
    if device.dustin:
        return "the device is Dustin's: Dustin's own process applies"
    if device.source != "imported":
        return "the device is a store device: Velory's own process applies"
    return None


def _reminder_due(device: Device, rules: NoticeRules, states: _States) -> str | None:
    """The reminder kind due for this device today, if any.

    The reminder for N days is due from N days before the renewal date until the date itself,
    once the renewal notice went out before that day; of several, only the nearest is sent.
    """
    if not rules.reminder_days or not device.renewal_date:
        return None
    renewal = date.fromisoformat(device.renewal_date)
    days_left = (renewal - rules.as_of).days
    if days_left < 0:
        return None
    reached = [days for days in rules.reminder_days if days >= days_left]
    if not reached:
        return None
    days = min(reached)
    # The renewal notice of the device's user now: a new user gets theirs first.
    key = fold(device.user_email or "")
    rows = states.get((device.id, NoticeKind.RENEWAL, device.renewal_date), ())
    notice = next((row for row in rows if row.recipient_key == key), None)
    if notice is None or notice.status != NoticeState.SENT or not notice.sent_at:
        return None
    sent_on = str(notice.sent_at)[:10]
    if sent_on >= (renewal - timedelta(days=days)).isoformat():
        return None  # the renewal notice itself went out inside this reminder's window
    return reminder_kind(days)


def _plan(
    store: Store,
    rules: NoticeRules,
    *,
    now: datetime,
    claim_is_live: Callable[[str | None], bool],
) -> _Plan:
    """What this run does with the ledger, as the store and the devices are now."""
    plan = _Plan()
    if rules.renewal_notices:
        _plan_due(plan, store, rules)
    _plan_queued(plan, store, rules, now=now, claim_is_live=claim_is_live)
    if rules.renewal_notices:
        _plan_readdressed_failures(plan, store)
    return plan


def _plan_due(plan: _Plan, store: Store, rules: NoticeRules) -> None:
    """Renewal notices and reminders that became due, and cancelled ones due again."""
    horizon = rules.as_of + timedelta(days=rules.lead_days)
    candidates = [d for d in store.renewal_candidates(horizon.isoformat()) if not d.dustin]
    states = store.notice_states([device.id for device in candidates])
    for device in candidates:
        _plan_device(plan, device, rules, states)


def _plan_device(plan: _Plan, device: Device, rules: NoticeRules, states: _States) -> None:
    assert device.renewal_date is not None
    email = (device.user_email or "").strip()
    if not email:
        if (device.id, NoticeKind.RENEWAL, device.renewal_date) not in states:
            plan.skip(device, NoticeKind.RENEWAL, device.renewal_date, _NO_EMAIL)
        return
    reminder = _reminder_due(device, rules, states)
    for kind in (NoticeKind.RENEWAL, reminder) if reminder else (NoticeKind.RENEWAL,):
        rows = states.get((device.id, kind, device.renewal_date), ())
        _settle_recipient(plan, device, kind, rows, email, due=True)


def _settle_recipient(
    plan: _Plan, device: Device, kind: str, rows: Sequence[LedgerRow], email: str, *, due: bool
) -> None:
    """Which notice of this device, kind and renewal date goes to the device's user now.

    The ledger holds one notice per recipient: a device that changed hands after its notice
    went out gets one for its new user (``due``: when the notice is due at all), and the
    earlier one stays sent. A notice not yet sent follows the user (a pending or failed one is
    readdressed, a cancelled one due again is revived); a change back to an address that
    already has its notice sends nothing new, and cancels what was waiting for the other.
    """
    assert device.renewal_date is not None
    group = (device.id, kind, device.renewal_date)
    if group in plan.settled:
        return
    plan.settled.add(group)
    key = fold(email)
    mine = next((row for row in rows if row.recipient_key == key), None)
    if mine is None:
        movable = next(
            (
                row
                for status in (NoticeState.PENDING, NoticeState.FAILED, NoticeState.CANCELLED)
                if status != NoticeState.CANCELLED or due
                for row in rows
                if row.status == status
            ),
            None,
        )
        if movable is None:
            if due:
                plan.new.append((device, kind))
            return
        plan.readdress[movable.id] = email
        if movable.status == NoticeState.CANCELLED:
            plan.revived.append((device, kind))
        mine = movable
    elif mine.status == NoticeState.CANCELLED and due:
        # Cancelled when the device changed, and due again now that it changed back.
        plan.readdress[mine.id] = email
        plan.revived.append((device, kind))
    for row in rows:
        if row.id != mine.id and row.status == NoticeState.PENDING:
            reason = f"the device's user is {email} now"
            plan.superseded.append(
                (
                    row.id,
                    NoticeOutcome(
                        device.serial,
                        kind,
                        row.recipient,
                        NoticeState.CANCELLED,
                        reason,
                        device.renewal_date,
                    ),
                )
            )


def _plan_queued(
    plan: _Plan,
    store: Store,
    rules: NoticeRules,
    *,
    now: datetime,
    claim_is_live: Callable[[str | None], bool],
) -> None:
    """Pending notices, and those a stopped run left sending: cancelled, kept, or sent."""
    queued = []
    for notice, device in store.notices_with_devices((NoticeState.PENDING, NoticeState.SENDING)):
        if _left_alone(notice, now, claim_is_live):
            continue
        renewal_kind = is_renewal_kind(notice.kind)
        reason = _cancel_reason(notice, device) if renewal_kind else None
        if reason:
            plan.cancel.append((notice, reason))
        elif renewal_kind and not rules.renewal_notices:
            continue  # turned off: left as it is, not sent
        elif notice.status == NoticeState.SENDING:
            plan.abandoned.append((notice, device))
        else:
            queued.append((notice, device))
    _settle_readdressed(plan, store, queued)
    for notice, device in queued:
        _plan_recipient(plan, notice, device)


def _settle_readdressed(
    plan: _Plan, store: Store, notices: Sequence[tuple[Notice, Device]]
) -> None:
    """Settle the recipients of renewal notices whose device has another email now, where
    the notices due today did not already (a device outside this run's horizon)."""
    changed = [
        (notice, device)
        for notice, device in notices
        if is_renewal_kind(notice.kind)
        and (device.user_email or "").strip()
        and fold(device.user_email or "") != fold(notice.recipient or "")
        and (notice.device_id, notice.kind, notice.renewal_date) not in plan.settled
    ]
    if not changed:
        return
    states = store.notice_states(sorted({notice.device_id for notice, _ in changed}))
    for notice, device in changed:
        rows = states.get((notice.device_id, notice.kind, notice.renewal_date), ())
        email = (device.user_email or "").strip()
        _settle_recipient(plan, device, notice.kind, rows, email, due=False)


def _left_alone(notice: Notice, now: datetime, claim_is_live: Callable[[str | None], bool]) -> bool:
    """A notice of a kind this velory does not know, or one another run is sending right now."""
    if not is_renewal_kind(notice.kind) and notice.kind != NoticeKind.PERSONAL_DATA:
        return True
    return notice.status == NoticeState.SENDING and _claim_held(notice, now, claim_is_live)


def _plan_recipient(plan: _Plan, notice: Notice, device: Device) -> None:
    """A renewal notice goes to the device's email as it is now; a personal-data reminder to
    the address it was queued for."""
    if is_renewal_kind(notice.kind):
        recipient = (device.user_email or "").strip()
        if not recipient:
            plan.skip(device, notice.kind, notice.renewal_date, _NO_EMAIL, notice.recipient)
            return
        if fold(recipient) != fold(notice.recipient or ""):
            moved = plan.readdress.get(notice.id)
            if moved is None:
                return  # another notice of the device goes to its user: this one is cancelled
            notice = replace(notice, recipient=moved)
    if not (notice.recipient or "").strip():
        plan.skip(device, notice.kind, notice.renewal_date, _NO_RECIPIENT)
        return
    plan.sendable.append((notice, device))


def _plan_readdressed_failures(plan: _Plan, store: Store) -> None:
    """Failed renewal notices sent again, to the new email their device was given since."""
    failed = [
        (notice, device)
        for notice, device in store.failed_notices_readdressed()
        if _cancel_reason(notice, device) is None
    ]
    _settle_readdressed(plan, store, failed)
    for notice, device in failed:
        moved = plan.readdress.get(notice.id)
        if moved is not None:
            plan.sendable.append((replace(notice, recipient=moved), device))


def _claim_held(notice: Notice, now: datetime, claim_is_live: Callable[[str | None], bool]) -> bool:
    """True while the run that claimed a notice may still be sending it."""
    return claim_held(notice.claimed_by, notice.claimed_at, now, claim_is_live)


def claim_held(
    claimed_by: str | None,
    claimed_at: str | None,
    now: datetime,
    claim_is_live: Callable[[str | None], bool],
) -> bool:
    """True while the run that made a claim (a notice's, or a digest's) may still be sending:
    its process lives and the claim is not older than ``CLAIM_TIMEOUT``."""
    return claim_is_live(claimed_by) and not _claim_expired(claimed_at, now)


def _claim_expired(claimed_at: str | None, now: datetime) -> bool:
    if not claimed_at:
        return True
    try:
        claimed = datetime.fromisoformat(claimed_at)
    except ValueError:
        return True
    if claimed.tzinfo is None or now.tzinfo is None:
        claimed, now = claimed.replace(tzinfo=None), now.replace(tzinfo=None)
    return now - claimed > CLAIM_TIMEOUT


def _apply(store: Store, plan: _Plan, *, at: str) -> None:
    store.insert_notices(
        (device.id, kind, device.renewal_date or "", (device.user_email or "").strip(), at)
        for device, kind in plan.new
    )
    store.cancel_notices(((notice.id, reason) for notice, reason in plan.cancel), at=at)
    store.cancel_notices(
        ((notice_id, outcome.error or "") for notice_id, outcome in plan.superseded), at=at
    )
    store.readdress_notices(plan.readdress.items(), at=at)


# ---- claims ------------------------------------------------------------------------------


def claim_owner() -> str:
    """Who claims a notice: this host and process, so a later run can tell whether it lives."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_is_live(claimed_by: str | None) -> bool:
    """False when the claim's process is gone: on this host and no longer running."""
    if not claimed_by:
        return False
    host, _, pid_text = claimed_by.rpartition(":")
    if host != socket.gethostname():
        return True  # only the claim's age can tell for another machine's run
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process its parent has not reaped yet is a zombie: not running
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def message_id_for(notice: Notice, sender: str, *, attempt: int | None = None) -> str:
    """The Message-ID of a mail led by ``notice``: stable, so a mail sent again is
    recognisably the same mail. ``attempt`` (the notice's claim count) sets apart a later mail
    led by the same notice with other contents, which must never share the first one's ID."""
    serial = re.sub(r"[^A-Za-z0-9-]+", "-", notice.serial).strip("-").lower()[:64] or "device"
    date_part = notice.renewal_date.replace("-", "")
    variant = f".{attempt}" if attempt is not None else ""
    return f"<velory.{notice.id}.{serial}.{date_part}{variant}@{message_id_domain(sender)}>"


def message_id_domain(sender: str) -> str:
    """The domain of the sender's address, as a Message-ID ends with it (``localhost`` when
    it has none that can stand there)."""
    address = sender.strip().rpartition("<")[2].strip(" >")
    domain = address.rpartition("@")[2].lower() if "@" in address else ""
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = ""
    if not re.fullmatch(r"[a-z0-9.-]+", domain or "-"):
        domain = "localhost"
    return domain or "localhost"


# ---- sending -----------------------------------------------------------------------------


@dataclass
class _Group:
    """The notices that go in one mail."""

    items: list[tuple[Notice, Device]]
    abandoned: bool = False

    @property
    def lead(self) -> Notice:
        return self.items[0][0]


def _groups(plan: _Plan) -> list[_Group]:
    groups: list[_Group] = []
    by_message: dict[str, _Group] = {}
    for notice, device in plan.abandoned:
        message_key = notice.message_id or f"#{notice.id}"
        if message_key not in by_message:
            by_message[message_key] = _Group([], abandoned=True)
            groups.append(by_message[message_key])
        by_message[message_key].items.append((notice, device))
    by_recipient: dict[tuple[str, str, str], _Group] = {}
    for notice, device in plan.sendable:
        family = (
            NoticeKind.PERSONAL_DATA
            if notice.kind == NoticeKind.PERSONAL_DATA
            else NoticeKind.RENEWAL
        )
        # A notice whose mail was tried before (the run was interrupted) goes with the notices
        # of that mail, and only with them: a mail sent again is the same mail. What became
        # due since goes in a mail of its own.
        key = (fold(notice.recipient or ""), family, notice.message_id or "")
        if key not in by_recipient:
            by_recipient[key] = _Group([])
            groups.append(by_recipient[key])
        by_recipient[key].items.append((notice, device))
    return groups


def _outcome(notice: Notice, status: str, error: str | None = None) -> NoticeOutcome:
    return NoticeOutcome(
        notice.serial, notice.kind, notice.recipient, status, error, notice.renewal_date
    )


def _describe(notice: Notice) -> str:
    kind = notice.kind.replace("_", " ")
    return f"{notice.serial}: the {kind} notice to {notice.recipient}"


def send_notices(
    store: Store,
    rules: NoticeRules,
    style: MailStyle,
    *,
    transport: Transport | None,
    clock: Callable[[], str],
    owner: str,
    claim_is_live: Callable[[str | None], bool] = claim_is_live,
) -> SendReport:
    """Queue what is due and send every pending notice; ``transport`` None is a dry run."""
    composer = MailComposer(style)
    composer.check()
    now_text = clock()
    now = _parse_time(now_text)
    if transport is None:
        dry_run = _dry_run(_plan(store, rules, now=now, claim_is_live=claim_is_live))
        dry_run.renewal_notices = rules.renewal_notices
        return dry_run
    report = SendReport(dry_run=False, renewal_notices=rules.renewal_notices)
    with store.transaction():
        first = _plan(store, rules, now=now, claim_is_live=claim_is_live)
        _apply(store, first, at=now_text)
        plan = _plan(store, rules, now=now, claim_is_live=claim_is_live)
    report.outcomes.extend(
        _outcome(notice, NoticeState.CANCELLED, reason) for notice, reason in first.cancel
    )
    report.outcomes.extend(outcome for _, outcome in first.superseded)
    report.outcomes.extend(plan.skipped)
    report.warnings.extend(_skip_warnings(plan.skipped))
    groups = _groups(plan)
    if groups:
        run = _Run(
            store, composer, transport, clock=clock, owner=owner, today=rules.as_of, report=report
        )
        run.send(groups)
    return report


def _dry_run(plan: _Plan) -> SendReport:
    """What a run would do: nothing is written, nothing is sent."""
    report = SendReport(dry_run=True)
    report.outcomes.extend(
        _outcome(notice, NoticeState.CANCELLED, reason) for notice, reason in plan.cancel
    )
    report.outcomes.extend(outcome for _, outcome in plan.superseded)
    report.outcomes.extend(plan.skipped)
    report.outcomes.extend(_outcome(notice, NoticeState.PENDING) for notice, _ in plan.abandoned)
    report.outcomes.extend(_outcome(notice, NoticeState.PENDING) for notice, _ in plan.sendable)
    report.outcomes.extend(
        NoticeOutcome(
            device.serial,
            kind,
            (device.user_email or "").strip(),
            NoticeState.PENDING,
            None,
            device.renewal_date,
        )
        for device, kind in [*plan.new, *plan.revived]
    )
    report.warnings.extend(_skip_warnings(plan.skipped))
    return report


def _stop_reason(exc: BaseException) -> tuple[str, int]:
    """Why a run stops sending, and its exit code, for a failure no later mail can escape."""
    from velory_cli.mailer import DeliveryError

    if isinstance(exc, ConfigError | OutputUnwritable):
        return exc.message, int(exc.exit_code)
    if isinstance(exc, DeliveryError):
        return exc.message, int(ExitCode.TEMPORARY)
    raise exc


class _StoreBroken(Exception):
    """The store refused a write the run needed (see _store_write_error)."""

    def __init__(self, error: VeloryError) -> None:
        super().__init__(error.message)
        self.error = error


def _store_write_error(exc: BaseException, store: Store) -> VeloryError | None:
    """The store error an exception stands for when the store cannot be written (a full
    disk, a file size limit, a failing disk, read-only); None for anything else."""
    import sqlite3

    from velory_cli.store import describe_sqlite_error

    if isinstance(exc, StoreUnusable):
        return exc
    if isinstance(exc, sqlite3.Error):
        error = describe_sqlite_error(exc, store.path)
        return error if isinstance(error, StoreUnusable) else None
    return None


@dataclass(frozen=True)
class _Claimed:
    """The notices of one mail that this run claimed, and the mail's Message-ID."""

    group: _Group
    message_id: str
    items: list[tuple[Notice, Device]]


@dataclass
class _Run:
    """One run's sending: what it sends with, and what became of its notices so far."""

    store: Store
    composer: MailComposer
    transport: Transport
    clock: Callable[[], str]
    owner: str
    today: date
    report: SendReport
    codes: list[int] = field(default_factory=list)
    # Why the run stopped sending: every notice after that stays pending for the next run.
    stopped: str | None = None
    # Mails whose recipient the server refused (5xx to RCPT) while it has accepted none yet:
    # failed once another mail gets through or the refusals differ, put back to pending when
    # the server gave every recipient of the run the same answer.
    held: list[tuple[_Claimed, str, str]] = field(default_factory=list)
    # The store could not be written: the run stopped there.
    store_error: VeloryError | None = None
    recorded_sent: int = 0
    # Mails the server accepted that the store could not record.
    unrecorded: list[_Claimed] = field(default_factory=list)

    def send(self, groups: Iterable[_Group]) -> None:
        """Send one mail per group, in order, until a failure no later mail can escape."""
        try:
            self.transport.open()
        except Exception as exc:
            self._stop(*_stop_reason(exc))
        try:
            for group in groups:
                if self.stopped is None:
                    self._send_group(group)
                else:
                    self._leave_pending(group)
            if self.store_error is None:
                try:
                    self._settle_held()
                except _StoreBroken as exc:
                    self._store_stopped(exc.error)
        finally:
            self.transport.close()
        if self.store_error is not None:
            self.report.errors.append(self._store_report(self.store_error))
        self.report.exit_code = worst(*self.codes)

    def _settle_held(self) -> None:
        """One answer to every recipient of the run, when there were several, is the server
        refusing them all (``550 5.7.1 Relaying denied``): a setting to fix, and the notices
        stay pending. An answer about the mailbox itself (status 5.1.x, 5.2.x: no such user,
        mailbox full) is each recipient's own, however many get it."""
        held, self.held = self.held, []
        if not held:
            return
        answers = {refusal for _, _, refusal in held}
        recipients = {fold(claimed.items[0][0].recipient or "") for claimed, _, _ in held}
        answer = next(iter(answers))
        if len(answers) == 1 and len(recipients) > 1 and not _about_the_mailbox(answer):
            message = (
                f"the mail server refused every recipient of this run with the same answer "
                f"({answer}): that is the server's setting (relaying, the sender, the login), "
                "not the recipients'; fix it and run again; the notices stay pending"
            )
            for claimed, _, _ in held:
                self._record(claimed, NoticeState.PENDING, message)
            self._stop(message, ExitCode.CONFIG)
            return
        for claimed, error, _ in held:
            self._fail(claimed, error)

    def _stop(self, reason: str, code: int) -> None:
        self.stopped = reason
        self.codes.append(code)
        self.report.errors.append(reason)

    def _leave_pending(self, group: _Group) -> None:
        self.report.outcomes.extend(
            _outcome(notice, NoticeState.PENDING, f"not sent: {self.stopped}")
            for notice, _ in group.items
        )

    def _send_group(self, group: _Group) -> None:
        """Claim, send and record one mail."""
        try:
            claimed = self._claim(group)
        except TemporaryFailure as exc:
            # The store stayed busy past the timeout: like an unreachable server, the run stops
            # and this and the remaining notices stay pending for the next run.
            self._stop(exc.message, ExitCode.TEMPORARY)
            self._leave_pending(group)
            return
        except _StoreBroken as exc:
            self._store_stopped(exc.error)
            self._leave_pending(group)
            return
        if not claimed.items:
            return  # another run claimed them first and sends them
        if group.abandoned:
            self._warn_sent_again(claimed)
        try:
            self._deliver(claimed)
        except _StoreBroken as exc:
            self._store_stopped(exc.error)

    def _store_stopped(self, error: VeloryError) -> None:
        """The store cannot be written (a full disk, a file size limit): no later mail could
        be claimed or recorded, so the run stops, and says at the end what it did."""
        self.store_error = error
        self.stopped = "the store cannot be written"
        self.codes.append(error.exit_code)

    def _store_report(self, error: VeloryError) -> str:
        """What a run the store stopped did: never "nothing was changed" after a mail went
        out. The mails sent and not recorded are named: the next run sends them again."""
        reason = error.message.split("; nothing was changed")[0]
        count = self.recorded_sent
        text = (
            f"{reason}; the run stopped: {count} {'notice' if count == 1 else 'notices'} "
            "sent and recorded"
        )
        if self.unrecorded:
            named = ", ".join(
                f"{notice.serial} ({notice.kind.replace('_', ' ')} to {notice.recipient}, "
                f"Message-ID {claimed.message_id})"
                for claimed in self.unrecorded
                for notice, _ in claimed.items
            )
            text += (
                f"; sent but not recorded: {named}: the next run sends them again with the "
                "same Message-ID"
            )
        return text + "; every other notice stays for the next run"

    def _claim(self, group: _Group) -> _Claimed:
        """Take the group's notices for this run, and give the mail its Message-ID once it is
        known which of them this run got."""
        try:
            return self._take(group)
        except (TemporaryFailure, _StoreBroken):
            raise
        except Exception as exc:
            broken = _store_write_error(exc, self.store)
            if broken is None:
                raise
            raise _StoreBroken(broken) from None

    def _take(self, group: _Group) -> _Claimed:
        message_id = ""
        with self.store.transaction():
            if group.abandoned:
                claims = [(n.id, n.claimed_by, n.claimed_at) for n, _ in group.items]
                taken = self.store.reclaim_notices(claims, owner=self.owner, at=self.clock())
            else:
                ids = [notice.id for notice, _ in group.items]
                taken = self.store.claim_notices(ids, owner=self.owner, at=self.clock())
            items = [(notice, device) for notice, device in group.items if notice.id in taken]
            if items:
                message_id = self._message_id(items)
                self.store.set_message_id([notice.id for notice, _ in items], message_id)
        return _Claimed(group, message_id, items)

    def _message_id(self, items: Sequence[tuple[Notice, Device]]) -> str:
        """The Message-ID of a mail of exactly these notices: the one they went out with
        before when they are that whole mail again, else one no other mail has had."""
        earlier = {notice.message_id for notice, _ in items}
        if len(earlier) == 1:
            previous = earlier.pop()
            ids = {notice.id for notice, _ in items}
            if previous and self.store.notices_of_message(previous) == ids:
                return previous
        lead = items[0][0]
        attempt = lead.attempts + 1 if lead.attempts else None
        return message_id_for(lead, self.composer.sender_address, attempt=attempt)

    def _warn_sent_again(self, claimed: _Claimed) -> None:
        self.report.warnings.extend(
            f"{_describe(notice)} was being sent by a run that stopped "
            f"({notice.claimed_by}, {notice.claimed_at}); sending it again with the same "
            f"Message-ID {claimed.message_id}: the recipient may get it twice"
            for notice, _ in claimed.items
        )

    def _deliver(self, claimed: _Claimed) -> None:
        from velory_cli.mailer import PermanentDelivery, TemporaryDelivery

        try:
            mail = self._compose(claimed)
        except InvalidRecipient as exc:
            self._fail(claimed, exc.message)
            return
        try:
            self.transport.send(mail)
        except PermanentDelivery as exc:
            if exc.refusal is not None and self.report.mails == 0:
                self.held.append((claimed, exc.message, exc.refusal))
            else:
                self._fail(claimed, exc.message)
        except TemporaryDelivery as exc:
            self._record(claimed, NoticeState.PENDING, exc.message)
            self._defer(claimed, exc.message, stop=exc.connection)
        except (ConfigError, OutputUnwritable) as exc:
            self._record(claimed, NoticeState.PENDING, exc.message)
            self._stop(exc.message, exc.exit_code)
        else:
            self._record(claimed, NoticeState.SENT)
            self.report.mails += 1
            # The server accepts mail: the recipients it refused were refused for themselves.
            held, self.held = self.held, []
            for refused, error, _ in held:
                self._fail(refused, error)

    def _compose(self, claimed: _Claimed) -> Outgoing:
        return self.composer.compose(
            claimed.items,
            message_id=claimed.message_id,
            now=_parse_time(self.clock()),
            today=self.today,
            related=_related_devices(self.store, claimed.items),
        )

    def _fail(self, claimed: _Claimed, error: str) -> None:
        self._record(claimed, NoticeState.FAILED, error)
        self.codes.append(ExitCode.REFUSED)
        self.report.errors.extend(
            f"{_describe(notice)} failed: {error}" for notice, _ in claimed.items
        )

    def _defer(self, claimed: _Claimed, error: str, *, stop: bool) -> None:
        """A mail not delivered this time stays pending; when the connection to the server is
        what failed, no later mail can get through either, so the run stops."""
        if stop:
            self._stop(error, ExitCode.TEMPORARY)
            return
        self.codes.append(ExitCode.TEMPORARY)
        self.report.warnings.extend(
            f"{_describe(notice)} stays pending: {error}" for notice, _ in claimed.items
        )

    def _record(self, claimed: _Claimed, status: str, error: str | None = None) -> None:
        """How the mail fared, in its own transaction; the store waits longer for this one."""
        try:
            with self.store.transaction(wait=RECORD_WAIT):
                self.store.finish_notices(
                    [notice.id for notice, _ in claimed.items],
                    owner=self.owner,
                    status=status,
                    at=self.clock(),
                    error=error,
                )
        except TemporaryFailure:
            if status != NoticeState.SENT:
                raise
            raise TemporaryFailure(
                f"{_describe(claimed.group.lead)} was accepted by the mail server, but the store "
                f"stayed busy and it could not be recorded; the next run sends it again with "
                f"the same Message-ID {claimed.message_id}"
            ) from None
        except Exception as exc:
            broken = _store_write_error(exc, self.store)
            if broken is None:
                raise
            if status == NoticeState.SENT:
                self.unrecorded.append(claimed)
                note = "accepted by the mail server but not recorded: the next run sends it again"
                self.report.outcomes.extend(
                    _outcome(notice, NoticeState.SENT, note) for notice, _ in claimed.items
                )
            else:
                self.report.outcomes.extend(
                    _outcome(notice, NoticeState.PENDING, error) for notice, _ in claimed.items
                )
            raise _StoreBroken(broken) from None
        if status == NoticeState.SENT:
            self.recorded_sent += len(claimed.items)
        self.report.outcomes.extend(_outcome(notice, status, error) for notice, _ in claimed.items)


def _about_the_mailbox(answer: str) -> bool:
    """An answer whose enhanced status code is about the recipient's mailbox or address."""
    return re.match(r"\d{3}[ -]5\.[12]\.\d{1,3}\b", answer) is not None


def _related_devices(store: Store, items: Sequence[tuple[Notice, Device]]) -> dict[str, Device]:
    """The old or new device a personal-data reminder also names, by folded serial."""
    serials = [
        serial
        for notice, device in items
        if notice.kind == NoticeKind.PERSONAL_DATA
        for serial in (device.replacement_serial, device.replaces_serial)
        if serial
    ]
    return store.devices_by_serials(serials) if serials else {}


def _skip_warnings(skipped: Iterable[NoticeOutcome]) -> list[str]:
    warnings = []
    for outcome in skipped:
        if outcome.kind == NoticeKind.PERSONAL_DATA:
            warnings.append(
                f"{outcome.serial}: the personal-data reminder has no recipient; not sent"
            )
        else:
            warnings.append(
                f"{outcome.serial}: due for renewal on {outcome.renewal_date} but has no user "
                "email; no notice sent (add the email and import again)"
            )
    return warnings


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"not a time: {text!r}") from None
