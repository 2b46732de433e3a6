"""One identity's death: a person certified deceased at one facility is deceased at every facility.

The certificate is an entry of the facility that wrote it (the clinical layer's `death` kind); what every
facility must know, that this person died, when and where it was certified, is `control.subject_death`
(control revision c0010), one live row per one-identity subject. A tenant transaction reaches it only
through the four SECURITY DEFINER functions of that revision, so the mark is written in the certifying
transaction (certificate and mark commit together or not at all), withdrawn in the transaction that marks
the certificate entered in error (the row stays, with when and why), and read inside any facility's
transaction before it opens a visit, admits or books: `refuse_if_deceased` is that refusal, in one sentence
a registrar can act on. Each function names the calling facility from its tenant role, never from an
argument, and a facility sees or makes the mark only of a person it holds a chart of.

The chart a patient id names is the tenant's `patient` row, whose `subject_id` links it to the person; a
chart linked to no subject (made before subjects were matched, and never linked since) has no mark. A chart linked
to its person over a differing answer to the national-ID question (c0016) keeps its death to itself: that chart
shows it, no other does, and it shows no death but its own (c0017: the number's holder certified dead elsewhere is
not its patient), until the identity is confirmed or the national ID corrected.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.substrate.db import control_metadata
from appliance.substrate.record import RecordError

subject_death = sa.Table(
    "subject_death", control_metadata,
    sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
    sa.Column("subject_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("control.subject.id"), nullable=False,
              doc="patient data: who died"),
    sa.Column("tenant", sa.Text, nullable=False),  # the facility whose certificate says so
    sa.Column("patient_id", postgresql.UUID(as_uuid=True), nullable=False),  # that facility's chart
    sa.Column("entry_id", postgresql.UUID(as_uuid=True), nullable=False),  # root id of the certificate
    sa.Column("died_at", sa.DateTime(timezone=True), nullable=False, doc="patient data"),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("withdrawn_reason", sa.Text, nullable=True, doc="patient data: why the certificate was withdrawn"),
    # Recorded on a chart whose link to the person is in dispute (`identity.subject_link_dispute`, c0016): shown to
    # the recording facility alone, and no bar to the person's own death being certified elsewhere.
    sa.Column("confined", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("tenant", "entry_id", name="subject_death_entry_key"),
    sa.Index("subject_death_live_key", "subject_id", unique=True,
             postgresql_where=sa.text("withdrawn_at IS NULL AND NOT confined")),
)


@dataclass(frozen=True)
class Death:
    died_at: dt.datetime
    tenant: str  # the facility that certified it
    facility: str  # its name, as a person reads it
    timezone: str  # its time zone: the day of death is that facility's day
    entry_id: uuid.UUID  # root id of the certificate at that facility
    confined: bool = False  # kept to this facility's chart until its identity is confirmed (`KEPT_TO_THIS_CHART`)


class Deceased(RecordError):
    """An act for the living (a visit, an admission, a booking) asked for a person recorded deceased."""

    status = 422


class AlreadyCertified(RecordError):
    """A second death certificate for a person who has one in force."""

    status = 409


# What the recording facility is told of a death kept to its chart (c0016), on the certificate and the chart's death.
KEPT_TO_THIS_CHART = (
    "This chart was linked to a person by a national ID whose holder has another birth date or sex, the desk having "
    "confirmed the number: the death stays on this chart, and that person's charts at other facilities do not show "
    "it, until a clinician here confirms the identity from documents or the national ID is corrected.")

_DEATH_OF_PATIENT = sa.text(
    "SELECT d.died_at, d.tenant, d.facility, d.timezone, d.entry_id, d.confined "
    "FROM patient p, control.subject_death_of(p.subject_id, p.id) d WHERE p.id = :patient_id")


def death_of(conn: Connection, patient_id: uuid.UUID) -> Death | None:
    """The death chart `patient_id` shows: its person's in force, whichever facility certified it, or for a chart
    whose link to its person is in dispute its own alone; or None (one statement)."""
    row = conn.execute(_DEATH_OF_PATIENT, {"patient_id": patient_id}).first()
    return None if row is None else Death(row.died_at, row.tenant, row.facility, row.timezone, row.entry_id,
                                          row.confined)


_DEATHS_OF_PATIENTS = sa.text(
    "SELECT p.id, d.died_at, d.timezone FROM patient p, control.subject_death_of(p.subject_id, p.id) d "
    "WHERE p.id = ANY(:patient_ids)")


def days_of_death(conn: Connection, patient_ids: list[uuid.UUID]) -> dict[uuid.UUID, dt.date]:
    """Of these charts, those showing a death (as `death_of` reads each), with the day of death as the certifying
    facility counts it: a register's many people in one statement."""
    if not patient_ids:
        return {}
    return {row.id: row.died_at.astimezone(zoneinfo.ZoneInfo(row.timezone)).date()
            for row in conn.execute(_DEATHS_OF_PATIENTS, {"patient_ids": patient_ids})}


