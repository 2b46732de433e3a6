"""Antenatal care: the dating arithmetic, the flags and the WHO schedule worked by hand; over HTTP, a contact's
refusals with nothing written, the contacts making one pregnancy and its card, the clinic list, a correction and a
withdrawal, a delivery ending the pregnancy, the ward's escalation for severe features, other facilities'
credentials, guessed ids, a man's record and roles without the permission refused on every route; and the demo."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
import zoneinfo
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import antenatal
from appliance.layers.clinical import antenatal_rules as rules
from appliance.layers.clinical.antenatal_demo import generate_antenatal_demo
from appliance.layers.clinical.demo import demo_principal
from appliance.substrate import audit
from appliance.substrate.db import Database
from tests.layers.clinical.conftest import new_patient

BASE = "/api/t/{tenant}"
GUESS = str(uuid.uuid4())
# Two days back: the facility's today is the same day or the next whatever its zone, so no contact is in its future.
DAY = dt.date.today() - dt.timedelta(days=2)


# -- the arithmetic, by hand --------------------------------------------------------------------------------


def test_naegele_the_ultrasound_wins_and_the_gestational_age_is_counted_from_the_due_date():
    assert rules.edd_from_lmp(dt.date(2026, 1, 1)) == dt.date(2026, 10, 8)  # day 1 + 280 = day 281 of 2026
    # A scan on 1 March (day 60) measuring 10+2 (72 days): 208 days to go, day 268, 25 September.
    assert rules.edd_from_ultrasound(dt.date(2026, 3, 1), 10, 2) == dt.date(2026, 9, 25)
    both = rules.date_pregnancy(dt.date(2026, 1, 1), (dt.date(2026, 3, 1), 10, 2))
    assert both == rules.Dating(dt.date(2026, 9, 25), "ultrasound")
    # A later contact's LMP does not re-date a pregnancy dated by ultrasound; it dates one dated by an LMP.
    assert rules.date_pregnancy(dt.date(2025, 12, 20), None, both) == both
    by_lmp = rules.Dating(dt.date(2026, 10, 8), "lmp")
    assert rules.date_pregnancy(dt.date(2026, 1, 3), None, by_lmp) == rules.Dating(dt.date(2026, 10, 10), "lmp")
    assert rules.date_pregnancy(None, None, by_lmp) == by_lmp and rules.date_pregnancy(None, None) is None
    # 21 May is day 141, 140 days before 8 October: 280 - 140 = 140 days, 20+0.
    assert rules.gestation_days(dt.date(2026, 10, 8), dt.date(2026, 5, 21)) == 140
    assert rules.weeks_and_days(140) == "20+0" and rules.weeks_and_days(75) == "10+5"


def flags(days: int = 140, bp: tuple[int, int] | None = None, protein: str | None = None, hb: str | None = None,
          syphilis: str = "not_done", treated: bool = False, signs: tuple[str, ...] = ()) -> list[str]:
    return rules.contact_flags(gestation_days=days, systolic=bp[0] if bp else None, diastolic=bp[1] if bp else None,
                               urine_protein=protein, haemoglobin=Decimal(hb) if hb else None, syphilis_test=syphilis,
                               syphilis_treated=treated, danger_signs=signs)


def test_the_flags_of_a_contact_each_at_its_threshold():
    # 19+6: not hypertension of pregnancy yet (nor pre-eclampsia, whatever the protein), but hypertension all the same
    assert flags(139, (150, 95), "2+") == ["chronic_hypertension"]
    assert flags(70, (140, 85)) == ["chronic_hypertension"] and flags(70, (139, 89)) == []
    assert flags(140, (140, 85)) == ["hypertension"]
    assert flags(140, (135, 90), "trace") == ["hypertension"]  # a trace is not proteinuria
    assert flags(140, (139, 89), "3+") == []
    assert flags(200, (145, 92), "1+") == ["hypertension", "pre_eclampsia"]
    assert flags(200, (160, 100), "2+") == ["hypertension", "pre_eclampsia", "severe_features"]
    assert flags(200, (150, 110)) == ["hypertension", "severe_features"]
    assert flags(100, (162, 100)) == ["chronic_hypertension", "severe_features"]  # that high at any gestation
    assert flags(200, (120, 80), signs=("blurred_vision",)) == ["severe_features", "danger_signs"]
    assert flags(200, signs=("fever",)) == ["danger_signs"]
    assert flags(hb="11.0") == [] and flags(hb="10.9") == ["anaemia"]
    assert flags(hb="7.0") == ["anaemia"] and flags(hb="6.9") == ["anaemia", "severe_anaemia"]
    assert flags(syphilis="positive") == ["syphilis_untreated"]
    assert flags(syphilis="positive", treated=True) == [] and flags(syphilis="negative") == []


def test_a_positive_syphilis_test_stays_flagged_until_a_contact_records_its_treatment():
    positive = {"flags": ["syphilis_untreated"], "syphilis_test": "positive", "syphilis_treated": False}
    later = {"flags": ["anaemia"], "syphilis_test": "not_done", "syphilis_treated": False}
    treated = {"flags": [], "syphilis_test": "not_done", "syphilis_treated": True}
    assert rules.pregnancy_flags([positive, later]) == ["anaemia", "syphilis_untreated"]
    assert rules.pregnancy_flags([positive, treated]) == []
    assert rules.pregnancy_flags([]) == []


def test_the_who_schedule_kept_missed_and_due():
    edd = dt.date(2026, 10, 8)  # LMP 1 January
    lmp = dt.date(2026, 1, 1)
    # Seen at 11+0 and 21+3; today 27+0: contact 1 kept, 2 (by 20 weeks) missed, 3 kept by 21+3, 4 (30) due.
    slots = rules.schedule(edd, [(77, lmp + dt.timedelta(days=77)), (150, lmp + dt.timedelta(days=150))],
                           lmp + dt.timedelta(weeks=27))
    assert [(s.week, s.state) for s in slots] == [(12, "kept"), (20, "missed"), (26, "kept"), (30, "due"),
                                                  (34, "upcoming"), (36, "upcoming"), (38, "upcoming"),
                                                  (40, "upcoming")]
    assert slots[0].kept_on == dt.date(2026, 3, 19) and slots[3].due_on == dt.date(2026, 7, 30)
    # Two contacts in one window keep one contact of the schedule; on the week itself it is still due.
    twice = rules.schedule(edd, [(70, lmp), (80, lmp)], lmp + dt.timedelta(weeks=12))
    assert [s.state for s in twice[:3]] == ["kept", "due", "upcoming"]


# -- over HTTP ----------------------------------------------------------------------------------------------


def register(api, tenant: str, **overrides) -> str:
    body = {"family_name": "Wanjiru", "given_names": "Grace", "birth_date": "1997-03-14", "sex": "female",
            "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}
    body.update(overrides)
    response = api.post(f"{BASE.format(tenant=tenant)}/patients", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def url(tenant: str, patient_id: str, rest: str = "") -> str:
    return f"{BASE.format(tenant=tenant)}/patients/{patient_id}/antenatal{rest}"


def booking(**overrides) -> dict:
    """A first contact at 10+0 weeks, DAY - 10 weeks, dated by an LMP 20 weeks before DAY."""
    body = {"seen_on": (DAY - dt.timedelta(weeks=10)).isoformat(), "lmp": (DAY - dt.timedelta(weeks=20)).isoformat(),
            "gravida": 2, "para": 1, "systolic_mmhg": 112, "diastolic_mmhg": 70, "weight_kg": "61.5",
            "haemoglobin_g_dl": "11.8", "syphilis_test": "negative", "hiv_test": "negative", "td_dose": 1,
            "iron_folic_acid": True}
    body.update(overrides)
    return body


def rows(db: Database, tenant: str) -> tuple[int, int]:
    with db.tenant(tenant) as conn:
        return tuple(conn.execute(sa.text("SELECT (SELECT count(*) FROM entry), (SELECT count(*) FROM antenatal)"))
                     .one())


@pytest.fixture
def api(token_client, facility):
    return token_client(facility.slug, role="clinician")


def test_a_contact_is_refused_field_by_field_with_nothing_written(api, facility, db: Database):
    woman = register(api, facility.slug)
    man = register(api, facility.slug, sex="male", given_names="Peter")
    girl = register(api, facility.slug, given_names="Akoth", birth_date=(DAY - dt.timedelta(days=8 * 365)).isoformat())
    before = rows(db, facility.slug)
    refused = [
        (man, booking(), "patient_id", "a man's"),
        (girl, booking(), "patient_id", "7 years old"),
        (woman, booking(lmp=None), "lmp", "first contact of a pregnancy"),
        (woman, booking(lmp=(DAY - dt.timedelta(weeks=60)).isoformat()), "lmp", "50 weeks"),
        (woman, booking(seen_on=(DAY + dt.timedelta(days=5)).isoformat()), "seen_on", "in the future"),
        (woman, booking(systolic_mmhg=400), "systolic_mmhg", "outside what is recorded"),
        (woman, booking(systolic_mmhg=80, diastolic_mmhg=120), "diastolic_mmhg", "wrong way round"),
        (woman, booking(systolic_mmhg=None), "systolic_mmhg", "both figures"),
        (woman, booking(haemoglobin_g_dl="110"), "haemoglobin_g_dl", "outside what is recorded"),
        (woman, booking(para=2), "para", "less than gravida"),
        # Without gravida to be less than, a para past any woman's was a 500 (the column's smallint overflowed).
        (woman, booking(gravida=None, para=10**15), "para", "outside what is recorded"),
        (woman, booking(iptp_dose=1), "iptp_dose", "first trimester"),
        (woman, booking(syphilis_treated=True), "syphilis_treated", "positive test"),
        (woman, booking(presentation="breech"), "presentation", "from 28 weeks"),
        (woman, booking(lmp=None, ultrasound_weeks=9), "ultrasound_on", "day of the scan"),
        (woman, booking(next_visit_on=booking()["seen_on"]), "next_visit_on", "after this contact"),
        # A year mistyped would stand in for the schedule's next contact and keep her off the overdue list for good.
        (woman, booking(next_visit_on=(DAY + dt.timedelta(days=366)).isoformat()), "next_visit_on", "45 weeks"),
    ]
    for patient_id, body, field, words in refused:
        answer = api.post(url(facility.slug, patient_id), json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json().get("field") == field and words in answer.json()["detail"], (field, answer.json())
    assert api.post(url(facility.slug, woman), json=booking(urine_protein="4+")).status_code == 422
    assert rows(db, facility.slug) == before


def test_a_woman_in_hiv_care_here_is_known_positive_at_a_contact_after_hiv_was_confirmed(api, facility,
                                                                                           db: Database):
    """A woman on ART recorded 'negative' (or as a new positive) at her booking read as untested or newly found on her
    card, beside her ART card saying otherwise: after the day HIV was confirmed here she is known positive."""
    woman = register(api, facility.slug, given_names="Halima")
    confirmed = DAY - dt.timedelta(weeks=30)
    enrolled = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{woman}/hiv", json={
        "enrolled_on": confirmed.isoformat(), "diagnosed_on": confirmed.isoformat(), "who_stage": 1,
        "tb_screening": "no_signs"})
    assert enrolled.status_code == 201, enrolled.text
    before = rows(db, facility.slug)
    for result in ("negative", "positive"):
        answer = api.post(url(facility.slug, woman), json=booking(hiv_test=result))
        assert answer.status_code == 422, answer.text
        assert (answer.json()["field"], answer.json()["detail"]) == (
            "hiv_test", f"this woman is enrolled in HIV care here, HIV confirmed on {confirmed.isoformat()}: record "
                        "her HIV status as known positive, not a new test's result")
    assert rows(db, facility.slug) == before
    # Each refusal told her enrolment and its day: a read of it on her access log, the contact refused all the same.
    told = [e for e in audit.patient_access_log(db, facility.slug, woman)
            if e.detail.get("told_by_refusal_of") == "antenatal"]
    assert [e.event_type for e in told] == ["record.hiv_care.read"] * 2
    assert api.post(url(facility.slug, woman), json=booking(hiv_test="known_positive")).status_code == 201


def test_contacts_make_one_pregnancy_its_card_and_the_clinic_list(api, token_client, facility, db: Database):
    woman = register(api, facility.slug, family_name="Atieno")
    first = api.post(url(facility.slug, woman), json=booking())
    assert first.status_code == 201, first.text
    booked = first.json()
    assert (booked["number"], booked["gestation"], booked["dated_by"]) == (1, "10+0", "lmp")
    assert booked["edd"] == (DAY + dt.timedelta(weeks=20)).isoformat() and booked["flags"] == []
    # A midwife (a nurse) records the next: no dating given, the open pregnancy's; pre-eclampsia at 20 weeks.
    nurse = token_client(facility.slug, role="nurse")
    second = nurse.post(url(facility.slug, woman), json={
        "seen_on": DAY.isoformat(), "systolic_mmhg": 150, "diastolic_mmhg": 95, "urine_protein": "2+",
        "haemoglobin_g_dl": "9.8", "syphilis_test": "positive", "danger_signs": ["severe_headache"],
        "next_visit_on": (DAY + dt.timedelta(days=7)).isoformat()})
    assert second.status_code == 201, second.text
    assert (second.json()["number"], second.json()["pregnancy_id"]) == (2, booked["id"])
    assert second.json()["flags"] == ["hypertension", "pre_eclampsia", "severe_features", "anaemia",
                                      "syphilis_untreated", "danger_signs"]
    card = api.get(url(facility.slug, woman))
    assert card.status_code == 200, card.text
    (pregnancy,) = card.json()["pregnancies"]
    assert (pregnancy["status"], pregnancy["edd"], pregnancy["gravida"], pregnancy["para"]) == \
        ("open", booked["edd"], 2, 1)
    today = dt.date.fromisoformat(card.json()["today"])
    assert pregnancy["gestation_days_today"] == 140 + (today - DAY).days
    assert [c["number"] for c in pregnancy["contacts"]] == [1, 2]
    assert [s["state"] for s in pregnancy["schedule"]] == ["kept", "kept", "due"] + ["upcoming"] * 5
    assert pregnancy["next_contact_on"] == (DAY + dt.timedelta(days=7)).isoformat()
    assert "syphilis_untreated" in pregnancy["flags"] and "pre_eclampsia" in pregnancy["flags"]
    clinic = nurse.get(f"{BASE.format(tenant=facility.slug)}/antenatal/clinic")
    assert clinic.status_code == 200, clinic.text
    (listed,) = [w for w in clinic.json()["women"] if w["patient_id"] == woman]
    assert (listed["contacts"], listed["pregnancy_id"], listed["flags"]) == (2, booked["id"], pregnancy["flags"])
    # Treated at the next contact: the flag goes; the correction of the second contact keeps its place.
    fix = {**second.json(), "reason": "pressure retaken after rest"}
    body = {k: fix[k] for k in ("seen_on", "urine_protein", "haemoglobin_g_dl", "syphilis_test", "reason")}
    corrected = api.put(url(facility.slug, woman, f"/{second.json()['id']}"),
                        json={**body, "systolic_mmhg": 130, "diastolic_mmhg": 84, "syphilis_treated": True})
    assert corrected.status_code == 200, corrected.text
    assert (corrected.json()["number"], corrected.json()["flags"]) == (2, ["anaemia"])
    stale = api.put(url(facility.slug, woman, f"/{second.json()['id']}"), json=body)
    assert stale.status_code == 409, stale.text
    withdrawn = api.post(url(facility.slug, woman, f"/{corrected.json()['id']}/entered-in-error"),
                         json={"reason": "recorded on the wrong woman"})
    assert withdrawn.status_code == 200, withdrawn.text
    assert [c["number"] for c in api.get(url(facility.slug, woman)).json()["pregnancies"][0]["contacts"]] == [1]
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, woman)}
    assert {"record.antenatal.create", "record.antenatal.read", "record.antenatal.amend", "record.antenatal.retract",
            "record.antenatal_clinic.read"} <= events


def test_a_delivery_ends_the_pregnancy_and_the_next_contact_starts_another(api, facility):
    woman = register(api, facility.slug, family_name="Chebet")
    term = {"seen_on": (DAY - dt.timedelta(weeks=3)).isoformat(), "lmp": (DAY - dt.timedelta(weeks=41)).isoformat()}
    assert api.post(url(facility.slug, woman), json=term).status_code == 201
    born_at = dt.datetime.combine(DAY - dt.timedelta(days=1), dt.time(9, 0), tzinfo=dt.UTC).isoformat()
    delivered = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{woman}/deliveries", json={
        "born_at": born_at, "gestation_weeks": 39, "gestation_days": 6, "mode": "spontaneous_vaginal",
        "babies": [{"outcome": "live_birth", "sex": "male", "weight_g": 3100, "apgar_1": 8, "apgar_5": 9}],
        "blood_loss_ml": 250, "uterotonic": "oxytocin"})
    assert delivered.status_code == 201, delivered.text
    (pregnancy,) = api.get(url(facility.slug, woman)).json()["pregnancies"]
    assert pregnancy["status"] == "delivered" and pregnancy["ended_by"]["delivery_id"] == delivered.json()["root_id"]
    assert pregnancy["schedule"] == [] and pregnancy["gestation_today"] is None
    # Seen after the birth without a dating: a new pregnancy, which must be dated.
    undated = api.post(url(facility.slug, woman), json={"seen_on": DAY.isoformat()})
    assert undated.status_code == 422 and undated.json()["field"] == "lmp", undated.text
    clinic = api.get(f"{BASE.format(tenant=facility.slug)}/antenatal/clinic").json()
    assert woman not in [w["patient_id"] for w in clinic["women"]]
    # A woman who died: off the clinic's list, and no contact on or after the day of her death.
    died = register(api, facility.slug, family_name="Kerubo")
    assert api.post(url(facility.slug, died), json=booking()).status_code == 201
    assert woman_listed(api, facility.slug, died)
    certified = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{died}/death", json={
        "died_at": dt.datetime.combine(DAY, dt.time(9), tzinfo=dt.UTC).isoformat(), "place": "this_facility",
        "part1": [{"code": "O15.0", "interval": "6 hours"}], "manner": "disease", "pregnancy": "pregnant"})
    assert certified.status_code == 201, certified.text
    assert not woman_listed(api, facility.slug, died)
    after = api.post(url(facility.slug, died), json={"seen_on": DAY.isoformat()})
    assert after.status_code == 422 and after.json()["field"] == "seen_on", after.text


def woman_listed(api, tenant: str, patient_id: str) -> bool:
    return patient_id in [w["patient_id"] for w in api.get(f"{BASE.format(tenant=tenant)}/antenatal/clinic").json()
                          ["women"]]


def test_severe_features_on_a_ward_raise_the_escalation_task(api, token_client, facility):
    woman = register(api, facility.slug, family_name="Nduta")
    stay = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{woman}/encounters",
                    json={"encounter_class": "inpatient", "status": "in_progress", "ward_code": "GEN"})
    assert stay.status_code == 201, stay.text
    seen = api.post(url(facility.slug, woman), json=booking(
        seen_on=DAY.isoformat(), lmp=(DAY - dt.timedelta(weeks=34)).isoformat(), systolic_mmhg=164,
        diastolic_mmhg=112, urine_protein="3+", encounter_id=stay.json()["id"]))
    assert seen.status_code == 201, seen.text
    tasks = token_client(facility.slug, role="nurse").get(f"{BASE.format(tenant=facility.slug)}/patients/{woman}/tasks")
    (escalation,) = [t for t in tasks.json() if t["code"] == "escalation"]
    assert escalation["title"].startswith("Severe features of pre-eclampsia") and escalation["ward_code"] == "GEN"


def test_other_facilities_guessed_ids_a_mans_record_and_other_roles_are_refused(api, token_client, facility,
                                                                                other_facility, db: Database):
    woman = register(api, facility.slug, family_name="Njeri")
    other_woman = register(api, facility.slug, family_name="Muthoni")
    man = register(api, facility.slug, sex="male", given_names="John")
    contact = api.post(url(facility.slug, woman), json=booking()).json()
    elsewhere = token_client(other_facility.slug, role="clinician")
    before = rows(db, facility.slug)
    fix = {"seen_on": contact["seen_on"], "lmp": contact["lmp"], "reason": "a guess"}
    for client, tenant in ((elsewhere, facility.slug), (elsewhere, other_facility.slug)):
        assert client.get(url(tenant, woman)).status_code in (403, 404)
        assert client.post(url(tenant, woman), json=booking()).status_code in (403, 404)
        assert client.put(url(tenant, woman, f"/{contact['id']}"), json=fix).status_code in (403, 404)
        assert client.post(url(tenant, woman, f"/{contact['id']}/entered-in-error"),
                           json={"reason": "a guess"}).status_code in (403, 404)
    assert woman not in [w["patient_id"] for w in elsewhere.get(
        f"{BASE.format(tenant=other_facility.slug)}/antenatal/clinic").json()["women"]]
    assert elsewhere.get(f"{BASE.format(tenant=facility.slug)}/antenatal/clinic").status_code in (403, 404)
    # Guessed ids, another woman's address for her contact, and a man's record.
    assert api.get(url(facility.slug, GUESS)).status_code == 404
    assert api.post(url(facility.slug, GUESS), json=booking()).status_code == 404
    assert api.put(url(facility.slug, woman, f"/{GUESS}"), json=fix).status_code == 404
    assert api.put(url(facility.slug, other_woman, f"/{contact['id']}"), json=fix).status_code == 404
    assert api.post(url(facility.slug, other_woman, f"/{contact['id']}/entered-in-error"),
                    json={"reason": "a guess"}).status_code == 404
    assert api.post(url(facility.slug, man), json=booking()).status_code == 422
    # A registrar (no clinical content) may do none of it.
    registrar = token_client(facility.slug, role="registrar")
    assert registrar.get(url(facility.slug, woman)).status_code == 403
    assert registrar.post(url(facility.slug, woman), json=booking()).status_code == 403
    assert registrar.get(f"{BASE.format(tenant=facility.slug)}/antenatal/clinic").status_code == 403
    assert rows(db, facility.slug) == before


def test_the_demo_fills_the_antenatal_clinic_once(other_facility, db):
    """The demo (appliance/layers/clinical/antenatal_demo.py), at the other facility, whose only patients are these:
    five women with contacts, one with severe features, one anaemic, one overdue with syphilis untreated, one
    delivered (her card says so, and she is off the clinic list); a second run writes nothing."""
    clinic = other_facility
    author = demo_principal(clinic.slug)
    with db.tenant(clinic.slug) as conn:
        for n in range(6):
            new_patient(conn, author, family_name=f"Woman{n}", birth_date=dt.date.today() - dt.timedelta(days=9000 + n),
                        identifiers=[{"system": "national_id", "value": uuid.uuid4().hex[:10]}])
        new_patient(conn, author, family_name="Man", sex="male")
    written = generate_antenatal_demo(db, [clinic.slug])
    assert written == {"antenatal": 17, "delivery": 1}
    zone = zoneinfo.ZoneInfo(clinic.timezone)
    today = dt.datetime.now(zone).date()
    with db.tenant(clinic.slug) as conn:
        listed = antenatal.clinic(conn, author, today=today, tz=zone)["women"]
        flags = sorted(flag for w in listed for flag in w["flags"])
        cards = [antenatal.card(conn, author, w, today=today, tz=zone)["pregnancies"][0]
                 for w in {c["patient_id"] for c in antenatal.contacts_of(conn, [w["patient_id"] for w in listed],
                                                                          zone)}]
        delivered = [p for p in (antenatal.card(conn, author, c["patient_id"], today=today, tz=zone)["pregnancies"][0]
                                 for c in antenatal.contacts_of(conn, _everyone(conn), zone)) if p["ended_by"]]
    assert len(listed) == 4 and "Man" not in {w["family_name"] for w in listed}
    assert {"severe_features", "pre_eclampsia", "anaemia", "syphilis_untreated"} <= set(flags)
    assert any(w["overdue"] for w in listed) and all(c["status"] == "open" for c in cards)
    assert delivered and delivered[0]["status"] == "delivered"
    # Each woman's weight rises through her pregnancy, by no more than a pregnancy adds in the weeks between.
    for pregnancy in cards + delivered:
        weighed = [(c["gestation_days"], float(c["weight_kg"])) for c in pregnancy["contacts"]]
        for (before_days, before_kg), (after_days, after_kg) in itertools.pairwise(weighed):
            assert 0 <= after_kg - before_kg <= (after_days - before_days) / 7 * 0.5 + 0.3, weighed
    assert generate_antenatal_demo(db, [clinic.slug]) == {}


def _everyone(conn) -> list[uuid.UUID]:
    return list(conn.exec_driver_sql("SELECT id FROM patient").scalars())


def test_iptp_doses_are_a_month_apart_and_each_number_given_once(api, facility, db: Database):
    """WHO: IPTp-SP from 13 weeks at each contact, doses at least a month apart. A second dose a fortnight after the
    first, or dose 1 recorded again, was written as any other contact."""
    woman = register(api, facility.slug, family_name="Achieng")
    first = api.post(url(facility.slug, woman), json=booking(seen_on=(DAY - dt.timedelta(weeks=4)).isoformat(),
                                                             iptp_dose=1))
    assert first.status_code == 201, first.text
    before = rows(db, facility.slug)
    for body, words in (({"seen_on": (DAY - dt.timedelta(weeks=2)).isoformat(), "iptp_dose": 2}, "4 weeks apart"),
                        ({"seen_on": DAY.isoformat(), "iptp_dose": 1}, "already recorded")):
        refused = api.post(url(facility.slug, woman), json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "iptp_dose" and words in refused.json()["detail"], refused.json()
    assert rows(db, facility.slug) == before
    second = api.post(url(facility.slug, woman), json={"seen_on": DAY.isoformat(), "iptp_dose": 2})
    assert second.status_code == 201, second.text
    # A correction of the dose's own contact is not refused by the dose it corrects.
    fixed = api.put(url(facility.slug, woman, f"/{second.json()['id']}"),
                    json={"seen_on": DAY.isoformat(), "iptp_dose": 2, "weight_kg": "63.0", "reason": "weight taken"})
    assert fixed.status_code == 200, fixed.text
