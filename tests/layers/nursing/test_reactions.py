"""What the nursing layer writes when other entries are appended: NEWS2 from vital signs, the next
observations and escalations, specimen collection from laboratory orders, the admission assessment."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import delivery
from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import (
    BabyIn,
    ConditionIn,
    DeliveryIn,
    EncounterIn,
    MedicationIn,
    ResultIn,
    ServiceRequestIn,
)
from appliance.layers.nursing import reactions, service
from appliance.layers.nursing.errors import Conflict, Invalid
from appliance.substrate import audit, record
from tests.conftest import facility_today
from tests.layers.nursing.conftest import HIGH, NORMAL, TZ, admit, vitals


def _scores(conn, patient_id):
    return service.scores_of(conn, [patient_id])


def _tasks(conn, patient_id, **filters):
    """The patient's tasks but those their admission to the ward asked for (the assessment, the first set)."""
    return [t for t in service.tasks_of(conn, [patient_id], **filters) if t["source_kind"] not in reactions.ADMITTED_BY]


def test_vital_signs_are_scored_in_the_same_transaction(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
        recorded = vitals(conn, nurse, patient, HIGH)
        [score] = _scores(conn, patient["id"])
    assert score["vital_signs_id"] == recorded["id"]
    assert (score["total"], score["risk"], score["escalation"], score["complete"]) == (9, "high", True, True)
    assert score["scores"] == {"respiration": 3, "spo2": 2, "air_or_oxygen": 2, "systolic": 0, "pulse": 2,
                               "consciousness": 0, "temperature": 0}
    assert score["occurred_at"] == recorded["occurred_at"]
    assert score["next_due_at"] - score["occurred_at"] == dt.timedelta(minutes=15)
    assert score["author_id"] == nurse.account_id


def test_a_failed_vitals_write_leaves_no_score(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
    with pytest.raises(RuntimeError), db.tenant(facility.slug) as conn:
        vitals(conn, nurse, patient, HIGH)
        raise RuntimeError("the request failed after the write")
    with db.tenant(facility.slug) as conn:
        assert _scores(conn, patient["id"]) == []
        assert _tasks(conn, patient["id"]) == []
        assert [t["status"] for t in service.tasks_of(conn, [patient["id"]])] == ["open", "open"]  # the admission's


def test_scale_2_is_used_when_the_set_says_so(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
        vitals(conn, nurse, patient, NORMAL | {"spo2_percent": 89, "supplemental_oxygen": False, "spo2_scale": 2})
        vitals(conn, nurse, patient, NORMAL | {"spo2_percent": 89, "supplemental_oxygen": False})
        on_scale_1, on_scale_2 = _scores(conn, patient["id"])
    assert (on_scale_2["spo2_scale"], on_scale_2["scores"]["spo2"], on_scale_2["total"]) == (2, 0, 0)
    assert (on_scale_1["spo2_scale"], on_scale_1["scores"]["spo2"], on_scale_1["risk"]) == (1, 3, "low_medium")


def test_weight_only_sets_are_not_scored(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        adult = admit(conn, nurse)
        vitals(conn, nurse, adult, {"weight_kg": Decimal("71.5")})
        child = admit(conn, nurse, born=dt.date.today() - dt.timedelta(days=365 * 8))
        vitals(conn, nurse, child, {"weight_kg": Decimal("24.0"), "temperature_c": Decimal("38.9")})
        assert _scores(conn, adult["id"]) == [] and _pews(conn, child["id"]) == []


def _pews(conn, patient_id):
    return service.scores_of(conn, [patient_id], "pews")


def test_a_child_is_scored_by_pews_never_news2_and_a_trigger_escalates(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        # Two years and a month old on the day: the 1–4 years band.
        toddler = admit(conn, nurse, family="Otieno", given="Baraka",
                        born=dt.date.today() - dt.timedelta(days=2 * 365 + 31))
        calm = vitals(conn, nurse, toddler, {"heart_rate_bpm": 110, "systolic_mmhg": 100, "respiratory_rate": 28,
                                             "spo2_percent": 98, "supplemental_oxygen": False})
        [clear] = _pews(conn, toddler["id"])
        assert (clear["vital_signs_id"], clear["age_band"], clear["total"], clear["risk"]) == (
            calm["id"], "1-4y", 0, "low")
        assert clear["next_due_at"] - clear["occurred_at"] == dt.timedelta(hours=4)
        assert [(t["code"], t["title"]) for t in _tasks(conn, toddler["id"], open_only=True)] == [
            ("observations", "Observations due (last PEWS 0; at least every 4 hours)")]

        # The adult chart's HIGH set (NEWS2 9): pulse 118 is 0 at two, systolic 122 is 1, respiration 26 is 0,
        # SpO2 92 is 1, oxygen without its flow is 2 — PEWS 4, below the trigger; at 6 L/min with a pulse of
        # 152, 8.
        vitals(conn, nurse, toddler, HIGH)
        assert _pews(conn, toddler["id"])[0]["total"] == 4
        assert not any(t["code"] == "escalation" for t in _tasks(conn, toddler["id"], open_only=True))
        vitals(conn, nurse, toddler, HIGH | {"heart_rate_bpm": 152, "oxygen_l_min": Decimal("6")})
        latest = _pews(conn, toddler["id"])[0]
        assert latest["scores"] == {"pulse": 2, "systolic": 1, "respiration": 0, "spo2": 1, "oxygen_therapy": 4}
        assert (latest["total"], latest["risk"], latest["escalation"]) == (8, "triggered", True)
        assert _scores(conn, toddler["id"]) == [], "a child never gets NEWS2"
        open_tasks = {t["code"]: t for t in _tasks(conn, toddler["id"], open_only=True)}
        assert open_tasks["escalation"]["title"] == "PEWS 8 — Urgent paediatric review"
        assert open_tasks["observations"]["due_at"] - latest["occurred_at"] == dt.timedelta(minutes=15)
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, toddler["id"])}
    assert "record.pews.create" in events and "record.news2.create" not in events


def test_a_set_that_left_out_what_the_last_score_measured_does_not_put_off_the_set_it_asked_for(db, facility,
                                                                                                  nurse):
    """Faith, four, PEWS 12 at 04:51: a set every 15 minutes. Weighed at 05:15, her pulse taken with it (PEWS 1 on
    that one item), the next set was put off to 09:15. The set PEWS 12 asked for is still due; the escalation
    stands; a set of what was measured before, lower now, moves the next one on as its score asks."""
    with db.tenant(facility.slug) as conn:
        child = admit(conn, nurse, family="Njoroge", given="Faith",
                      born=dt.date.today() - dt.timedelta(days=4 * 365 + 40))
        sick = {"heart_rate_bpm": 162, "respiratory_rate": 62, "spo2_percent": 89, "supplemental_oxygen": True,
                "oxygen_l_min": Decimal("2")}  # no blood pressure, as on most children's sets
        vitals(conn, nurse, child, sick)
        [triggered] = _pews(conn, child["id"])
        assert (triggered["total"], triggered["risk"]) == (12, "triggered")
        vitals(conn, nurse, child, {"heart_rate_bpm": 118, "weight_kg": Decimal("13.2")})
        assert _pews(conn, child["id"])[0]["total"] == 1
        open_tasks = {t["code"]: t for t in _tasks(conn, child["id"], open_only=True)}
        assert open_tasks["observations"]["due_at"] == triggered["next_due_at"]
        assert open_tasks["observations"]["title"] == "Observations due (last PEWS 12; at least every 15 minutes)"
        assert open_tasks["escalation"]["title"] == "PEWS 12 — Urgent paediatric review"
        better = vitals(conn, nurse, child, sick | {"heart_rate_bpm": 120, "respiratory_rate": 30, "spo2_percent": 96,
                                                    "supplemental_oxygen": False, "oxygen_l_min": None})
        latest = _pews(conn, child["id"])[0]
        assert latest["vital_signs_id"] == better["id"] and latest["risk"] == "low"
        [observe] = [t for t in _tasks(conn, child["id"], open_only=True) if t["code"] == "observations"]
        assert observe["due_at"] == latest["next_due_at"] and "every 4 hours" in observe["title"]


def test_a_child_whose_birth_date_is_estimated_is_scored_only_when_the_age_band_is_certain(db, facility, nurse):
    today = facility_today()  # the registration desk's, on which the age is counted
    with db.tenant(facility.slug) as conn:
        # Registered as "0 years" today: anything from a newborn to eleven months, two of PEWS's bands.
        infant = admit(conn, nurse, family="Njeri", given="Baby", born=today)
        conn.execute(sa.text("UPDATE patient SET birth_date_estimated = true WHERE id = :id"), {"id": infant["id"]})
        vitals(conn, nurse, infant, {"heart_rate_bpm": 150, "respiratory_rate": 50})
        assert _pews(conn, infant["id"]) == [] and _scores(conn, infant["id"]) == []
        excluded = service.news2_exclusion(conn, infant["id"], dt.datetime.now(dt.UTC))
        assert not excluded.paediatric and excluded.label == "under 16, birth date estimated"
        assert "the birth date is an estimate" in excluded.reason and "0–3 months or the 3–12 months" in excluded.reason

        # Registered as "7 years" today: 7 to 8 years old whatever the real date, all in the 4–12 years band.
        schoolchild = admit(conn, nurse, family="Njeri", given="Amani",
                            born=today.replace(year=today.year - 7, day=min(today.day, 28)))
        conn.execute(sa.text("UPDATE patient SET birth_date_estimated = true WHERE id = :id"),
                     {"id": schoolchild["id"]})
        vitals(conn, nurse, schoolchild, {"heart_rate_bpm": 150, "respiratory_rate": 50})
        [scored] = _pews(conn, schoolchild["id"])
    assert (scored["age_band"], scored["scores"]) == ("4-12y", {"pulse": 2, "respiration": 2})


def test_a_childs_age_is_counted_on_the_facilitys_day_not_utcs(db, facility, nurse):
    """At 00:30 in Nairobi, 21:30 UTC the evening before, it is a boy's first birthday and a girl's sixteenth
    on the facility's calendar, as its forms count their ages; the UTC date says 0 and 15 until 03:00. A set
    taken then scores him in PEWS's 1–4 years band, and she is an adult: NEWS2 scores her set and a MUAC of
    hers is refused, as the clinic's and the ward's forms, which no longer ask it of her, have it."""
    latest_utc_evening = dt.datetime.now(dt.UTC).replace(hour=21, minute=30, second=0, microsecond=0)
    if latest_utc_evening > dt.datetime.now(dt.UTC):
        latest_utc_evening -= dt.timedelta(days=1)
    birthday = latest_utc_evening.astimezone(TZ).date()
    assert birthday != latest_utc_evening.date()

    def born_years_before(years: int) -> dt.date:
        return birthday.replace(year=birthday.year - years, day=28 if (birthday.month, birthday.day) == (2, 29)
                                else birthday.day)

    def set_taken_then(conn, patient: dict, values: dict) -> record.Entry:
        return record.append(conn, nurse, "vital_signs", patient_id=patient["id"], detail=values,
                             encounter_id=patient["encounter_id"], occurred_at=latest_utc_evening)

    with db.tenant(facility.slug) as conn:
        boy = admit(conn, nurse, family="Mwangi", given="Tumaini", born=born_years_before(1))
        girl = admit(conn, nurse, family="Mwangi", given="Imani", born=born_years_before(16))
        assert service.news2_exclusion(conn, boy["id"], latest_utc_evening).age_band == "1-4y"
        set_taken_then(conn, boy, {"heart_rate_bpm": 110, "respiratory_rate": 28})
        [scored] = _pews(conn, boy["id"])
        assert scored["age_band"] == "1-4y"
        assert service.news2_exclusion(conn, girl["id"], latest_utc_evening) is None
    with pytest.raises(Invalid) as refused, db.tenant(facility.slug) as conn:
        set_taken_then(conn, girl, NORMAL | {"muac_mm": 230})
    assert refused.value.extra["field"] == "muac_mm"
    with db.tenant(facility.slug) as conn:
        set_taken_then(conn, girl, NORMAL)
        assert len(_scores(conn, girl["id"])) == 1 and _pews(conn, girl["id"]) == []


def test_pregnancy_and_the_puerperium_are_not_scored_while_the_condition_is_active(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        mother = admit(conn, nurse, family="Wanjiru", given="Grace")
        pregnancy = clinical.add_condition(conn, nurse, mother["id"], ConditionIn(code="O14.1"))
        vitals(conn, nurse, mother, HIGH)
        assert _scores(conn, mother["id"]) == []
        excluded = service.news2_exclusion(conn, mother["id"], dt.datetime.now(dt.UTC))
        assert excluded.label == "pregnancy" and "pregnancy or the puerperium (O14.1" in excluded.reason
        assert excluded.maternity

        clinical.amend_condition(conn, nurse, mother["id"], pregnancy["id"], ConditionIn(
            code="O14.1", clinical_status="resolved"), "delivered; puerperium over")
        vitals(conn, nurse, mother, HIGH)
        assert [s["total"] for s in _scores(conn, mother["id"])] == [9]

        # A set taken before the pregnancy's recorded onset (a set charted late, say) is scored by NEWS2.
        # (An onset in the future is refused since 00755b4.)
        later = clinical.add_condition(conn, nurse, mother["id"], ConditionIn(
            code="O13", onset_date=dt.date.today() - dt.timedelta(days=10)))
        assert service.news2_exclusion(conn, mother["id"], dt.datetime.now(dt.UTC) - dt.timedelta(days=20)) is None
        assert service.news2_exclusion(conn, mother["id"], dt.datetime.now(dt.UTC))
        clinical.retract_entry(conn, nurse, mother["id"], later["id"], "recorded in error")

        suspected = admit(conn, nurse, family="Atieno", given="Rose")
        clinical.add_condition(conn, nurse, suspected["id"], ConditionIn(code="Z33", verification="differential"))
        vitals(conn, nurse, suspected, HIGH)
        assert len(_scores(conn, suspected["id"])) == 1, "a differential diagnosis is a question, not a pregnancy"

        antenatal = admit(conn, nurse, family="Chebet", given="Ann")
        supervision = clinical.add_condition(conn, nurse, antenatal["id"], ConditionIn(code="Z34.9"))
        vitals(conn, nurse, antenatal, HIGH)
        assert _scores(conn, antenatal["id"]) == []
        clinical.retract_entry(conn, nurse, antenatal["id"], supervision["id"], "wrong patient")
        vitals(conn, nurse, antenatal, HIGH)
        assert len(_scores(conn, antenatal["id"])) == 1


def _meows(conn, patient_id):
    return service.scores_of(conn, [patient_id], "meows")


def test_a_woman_who_delivered_is_scored_by_meows_for_the_42_days_of_the_puerperium(db, facility, nurse):
    # No O-coded problem on her record: the delivery alone puts her in the puerperium.
    with db.tenant(facility.slug) as conn:
        mother = admit(conn, nurse, ward="MAT", family="Wafula", given="Esther")
        conn.execute(sa.text("UPDATE patient SET sex = 'female' WHERE id = :id"), {"id": mother["id"]})
        born_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=3, hours=2)
        delivery.record_delivery(conn, nurse, mother["id"], DeliveryIn(
            born_at=born_at, gestation_weeks=39, mode="spontaneous_vaginal", blood_loss_ml=300,
            uterotonic="oxytocin", babies=[BabyIn(outcome="fresh_stillbirth", sex="female", weight_g=3000)]), [])
        vitals(conn, nurse, mother, NORMAL | {"heart_rate_bpm": 124})
        assert _scores(conn, mother["id"]) == []
        [score] = _meows(conn, mother["id"])
        assert score["triggers"] == {"pulse": "red"} and score["escalation"]
        excluded = service.news2_exclusion(conn, mother["id"], dt.datetime.now(dt.UTC))
        assert excluded.maternity and "(the puerperium, day 3 after a delivery)" in excluded.reason
        assert service.news2_exclusion(conn, mother["id"], born_at + dt.timedelta(days=41, hours=23)).maternity
        assert service.news2_exclusion(conn, mother["id"], born_at + dt.timedelta(days=42, minutes=1)) is None
        assert service.news2_exclusion(conn, mother["id"], born_at - dt.timedelta(hours=1)) is None


def test_in_pregnancy_a_set_is_scored_by_meows_and_a_trigger_escalates(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        mother = admit(conn, nurse, ward="MAT", family="Naliaka", given="Joy")
        clinical.add_condition(conn, nurse, mother["id"], ConditionIn(code="O13"))
        calm = vitals(conn, nurse, mother, NORMAL)
        [clear] = _meows(conn, mother["id"])
        assert (clear["risk"], clear["triggers"], clear["vital_signs_id"]) == ("clear", {}, calm["id"])
        assert clear["next_due_at"] - clear["occurred_at"] == dt.timedelta(hours=4)
        assert _scores(conn, mother["id"]) == []
        tasks = _tasks(conn, mother["id"], open_only=True)
        assert [(t["code"], t["title"]) for t in tasks] == [
            ("observations", "Observations due (last MEOWS no trigger; at least every 4 hours)")]

        # Systolic 152 and pulse 104: two yellow triggers, an urgent review.
        vitals(conn, nurse, mother, NORMAL | {"systolic_mmhg": 152, "heart_rate_bpm": 104})
        latest = _meows(conn, mother["id"])[0]
        assert latest["triggers"] == {"systolic": "yellow", "pulse": "yellow"} and latest["escalation"]
        open_tasks = {t["code"]: t for t in _tasks(conn, mother["id"], open_only=True)}
        assert open_tasks["escalation"]["title"] == "MEOWS 2 yellow — Urgent obstetric review"
        assert open_tasks["observations"]["due_at"] - latest["occurred_at"] == dt.timedelta(minutes=15)

        # A higher NEWS2-equivalent rank is not reached by another trigger: the open escalation stands.
        vitals(conn, nurse, mother, NORMAL | {"systolic_mmhg": 170})
        escalations = [t for t in _tasks(conn, mother["id"]) if t["code"] == "escalation"]
        assert [t["status"] for t in escalations] == ["open"]


def test_a_girl_under_16_in_pregnancy_is_scored_by_meows(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        girl = admit(conn, nurse, ward="MAT", family="Akinyi", given="Mercy",
                     born=dt.date.today() - dt.timedelta(days=365 * 15 + 30))
        assert service.news2_exclusion(conn, girl["id"], dt.datetime.now(dt.UTC)).label == "under 16"
        clinical.add_condition(conn, nurse, girl["id"], ConditionIn(code="O80"))
        vitals(conn, nurse, girl, NORMAL | {"heart_rate_bpm": 124})
        [score] = _meows(conn, girl["id"])
    assert score["triggers"] == {"pulse": "red"} and score["escalation"]


def test_a_set_corrected_after_the_pregnancy_was_recorded_is_rescored_by_meows(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse, family="Auma", given="Lucy")
        first = vitals(conn, nurse, patient, HIGH)
        [news2_score] = _scores(conn, patient["id"])
        clinical.add_condition(conn, nurse, patient["id"], ConditionIn(code="Z34.9"))
        corrected = record.append(conn, nurse, "vital_signs", patient_id=patient["id"], supersedes=first["id"],
                                  occurred_at=first["occurred_at"] + dt.timedelta(minutes=1),
                                  reason="charted on the wrong form", detail=NORMAL | {
                                      "weight_kg": None, "height_cm": None, "oxygen_l_min": None,
                                      "spo2_scale": None})
        assert _scores(conn, patient["id"]) == [], "the NEWS2 of the withdrawn set is retracted"
        assert record.get_entry(conn, news2_score["id"]).id == news2_score["id"]
        [maternity] = _meows(conn, patient["id"])
        assert maternity["vital_signs_id"] == corrected.id and maternity["risk"] == "clear"
        clinical.retract_entry(conn, nurse, patient["id"], corrected.id, "wrong patient")
        assert _meows(conn, patient["id"]) == []


def test_a_corrected_set_is_rescored_and_a_retracted_one_takes_its_score(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
        first = vitals(conn, nurse, patient, HIGH)
        corrected = record.append(conn, nurse, "vital_signs", patient_id=patient["id"], supersedes=first["id"],
                                  reason="respiratory rate misread", detail=NORMAL | {
                                      "weight_kg": None, "height_cm": None, "oxygen_l_min": None,
                                      "spo2_scale": None})
        [score] = _scores(conn, patient["id"])
        assert score["total"] == 0 and score["vital_signs_id"] == corrected.id
        assert len(record.history(conn, score["id"])) == 2
        clinical.retract_entry(conn, nurse, patient["id"], corrected.id, "wrong patient")
        assert _scores(conn, patient["id"]) == []


def test_observations_become_a_task_and_a_high_score_escalates_once(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
        vitals(conn, nurse, patient, NORMAL)
        [observe] = _tasks(conn, patient["id"], open_only=True)
        assert observe["code"] == "observations" and observe["ward_code"] == "GEN"
        assert "every 12 hours" in observe["title"]
        vitals(conn, nurse, patient, HIGH)
        vitals(conn, nurse, patient, HIGH | {"heart_rate_bpm": 112})  # still high: no second escalation
        open_tasks = _tasks(conn, patient["id"], open_only=True)
        assert sorted(t["code"] for t in open_tasks) == ["escalation", "observations"]
        escalation = next(t for t in open_tasks if t["code"] == "escalation")
        assert escalation["title"].startswith("NEWS2 9 — Emergency response")
        assert "15 minutes" in next(t for t in open_tasks if t["code"] == "observations")["title"]
        done = [t for t in _tasks(conn, patient["id"]) if t["status"] == "done"]
        assert [t["note"] for t in done] == ["observations recorded"] * 2


def test_an_observations_task_is_done_by_recording_the_set_not_by_ticking_it(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
        vitals(conn, nurse, patient, NORMAL)
        [observe] = _tasks(conn, patient["id"], open_only=True)
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(Conflict, match="record the observations"), db.tenant(facility.slug) as conn:
        service.set_task_status(conn, nurse, patient["id"], observe["id"], "done", None, now=now)
    with db.tenant(facility.slug) as conn:
        assert [t["id"] for t in _tasks(conn, patient["id"], open_only=True)] == [observe["id"]]
        dropped = service.set_task_status(conn, nurse, patient["id"], observe["id"], "cancelled",
                                          "gone to theatre; observations there", now=now)
        assert dropped["status"] == "cancelled"


def test_outpatients_get_a_score_but_no_ward_task(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse, ward=None, encounter_class="outpatient")
        vitals(conn, nurse, patient, HIGH)
        assert len(_scores(conn, patient["id"])) == 1
        assert service.tasks_of(conn, [patient["id"]]) == []


def test_an_encounter_that_ends_takes_its_observations_unless_the_patient_stays_on_a_ward(db, facility, nurse):
    """A finished encounter's observations were left open, overdue on the worklist and the chart for good. An
    ED visit that ends as the patient is admitted keeps them: the ward carries them on."""
    with db.tenant(facility.slug) as conn:
        finished = admit(conn, nurse)
        emergency = admit(conn, nurse, ward="CAS", encounter_class="emergency", family="Wafula")
        for patient in (finished, emergency):
            vitals(conn, nurse, patient, HIGH)
        clinical.transition_encounter(conn, nurse, finished["id"], finished["encounter_id"], "finished")
        clinical.open_encounter(conn, nurse, emergency["id"], EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code="GEN", reason="admitted from the ED"))
        clinical.transition_encounter(conn, nurse, emergency["id"], emergency["encounter_id"], "finished")
        closed = service.tasks_of(conn, [finished["id"]])
        assert sorted((t["code"], t["status"], t["note"]) for t in closed) == [
            ("admission_assessment", "cancelled", "encounter finished"),
            ("escalation", "cancelled", "encounter finished"), ("observations", "cancelled", "encounter finished"),
            ("observations", "done", "observations recorded")]
        assert service.observations_due(conn, nurse, finished["id"]) is None
        carried = service.tasks_of(conn, [emergency["id"]], open_only=True)
        # The ward asks for its admission assessment; the observations the ED scheduled carry on.
        assert sorted((t["code"], t["source_kind"]) for t in carried) == [
            ("admission_assessment", "encounter"), ("escalation", "news2"), ("observations", "news2")]
        assert service.observations_due(conn, nurse, emergency["id"]) is not None


def test_a_lab_order_asks_for_a_specimen_and_its_result_completes_it(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        order = clinical.order_test(conn, clinician, patient["id"], ServiceRequestIn(
            code="58410-2", priority="urgent", encounter_id=patient["encounter_id"]))
        clinical.order_test(conn, clinician, patient["id"], ServiceRequestIn(
            code="36643-5", encounter_id=patient["encounter_id"]))  # imaging: no specimen
        [task] = _tasks(conn, patient["id"], open_only=True)
        assert (task["code"], task["title"]) == ("collect_specimen", "Collect specimen: Full blood count (urgent)")
        assert task["due_at"] - order["occurred_at"] == dt.timedelta(hours=1)
        assert task["source_id"] == order["root_id"] and task["source_kind"] == "service_request"
        clinical.record_result(conn, clinician, patient["id"], ResultIn(
            code="718-7", value=Decimal("10.1"), service_request_id=order["id"]))
        assert _tasks(conn, patient["id"], open_only=True) == []
        [done] = _tasks(conn, patient["id"])
        assert (done["status"], done["note"]) == ("done", "result received")


def test_a_retracted_order_cancels_its_task(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        order = clinical.order_test(conn, clinician, patient["id"], ServiceRequestIn(code="58410-2", priority="stat"))
        [task] = _tasks(conn, patient["id"], open_only=True)
        assert task["due_at"] - order["occurred_at"] == dt.timedelta(minutes=15)
        clinical.retract_entry(conn, clinician, patient["id"], order["id"], "ordered on the wrong patient")
        [cancelled] = _tasks(conn, patient["id"])
        assert (cancelled["status"], cancelled["note"]) == ("cancelled", "order entered in error")


def test_an_admission_entry_asks_for_the_admission_assessment(db, facility, nurse):
    if "admission" not in record._detail_tables:
        pytest.fail("the operations layer registers the `admission` kind; it is missing")
    from appliance.layers.operations import adt

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse, ward=None, encounter_class="outpatient")
        adt.admit(conn, nurse, patient["id"], ward_code="GEN", reason="Pneumonia")
        [task] = [t for t in service.tasks_of(conn, [patient["id"]], open_only=True)
                  if t["code"] == "admission_assessment"]
        assert task["ward_code"] == "GEN" and task["title"] == "Admission assessment"
        admitted_at = conn.execute(sa.select(record.entry.c.occurred_at).where(
            record.entry.c.id == task["source_id"])).scalar()
        assert task["due_at"] - admitted_at == dt.timedelta(hours=6)


def test_an_admission_asks_for_the_first_observations_which_the_first_set_does(db, facility, nurse):
    """A patient admitted with no vital signs had no observations task: the worklist said "none recorded"."""
    from appliance.layers.operations import adt

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse, ward=None, encounter_class="outpatient")
        # A child whose PEWS age band is unknown (birth date estimated): no score, the set still does it.
        infant = admit(conn, nurse, ward=None, encounter_class="outpatient", family="Kariuki", born=dt.date.today())
        conn.execute(sa.text("UPDATE patient SET birth_date_estimated = true WHERE id = :id"), {"id": infant["id"]})
        emergency = admit(conn, nurse, ward="CAS", encounter_class="emergency", family="Wafula")
        vitals(conn, nurse, emergency, NORMAL)
        for admitted in (patient, infant, emergency):
            adt.admit(conn, nurse, admitted["id"], ward_code="GEN", reason="Pneumonia")
        [first] = service.tasks_of(conn, [patient["id"]], open_only=True, codes=["observations"])
        admitted_at = conn.execute(sa.select(record.entry.c.occurred_at).where(
            record.entry.c.id == first["source_id"])).scalar()
        assert (first["title"], first["due_at"], first["ward_code"]) == (
            "Observations due (first set on admission)", admitted_at, "GEN")
        # From the emergency department the schedule its score set carries on; no second task.
        [carried] = service.tasks_of(conn, [emergency["id"]], open_only=True, codes=["observations"])
        assert carried["source_kind"] == "news2"
        vitals(conn, nurse, patient, NORMAL)
        vitals(conn, nurse, infant, {"heart_rate_bpm": 150, "respiratory_rate": 50})
        [scheduled] = service.tasks_of(conn, [patient["id"]], open_only=True, codes=["observations"])
        assert "every 12 hours" in scheduled["title"]
        assert service.tasks_of(conn, [infant["id"]], open_only=True, codes=["observations"]) == []
        done = [t for t in service.tasks_of(conn, [patient["id"], infant["id"]], codes=["observations"])
                if t["source_kind"] in reactions.ADMITTED_BY]
        assert [(t["status"], t["note"]) for t in done] == [("done", "observations recorded")] * 2


def test_the_admission_tasks_follow_the_stay_to_the_ward_once_whenever_the_bed_comes(db, tenant_factory, clinician):
    """A clinician admitting from the clinic to a ward whose bed is given later: the ward had no admission
    assessment and no first set to do for a patient already in its care until the bed board admitted them."""
    from appliance.layers.operations import adt

    def asked(patient_id):
        return sorted((t["code"], t["source_kind"], t["ward_code"]) for t in service.tasks_of(conn, [patient_id]))

    beds = tenant_factory(name="Admissions", wards=[{"code": "GEN", "name": "General ward", "beds": 3}])
    with db.tenant(beds.slug) as conn:
        from_clinic = admit(conn, clinician, family="Mwende")  # in progress on GEN, no bed
        assert asked(from_clinic["id"]) == [("admission_assessment", "encounter", "GEN"),
                                            ("observations", "encounter", "GEN")]
        # Booked for tomorrow's list: nothing to do until the patient arrives, then the same two.
        booked = admit(conn, clinician, ward=None, encounter_class="outpatient", family="Chege")
        planned = clinical.open_encounter(conn, clinician, booked["id"], EncounterIn(
            encounter_class="inpatient", status="planned", ward_code="GEN", reason="Elective hernia repair"))
        assert asked(booked["id"]) == []
        clinical.transition_encounter(conn, clinician, booked["id"], planned["id"], "arrived")
        assert asked(booked["id"]) == [("admission_assessment", "encounter_status", "GEN"),
                                       ("observations", "encounter_status", "GEN")]
        # No ward named: the bed board's admission is the stay reaching one.
        wardless = admit(conn, clinician, ward=None, family="Auma")
        assert asked(wardless["id"]) == []
        for patient in (from_clinic, booked, wardless):
            adt.admit(conn, clinician, patient["id"], ward_code="GEN", reason="admitted")
        # The bed comes later: no second assessment, no second first set.
        assert asked(from_clinic["id"]) == [("admission_assessment", "encounter", "GEN"),
                                            ("observations", "encounter", "GEN")]
        assert asked(booked["id"]) == [("admission_assessment", "encounter_status", "GEN"),
                                       ("observations", "encounter_status", "GEN")]
        assert asked(wardless["id"]) == [("admission_assessment", "admission", "GEN"),
                                         ("observations", "admission", "GEN")]


def test_reactions_write_the_same_record_when_replayed(db, facility, clinician):
    """Entries written by reactions take ids derived from what they react to (demo data stays stable)."""
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        fixed = uuid.UUID("00000000-0000-4000-8000-000000000123")
        record.append(conn, clinician, "vital_signs", patient_id=patient["id"], entry_id=fixed,
                      encounter_id=patient["encounter_id"], detail=NORMAL)
        [score] = _scores(conn, patient["id"])
        assert score["id"] == service.derived_id("news2", fixed)


def test_every_reaction_write_is_audited(db, facility, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
        vitals(conn, nurse, patient, HIGH)
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, patient["id"])}
    assert {"record.vital_signs.create", "record.news2.create", "record.nursing_task.create"} <= events


def test_medication_requests_are_not_touched(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
            drug="Amoxicillin", dose=Decimal(500), dose_unit="mg", route="oral", frequency="three times daily"))
        assert _tasks(conn, patient["id"]) == []


# -- what a record marked entered in error takes with it -------------------------------------------


def test_a_withdrawn_set_stops_counting_and_the_escalation_it_raised_is_closed_with_the_reason(db, facility, nurse,
                                                                                              clinician):
    """A set charted on the wrong patient kept its escalation open on that patient's worklist after it was
    withdrawn: its score went with it, its "emergency response" task did not."""
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
        calm = vitals(conn, nurse, patient, NORMAL)
    with db.tenant(facility.slug) as conn:  # a transaction each: a set's time is its transaction's
        wrong = vitals(conn, nurse, patient, HIGH)
        [raised] = service.tasks_of(conn, [patient["id"]], open_only=True, codes=["escalation"])
    with db.tenant(facility.slug) as conn:
        clinical.retract_entry(conn, clinician, patient["id"], wrong["id"], "charted on the wrong patient")
        warning = service.current_warning(conn, nurse, patient["id"], dt.datetime.now(dt.UTC))
        shown = service.observations(conn, nurse, patient["id"])
        [closed] = [t for t in service.tasks_of(conn, [patient["id"]]) if t["id"] != raised["id"]
                    and t["code"] == "escalation"]
        [observe] = _tasks(conn, patient["id"], open_only=True)
    assert warning["score"]["vital_signs_id"] == calm["id"] and warning["score"]["total"] == 0
    assert [r["id"] for r in shown] == [calm["id"]]
    assert closed["status"] == "cancelled"
    assert closed["note"] == "the observations it escalated were entered in error: charted on the wrong patient"
    # The next set is due as the calm set's NEWS2 asks (every 12 hours), not every 15 minutes as the withdrawn one did.
    assert observe["code"] == "observations" and observe["title"] == (
        "Observations due (last NEWS2 0; at least every 12 hours)")
    assert observe["due_at"] == warning["score"]["next_due_at"]


def test_when_the_only_set_is_withdrawn_the_next_observations_are_due_at_once(db, facility, nurse, clinician):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
        wrong = vitals(conn, nurse, patient, NORMAL)
        withdrawn = clinical.retract_entry(conn, clinician, patient["id"], wrong["id"], "wrong patient")
        [observe] = _tasks(conn, patient["id"], open_only=True)
    assert (observe["code"], observe["title"]) == (
        "observations", "Observations due (the last set was entered in error)")
    assert observe["due_at"] == withdrawn["occurred_at"]


# NEWS2 5 (medium: urgent review): RR 22 (2), SpO2 93 (2), pulse 95 (1). NEWS2 7 (high: emergency response): the same
# with pulse 118 (2) and 38.5 °C (1).
NEWS2_5 = NORMAL | {"respiratory_rate": 22, "spo2_percent": 93, "heart_rate_bpm": 95}
NEWS2_7 = NEWS2_5 | {"heart_rate_bpm": 118, "temperature_c": Decimal("38.5")}


def test_a_withdrawn_higher_score_leaves_the_escalation_the_set_before_it_still_asks_for(db, facility, nurse,
                                                                                       clinician):
    """A NEWS2 of 7 charted in error cancelled, as superseded, the open escalation of the 5 before it; withdrawing
    the 7 left the patient with no escalation at all while their last valid set still scored 5. The withdrawal now
    escalates again at the 5's level, with its observation schedule, in the same transaction."""
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
        five = vitals(conn, nurse, patient, NEWS2_5)
    with db.tenant(facility.slug) as conn:  # a transaction each: a set's time is its transaction's
        wrong = vitals(conn, nurse, patient, NEWS2_7)
        [raised] = _tasks(conn, patient["id"], open_only=True, codes=["escalation"])
        assert raised["title"].startswith("NEWS2 7")
    with db.tenant(facility.slug) as conn:
        clinical.retract_entry(conn, clinician, patient["id"], wrong["id"], "charted on the wrong patient")
        [score] = _scores(conn, patient["id"])
        tasks = _tasks(conn, patient["id"])
    assert score["vital_signs_id"] == five["id"] and score["total"] == 5
    [escalation] = [t for t in tasks if t["code"] == "escalation" and t["status"] == "open"]
    assert escalation["source_id"] == score["root_id"] and escalation["title"].startswith("NEWS2 5 — ")
    assert escalation["due_at"] == score["occurred_at"]
    assert sorted((t["title"][:7], t["status"]) for t in tasks if t["code"] == "escalation") == [
        ("NEWS2 5", "cancelled"), ("NEWS2 5", "open"), ("NEWS2 7", "cancelled")]
    [observe] = [t for t in tasks if t["code"] == "observations" and t["status"] == "open"]
    assert observe["source_id"] == score["root_id"] and observe["due_at"] == score["next_due_at"]
    assert observe["title"] == "Observations due (last NEWS2 5; at least every hour)"


def test_a_withdrawn_high_score_with_no_set_before_it_leaves_no_escalation(db, facility, nurse, clinician):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse)
        wrong = vitals(conn, nurse, patient, NEWS2_7)
    with db.tenant(facility.slug) as conn:
        clinical.retract_entry(conn, clinician, patient["id"], wrong["id"], "charted on the wrong patient")
        assert _tasks(conn, patient["id"], open_only=True, codes=["escalation"]) == []
        [observe] = _tasks(conn, patient["id"], open_only=True)
    assert observe["title"] == "Observations due (the last set was entered in error)"


def test_a_withdrawn_prescription_leaves_the_mar(db, facility, clinician, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        [placed] = clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
            drug="Ceftriaxone", dose=Decimal(1), dose_unit="g", route="IV", frequency="once daily",
            encounter_id=patient["encounter_id"])).placed
        now = dt.datetime.now(dt.UTC)
        window = {"window_start": now - dt.timedelta(hours=1), "window_end": now + dt.timedelta(days=1), "now": now,
                  "tz": TZ}
        assert [line["drug"] for line in service.mar_lines(conn, [patient["id"]], **window)] == ["Ceftriaxone"]
        clinical.retract_entry(conn, clinician, patient["id"], placed["id"], "prescribed on the wrong patient")
        assert service.mar_lines(conn, [patient["id"]], **window) == []


def test_a_withdrawn_order_leaves_the_lab_and_imaging_worklists(db, facility, clinician):
    from appliance.layers.clinical import imaging, lab

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        blood = clinical.order_test(conn, clinician, patient["id"], ServiceRequestIn(code="58410-2"))
        film = clinical.order_test(conn, clinician, patient["id"], ServiceRequestIn(code="36643-5"))
        today = facility_today()

        def listed() -> set:
            return {o["id"] for o in [*lab.worklist(conn, clinician, today=today)["orders"],
                                      *imaging.worklist(conn, clinician, today=today)["orders"]]}

        assert {blood["id"], film["id"]} <= listed()
        for order in (blood, film):
            clinical.retract_entry(conn, clinician, patient["id"], order["id"], "ordered on the wrong patient")
        assert not {blood["id"], film["id"]} & listed()
        assert _tasks(conn, patient["id"], open_only=True) == []


def test_a_withdrawn_result_is_no_longer_the_latest_nor_flags_the_chart(db, facility, clinician):
    from appliance.layers.clinical import chart

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        clinical.record_result(conn, clinician, patient["id"], ResultIn(code="718-7", value=Decimal("13.5")))
    with db.tenant(facility.slug) as conn:
        wrong = clinical.record_result(conn, clinician, patient["id"], ResultIn(code="718-7", value=Decimal("6.2")))
        assert wrong["flag"] == "L"
        clinical.retract_entry(conn, clinician, patient["id"], wrong["id"], "another patient's sample")
        summary = chart.chart_summary(conn, clinician, patient["id"])
        listed = clinical.list_results(conn, clinician, patient["id"])
    assert [(r["value_numeric"], r["flag"]) for r in summary["results"]] == [(Decimal("13.5"), "N")]
    assert [r["value_numeric"] for r in listed] == [Decimal("13.5")]
