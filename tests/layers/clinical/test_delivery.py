"""Births over HTTP and in the record: the delivery's refusals (nothing written, no one-identity person made), the
live-born baby registered with its birth weight and its mother, a stillborn baby on the delivery only, the delivery
on the mother's stay with the ward's newborn checks, what a correction may and may not change (no baby twice), and
other facilities' credentials, guessed ids and roles without the permission refused on every route."""

from __future__ import annotations

import datetime as dt
import json
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import delivery as births
from appliance.layers.clinical import service
from appliance.layers.clinical.errors import Invalid
from appliance.layers.clinical.schemas import DeliveryIn
from appliance.substrate import audit
from appliance.substrate.db import Database
from appliance.substrate.tenancy import tenant_schema
from tests.layers.clinical.conftest import second_writer_waits

BASE = "/api/t/{tenant}"
GUESS = str(uuid.uuid4())


def register(api, tenant: str, **overrides) -> str:
    body = {"family_name": "Otieno", "given_names": "Achieng", "birth_date": "1996-05-02", "sex": "female",
            "phone": "+254700111222", "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}
    body.update(overrides)
    response = api.post(f"{BASE.format(tenant=tenant)}/patients", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def baby(**overrides) -> dict:
    return {"outcome": "live_birth", "sex": "female", "weight_g": 3200, "apgar_1": 8, "apgar_5": 9,
            "resuscitation": "none", **overrides}


def delivery(**overrides) -> dict:
    body = {"born_at": (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(microsecond=0).isoformat(),
            "gestation_weeks": 39, "gestation_days": 2, "mode": "spontaneous_vaginal", "babies": [baby()],
            "blood_loss_ml": 300, "uterotonic": "oxytocin"}
    body.update(overrides)
    return body


def url(tenant: str, patient_id: str, rest: str = "") -> str:
    return f"{BASE.format(tenant=tenant)}/patients/{patient_id}/deliveries{rest}"


def weights(db: Database, tenant: str, patient_id: str) -> list[float]:
    """The birth weights in force on a baby's chart, kg."""
    with db.tenant(tenant) as conn:
        return [float(w) for w in conn.execute(sa.text(
            "SELECT v.weight_kg FROM entry x JOIN vital_signs v ON v.entry_id = x.id WHERE x.patient_id = :p "
            "AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)"), {"p": patient_id}).scalars()]


def last_seq(db: Database, tenant: str) -> int:
    with db.control() as conn:
        return conn.execute(sa.text(
            f'SELECT coalesce(max(seq), 0) FROM "{tenant_schema(tenant)}".audit_event')).scalar()


def counts(db: Database, tenant: str) -> tuple[int, int, int]:
    with db.tenant(tenant) as conn:
        here = conn.execute(sa.text("SELECT (SELECT count(*) FROM entry), (SELECT count(*) FROM patient)")).one()
    with db.control() as conn:
        subjects = conn.execute(sa.text("SELECT count(*) FROM control.subject")).scalar()
    return (*here, subjects)


@pytest.fixture
def api(token_client, facility):
    return token_client(facility.slug, role="clinician")


def test_a_delivery_is_refused_field_by_field_with_nothing_written(api, facility, db: Database):
    mother = register(api, facility.slug)
    man = register(api, facility.slug, sex="male", given_names="Peter")
    girl = register(api, facility.slug, given_names="Atieno",
                    birth_date=(dt.date.today() - dt.timedelta(days=8 * 365 + 30)).isoformat())
    before = counts(db, facility.slug)
    refusals = [
        (man, delivery(), "patient_id", "man's"),
        (girl, delivery(), "patient_id", "8 years old"),
        (mother, delivery(born_at=(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()), "born_at", "future"),
        (mother, delivery(born_at="1990-01-01T10:00:00+03:00"), "born_at", "mother's own date of birth"),
        (mother, delivery(babies=[baby(outcome="fresh_stillbirth")]), "babies.0.apgar_1", "no Apgar"),
        (mother, delivery(babies=[baby(apgar_5=None)]), "babies.0.apgar_5", "Apgar score at 5 minutes"),
        (mother, delivery(babies=[baby(), baby(weight_g=3)]), "babies.1.weight_g", "in grams"),
        (mother, delivery(babies=[baby(weight_g=12000)]), "babies.0.weight_g", "12000 g"),
        (mother, delivery(gestation_weeks=20), "gestation_weeks", "miscarriage"),
        (mother, delivery(gestation_days=7), "gestation_days", "0 to 6"),
        (mother, delivery(blood_loss_ml=9000), "blood_loss_ml", "millilitres"),
        (mother, delivery(babies=[baby(apgar_1=11)]), "babies.0.apgar_1", "0 to 10"),
        (mother, delivery(born_at="2026-03-01T04:30:00"), None, "UTC offset"),
        (mother, delivery(mode="water_birth"), None, "mode"),
        (mother, delivery(babies=[]), None, "babies"),
        (mother, delivery(encounter_id=GUESS), "encounter_id", "not an encounter of this patient"),
    ]
    for patient_id, body, field, words in refusals:
        refused = api.post(url(facility.slug, patient_id), json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert words in refused.json()["detail"], refused.json()
        if field:
            assert refused.json()["field"] == field
    # No entry, no chart and no one-identity person: the delivery is checked before any baby is made.
    assert counts(db, facility.slug) == before


def test_twins_one_stillborn_the_live_baby_registered_with_its_mother(api, facility, db: Database):
    mother = register(api, facility.slug, family_name="Wanjiru", given_names="Grace")
    before = counts(db, facility.slug)
    answer = api.post(url(facility.slug, mother), json=delivery(
        gestation_weeks=35, mode="caesarean", blood_loss_ml=650, uterotonic="carbetocin",
        babies=[baby(sex="male", weight_g=2450, apgar_1=6, apgar_5=8, resuscitation="stimulation"),
                baby(outcome="fresh_stillbirth", weight_g=2100, apgar_1=None, apgar_5=None)]))
    assert answer.status_code == 201, answer.text
    born = answer.json()
    assert born["preterm"] is True and born["postpartum_haemorrhage"] is True and born["mode"] == "caesarean"
    live, still = born["babies"]
    assert (live["number"], live["low_birth_weight"], still["patient_id"]) == (1, True, None)
    # One chart (the live baby), two entries on it (registration, birth weight), one delivery, one person.
    entries, patients, subjects = counts(db, facility.slug)
    assert (patients, subjects) == (before[1] + 1, before[2] + 1)
    assert entries == before[0] + 3

    chart = api.get(f"{BASE.format(tenant=facility.slug)}/patients/{live['patient_id']}").json()
    assert (chart["given_names"], chart["family_name"], chart["sex"]) == ("Baby 1 of", "Wanjiru", "male")
    nairobi = dt.datetime.fromisoformat(born["born_at"]).astimezone(zoneinfo.ZoneInfo("Africa/Nairobi"))
    assert chart["birth_date"] == nairobi.date().isoformat()  # the day of birth on the facility's calendar
    assert chart["subject_id"] is not None
    assert chart["next_of_kin"] == [{"name": "Grace Wanjiru", "relationship": "mother", "phone": "+254700111222"}]
    assert weights(db, facility.slug, live["patient_id"]) == [2.45]  # as weighed, to the gram (not 2.4 kg)

    seq = last_seq(db, facility.slug)
    seen = api.get(url(facility.slug, live["patient_id"])).json()
    assert seen["deliveries"] == [] and seen["born_to"]["mother_id"] == mother
    assert seen["born_to"]["mother_name"] == "Grace Wanjiru" and seen["born_to"]["number"] == 1
    mine = api.get(url(facility.slug, mother)).json()
    assert [d["id"] for d in mine["deliveries"]] == [born["id"]] and mine["born_to"] is None
    events = audit.read_events(db, facility.slug, first_seq=seq + 1, event_type="record.delivery.read")
    # The baby's chart names its mother: that read is in the mother's access log, as well as the baby's.
    read_of = [json.dumps(e["event"]) for e in events]
    assert any(f"Patient/{mother}" in body and "newborn_chart" in body for body in read_of), read_of
    assert any(f"Patient/{live['patient_id']}" in body for body in read_of), read_of


def test_a_delivery_belongs_to_the_mothers_stay_and_the_ward_checks_the_newborns(api, token_client, facility):
    mother = register(api, facility.slug, family_name="Akinyi")
    stay = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{mother}/encounters",
                    json={"encounter_class": "inpatient", "status": "in_progress", "ward_code": "GEN"})
    assert stay.status_code == 201, stay.text
    born = api.post(url(facility.slug, mother), json=delivery(babies=[baby(), baby(sex="male")]))
    assert born.status_code == 201, born.text
    assert born.json()["encounter_id"] == stay.json()["id"]
    nurse = token_client(facility.slug, role="nurse")
    tasks = nurse.get(f"{BASE.format(tenant=facility.slug)}/patients/{mother}/tasks")
    assert tasks.status_code == 200, tasks.text
    (checks,) = [t for t in tasks.json() if t["code"] == "newborn_checks"]
    assert checks["title"] == "Newborn checks (2 babies)" and checks["ward_code"] == "GEN"
    due = dt.datetime.fromisoformat(checks["due_at"]) - dt.datetime.fromisoformat(born.json()["born_at"])
    assert due == dt.timedelta(hours=1)
    # A correction checks no baby again.
    fix = {**delivery(born_at=born.json()["born_at"], babies=[baby(), baby(sex="male")], blood_loss_ml=400),
           "reason": "blood loss measured", "version_id": born.json()["id"]}
    assert api.put(url(facility.slug, mother, f"/{born.json()['id']}"), json=fix).status_code == 200
    again = nurse.get(f"{BASE.format(tenant=facility.slug)}/patients/{mother}/tasks")
    assert [t["code"] for t in again.json()].count("newborn_checks") == 1
    # The babies are on the ward with her (so her carers may open their charts), and leave when she does.
    babies = [b["patient_id"] for b in born.json()["babies"]]
    encounters = lambda patient_id: api.get(  # noqa: E731
        f"{BASE.format(tenant=facility.slug)}/patients/{patient_id}/encounters").json()
    assert [(e["encounter_class"], e["status"], e["ward_code"]) for b in babies for e in encounters(b)] == \
        [("inpatient", "in_progress", "GEN")] * 2
    # Lying beside her, not admitted: no admission assessment of their own (her newborn checks are the ward's).
    assert [nurse.get(f"{BASE.format(tenant=facility.slug)}/patients/{b}/tasks").json() for b in babies] == [[], []]
    ended = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{mother}/encounters/{stay.json()['id']}/status",
                     json={"status": "finished"})
    assert ended.status_code == 200, ended.text
    assert [e["status"] for b in babies for e in encounters(b)] == ["finished"] * 2


def test_a_correction_changes_the_delivery_never_the_babies(api, facility, db: Database):
    mother = register(api, facility.slug, family_name="Chebet")
    born = api.post(url(facility.slug, mother), json=delivery(babies=[baby(), baby(sex="male", weight_g=2900)]))
    assert born.status_code == 201, born.text
    first = born.json()
    first_baby, second_baby = (b["patient_id"] for b in first["babies"])
    before = counts(db, facility.slug)
    fix = delivery(born_at=first["born_at"], babies=[baby(), baby(sex="male", weight_g=2290)], blood_loss_ml=550)
    refused = [
        (delivery(born_at=first["born_at"], babies=[baby()]), "babies", "how many"),
        (delivery(born_at=first["born_at"], babies=[baby(), baby(outcome="macerated_stillbirth", sex="male",
                                                                  apgar_1=None, apgar_5=None)]),
         "babies.1.outcome", "born alive"),
        (delivery(born_at=first["born_at"], babies=[baby(), baby(sex="female")]), "babies.1.sex", "registration"),
        ({**fix, "born_at": (dt.datetime.fromisoformat(first["born_at"]) - dt.timedelta(days=2)).isoformat()},
         "born_at", "day of birth"),
    ]
    for body, field, words in refused:
        answer = api.put(url(facility.slug, mother, f"/{first['id']}"),
                         json={**body, "reason": "typed in haste", "version_id": first["id"]})
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field and words in answer.json()["detail"], answer.json()
    assert counts(db, facility.slug) == before

    corrected = api.put(url(facility.slug, mother, f"/{first['id']}"),
                        json={**fix, "reason": "weighed again on the calibrated scale", "version_id": first["id"]})
    assert corrected.status_code == 200, corrected.text
    now = corrected.json()
    assert now["root_id"] == first["id"] and now["id"] != first["id"] and now["blood_loss_ml"] == 550
    assert [b["patient_id"] for b in now["babies"]] == [first_baby, second_baby]
    assert now["babies"][1]["low_birth_weight"] is True
    # No baby twice: the same charts, and the second baby's birth weight corrected on its own chart.
    assert counts(db, facility.slug)[1:] == before[1:]
    assert weights(db, facility.slug, second_baby) == [2.29]
    stale = api.put(url(facility.slug, mother, f"/{first['id']}"),
                    json={**fix, "reason": "again", "version_id": first["id"]})
    assert stale.status_code == 409, stale.text
    assert len(api.get(url(facility.slug, mother)).json()["deliveries"]) == 1


def test_other_facilities_guessed_ids_and_other_roles_are_refused(api, token_client, facility, other_facility,
                                                                  db: Database):
    mother = register(api, facility.slug, family_name="Njeri")
    other_mother = register(api, facility.slug, family_name="Muthoni")
    born = api.post(url(facility.slug, mother), json=delivery()).json()
    elsewhere = token_client(other_facility.slug, role="clinician")
    before = counts(db, facility.slug)
    fix = {**delivery(born_at=born["born_at"]), "reason": "a guess", "version_id": born["id"]}
    # Another facility's credentials, on this facility's address and on its own with this facility's ids.
    for client, tenant in ((elsewhere, facility.slug), (elsewhere, other_facility.slug)):
        assert client.get(url(tenant, mother)).status_code in (403, 404)
        assert client.post(url(tenant, mother), json=delivery()).status_code in (403, 404)
        assert client.get(url(tenant, mother, f"/{born['id']}")).status_code in (403, 404)
        assert client.put(url(tenant, mother, f"/{born['id']}"), json=fix).status_code in (403, 404)
    # Guessed ids: a patient, a delivery, and a delivery of another mother's.
    assert api.get(url(facility.slug, GUESS)).status_code == 404
    assert api.post(url(facility.slug, GUESS), json=delivery()).status_code == 404
    assert api.get(url(facility.slug, mother, f"/{GUESS}")).status_code == 404
    assert api.get(url(facility.slug, other_mother, f"/{born['id']}")).status_code == 404
    assert api.put(url(facility.slug, other_mother, f"/{born['id']}"), json=fix).status_code == 404
    assert api.put(url(facility.slug, mother, f"/{born['id']}"), json={**fix, "version_id": GUESS}).status_code == 404
    # A registrar (no clinical content) may do none of it; a nurse (a midwife) may.
    registrar = token_client(facility.slug, role="registrar")
    assert registrar.get(url(facility.slug, mother)).status_code == 403
    assert registrar.post(url(facility.slug, mother), json=delivery()).status_code == 403
    assert counts(db, facility.slug) == before
    nurse = token_client(facility.slug, role="nurse")
    assert nurse.post(url(facility.slug, other_mother), json=delivery()).status_code == 201


def test_a_delivery_on_the_wrong_mother_is_entered_in_error_and_its_baby_linked_to_the_right_one(
        api, token_client, facility, other_facility, db: Database):
    wrong = register(api, facility.slug, family_name="Kariuki", given_names="Mary")
    right = register(api, facility.slug, family_name="Mwangi", given_names="Grace")
    for mother in (wrong, right):
        stay = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{mother}/encounters",
                        json={"encounter_class": "inpatient", "status": "in_progress", "ward_code": "GEN"})
        assert stay.status_code == 201, stay.text
    born = api.post(url(facility.slug, wrong), json=delivery()).json()
    [chart] = [b["patient_id"] for b in born["babies"]]
    withdraw = url(facility.slug, wrong, f"/{born['id']}/entered-in-error")
    because = {"reason": "recorded on the woman in the next bed"}

    # Refusals, nothing written: the record's own route (which would leave the baby born to her), no reason,
    # another facility, guessed ids and another mother's address, a registrar.
    before = counts(db, facility.slug)
    generic = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{wrong}/entries/{born['id']}/entered-in-error",
                       json=because)
    assert generic.status_code == 422 and "on the delivery itself" in generic.json()["detail"], generic.text
    assert api.post(withdraw, json={"reason": ""}).status_code == 422
    elsewhere = token_client(other_facility.slug, role="clinician")
    assert elsewhere.post(withdraw, json=because).status_code in (403, 404)
    assert elsewhere.post(url(other_facility.slug, wrong, f"/{born['id']}/entered-in-error"),
                          json=because).status_code in (403, 404)
    assert api.post(url(facility.slug, wrong, f"/{GUESS}/entered-in-error"), json=because).status_code == 404
    assert api.post(url(facility.slug, GUESS, f"/{born['id']}/entered-in-error"), json=because).status_code == 404
    assert api.post(url(facility.slug, right, f"/{born['id']}/entered-in-error"), json=because).status_code == 404
    assert token_client(facility.slug, role="registrar").post(withdraw, json=because).status_code == 403
    assert counts(db, facility.slug) == before

    withdrawn = api.post(withdraw, json=because)
    assert withdrawn.status_code == 200, withdrawn.text
    outcome = withdrawn.json()
    assert outcome["entry_status"] == "entered_in_error" and outcome["babies"] == [chart]
    assert "record the delivery on the mother's record naming each baby's chart" in outcome["next_steps"]
    assert api.post(withdraw, json=because).status_code == 404  # in force no more
    # The baby is kept, born to no one, off her ward; her newborn checks are off the ward's list.
    assert api.get(f"{BASE.format(tenant=facility.slug)}/patients/{chart}").status_code == 200
    assert api.get(url(facility.slug, wrong)).json()["deliveries"] == []
    assert api.get(url(facility.slug, chart)).json()["born_to"] is None
    encounters = lambda patient_id: [(e["status"], e["ward_code"]) for e in api.get(  # noqa: E731
        f"{BASE.format(tenant=facility.slug)}/patients/{patient_id}/encounters").json()]
    assert encounters(chart) == [("finished", "GEN")]
    tasks = token_client(facility.slug, role="nurse").get(f"{BASE.format(tenant=facility.slug)}/patients/{wrong}/tasks")
    assert [t["status"] for t in tasks.json() if t["code"] == "newborn_checks"] == ["cancelled"]

    # Recorded on the right mother naming the chart: linked, not registered again; a guessed chart is refused.
    guessed = api.post(url(facility.slug, right), json=delivery(born_at=born["born_at"],
                                                                babies=[baby(patient_id=GUESS)]))
    assert guessed.status_code == 422 and guessed.json()["field"] == "babies.0.patient_id", guessed.text
    patients = counts(db, facility.slug)[1]
    again = api.post(url(facility.slug, right), json=delivery(born_at=born["born_at"],
                                                              babies=[baby(patient_id=chart, weight_g=3050)]))
    assert again.status_code == 201, again.text
    assert [b["patient_id"] for b in again.json()["babies"]] == [chart]
    assert counts(db, facility.slug)[1] == patients
    assert api.get(url(facility.slug, chart)).json()["born_to"]["mother_id"] == right
    assert sorted(encounters(chart)) == [("finished", "GEN"), ("in_progress", "GEN")]
    assert weights(db, facility.slug, chart) == [3.05]
    # Born to her now, the chart cannot be named for another delivery.
    twice = api.post(url(facility.slug, wrong), json=delivery(born_at=born["born_at"], babies=[baby(patient_id=chart)]))
    assert twice.status_code == 422 and "left born to no one" in twice.json()["detail"], twice.text


def test_a_birth_weeks_before_her_stay_is_not_put_on_it(api, token_client, facility):
    """A mother admitted for malaria whose delivery three weeks before is recorded now: her baby, three weeks old,
    was put beside her on the ward as 'born here' and the ward given newborn checks overdue since the birth."""
    mother = register(api, facility.slug, family_name="Mwangi")
    stay = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{mother}/encounters",
                    json={"encounter_class": "inpatient", "status": "in_progress", "ward_code": "GEN"})
    assert stay.status_code == 201, stay.text
    weeks_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=21)).replace(microsecond=0).isoformat()
    born = api.post(url(facility.slug, mother), json=delivery(born_at=weeks_ago))
    assert born.status_code == 201, born.text
    assert born.json()["encounter_id"] is None
    (newborn,) = [b["patient_id"] for b in born.json()["babies"]]
    assert api.get(f"{BASE.format(tenant=facility.slug)}/patients/{newborn}/encounters").json() == []
    nurse = token_client(facility.slug, role="nurse")
    tasks = nurse.get(f"{BASE.format(tenant=facility.slug)}/patients/{mother}/tasks")
    assert [t["code"] for t in tasks.json() if t["code"] == "newborn_checks"] == []


