"""HIV care and treatment over real HTTP and the real record (appliance/layers/clinical/hiv.py): the interruption in
treatment and viral-load-due arithmetic worked by hand, substitution and switch, ART numbers in sequence (two
enrolments at once included), the card and the ART register with the people to trace, the refusals (a sentence
naming the field, nothing written), the status in care and entered in error, the nurse, the ward nurse and the
registrar, every read on the access log, and another facility's credentials and guessed ids refused on every
route."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import hiv, service
from appliance.layers.clinical.hiv import Visit, change_refusal, load_programme, standing, viral_load_due_on
from appliance.layers.clinical.hiv_schemas import HivEnrolmentIn
from appliance.layers.clinical.schemas import EncounterIn
from appliance.substrate import audit
from tests.conftest import facility_today
from tests.layers.clinical.at_once import two_at_once
from tests.layers.clinical.conftest import CLINICAL_CONFIG, GENERAL_AND_MATERNITY, new_patient

API = "/api/t/{tenant}"
PROGRAMME = load_programme(Path(__file__).parents[3] / "policies" / "hiv.toml")


def ago(days: int) -> str:
    return (facility_today() - dt.timedelta(days=days)).isoformat()


def _enrolment(**overrides) -> dict:
    return {"enrolled_on": ago(400), "diagnosed_on": ago(410), "who_stage": 2, "cd4_baseline": 350,
            "tb_screening": "no_signs", **overrides}


@pytest.fixture(scope="module")
def facility(tenant_factory):
    """The clinical test facility with a maternity ward beside its general ward, for a nurse of the other ward."""
    return tenant_factory(name="Clinical Test Facility", **CLINICAL_CONFIG, wards=GENERAL_AND_MATERNITY)


def _hiv_entries(db, facility) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind LIKE 'hiv\\_%'")).scalar()


@pytest.fixture(scope="module")
def patients(db, facility, clinician) -> list[uuid.UUID]:
    """Six people; the first has an encounter on ward GEN (a ward nurse's patient)."""
    with db.tenant(facility.slug) as conn:
        made = [new_patient(conn, clinician, family_name=f"Banda{n}", given_names="Chikondi",
                            birth_date=dt.date(1985, 1, 1) + dt.timedelta(days=n))["id"] for n in range(6)]
        service.open_encounter(conn, clinician, made[0], EncounterIn(encounter_class="outpatient", ward_code="GEN"))
    return made


def _base(facility, patient_id) -> str:
    return f"{API.format(tenant=facility.slug)}/patients/{patient_id}/hiv"


# -- the arithmetic, by hand ----------------------------------------------------------------------------------------

START = dt.date(2026, 1, 10)


def test_an_interruption_begins_on_the_29th_day_after_the_later_of_the_appointment_and_the_pills_running_out():
    # 90 days dispensed on 1 February run out on 2 May; the appointment was 3 March: 2 May is the last expected
    # contact, 31 May (28 days on) is still active, 1 June is the first day of the interruption.
    visits = [Visit(dt.date(2026, 1, 10), 30, dt.date(2026, 2, 9)), Visit(dt.date(2026, 2, 1), 90, dt.date(2026, 3, 3))]
    assert hiv.last_expected_contact(START, visits) == dt.date(2026, 5, 2)
    at = {day: standing(care_status="in_care", art_started_on=START, visits=visits, results=[], today=day)
          for day in (dt.date(2026, 5, 30), dt.date(2026, 5, 31))}
    assert at[dt.date(2026, 5, 30)]["status"] == "active"
    assert (at[dt.date(2026, 5, 31)]["status"], at[dt.date(2026, 5, 31)]["interrupted_from"]) == (
        "iit", dt.date(2026, 5, 31))
    assert hiv.interrupted_from(dt.date(2026, 5, 2)) == dt.date(2026, 5, 31)
    # An appointment after the pills run out: the appointment is the expected contact.
    assert hiv.last_expected_contact(START, [Visit(dt.date(2026, 3, 1), 30, dt.date(2026, 4, 15))]) == dt.date(
        2026, 4, 15)
    # No visit yet: the day ART started; transferred out is never an interruption.
    assert standing(care_status="in_care", art_started_on=START, visits=[], results=[],
                    today=dt.date(2026, 2, 8))["status"] == "iit"
    assert standing(care_status="in_care", art_started_on=START, visits=[], results=[],
                    today=dt.date(2026, 2, 7))["status"] == "active"
    assert standing(care_status="transferred_out", art_started_on=START, visits=[], results=[],
                    today=dt.date(2027, 1, 1))["status"] == "transferred_out"
    assert standing(care_status="in_care", art_started_on=None, visits=[], results=[],
                    today=dt.date(2027, 1, 1))["status"] == "not_on_art"


@pytest.mark.parametrize(("results", "due"), [
    ([], dt.date(2026, 7, 10)),  # 6 months after ART started
    ([(dt.date(2025, 12, 1), 40_000)], dt.date(2026, 7, 10)),  # a result before ART does not count
    ([(dt.date(2026, 7, 12), 40)], dt.date(2027, 1, 10)),  # the 6-month one suppressed: at 12 months
    ([(dt.date(2026, 7, 12), 1200)], dt.date(2026, 10, 12)),  # unsuppressed: 3 months after it
    ([(dt.date(2026, 7, 12), 1200), (dt.date(2026, 10, 14), 150)], dt.date(2027, 1, 10)),  # repeat suppressed
    ([(dt.date(2026, 7, 12), 40), (dt.date(2027, 1, 20), 0)], dt.date(2028, 1, 20)),  # then every 12 months
    ([(dt.date(2027, 1, 20), 999)], dt.date(2028, 1, 20)),  # 999 is suppressed
    ([(dt.date(2027, 1, 20), 1000)], dt.date(2027, 4, 20)),  # 1000 is not
])
def test_the_viral_load_falls_due_at_6_and_12_months_then_yearly_and_3_months_after_an_unsuppressed_one(results, due):
    assert viral_load_due_on(START, results) == due


def test_suppression_and_the_unsuppressed_flag():
    assert [hiv.suppression(c) for c in (0, 50, 51, 999, 1000)] == [
        "undetectable", "undetectable", "suppressed", "suppressed", "unsuppressed"]
    shown = standing(care_status="in_care", art_started_on=START, visits=[], results=[(dt.date(2026, 7, 12), 5000)],
                     today=dt.date(2026, 7, 20))
    assert shown["unsuppressed"] and shown["viral_load_due_on"] == dt.date(2026, 10, 12)
    assert not shown["viral_load_due"]


def test_of_two_results_of_one_day_the_later_recorded_is_the_last_as_the_schedule_reads_it():
    """A hub laboratory's 5000, then its repeat run of the same day's sample at 40: the card flagged the person
    unsuppressed by the first while the schedule (and the national count) went by the second."""
    day = dt.date(2026, 7, 12)
    shown = standing(care_status="in_care", art_started_on=START, visits=[], results=[(day, 5000), (day, 40)],
                     today=dt.date(2026, 7, 20))
    assert shown["last_viral_load"] == {"sampled_on": day, "copies_per_ml": 40, "suppression": "undetectable"}
    assert not shown["unsuppressed"] and shown["viral_load_due_on"] == dt.date(2027, 1, 10)  # at 12 months


def test_a_substitution_stays_in_its_line_and_a_switch_moves_to_a_later_one():
    tld, efv, atv = (PROGRAMME.by_code[c] for c in ("TDF+3TC+DTG", "TDF+3TC+EFV400", "AZT+3TC+ATV/r"))
    assert change_refusal("substitution", tld, efv) is None
    assert change_refusal("switch", tld, atv) is None
    assert change_refusal("substitution", tld, atv).startswith("a substitution replaces a drug within the same line")
    assert change_refusal("switch", tld, efv).startswith("a switch moves to a later line")
    assert change_refusal("switch", atv, tld).startswith("a switch moves to a later line")
    assert change_refusal("substitution", tld, tld) == "the person is on TDF+3TC+DTG already"


# -- the card and the register over HTTP ------------------------------------------------------------------------


def test_a_persons_course_on_the_card_and_the_register(api, db, facility, patients):
    """A: enrolled, ART started 400 days ago, a 6-month viral load of 40 copies, 90 days dispensed 100 days ago
    with an appointment at 80: the pills ran out 10 days ago, active, the 12-month viral load overdue. B: ART
    started, last pick-up 60 days ago for 30 days: interruption since 2 days ago, to trace. Numbers in sequence."""
    a, b = patients[0], patients[1]
    made = {}
    for n, who in enumerate((a, b), start=1):
        enrolled = api.post(_base(facility, who), json=_enrolment())
        assert enrolled.status_code == 201, enrolled.text
        assert enrolled.json()["art_number"] == f"ART-{n:05d}" and enrolled.json()["status"] == "not_on_art"
        made[who] = enrolled.json()["root_id"]
        started = api.post(f"{_base(facility, who)}/{made[who]}/regimens",
                           json={"change": "initiation", "started_on": ago(400), "regimen": "TDF+3TC+DTG"})
        assert started.status_code == 201, started.text
    card_a = f"{_base(facility, a)}/{made[a]}"
    assert api.post(f"{card_a}/viral-loads", json={"sampled_on": ago(215), "copies_per_ml": 40}).status_code == 201
    visit = api.post(f"{card_a}/visits", json={"visit_on": ago(100), "arv_days": 90, "adherence": "good",
                                               "next_appointment_on": ago(20)})
    assert visit.status_code == 201, visit.text
    shown = visit.json()
    assert (shown["status"], shown["expected_contact_on"], shown["regimen"], shown["line"]) == (
        "active", ago(10), "TDF+3TC+DTG", "first")
    twelve = hiv.months_after(facility_today() - dt.timedelta(days=400), 12).isoformat()
    assert (shown["viral_load_due_on"], shown["viral_load_due"]) == (twelve, True)
    assert shown["last_viral_load"] == {"sampled_on": ago(215), "copies_per_ml": 40, "suppression": "undetectable"}
    b_visit = api.post(f"{_base(facility, b)}/{made[b]}/visits",
                       json={"visit_on": ago(60), "arv_days": 30, "next_appointment_on": ago(40)})
    assert b_visit.json()["status"] == "iit" and b_visit.json()["interrupted_from"] == ago(1)  # 30 + 29 days

    card = api.get(_base(facility, a))
    assert card.status_code == 200, card.text
    assert card.json()["care"]["regimens"][0]["change"] == "initiation"
    listed = api.get(f"{API.format(tenant=facility.slug)}/hiv/register")
    assert listed.status_code == 200, listed.text
    register = listed.json()
    assert [p["art_number"] for p in register["people"]] == ["ART-00001", "ART-00002"]
    assert [p["patient"]["family_name"] for p in register["to_trace"]] == ["Banda1"]
    assert (register["counts"]["active"], register["counts"]["iit"], register["viral_load_due"]) == (1, 1, 2)
    log = {ev.event_type for ev in audit.patient_access_log(db, facility.slug, a)}
    assert {"record.hiv_care.create", "record.hiv_regimen.create", "record.hiv_visit.create",
            "record.hiv_viral_load.create", "record.hiv_care.read", "record.hiv_register.read"} <= log


def test_regimen_changes_refusals_and_second_enrolments_write_nothing(api, db, facility, patients):
    a = patients[0]
    care = api.get(_base(facility, a)).json()["care"]
    root = f"{_base(facility, a)}/{care['root_id']}"
    before = _hiv_entries(db, facility)
    second = api.post(_base(facility, a), json=_enrolment())
    assert second.status_code == 409 and second.json()["detail"].startswith(
        "this person is enrolled in HIV care here already (ART number ART-00001"), second.text
    for path, body, field, said in [
        (root + "/regimens", {"change": "initiation", "started_on": ago(5), "regimen": "TDF+3TC+DTG"}, "change",
         "ART was started on"),
        (root + "/regimens", {"change": "switch", "started_on": ago(5), "regimen": "TDF+3TC+EFV400",
                              "reason": "treatment failure"}, "change", "A switch moves to a later line"),
        (root + "/regimens", {"change": "substitution", "started_on": ago(5), "regimen": "TDF+3TC+EFV400"},
         "reason", "say why"),
        (root + "/regimens", {"change": "substitution", "started_on": ago(5), "regimen": "XYZ",
                              "reason": "stock-out"}, "regimen", "'XYZ' is not a regimen of this appliance's HIV"),
        (root + "/visits", {"visit_on": ago(-3), "arv_days": 30, "next_appointment_on": ago(-40)}, "visit_on",
         "the visit's day"),
        (root + "/visits", {"visit_on": ago(3), "arv_days": 30, "next_appointment_on": ago(3)},
         "next_appointment_on", "the next appointment must be after the visit"),
        (root + "/visits", {"visit_on": ago(3), "arv_days": 400, "next_appointment_on": ago(-3)}, "arv_days", None),
        (root + "/viral-loads", {"sampled_on": ago(500), "copies_per_ml": 10}, "sampled_on",
         "the sample's day is before HIV was diagnosed"),
        (root + "/viral-loads", {"sampled_on": ago(5), "copies_per_ml": -1}, "copies_per_ml", None),
        (_base(facility, patients[2]), _enrolment(diagnosed_on=ago(300)), "diagnosed_on",
         "HIV must be confirmed before enrolment"),
        (_base(facility, patients[2]), _enrolment(who_stage=5), "who_stage", None),
    ]:
        answer = api.post(path, json=body)
        assert answer.status_code in (400, 409, 422), answer.text
        assert field in answer.text and (said is None or answer.json()["detail"].startswith(said)), answer.text
    assert _hiv_entries(db, facility) == before
    with db.tenant(facility.slug) as conn:  # the refusals took no number
        assert conn.execute(sa.text("SELECT last_number FROM hiv_art_sequence")).scalar() == 2
    # Before ART, no ARVs: a third person enrolled, a visit dispensing refused, one dispensing none recorded.
    c = api.post(_base(facility, patients[2]), json=_enrolment()).json()
    assert c["art_number"] == "ART-00003"
    refused = api.post(f"{_base(facility, patients[2])}/{c['root_id']}/visits",
                       json={"visit_on": ago(30), "arv_days": 30, "next_appointment_on": ago(10)})
    assert refused.status_code == 422 and refused.json()["field"] == "arv_days"
    switched = api.post(root + "/regimens", json={"change": "substitution", "started_on": ago(5),
                                                  "regimen": "TDF+3TC+EFV400", "reason": "insomnia on dolutegravir"})
    assert switched.status_code == 201, switched.text
    assert [r["regimen"] for r in switched.json()["regimens"]] == ["TDF+3TC+DTG", "TDF+3TC+EFV400"]


def test_transferred_out_then_withdrawn_and_the_number_never_given_again(api, db, facility, patients):
    b = patients[1]
    care = api.get(_base(facility, b)).json()["care"]
    root = f"{_base(facility, b)}/{care['root_id']}"
    out = api.post(root + "/status", json={"status": "transferred_out", "status_on": ago(1),
                                           "version_id": care["id"]})
    assert out.status_code == 200, out.text
    assert (out.json()["status"], out.json()["art_number"], out.json()["entry_status"]) == (
        "transferred_out", "ART-00002", "amended")
    stale = api.post(root + "/status", json={"status": "died", "status_on": ago(1), "version_id": care["id"]})
    assert stale.status_code == 409, stale.text
    before = _hiv_entries(db, facility)
    refused = api.post(root + "/visits", json={"visit_on": ago(1), "arv_days": 30, "next_appointment_on": ago(-29)})
    assert refused.status_code == 422 and "transferred out" in refused.json()["detail"]
    assert api.post(root + "/status", json={"status": "transferred_out", "status_on": ago(1)}).status_code == 409
    assert _hiv_entries(db, facility) == before
    listed = api.get(f"{API.format(tenant=facility.slug)}/hiv/register").json()
    assert listed["to_trace"] == [] and listed["counts"]["transferred_out"] == 1
    gone = api.post(f"{root}/entered-in-error", json={"reason": "enrolled on the wrong person"})
    assert gone.status_code == 200, gone.text
    assert api.get(_base(facility, b)).json()["care"] is None
    again = api.post(_base(facility, b), json=_enrolment())
    assert again.status_code == 201 and again.json()["art_number"] == "ART-00004"


def test_two_enrolments_at_once_take_two_numbers(db, facility, clinician, patients):
    """The first enrolment holds the ART counter until it commits; the second waits for it, then takes the next."""
    assert two_at_once(db, facility.slug, lambda conn, who: hiv.enrol(
        conn, clinician, who, HivEnrolmentIn.model_validate(_enrolment()), programme=PROGRAMME,
        today=facility_today())["art_number"], patients[3], patients[4]) == ["ART-00005", "ART-00006"]


@pytest.mark.parametrize(("given", "sampled_on", "earlier", "indication"), [
    (None, dt.date(2026, 7, 10), [], "routine"),  # the 6-month one, on its day
    (None, dt.date(2026, 6, 10), [], "routine"),  # drawn at the visit a month before it
    (None, dt.date(2026, 5, 1), [], "targeted"),  # off the schedule: taken for suspected failure
    (None, dt.date(2026, 10, 20), [(dt.date(2026, 7, 12), 1200)], "routine"),  # the repeat after an unsuppressed one
    (None, dt.date(2026, 9, 1), [(dt.date(2026, 7, 12), 40)], "targeted"),  # suppressed in July, due next January
    ("targeted", dt.date(2027, 1, 10), [(dt.date(2026, 7, 12), 40)], "targeted"),  # the clinician's word stands
    (None, dt.date(2025, 12, 1), [], None),  # before ART: no schedule, not documented unless said
])
def test_a_viral_loads_indication_is_the_clinicians_else_the_schedules(given, sampled_on, earlier, indication):
    assert hiv.indication_of(given, sampled_on, START, earlier) == indication


def test_a_viral_load_carries_its_indication_and_a_wrong_one_is_refused(api, db, facility, patients):
    """D (patients[3], enrolled, no ART yet): ART started 400 days ago; a viral load 300 days ago, before the 6-month
    one was due, is targeted; the 6-month one, routine; the clinician's "targeted" kept; a made-up indication refused
    with nothing written."""
    care = api.get(_base(facility, patients[3])).json()["care"]
    root = f"{_base(facility, patients[3])}/{care['root_id']}"
    assert api.post(f"{root}/regimens", json={"change": "initiation", "started_on": ago(400),
                                              "regimen": "TDF+3TC+DTG"}).status_code == 201
    for body in ({"sampled_on": ago(300), "copies_per_ml": 4000}, {"sampled_on": ago(215), "copies_per_ml": 40},
                 {"sampled_on": ago(20), "copies_per_ml": 30, "indication": "targeted"}):
        assert api.post(f"{root}/viral-loads", json=body).status_code == 201
    loads = api.get(_base(facility, patients[3])).json()["care"]["viral_loads"]
    assert [(x["sampled_on"], x["indication"]) for x in loads] == [
        (ago(300), "targeted"), (ago(215), "routine"), (ago(20), "targeted")]
    before = _hiv_entries(db, facility)
    wrong = api.post(f"{root}/viral-loads", json={"sampled_on": ago(2), "copies_per_ml": 30, "indication": "yearly"})
    assert wrong.status_code in (400, 422) and "indication" in wrong.text, wrong.text
    assert _hiv_entries(db, facility) == before


# -- who may ---------------------------------------------------------------------------------------------------------


def test_nurses_record_visits_a_ward_nurse_elsewhere_and_a_registrar_see_nothing(token_client, signed_in, facility,
                                                                                  patients):
    a = patients[0]
    nurse = token_client(facility.slug, role="nurse")
    care = nurse.get(_base(facility, a))
    assert care.status_code == 200, care.text
    root = f"{_base(facility, a)}/{care.json()['care']['root_id']}"
    visit = nurse.post(root + "/visits", json={"visit_on": ago(1), "arv_days": 90, "adherence": "good",
                                               "next_appointment_on": ago(-90)})
    assert visit.status_code == 201, visit.text
    assert nurse.post(root + "/viral-loads", json={"sampled_on": ago(1), "copies_per_ml": 0}).status_code == 403
    assert nurse.post(_base(facility, patients[5]), json=_enrolment()).status_code == 403
    assert nurse.get(f"{API.format(tenant=facility.slug)}/hiv/register").status_code == 403
    # HIV status is read through the chart's care relationship: the nurse of the ward the person is seen on reads
    # the card; a nurse of another ward is asked to break the glass.
    on_ward, elsewhere = signed_in("nurse", facility.slug, ward="GEN"), signed_in("nurse", facility.slug, ward="MAT")
    assert on_ward.get(_base(facility, a)).status_code == 200
    refused = elsewhere.get(_base(facility, a))
    assert refused.status_code == 403 and refused.json()["break_glass_required"] is True
    registrar = token_client(facility.slug, role="registrar")
    assert registrar.get(_base(facility, a)).status_code == 403
    assert registrar.get(f"{API.format(tenant=facility.slug)}/hiv/register").status_code == 403


def test_another_facilitys_credentials_and_guessed_ids_are_refused_on_every_route(api, token_client, db, facility,
                                                                                   other_facility, patients):
    a = patients[0]
    base = _base(facility, a)
    care = api.get(base).json()["care"]
    cid = care["root_id"]
    routes = [("get", base, None), ("post", base, _enrolment()),
              ("post", f"{base}/{cid}/regimens", {"change": "substitution", "started_on": ago(1),
                                                  "regimen": "TDF+3TC+DTG", "reason": "not mine"}),
              ("post", f"{base}/{cid}/visits", {"visit_on": ago(1), "arv_days": 30, "next_appointment_on": ago(-29)}),
              ("post", f"{base}/{cid}/viral-loads", {"sampled_on": ago(1), "copies_per_ml": 20}),
              ("post", f"{base}/{cid}/status", {"status": "stopped", "status_on": ago(1)}),
              ("post", f"{base}/{cid}/entered-in-error", {"reason": "not mine"})]
    before = _hiv_entries(db, facility)
    intruder = token_client(other_facility.slug, role="clinician")
    for method, path, body in [*routes, ("get", f"{API.format(tenant=facility.slug)}/hiv/register", None)]:
        answer = getattr(intruder, method)(path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 403, (path, answer.text)
        assert "Banda" not in answer.text and "ART-0" not in answer.text
    elsewhere = _base(other_facility, a)
    assert intruder.get(elsewhere).status_code == 404
    assert intruder.post(elsewhere, json=_enrolment()).status_code == 404
    assert "Banda" not in intruder.get(f"{API.format(tenant=other_facility.slug)}/hiv/register").text
    guessed = str(uuid.uuid4())
    for method, path, body in [(m, p.replace(str(a), guessed), b) for m, p, b in routes] + [
            (m, p.replace(cid, guessed), b) for m, p, b in routes[2:]]:
        answer = getattr(api, method)(path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 404, (path, answer.text)
    # This person's enrolment through another person's address: not theirs.
    other = _base(facility, patients[5])
    for method, path, body in routes[2:]:
        answer = getattr(api, method)(path.replace(base, other), **({"json": body} if body is not None else {}))
        assert answer.status_code == 404, (path, answer.text)
    assert _hiv_entries(db, facility) == before


def test_a_broken_programme_file_is_refused_naming_the_regimen_and_field(tmp_path):
    text = (Path(__file__).parents[3] / "policies" / "hiv.toml").read_text(encoding="utf-8")
    broken = tmp_path / "hiv.toml"
    broken.write_text(text.replace('line = "second"', 'line = "2nd"', 1), encoding="utf-8")
    with pytest.raises(hiv.ProgrammeError, match=r"regimen AZT\+3TC\+DTG, line"):
        load_programme(broken)
    broken.write_text(text + '\n[[regimen]]\ncode = "TDF+3TC+DTG"\nname = "Again"\nline = "first"\n', encoding="utf-8")
    with pytest.raises(hiv.ProgrammeError, match="each regimen code once"):
        load_programme(broken)