def day_of(death: Death) -> dt.date:
    """The day of death as the certifying facility counts it (a death at 23:30 in Nairobi is not the next day)."""
    return death.died_at.astimezone(zoneinfo.ZoneInfo(death.timezone)).date()


def sentence(death: Death) -> str:
    """'recorded deceased on 3 March 2026 at Kisumu District Hospital', the day as that facility counts it."""
    day = death.died_at.astimezone(zoneinfo.ZoneInfo(death.timezone))
    return f"recorded deceased on {day.day} {day:%B %Y} at {death.facility}"


def refuse_if_deceased(conn: Connection, patient_id: uuid.UUID | None, act: str = "this") -> None:
    """Refuse (422) an act for the living — `act` names it: 'an encounter', 'an admission', 'an appointment' —
    for a person recorded deceased, saying when and where. Nothing has been written when it refuses."""
    if patient_id is None:
        return
    death = death_of(conn, patient_id)
    if death is not None:
        raise Deceased(f"this person was {sentence(death)}: {act} cannot be recorded for them. If the "
                       "certificate is on the wrong patient, the certifying facility marks it entered in error",
                       field="patient_id", died_at=death.died_at.isoformat(), facility=death.facility)


def record(conn: Connection, *, patient_id: uuid.UUID, subject_id: uuid.UUID, entry_id: uuid.UUID,
           died_at: dt.datetime) -> bool:
    """Mark the person deceased, by this facility's certificate `entry_id` (in the certificate's transaction).
    A person already marked (a race past `death_of`) is refused by the unique index: 409. Returns whether the death
    was kept to chart `patient_id`, its link to the person being in dispute (`KEPT_TO_THIS_CHART`)."""
    try:
        with conn.begin_nested():
            return conn.execute(sa.text("SELECT control.record_subject_death(:subject, :patient, :entry, :died_at)"),
                                {"subject": subject_id, "patient": patient_id, "entry": entry_id,
                                 "died_at": died_at}).scalar_one()
    except sa.exc.IntegrityError as exc:
        if "subject_death_live_key" not in str(exc.orig):
            raise
        raise AlreadyCertified("a death certificate for this person was recorded a moment ago; reload the chart",
                               field="patient_id") from None


def correct(conn: Connection, entry_id: uuid.UUID, died_at: dt.datetime) -> None:
    """The certificate `entry_id` of this facility was corrected: the mark takes its time of death."""
    conn.execute(sa.text("SELECT control.correct_subject_death(:entry, :died_at)"),
                 {"entry": entry_id, "died_at": died_at})


def withdraw(conn: Connection, entry_id: uuid.UUID, reason: str) -> None:
    """The certificate `entry_id` of this facility was marked entered in error: the mark is withdrawn (kept,
    with when and why), and the person is no longer deceased anywhere."""
    conn.execute(sa.text("SELECT control.withdraw_subject_death(:entry, :reason)"),
                 {"entry": entry_id, "reason": reason})