def test_the_same_birth_recorded_twice_is_refused_and_registers_no_baby_again(api, facility, db: Database):
    """Two midwives on one night, or a form sent twice: a second delivery hours after the first registered each baby
    again. No woman gives birth twice within 22 weeks, so it is refused naming the birth already recorded, nothing
    written; corrected, the delivery is not refused by itself, and withdrawn, it leaves room to record it again."""
    mother = register(api, facility.slug, family_name="Kamau")
    first = api.post(url(facility.slug, mother), json=delivery())
    assert first.status_code == 201, first.text
    before = counts(db, facility.slug)
    later = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    again = api.post(url(facility.slug, mother), json=delivery(born_at=later))
    assert again.status_code == 422, again.text
    assert again.json()["field"] == "born_at" and "already recorded" in again.json()["detail"], again.json()
    assert counts(db, facility.slug) == before
    fix = {**delivery(born_at=first.json()["born_at"], blood_loss_ml=350), "reason": "blood loss re-estimated",
           "version_id": first.json()["id"]}
    assert api.put(url(facility.slug, mother, f"/{first.json()['id']}"), json=fix).status_code == 200
    withdrawn = api.post(url(facility.slug, mother, f"/{first.json()['id']}/entered-in-error"),
                         json={"reason": "a baby left out: recorded again with both"})
    assert withdrawn.status_code == 200, withdrawn.text
    assert api.post(url(facility.slug, mother), json=delivery(born_at=later)).status_code == 201


def test_two_deliveries_at_once_are_checked_one_after_the_other(api, db: Database, facility, clinician):
    """The first delivery holds the mother's lock until it commits; the second, sent at once (two midwives, a form
    sent twice), waits for it, then reads the first and is refused: one delivery, each baby registered once."""
    mother = uuid.UUID(register(api, facility.slug, family_name="Wekesa"))
    data = DeliveryIn.model_validate(delivery())
    outcome: dict[str, str] = {}

    def write(conn) -> None:
        found = births.check(conn, mother, data)
        babies = [service.with_subject(db, baby, tenant=facility.slug, chart_conn=conn)
                  for baby in births.newborns(found, data)]
        births.record_delivery(conn, clinician, mother, data, babies)

    def second() -> None:
        try:
            with db.tenant(facility.slug) as conn:
                write(conn)
            outcome["second"] = "written"
        except Invalid as exc:
            outcome["second"] = exc.detail

    with db.tenant(facility.slug) as first:
        write(first)
        waiting = second_writer_waits(db, second)
    waiting.join(10)
    assert "already recorded" in outcome["second"], outcome
    assert len(api.get(url(facility.slug, str(mother))).json()["deliveries"]) == 1
