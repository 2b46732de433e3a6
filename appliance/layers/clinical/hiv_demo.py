"""The demo's ART clinic (`healthos up --demo`): at the district and the referral hospital, twelve people each
started on ART across the demo year, so the HIV care tab, the ART register, its list to trace and the national
TX_NEW, TX_CURR and TX_PVLS figures have something to show. Each is enrolled and started on TDF+3TC+DTG the same
day, picks up 30 days of ARVs at the start and a month later, then 90 days at a time (multi-month dispensing), and
has a viral load at six months, suppressed; but one person's is unsuppressed (12,000 copies/mL, a repeat due three
months on), one stopped coming after her second month's pills (an interruption in treatment for months: to trace),
and one was transferred out three weeks ago. Who is drawn from a stream fixed by the seed and the facility: the adults
the clinical demo diagnosed with HIV disease (B20-B24) first, then other adults, none recorded deceased nor on the TB
demo's register as HIV-negative or of unknown status (the two registers agree, registers.py); each act goes
through the service a clinician's would (`hiv.enrol`, `.change_regimen`, `.record_visit`, `.record_viral_load`,
`.change_status`), written by the clinical demo's principal. Skipped where anyone is enrolled already.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from appliance.layers.clinical import hiv
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.hiv_schemas import (
    HivEnrolmentIn,
    HivRegimenIn,
    HivStatusIn,
    HivViralLoadIn,
    HivVisitIn,
)
from appliance.substrate import deaths, record
from appliance.substrate.config import PROJECT_ROOT
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_stream
from appliance.substrate.tenancy import facility_today

DEMO_HOSPITALS = ("lakeshore_district", "riverside_referral")
PROGRAMME_FILE = PROJECT_ROOT / "policies" / "hiv.toml"
PEOPLE = 12  # a hospital's; each is some eight audited writes, so the demo fill stays quick
UNSUPPRESSED, INTERRUPTED, TRANSFERRED = 0, 1, 2  # the people of the plan with a story of their own
_CANDIDATES = sa.text(
    "SELECT p.id, EXISTS (SELECT 1 FROM entry c JOIN condition d ON d.entry_id = c.id WHERE c.patient_id = p.id"
    " AND d.code >= 'B20' AND d.code < 'B25') AS hiv FROM patient p"
    " WHERE p.birth_date <= current_date - interval '18 years'"
    " AND NOT EXISTS (SELECT 1 FROM entry t JOIN tb_treatment r ON r.entry_id = t.id WHERE t.patient_id = p.id"
    " AND r.hiv_status <> 'positive') ORDER BY p.mrn")


def _pick_ups(started: dt.date, until: dt.date) -> list[tuple[dt.date, int]]:
    """A pick-up at the start and a month later of 30 days each, then every 90 days, while one falls by `until`."""
    days, given, day = [30, 30], [], started
    while day <= until:
        supply = days.pop(0) if days else 90
        given.append((day, supply))
        day += dt.timedelta(days=supply)
    return given


def generate_hiv_demo(db: Database, slugs: list[str], seed: int = 2026, as_of: dt.date | None = None,
                      hospitals: tuple[str, ...] = DEMO_HOSPITALS, people: int = PEOPLE) -> dict[str, int]:
    """The demo's `people` on ART at each of `hospitals` among `slugs`: how many were enrolled at each."""
    programme = hiv.load_programme(PROGRAMME_FILE)
    written: dict[str, int] = {}
    for hospital in (h for h in hospitals if h in slugs):
        author = demo_principal(hospital)
        today = as_of or facility_today(db, hospital)
        draw = demo_stream("hiv", seed, hospital)
        with db.tenant(hospital) as conn:
            if conn.execute(sa.select(record.entry.c.id).where(record.entry.c.kind == hiv.KIND).limit(1)).first():
                continue
            rows = conn.execute(_CANDIDATES).all()
            diagnosed, others = [r.id for r in rows if r.hiv], [r.id for r in rows if not r.hiv]
            ordered = draw.sample(diagnosed, len(diagnosed)) + draw.sample(others, min(len(others), 2 * people))
            drawn = [p for p in ordered if deaths.death_of(conn, p) is None][:people]
        for n, patient_id in enumerate(drawn):
            started = today - dt.timedelta(days=200 + 10 * n if n <= TRANSFERRED else draw.randrange(20, 350))
            with db.tenant(hospital) as conn:
                care = hiv.enrol(conn, author, patient_id, HivEnrolmentIn(
                    enrolled_on=started, diagnosed_on=started - dt.timedelta(days=draw.randrange(3, 30)),
                    who_stage=draw.choice((1, 1, 1, 2, 2, 3)), cd4_baseline=draw.randrange(90, 700),
                    tb_screening="no_signs"), programme=programme, today=today)
                root = care["root_id"]
                hiv.change_regimen(conn, author, patient_id, root, HivRegimenIn(
                    change="initiation", started_on=started, regimen="TDF+3TC+DTG"), programme=programme, today=today)
                left_on = today - dt.timedelta(days=21)
                pick_ups = _pick_ups(started, left_on if n == TRANSFERRED else today)
                for day, supply in pick_ups[:2] if n == INTERRUPTED else pick_ups:
                    hiv.record_visit(conn, author, patient_id, root, HivVisitIn(
                        visit_on=day, arv_days=supply, adherence="good",
                        next_appointment_on=day + dt.timedelta(days=supply)), programme=programme, today=today)
                six_months = hiv.months_after(started, 6)
                if six_months <= today and n != INTERRUPTED:
                    hiv.record_viral_load(conn, author, patient_id, root, HivViralLoadIn(
                        sampled_on=six_months,
                        copies_per_ml=12_000 if n == UNSUPPRESSED else draw.choice((0, 0, 20, 40, 150, 400))),
                        programme=programme, today=today)
                if n == TRANSFERRED:
                    hiv.change_status(conn, author, patient_id, root, HivStatusIn(
                        status="transferred_out", status_on=left_on,
                        reason="moved to her family's district"), programme=programme, today=today)
        written[hospital] = len(drawn)
    return written
