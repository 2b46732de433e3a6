"""Who may mark a record entered in error: the one rule (ACC-035, policies/access.toml) that every layer's
withdrawal of a record a nurse charts asks, and the pages ask before offering the form.

A clinician may withdraw any record, at any time (`clinical.entry.retract`). A nurse charts most of a ward's sets of
vital signs, its MAR's doses and its fluid balance lines, and one charted on the wrong patient at 03:00 drives that
patient's escalation, the dose the MAR shows as given or their balance until someone notices: so the nurse who charted
such a record withdraws it herself, under the permission its layer registered for the kind (`register_own`), within a
shift of charting it. 12 hours is the longest of the roster's shipped shifts (tenant_config's day and night,
07:00-19:00 and 19:00-07:00); after it the record has been handed over, read and acted on by others, and withdrawing
it is a clinician's decision. Another nurse's record is hers to point out, not to withdraw. A record's author and
charting time are its first version's: a correction neither restarts the clock nor hands the record to whoever
corrected it.

The check is the withdrawing service's, not `record.retract`'s: other callers of that (a reaction withdrawing the score
of a withdrawn set, an ANC contact a midwife withdraws) are not a nurse withdrawing her own charting.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError, entry

RETRACT_ANY = "clinical.entry.retract"
OWN_RETRACTION_HOURS = 12

_FIRST_VERSION = entry.alias("first_version")


@dataclass(frozen=True)
class OwnRetraction:
    """What lets the author of a record of one kind withdraw it (`permission`), and how a refusal names it (`noun`:
    "set of vital signs")."""
    permission: str
    noun: str


_OWN: dict[str, OwnRetraction] = {}


def register_own(kind: str, permission: str, noun: str) -> None:
    """The layer that keeps `kind` lets its author withdraw a record of it under `permission`, within the hours."""
    _OWN[kind] = OwnRetraction(permission, noun)


class RetractionRefused(RecordError):
    """The asker's role may withdraw records of this kind, but not this one (another's, or an older one)."""

    status = 403


def refusal(principal: Principal, kind: str, record_author_id: uuid.UUID, charted_at: dt.datetime,
            now: dt.datetime) -> str | None:
    """Why `principal` may not mark this record (of `kind`, first charted by `record_author_id` at `charted_at`)
    entered in error, as a sentence naming who can; None when they may."""
    if principal.can(RETRACT_ANY):
        return None
    own = _OWN.get(kind)
    if own is None or not principal.can(own.permission):
        return f"your role may not mark this record entered in error ({RETRACT_ANY}): a clinician can"
    if record_author_id != principal.account_id:
        return (f"only the nurse who charted this {own.noun} may mark it entered in error (within "
                f"{OWN_RETRACTION_HOURS} hours), or a clinician: ask the clinician on the ward")
    if now - charted_at > dt.timedelta(hours=OWN_RETRACTION_HOURS):
        return (f"this {own.noun} was charted more than {OWN_RETRACTION_HOURS} hours ago, after which a "
                "clinician marks it entered in error: ask the clinician on the ward")
    return None


def _first_versions(conn: Connection, entry_ids: list[uuid.UUID]) -> list:
    return conn.execute(
        sa.select(entry.c.id, entry.c.kind, _FIRST_VERSION.c.author_id, _FIRST_VERSION.c.recorded_at,
                  sa.func.now().label("now"))
        .select_from(entry.join(_FIRST_VERSION, _FIRST_VERSION.c.id == entry.c.root_id))
        .where(entry.c.id.in_(entry_ids))
    ).all()


def require(conn: Connection, principal: Principal, entry_id: uuid.UUID) -> None:
    """Refuse (403, saying who can) unless `principal` may mark the record whose version `entry_id` is entered in
    error; the caller has found the version on its patient's chart already (a guessed id is its 404)."""
    for row in _first_versions(conn, [entry_id]):
        reason = refusal(principal, row.kind, row.author_id, row.recorded_at, row.now)
        if reason is not None:
            raise RetractionRefused(reason, entry_id=str(entry_id))


def withdrawable(conn: Connection, principal: Principal, entry_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these versions (a page's rows) `principal` may mark entered in error, by `refusal`: every one for a
    clinician; for a nurse, those she charted within the hours."""
    ids = list(entry_ids)
    if principal.can(RETRACT_ANY):
        return set(ids)
    if not ids or not any(principal.can(own.permission) for own in _OWN.values()):
        return set()
    return {row.id for row in _first_versions(conn, ids)
            if refusal(principal, row.kind, row.author_id, row.recorded_at, row.now) is None}
