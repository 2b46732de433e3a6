"""The demo's antenatal clinic (`healthos up --demo`): at each demo facility, a handful of pregnant women with their
ANC contacts over the months before today, so the woman's Antenatal tab, the ANC clinic list and the ministry's ANC
indicators have something to show: one on the WHO schedule, one with pre-eclampsia's severe features at her latest
contact, one anaemic, one booked late with syphilis untreated and now overdue, and one who delivered three weeks ago
(her delivery recorded, the baby registered), whose card says the delivery ended the pregnancy.

Who they are is drawn from a stream fixed by the seed and the facility (women of 18 to 40 of the demo population not
recorded deceased; one the demo's ART clinic enrolled is known positive at a contact after HIV was confirmed); each
contact goes through the service a midwife's form does (`antenatal.record_contact`), the
delivery through delivery.py's, written by the clinical demo's principal. Skipped where that principal has recorded
a contact already.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import sqlalchemy as sa

from appliance.layers.clinical import antenatal, delivery, service
from appliance.layers.clinical.antenatal_schemas import AntenatalIn
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.registers import hiv_confirmed_on
from appliance.layers.clinical.schemas import DeliveryIn
from appliance.substrate import deaths, record
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_stream
from appliance.substrate.tenancy import facility_timezone

_NORMAL = {"systolic_mmhg": 112, "diastolic_mmhg": 72, "urine_protein": "negative", "fetal_movements": "present",
           "iron_folic_acid": True}
# Each woman: her weeks today (None: delivered), and each contact at (weeks, what differs from a normal contact).
PLAN = {
    "on_schedule": (30, ((11, {"syphilis_test": "negative", "hiv_test": "negative", "haemoglobin_g_dl": "12.1",
                               "td_dose": 1}), (20, {"td_dose": 2, "iptp_dose": 1}), (26, {"iptp_dose": 2}))),
    "pre_eclampsia": (33, ((14, {"syphilis_test": "negative", "hiv_test": "negative", "haemoglobin_g_dl": "11.6"}),
                           (22, {"iptp_dose": 1}), (28, {"systolic_mmhg": 138, "diastolic_mmhg": 88}),
                           (32, {"systolic_mmhg": 162, "diastolic_mmhg": 108, "urine_protein": "2+",
                                 "danger_signs": ["severe_headache", "blurred_vision"]}))),
    "anaemic": (24, ((16, {"syphilis_test": "negative", "hiv_test": "negative", "haemoglobin_g_dl": "9.2"}),
                     (22, {"haemoglobin_g_dl": "8.4", "iptp_dose": 1}))),
    "late_booker": (28, ((24, {"syphilis_test": "positive", "hiv_test": "negative", "haemoglobin_g_dl": "11.2",
                               "next_visit_days": 14}),)),
    "delivered": (None, tuple((week, {"syphilis_test": "negative", "hiv_test": "negative"} if week == 12 else {})
                              for week in (12, 20, 26, 30, 34, 36, 38))),
}
DELIVERED_WEEKS_AGO = 3
# Her weight at booking, and what she gains a week after it: about 0.45 kg, the middle of what the US Institute of
# Medicine (2009) advises from the second trimester for a woman of normal weight (0.35-0.50 kg). Drawn afresh at each
# contact, a demo woman's weight had swung 16 kg in a fortnight (71.7 kg, then 55.7).
BOOKING_KG = (52, 72)
GAIN_KG_A_WEEK = 0.45
_CANDIDATES = sa.text(
    "SELECT p.id FROM patient p WHERE p.sex = 'female' AND p.birth_date BETWEEN current_date - interval '40 years' "
    "AND current_date - interval '18 years' AND NOT EXISTS (SELECT 1 FROM entry d WHERE d.patient_id = p.id "
    "AND d.kind = 'delivery') ORDER BY p.mrn")


def generate_antenatal_demo(db: Database, slugs: list[str], seed: int = 2026,
                            as_of: dt.datetime | None = None) -> dict[str, int]:
    """The demo's pregnant women at each facility of `slugs`; how many contacts (and deliveries) were written."""
    counts: dict[str, int] = {}
    for slug in slugs:
        author = demo_principal(slug)
        zone = facility_timezone(db, slug)
        today = (as_of or dt.datetime.now(dt.UTC)).astimezone(zone).date()
        draw = demo_stream("antenatal", seed, slug)
        with db.tenant(slug) as conn:
            before = conn.execute(sa.select(record.entry.c.id).where(
                record.entry.c.kind == antenatal.KIND, record.entry.c.author_id == author.account_id).limit(1)).first()
            candidates = list(conn.execute(_CANDIDATES).scalars())
            drawn = [p for p in draw.sample(candidates, min(len(candidates), 2 * len(PLAN)))
                     if deaths.death_of(conn, p) is None][:len(PLAN)]
        if before or len(drawn) < len(PLAN):
            continue
        for woman, (weeks_today, contacts) in zip(drawn, PLAN.values(), strict=True):
            weeks_now = weeks_today if weeks_today is not None else 39 + DELIVERED_WEEKS_AGO
            lmp = today - dt.timedelta(weeks=weeks_now, days=draw.randint(0, 6))
            booked_kg = draw.uniform(*BOOKING_KG)
            for n, (week, differs) in enumerate(contacts):
                seen_on = lmp + dt.timedelta(weeks=week, days=draw.randint(0, 3))
                weight = booked_kg + GAIN_KG_A_WEEK * (week - contacts[0][0])
                fields = {**_NORMAL, "weight_kg": f"{weight:.1f}", **differs}
                visit_in = fields.pop("next_visit_days", None)
                if n == 0:
                    fields.update(lmp=lmp, gravida=draw.randint(1, 4))
                    fields["para"] = draw.randint(0, fields["gravida"] - 1)
                if week >= 28:
                    fields.update(presentation="cephalic", fundal_height_cm=week + draw.randint(-1, 1),
                                  fetal_heart_rate=draw.randint(128, 152))
                fields["next_visit_on"] = seen_on + dt.timedelta(days=visit_in or 28)
                if fields["next_visit_on"] > today + dt.timedelta(weeks=6):
                    fields["next_visit_on"] = None
                with db.tenant(slug) as conn:
                    if fields.get("hiv_test") == "negative" and (
                            confirmed := hiv_confirmed_on(conn, woman)) is not None and confirmed <= seen_on:
                        fields["hiv_test"] = "known_positive"
                    antenatal.record_contact(conn, author, woman, AntenatalIn(seen_on=seen_on, **fields), today=today,
                                             tz=zone)
                counts["antenatal"] = counts.get("antenatal", 0) + 1
            if weeks_today is None:
                _deliver(db, slug, author, woman, lmp + dt.timedelta(weeks=39, days=1), zone)
                counts["delivery"] = counts.get("delivery", 0) + 1
    return counts


def _deliver(db: Database, slug: str, author, woman: uuid.UUID, born_on: dt.date, zone: zoneinfo.ZoneInfo) -> None:
    """Her delivery at 39+1 weeks, as the Record delivery form records one: a girl born alive, registered."""
    born_at = dt.datetime.combine(born_on, dt.time(5, 40), zone)
    data = DeliveryIn.model_validate({
        "born_at": born_at, "gestation_weeks": 39, "gestation_days": 1, "mode": "spontaneous_vaginal",
        "babies": [{"outcome": "live_birth", "sex": "female", "weight_g": 3180, "apgar_1": 8, "apgar_5": 9}],
        "blood_loss_ml": 250, "uterotonic": "oxytocin"})
    with db.tenant(slug) as conn:
        mother = delivery.check(conn, woman, data)
    babies = [service.with_subject(db, baby, tenant=slug) for baby in delivery.newborns(mother, data)]
    with db.tenant(slug) as conn:
        delivery.record_delivery(conn, author, woman, data, babies)
