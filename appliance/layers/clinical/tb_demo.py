"""The demo's TB register (`healthos up --demo`): at the district hospital, six TB cases started across the demo year,
so the TB tab, the register page and its cohort table have something to show — one cured (confirmed at the start,
negative smears at months 2, 5 and 6), one clinically diagnosed and HIV-positive with treatment completed, one
extrapulmonary case who died in the first month, a relapse lost to follow-up after month 2, and two on treatment
(one with its month 2 smear done, one started six weeks ago). Who is treated is drawn from a stream fixed by the seed
and the facility: the adults the clinical demo diagnosed with pulmonary TB (A15) first, then other adults, none
recorded deceased; each act goes through the service a clinician's would (`tuberculosis.register`,
`.record_follow_up`, `.record_outcome`), written by the clinical demo's principal. Skipped where a TB case is
registered already.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from appliance.layers.clinical import tuberculosis
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.tuberculosis_schemas import TbFollowUpIn, TbOutcomeIn, TbRegistrationIn
from appliance.substrate import deaths, record
from appliance.substrate.config import PROJECT_ROOT
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_stream
from appliance.substrate.tenancy import facility_today

DEMO_HOSPITAL = "lakeshore_district"
REGIMENS_FILE = PROJECT_ROOT / "policies" / "tuberculosis.toml"
# Each case: days before today treatment started, site, bacteriology, history, HIV status, the follow-ups done (month,
# smear) and the outcome with the months after the start it was reached.
PLAN = (
    (330, "pulmonary", "bacteriologically_confirmed", "new", "negative", ((2, "negative"), (5, "negative"),
                                                                         (6, "negative")), ("cured", 6)),
    (300, "pulmonary", "clinically_diagnosed", "new", "positive", ((2, "not_done"),), ("treatment_completed", 6)),
    (270, "extrapulmonary", "clinically_diagnosed", "new", "unknown", (), ("died", 1)),
    (240, "pulmonary", "bacteriologically_confirmed", "relapse", "negative", ((2, "negative"),),
     ("lost_to_follow_up", 4)),
    (100, "pulmonary", "bacteriologically_confirmed", "new", "negative", ((2, "negative"),), None),
    (45, "pulmonary", "bacteriologically_confirmed", "new", "negative", (), None),
)
_CANDIDATES = sa.text(
    "SELECT p.id, EXISTS (SELECT 1 FROM entry c JOIN condition d ON d.entry_id = c.id WHERE c.patient_id = p.id"
    " AND d.code LIKE 'A15%') AS tb FROM patient p WHERE p.birth_date <= current_date - interval '18 years'"
    " ORDER BY p.mrn")


def generate_tb_demo(db: Database, slugs: list[str], seed: int = 2026, as_of: dt.date | None = None,
                     hospital: str = DEMO_HOSPITAL) -> dict[str, int]:
    """The demo's TB cases at `hospital` if it is among `slugs`: how many were written with each outcome (on
    treatment: `on_treatment`)."""
    if hospital not in slugs:
        return {}
    author = demo_principal(hospital)
    regimens = tuberculosis.load_regimens(REGIMENS_FILE)
    today = as_of or facility_today(db, hospital)
    draw = demo_stream("tuberculosis", seed, hospital)
    with db.tenant(hospital) as conn:
        if conn.execute(sa.select(record.entry.c.id).where(record.entry.c.kind == tuberculosis.KIND).limit(1)).first():
            return {}
        rows = conn.execute(_CANDIDATES).all()
        diagnosed = [r.id for r in rows if r.tb]
        others = [r.id for r in rows if not r.tb]
        ordered = draw.sample(diagnosed, len(diagnosed)) + draw.sample(others, min(len(others), 3 * len(PLAN)))
        drawn = [p for p in ordered if deaths.death_of(conn, p) is None][:len(PLAN)]
    if len(drawn) < len(PLAN):
        return {}
    written: dict[str, int] = {}
    for patient_id, (days, site, bacteriology, history, hiv, follow_ups, outcome) in zip(drawn, PLAN, strict=True):
        started = today - dt.timedelta(days=days)
        with db.tenant(hospital) as conn:
            case = tuberculosis.register(conn, author, patient_id, TbRegistrationIn(
                started_on=started, site=site, bacteriology=bacteriology, history=history, regimen="2HRZE/4HR",
                hiv_status=hiv, weight_kg=Decimal(draw.randrange(380, 620)) / 10), regimens=regimens, today=today)
            for month, smear in follow_ups:
                tuberculosis.record_follow_up(conn, author, patient_id, case["id"], TbFollowUpIn(
                    month=month, examined_on=tuberculosis.months_after(started, month), smear=smear,
                    weight_kg=case["weight_kg"] + Decimal(month) / 2), regimens=regimens, today=today)
            if outcome is not None:
                tuberculosis.record_outcome(conn, author, patient_id, case["id"], TbOutcomeIn(
                    outcome=outcome[0], outcome_on=tuberculosis.months_after(started, outcome[1])),
                    regimens=regimens, today=today)
        key = outcome[0] if outcome else "on_treatment"
        written[key] = written.get(key, 0) + 1
    return written
