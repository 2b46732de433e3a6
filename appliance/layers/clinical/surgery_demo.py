"""The demo's operating theatres (`healthos up --demo`): at the demo hospitals, a few cases in each state around
today, so the theatre list, a case's checklist and the billing worklist have something to show. Yesterday, a case
completed through all three phases of the WHO checklist with its operation note (its procedure charged); today, one
in theatre after its Sign In and Time Out (begun three quarters of an hour before the demo is written, so every time
it shows has passed), one scheduled, one cancelled with a reason; tomorrow, one scheduled.
Who is operated on is drawn from a stream fixed by the seed and the facility (adults of the demo population not
recorded deceased); each case goes through the service a clinician's and a nurse's acts do (`surgery.book`,
`.record_phase`, `.move`, `.write_note`), written by the clinical demo's principal. Skipped at a facility without
theatres or procedures in its tenant file, and where that principal has booked a case already.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from appliance.layers.clinical import surgery
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.surgery_schemas import OperationNoteIn, PhaseIn, SurgeryIn
from appliance.substrate import deaths, record
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_stream
from appliance.substrate.tenancy import facility_timezone

DEMO_HOSPITALS = ("lakeshore_district", "riverside_referral")
# Each case: the day (from today), the hour, the procedure code, the urgency, the anaesthesia and how far it goes. The
# case in theatre has no hour: it began three quarters of an hour before the demo is written (an 08:00 case read
# "into theatre 08:20" on a list opened at 04:50, its Time Out said before it went in).
IN_THEATRE_FOR = dt.timedelta(minutes=45)
PLAN = ((-1, 9, "APPX", "urgent", "general", "completed"),
        (0, None, "LAPAROTOMY", "emergency", "general", "in_theatre"),
        (0, 11, "HERNIA", "elective", "spinal", "scheduled"), (0, 14, "ID", "elective", "local", "cancelled"),
        (1, 9, "HERNIA", "elective", "spinal", "scheduled"))
SURGEONS = ("Dr Achieng Odhiambo", "Dr Peter Mwangi", "Dr Halima Yusuf")
ANAESTHETISTS = ("Dr Samuel Kiprono", "Dr Grace Wambui")
CANCELLED = "Patient had eaten this morning: rebooked after fasting"
NOTE = OperationNoteIn(procedure_performed="Open appendicectomy through a right iliac fossa incision",
                       findings="Inflamed, non-perforated appendix; no free pus", complications=None, blood_loss_ml=50,
                       implants=None, specimens="Appendix sent to histology",
                       post_op_instructions="Oral fluids after 6 hours; IV cefuroxime and metronidazole for 24 hours; "
                                            "review the wound on day 2")

_CANDIDATES = sa.text(
    "SELECT p.id FROM patient p WHERE p.birth_date <= current_date - interval '18 years' AND NOT EXISTS ("
    " SELECT 1 FROM entry d WHERE d.patient_id = p.id AND d.kind = 'death') ORDER BY p.mrn")


def _everything(phase: str) -> PhaseIn:
    return PhaseIn(confirmed=[key for key, _ in surgery.PHASES[phase].items])


def generate_surgery_demo(db: Database, slugs: list[str], seed: int = 2026, as_of: dt.datetime | None = None,
                          hospitals: tuple[str, ...] = DEMO_HOSPITALS) -> dict[str, int]:
    """The demo cases at each of the `hospitals` among `slugs`; how many were written in each state."""
    counts: dict[str, int] = {}
    for slug in (s for s in hospitals if s in slugs):
        author = demo_principal(slug)
        zone = facility_timezone(db, slug)
        now = (as_of or dt.datetime.now(dt.UTC)).astimezone(zone)
        today = now.date()
        draw = demo_stream("surgery", seed, slug)
        with db.tenant(slug) as conn:
            theatres = [t["code"] for t in surgery.theatres(conn)]
            listed = {p["code"]: p["name"] for p in surgery.procedures(conn)}
            booked_before = conn.execute(sa.select(record.entry.c.id).where(
                record.entry.c.kind == "surgery", record.entry.c.author_id == author.account_id).limit(1)).first()
            candidates = list(conn.execute(_CANDIDATES).scalars())
            # A person certified dead at another facility (one identity) is refused an operation here too.
            drawn = [p for p in draw.sample(candidates, min(len(candidates), 2 * len(PLAN)))
                     if deaths.death_of(conn, p) is None][:len(PLAN)]
        if not theatres or booked_before or len(drawn) < len(PLAN):
            continue
        for patient_id, (day, hour, code, urgency, anaesthesia, reaches) in zip(drawn, PLAN, strict=True):
            planned = (dt.datetime.combine(today + dt.timedelta(days=day), dt.time(hour), zone) if hour is not None
                       else _quarter_before(now - IN_THEATRE_FOR))
            with db.tenant(slug) as conn:
                case = surgery.book(conn, author, patient_id, SurgeryIn(
                    procedure=listed.get(code, code.title()), procedure_code=code if code in listed else None,
                    planned_at=planned, theatre=theatres[draw.randrange(len(theatres))],
                    surgeon=draw.choice(SURGEONS), anaesthetist=draw.choice(ANAESTHETISTS), urgency=urgency,
                    anaesthesia=anaesthesia))
                _take(conn, author, case["root_id"], reaches, planned)
            counts[reaches] = counts.get(reaches, 0) + 1
    return counts


def _quarter_before(moment: dt.datetime) -> dt.datetime:
    """The quarter hour at or before `moment`, as a list books a case."""
    return moment - dt.timedelta(minutes=moment.minute % 15, seconds=moment.second, microseconds=moment.microsecond)


def _take(conn, author, case_id: uuid.UUID, reaches: str, planned: dt.datetime) -> None:
    """Take a booked case as far as the plan says, as the theatre team would."""
    if reaches == "cancelled":
        surgery.move(conn, author, case_id, "cancelled", reason=CANCELLED)
        return
    if reaches == "scheduled":
        return
    # Each phase at its moment in the case: Sign In before it goes in, Time Out before the incision, Sign Out before
    # the patient leaves.
    surgery.record_phase(conn, author, case_id, "sign_in", _everything("sign_in"),
                         at=planned + dt.timedelta(minutes=10))
    surgery.move(conn, author, case_id, "in_theatre", at=planned + dt.timedelta(minutes=20))
    surgery.record_phase(conn, author, case_id, "time_out", _everything("time_out"),
                         at=planned + dt.timedelta(minutes=25))
    if reaches == "completed":
        surgery.write_note(conn, author, case_id, NOTE)
        surgery.record_phase(conn, author, case_id, "sign_out", _everything("sign_out"),
                             at=planned + dt.timedelta(minutes=90))
        surgery.move(conn, author, case_id, "completed", at=planned + dt.timedelta(minutes=95))
