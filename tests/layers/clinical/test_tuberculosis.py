"""The TB treatment register over real HTTP and the real record (appliance/layers/clinical/tuberculosis.py): the WHO
outcome rules worked by hand, the follow-up months from the start, register numbers in sequence per year (two
registrations at once included), the quarterly cohort's outcome table on a hand-built quarter, the refusals (a
sentence naming the rule, nothing written; one telling the person's HIV care on their access log; a TB registration
and an HIV enrolment at once checked one after the other), correction and entered in error, the nurse and the
registrar, every read on the access log, and another facility's credentials and guessed ids refused on every route."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import hiv, service, tuberculosis
from appliance.layers.clinical.errors import Invalid
from appliance.layers.clinical.hiv_schemas import HivEnrolmentIn
from appliance.layers.clinical.schemas import EncounterIn
from appliance.layers.clinical.tuberculosis import Examination, load_regimens, outcome_refusal
from appliance.layers.clinical.tuberculosis_schemas import TbRegistrationIn
from appliance.substrate import audit, deaths
from tests.layers.clinical.at_once import two_at_once
from tests.layers.clinical.conftest import new_patient

API = "/api/t/{tenant}"
REGIMENS = load_regimens(Path(__file__).parents[3] / "policies" / "tuberculosis.toml")
SIX_MONTHS = REGIMENS.by_code["2HRZE/4HR"]
HIV_PROGRAMME = hiv.load_programme(Path(__file__).parents[3] / "policies" / "hiv.toml")
# Two years back: every quarter of it is past its 12 months, whatever today is.
YEAR = dt.date.today().year - 2


def _case(**overrides) -> dict:
    return {"started_on": f"{YEAR}-01-10", "site": "pulmonary", "bacteriology": "bacteriologically_confirmed",
            "history": "new", "regimen": "2HRZE/4HR", "hiv_status": "negative", "weight_kg": "52.0", **overrides}


def _tb_entries(db, facility) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind IN ('tb_treatment', 'tb_follow_up')")
                            ).scalar()


@pytest.fixture(scope="module")
def patients(db, facility, clinician) -> list[uuid.UUID]:
    with db.tenant(facility.slug) as conn:
        return [new_patient(conn, clinician, family_name=f"Kamau{n}", given_names="Juma", sex="male",
                            birth_date=dt.date(1980, 1, 1) + dt.timedelta(days=n))["id"] for n in range(8)]


def _base(facility, patient_id) -> str:
    return f"{API.format(tenant=facility.slug)}/patients/{patient_id}/tb"


# -- the rules, by hand -------------------------------------------------------------------------------------------

NEG2, NEG5, NEG6 = Examination(2, "negative", "not_done"), Examination(5, "negative", "not_done"), \
    Examination(6, "not_done", "negative")
POS5 = Examination(5, "positive", "not_done")


@pytest.mark.parametrize(("outcome", "site", "bacteriology", "examinations", "refused"), [
    ("cured", "pulmonary", "bacteriologically_confirmed", [NEG2, NEG6], None),
    ("cured", "pulmonary", "clinically_diagnosed", [NEG2, NEG6], "cured is only for a case bacteriologically "
                                                                 "confirmed at the start of treatment"),
    ("cured", "extrapulmonary", "bacteriologically_confirmed", [NEG2, NEG6], "cured is only for a pulmonary case"),
    ("cured", "pulmonary", "bacteriologically_confirmed", [NEG2, NEG5], "cured needs a negative smear or culture "
                                                                        "in the last month of treatment (month 6"),
    ("cured", "pulmonary", "bacteriologically_confirmed", [NEG6], "cured needs a negative smear or culture on at "
                                                                  "least one occasion before the last month"),
    ("cured", "pulmonary", "bacteriologically_confirmed", [NEG2, POS5, NEG6], "a smear or culture was positive at "
                                                                              "month 5 of treatment: that is "
                                                                              "treatment failed, not cured"),
    ("treatment_completed", "pulmonary", "clinically_diagnosed", [], None),
    ("treatment_completed", "pulmonary", "bacteriologically_confirmed", [POS5], "a smear or culture was positive"),
    ("treatment_failed", "pulmonary", "bacteriologically_confirmed", [NEG2, NEG5], "treatment failed means a "
                                                                                   "sputum smear or culture "
                                                                                   "positive at month 5 or later"),
    ("treatment_failed", "pulmonary", "bacteriologically_confirmed", [Examination(2, "positive", "not_done")],
     "treatment failed means"),  # positive at month 2 only: not yet failure
    ("treatment_failed", "pulmonary", "bacteriologically_confirmed", [NEG2, POS5], None),
    ("died", "extrapulmonary", "clinically_diagnosed", [], None),
    ("lost_to_follow_up", "pulmonary", "bacteriologically_confirmed", [POS5], None),
    ("not_evaluated", "pulmonary", "bacteriologically_confirmed", [], None),
])
def test_the_who_outcome_rules(outcome, site, bacteriology, examinations, refused):
    said = outcome_refusal(outcome, site=site, bacteriology=bacteriology, regimen=SIX_MONTHS,
                           examinations=examinations)
    assert (said is None) if refused is None else (said is not None and said.startswith(refused)), said


def test_a_smear_and_culture_that_disagree_are_positive_and_xpert_alone_is_neither():
    assert Examination(6, "negative", "positive").positive and not Examination(6, "negative", "positive").negative
    assert not Examination(6, "not_done", "not_done").negative


def test_follow_ups_fall_due_months_after_the_start_and_overdue_two_weeks_after():
    start = dt.date(2026, 1, 31)  # month 5 has no 31st: the 1st of the month after
    due = tuberculosis.follow_ups_due(start, SIX_MONTHS, [2], dt.date(2026, 7, 16))
    assert [(d["month"], d["due_on"], d["state"], d["end_of_treatment"]) for d in due] == [
        (2, dt.date(2026, 3, 31), "done", False), (5, dt.date(2026, 7, 1), "overdue", False),
        (6, dt.date(2026, 7, 31), "not_yet_due", True)]
    assert tuberculosis.follow_ups_due(start, SIX_MONTHS, [], dt.date(2026, 7, 24))[2]["state"] == "due"
    closed = tuberculosis.follow_ups_due(start, SIX_MONTHS, [2], dt.date(2026, 9, 1), open_=False)
    assert [d["state"] for d in closed] == ["done", "not_needed", "not_needed"]


# -- the register over HTTP ---------------------------------------------------------------------------------------


def test_an_hiv_positive_row_withholds_small_counts_the_one_that_would_reveal_them_and_the_success_they_make():
    """Six HIV-positive cases: five cured, one died. The 1 is withheld, and the 5 too (it is the total less the 1);
    the total and the zeros stay; treatment success (cured + completed) goes with the cured. Under a threshold no
    count is below, the row is unchanged."""
    cases = [{"history": "new", "site": "pulmonary", "bacteriology": "bacteriologically_confirmed",
              "hiv_status": "positive", "outcome": "cured" if n < 5 else "died"} for n in range(6)]
    row = next(r for r in tuberculosis.cohort_table(cases)["rows"] if r["row"] == "hiv_positive")
    shown = tuberculosis.withhold_small(row, 5)
    assert (shown["registered"], shown["outcomes"]["cured"], shown["outcomes"]["died"],
            shown["outcomes"]["treatment_failed"], shown["no_outcome"], shown["success"], shown["success_rate"]) == (
        6, None, None, 0, 0, None, None)
    seven = tuberculosis.cohort_table([*cases, {**cases[5]}])["rows"][-1]  # five cured, two died: none under 2
    assert tuberculosis.withhold_small(seven, 2) == seven


def test_a_hand_built_quarter_gives_the_register_numbers_in_sequence_and_the_cohort_table(api, db, facility,
                                                                                         patients):
    """Q1 of YEAR: A cured, B (clinically diagnosed, HIV-positive) completed, C (relapse, extrapulmonary) died,
    D lost to follow-up, E (after failure) failed; F starts in Q2 and is in no Q1 figure."""
    a, b, c, d, e, f = patients[:6]
    cases = [(a, _case()), (b, _case(bacteriology="clinically_diagnosed", hiv_status="positive",
                                     started_on=f"{YEAR}-02-01")),
             (c, _case(history="relapse", site="extrapulmonary", bacteriology="clinically_diagnosed",
                       started_on=f"{YEAR}-02-14")),
             (d, _case(started_on=f"{YEAR}-03-02")), (e, _case(history="after_failure", started_on=f"{YEAR}-03-31")),
             (f, _case(started_on=f"{YEAR}-04-01"))]
    ids = {}
    for n, (who, body) in enumerate(cases, start=1):
        made = api.post(_base(facility, who), json=body)
        assert made.status_code == 201, made.text
        assert made.json()["register_number"] == f"{YEAR}/{n:04d}"
        assert [x["month"] for x in made.json()["due"]] == [2, 5, 6]
        ids[who] = made.json()["id"]

    def follow(who, month, day, smear):
        answer = api.post(f"{_base(facility, who)}/{ids[who]}/follow-ups",
                          json={"month": month, "examined_on": day, "smear": smear, "weight_kg": "55.5"})
        assert answer.status_code == 201, answer.text

    def outcome(who, what, day, status=200):
        answer = api.post(f"{_base(facility, who)}/{ids[who]}/outcome", json={"outcome": what, "outcome_on": day})
        assert answer.status_code == status, answer.text
        return answer

    follow(a, 2, f"{YEAR}-03-10", "negative")
    before = _tb_entries(db, facility)
    refused = outcome(a, "cured", f"{YEAR}-07-12", 422)
    assert refused.json()["field"] == "outcome"
    assert refused.json()["detail"].startswith("Cured needs a negative smear or culture in the last month")
    assert _tb_entries(db, facility) == before
    follow(a, 6, f"{YEAR}-07-09", "negative")
    assert outcome(a, "cured", f"{YEAR}-07-12").json()["outcome"] == "cured"
    refused = outcome(b, "cured", f"{YEAR}-08-01", 422).json()
    assert refused["detail"] == ("Cured is only for a case bacteriologically confirmed at the start of treatment; "
                                 "this case was clinically diagnosed: record treatment completed (WHO 2013)")
    early = outcome(b, "treatment_completed", f"{YEAR}-04-01", 422).json()
    assert early["field"] == "outcome_on" and "lasts 6 months" in early["detail"]
    outcome(b, "treatment_completed", f"{YEAR}-08-01")
    outcome(c, "died", f"{YEAR}-03-01")
    outcome(d, "lost_to_follow_up", f"{YEAR}-06-01")
    assert outcome(e, "treatment_failed", f"{YEAR}-09-01", 422).json()["detail"].startswith("Treatment failed means")
    follow(e, 5, f"{YEAR}-08-31", "positive")
    outcome(e, "treatment_failed", f"{YEAR}-09-01")
    assert outcome(e, "died", f"{YEAR}-09-02", 409).json()["detail"].startswith("this treatment's outcome is")

    listed = api.get(f"{API.format(tenant=facility.slug)}/tb/register", params={"year": YEAR})
    assert listed.status_code == 200, listed.text
    register = listed.json()
    assert [x["register_number"] for x in register["cases"]] == [f"{YEAR}/{n:04d}" for n in range(1, 7)]
    assert register["cases"][0]["patient"]["family_name"] == "Kamau0"
    q1 = register["cohorts"][0]
    assert (q1["quarter"], q1["starts_on"], q1["ends_on"], q1["provisional"]) == (1, f"{YEAR}-01-01",
                                                                                  f"{YEAR}-03-31", False)
    table = {r["row"]: (r["registered"], {k: v for k, v in r["outcomes"].items() if v}, r["success"],
                        r["success_rate"]) for r in q1["rows"]}
    assert table == {
        "new_relapse_confirmed": (2, {"cured": 1, "lost_to_follow_up": 1}, 1, "50.0"),
        "new_relapse_clinical": (1, {"treatment_completed": 1}, 1, "100.0"),
        "new_relapse_extrapulmonary": (1, {"died": 1}, 0, "0.0"),
        "previously_treated": (1, {"treatment_failed": 1}, 0, "0.0"),
        "unknown_history": (0, {}, 0, None),
        "hiv_positive": (1, {"treatment_completed": 1}, 1, "100.0"),
    }
    assert (q1["new_relapse"]["registered"], q1["new_relapse"]["success"], q1["new_relapse"]["success_rate"]) == (
        4, 2, "50.0")
    assert register["cohorts"][1]["all"]["registered"] == 1 and register["cohorts"][1]["all"]["no_outcome"] == 1
    assert register["cases"][5]["overdue"] == [2, 5, 6]  # F: on treatment, nothing recorded since
    log = {ev.event_type for ev in audit.patient_access_log(db, facility.slug, a)}
    assert {"record.tb_treatment.create", "record.tb_follow_up.create", "record.tb_treatment.amend",
            "record.tb_register_hiv_status.read"} <= log  # a clinician may read the ART register: HIV status shown


def test_an_open_treatment_refuses_a_second_registration_and_refusals_write_nothing(api, db, facility, patients):
    who = patients[6]
    made = api.post(_base(facility, who), json=_case(started_on=f"{YEAR + 1}-05-05"))
    assert made.status_code == 201, made.text
    before = _tb_entries(db, facility)
    second = api.post(_base(facility, who), json=_case(started_on=f"{YEAR + 1}-06-01"))
    assert second.status_code == 409, second.text
    assert second.json()["detail"].startswith(f"this patient is on TB treatment already (register number {YEAR + 1}/")
    for body, field, said in [
        (_case(regimen="9HRZE"), "regimen", "'9HRZE' is not a regimen of this appliance's TB programme; it has "
                                            "2HRZE/4HR, 2HPMZ/2HPM, 2HRZE/10HR"),
        (_case(started_on=(dt.date.today() + dt.timedelta(days=3)).isoformat()), "started_on",
         "treatment cannot start in the future"),
        (_case(site="lungs"), "site", None),
        (_case(weight_kg="0"), "weight_kg", None),
    ]:
        answer = api.post(_base(facility, patients[7]), json=body)
        assert answer.status_code in (400, 422), answer.text
        assert field in answer.text and (said is None or answer.json()["detail"].startswith(said)), answer.text
    assert _tb_entries(db, facility) == before
    with db.tenant(facility.slug) as conn:  # the refusals took no number
        assert conn.execute(sa.text("SELECT last_number FROM tb_register_sequence WHERE year = :y"),
                            {"y": YEAR + 1}).scalar() == 1


def test_a_follow_up_is_refused_before_its_month_of_treatment_has_come(api, db, facility, clinician):
    """A positive smear typed as month 5 on a treatment six weeks old let the case be declared treatment failed (a
    positive result from month 5 on): a month's examination is taken from a week before that many months have run,
    on a correction too."""
    with db.tenant(facility.slug) as conn:
        who = new_patient(conn, clinician, family_name="Njoroge", sex="male")["id"]
    made = api.post(_base(facility, who), json=_case(started_on=f"{YEAR}-10-14")).json()
    url = f"{_base(facility, who)}/{made['id']}/follow-ups"
    before = _tb_entries(db, facility)
    refused = api.post(url, json={"month": 5, "examined_on": f"{YEAR}-11-28", "smear": "positive"})
    assert refused.status_code == 422, refused.text
    assert (refused.json()["field"], refused.json()["detail"]) == (
        "month", f"month 5's examination is taken from {YEAR + 1}-03-07, a week before 5 months of treatment have "
                 f"run (started {YEAR}-10-14); this one, on {YEAR}-11-28, is earlier: record the month it was taken in")
    assert _tb_entries(db, facility) == before
    failed = api.post(f"{_base(facility, who)}/{made['id']}/outcome",
                      json={"outcome": "treatment_failed", "outcome_on": f"{YEAR}-11-29"})
    assert failed.status_code == 422 and failed.json()["field"] == "outcome", failed.text
    at_start = api.post(url, json={"month": 0, "examined_on": f"{YEAR}-10-14", "smear": "positive"})
    assert at_start.status_code == 201, at_start.text
    month_two = api.post(url, json={"month": 2, "examined_on": f"{YEAR}-12-07", "smear": "negative"})
    assert month_two.status_code == 201, month_two.text  # a week before 14 December
    examined = month_two.json()["follow_ups"][-1]
    corrected = api.put(f"{_base(facility, who)}/follow-ups/{examined['id']}", json={
        "month": 5, "examined_on": f"{YEAR}-12-07", "smear": "positive", "reason": "misread"})
    assert (corrected.status_code, corrected.json()["field"]) == (422, "month"), corrected.text


def test_the_four_month_regimen_is_refused_for_a_child_under_twelve(api, db, facility, clinician):
    """2HPMZ/2HPM (rifapentine, moxifloxacin) is for patients of 12 and over, as its own name says: a boy of 11 was
    registered on it without a word. He is refused (on a correction too), a boy of 12 on the day treatment starts
    is not."""
    started = dt.date(YEAR, 6, 1)
    with db.tenant(facility.slug) as conn:
        eleven, twelve = (new_patient(conn, clinician, family_name=name, given_names="Brian", sex="male",
                                      birth_date=born)["id"]
                          for name, born in (("Omondi", dt.date(YEAR - 12, 6, 2)), ("Ouma", dt.date(YEAR - 12, 6, 1))))
    before = _tb_entries(db, facility)
    four_months = _case(started_on=started.isoformat(), regimen="2HPMZ/2HPM")
    refused = api.post(_base(facility, eleven), json=four_months)
    assert refused.status_code == 422, refused.text
    assert (refused.json()["field"], refused.json()["detail"]) == (
        "regimen", f"2HPMZ/2HPM is for patients of 12 years and over; this patient is 11 on {started.isoformat()}, "
                   "the day treatment starts: choose another regimen")
    assert _tb_entries(db, facility) == before
    assert api.post(_base(facility, twelve), json=four_months).status_code == 201
    made = api.post(_base(facility, eleven), json=_case(started_on=started.isoformat())).json()
    corrected = api.put(f"{_base(facility, eleven)}/{made['id']}", json={
        **four_months, "reason": "shorter regimen", "version_id": made["id"]})
    assert (corrected.status_code, corrected.json()["field"]) == (422, "regimen"), corrected.text


def test_correction_and_entered_in_error_keep_the_number_and_never_give_it_again(api, db, facility, patients):
    who = patients[6]
    card = api.get(_base(facility, who)).json()
    treatment = card["treatments"][0]
    fixed = api.put(f"{_base(facility, who)}/{treatment['id']}", json={
        **_case(started_on=treatment["started_on"], weight_kg="61.5"), "reason": "weight misread at registration",
        "version_id": treatment["id"]})
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["register_number"], fixed.json()["weight_kg"], fixed.json()["entry_status"]) == (
        treatment["register_number"], "61.5", "amended")
    stale = api.put(f"{_base(facility, who)}/{treatment['id']}", json={
        **_case(started_on=treatment["started_on"]), "reason": "from the stale form", "version_id": treatment["id"]})
    assert stale.status_code == 409, stale.text
    examined = api.post(f"{_base(facility, who)}/{treatment['id']}/follow-ups",
                        json={"month": 0, "examined_on": treatment["started_on"], "weight_kg": "60"})
    follow_up = examined.json()["follow_ups"][0]["id"]
    assert api.post(f"{_base(facility, who)}/{follow_up}/entered-in-error",
                    json={"reason": "another patient's sputum"}).status_code == 200
    gone = api.post(f"{_base(facility, who)}/{fixed.json()['id']}/entered-in-error",
                    json={"reason": "registered on the wrong patient"})
    assert gone.status_code == 200, gone.text
    card = api.get(_base(facility, who)).json()
    assert card["treatments"] == [] and {w.get("register_number") for w in card["withdrawn"]} >= {
        treatment["register_number"]}
    again = api.post(_base(facility, who), json=_case(started_on=f"{YEAR + 1}-07-01"))
    assert again.status_code == 201 and again.json()["register_number"] == f"{YEAR + 1}/0002"
    listed = api.get(f"{API.format(tenant=facility.slug)}/tb/register", params={"year": YEAR + 1}).json()
    assert [c["register_number"] for c in listed["cases"]] == [f"{YEAR + 1}/0002"]


def test_two_registrations_at_once_take_two_numbers(db, facility, clinician, patients):
    """The first registration holds the year's counter until it commits; the second waits for it, then takes the
    next number."""
    year = YEAR - 1
    assert two_at_once(db, facility.slug, lambda conn, who: tuberculosis.register(
        conn, clinician, who, TbRegistrationIn.model_validate(_case(started_on=f"{year}-03-03")), regimens=REGIMENS,
        today=dt.date.today())["register_number"], patients[0], patients[1]) == [f"{year}/0001", f"{year}/0002"]


# -- who may -------------------------------------------------------------------------------------------------------


def test_a_nurse_reads_and_records_follow_ups_and_a_registrar_sees_nothing(token_client, db, facility, patients):
    who = patients[6]
    nurse = token_client(facility.slug, role="nurse")
    card = nurse.get(_base(facility, who))
    assert card.status_code == 200, card.text
    treatment = card.json()["treatments"][0]["id"]
    recorded = nurse.post(f"{_base(facility, who)}/{treatment}/follow-ups",
                          json={"month": 2, "examined_on": f"{YEAR + 1}-09-01", "smear": "negative"})
    assert recorded.status_code == 201, recorded.text
    assert nurse.post(_base(facility, patients[7]), json=_case()).status_code == 403
    assert nurse.post(f"{_base(facility, who)}/{treatment}/outcome",
                      json={"outcome": "died", "outcome_on": f"{YEAR + 1}-09-02"}).status_code == 403
    assert nurse.get(f"{API.format(tenant=facility.slug)}/tb/register").status_code == 200
    registrar = token_client(facility.slug, role="registrar")
    assert registrar.get(_base(facility, who)).status_code == 403
    assert registrar.get(f"{API.format(tenant=facility.slug)}/tb/register").status_code == 403


def test_another_facilitys_credentials_and_guessed_ids_are_refused_on_every_route(api, token_client, db, facility,
                                                                                   other_facility, patients):
    who = patients[6]
    base = _base(facility, who)
    treatment = api.get(base).json()["treatments"][0]
    follow_up = treatment["follow_ups"][0]["id"]
    tid = treatment["id"]
    follow = {"month": 5, "examined_on": f"{YEAR + 1}-09-01", "smear": "negative"}
    fix = {**_case(started_on=treatment["started_on"]), "reason": "not mine", "version_id": tid}
    routes = [("get", base, None), ("post", base, _case()), ("post", f"{base}/{tid}/follow-ups", follow),
              ("put", f"{base}/follow-ups/{follow_up}", {**follow, "reason": "not mine"}),
              ("post", f"{base}/{tid}/outcome", {"outcome": "died", "outcome_on": f"{YEAR + 1}-09-02"}),
              ("put", f"{base}/{tid}", fix), ("post", f"{base}/{tid}/entered-in-error", {"reason": "not mine"})]
    before = _tb_entries(db, facility)
    intruder = token_client(other_facility.slug, role="clinician")
    for method, path, body in [*routes, ("get", f"{API.format(tenant=facility.slug)}/tb/register", None)]:
        answer = getattr(intruder, method)(path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 403, (path, answer.text)
        assert "Kamau" not in answer.text and "/0001" not in answer.text
    elsewhere = _base(other_facility, who)
    assert intruder.get(elsewhere).status_code == 404 and intruder.post(elsewhere, json=_case()).status_code == 404
    assert "Kamau" not in intruder.get(f"{API.format(tenant=other_facility.slug)}/tb/register").text
    guessed = str(uuid.uuid4())
    for method, path, body in [(m, p.replace(str(who), guessed), b) for m, p, b in routes] + [
            (m, p.replace(tid, guessed).replace(follow_up, guessed), b) for m, p, b in routes[2:]]:
        answer = getattr(api, method)(path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 404, (path, answer.text)
    # This patient's treatment and follow-up through another patient's address: not theirs.
    other = _base(facility, patients[7])
    for method, path, body in routes[2:]:
        answer = getattr(api, method)(path.replace(base, other), **({"json": body} if body is not None else {}))
        assert answer.status_code == 404, (path, answer.text)
    assert _tb_entries(db, facility) == before



def test_a_follow_up_is_filed_only_under_this_patients_own_encounter(api, db, facility, clinician, patients):
    with db.tenant(facility.slug) as conn:
        who = new_patient(conn, clinician, family_name="Otieno", sex="male")["id"]
        own, others = (service.open_encounter(conn, clinician, p, EncounterIn(encounter_class="outpatient"))["id"]
                       for p in (who, patients[0]))
    treatment = api.post(_base(facility, who), json=_case(started_on=f"{YEAR - 1}-03-01"))
    assert treatment.status_code == 201, treatment.text
    url = f"{_base(facility, who)}/{treatment.json()['id']}/follow-ups"
    smear = {"month": 2, "examined_on": f"{YEAR - 1}-05-02", "smear": "negative"}
    before = _tb_entries(db, facility)
    for encounter_id in (others, uuid.uuid4()):  # another patient's visit, a guessed one
        answer = api.post(url, json={**smear, "encounter_id": str(encounter_id)})
        assert answer.status_code == 422 and answer.json()["field"] == "encounter_id", answer.text
    assert _tb_entries(db, facility) == before
    assert api.post(url, json={**smear, "encounter_id": str(own)}).status_code == 201


# -- HIV status on the register, and a died outcome beside the death certificate ------------------------------------


def test_the_register_shows_hiv_status_only_to_those_who_may_read_the_art_register(api, token_client, db, facility,
                                                                                    patients):
    """B (patients[1]) is HIV-positive in YEAR's register: a clinician (who may read the ART register) sees it and the
    Q1 cohort's one HIV-positive case; a nurse sees no one's status, and the cohort's HIV-positive row under the
    national disclosure rule (its 1 and the outcome beside it withheld: among the four new cases the register names,
    with their outcomes, they would say who), and her read is logged without it; her TB card of B (the chart's rule,
    a care relationship) shows it."""
    url = f"{API.format(tenant=facility.slug)}/tb/register"
    nurse = token_client(facility.slug, role="nurse")
    seen = nurse.get(url, params={"year": YEAR})
    assert seen.status_code == 200, seen.text
    shown = seen.json()
    assert shown["hiv_status_shown"] is False and {c["hiv_status"] for c in shown["cases"]} == {None}
    assert '"hiv_status":"positive"' not in seen.text and '"hiv_status":"negative"' not in seen.text
    hiv_row = next(r for r in shown["cohorts"][0]["rows"] if r["row"] == "hiv_positive")
    assert (hiv_row["registered"], hiv_row["outcomes"]["treatment_completed"], hiv_row["outcomes"]["died"],
            hiv_row["success"], hiv_row["success_rate"], shown["withheld_under"]) == (None, None, 0, None, None, 5)
    other_row = next(r for r in shown["cohorts"][0]["rows"] if r["row"] == "new_relapse_clinical")
    assert (other_row["registered"], other_row["success_rate"]) == (1, "100.0")  # not about HIV: exact
    clinician = api.get(url, params={"year": YEAR}).json()
    assert clinician["hiv_status_shown"] is True and clinician["withheld_under"] is None
    exact = next(r for r in clinician["cohorts"][0]["rows"] if r["row"] == "hiv_positive")
    assert (exact["registered"], exact["outcomes"]["treatment_completed"], exact["success_rate"]) == (1, 1, "100.0")
    assert {c["patient"]["family_name"]: c["hiv_status"] for c in clinician["cases"]}["Kamau1"] == "positive"
    log = [ev.event_type for ev in audit.patient_access_log(db, facility.slug, patients[1])]
    assert log.count("record.tb_register.read") == 1 and "record.tb_register_hiv_status.read" in log
    card = nurse.get(_base(facility, patients[1]))
    assert card.status_code == 200 and card.json()["treatments"][0]["hiv_status"] == "positive"


def _died(year: int, month: int, day: int) -> str:
    return dt.datetime(year, month, day, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=3))).isoformat()


def _certificate(died_at: str) -> dict:
    return {"died_at": died_at, "place": "home", "manner": "disease",
            "part1": [{"code": "J96.0", "interval": "2 hours"}, {"code": "A15.0", "interval": "3 months"}]}


def _certify(api, facility, who, died_at: str) -> dict:
    certified = api.post(f"{API.format(tenant=facility.slug)}/patients/{who}/death", json=_certificate(died_at))
    assert certified.status_code == 201, certified.text
    return certified.json()


def _death_entries(db, facility) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'death'")).scalar()


def test_a_died_outcome_points_to_the_death_certificate_and_the_two_must_agree(api, db, clinician, facility):
    year = YEAR - 1
    with db.tenant(facility.slug) as conn:
        first, second = (new_patient(conn, clinician, family_name=name, sex="male",
                                     birth_date=dt.date(1970, 1, 1))["id"] for name in ("Odhiambo", "Wekesa"))
    # Died with no certificate: recorded, and the answer says none is recorded and where to write it.
    treatment = api.post(_base(facility, first), json=_case(started_on=f"{year}-02-01")).json()
    died = api.post(f"{_base(facility, first)}/{treatment['id']}/outcome",
                    json={"outcome": "died", "outcome_on": f"{year}-03-01"})
    assert died.status_code == 200, died.text
    pointer = died.json()["death"]
    assert pointer["certified"] is False and pointer["says"].startswith("No death certificate is recorded")
    assert api.get(_base(facility, first)).json()["treatments"][0]["death"] == pointer
    # A certificate dating the death 5 March, after the died outcome of 1 March, is refused with nothing written;
    # the TB outcome corrected to 5 March, it is certified.
    death_url = f"{API.format(tenant=facility.slug)}/patients/{first}/death"
    before = _death_entries(db, facility)
    late = api.post(death_url, json=_certificate(_died(year, 3, 5)))
    assert late.status_code == 422 and late.json()["field"] == "died_at", late.text
    assert late.json()["detail"] == (
        f"this facility's TB register records case {treatment['register_number']} with the outcome died on "
        f"{year}-03-01, before the day of death certified here ({year}-03-05): certify the day the person died, or "
        "correct the TB outcome's day on the TB card if it is wrong")
    assert _death_entries(db, facility) == before and not api.get(death_url).json()["deceased"]
    fix = {**_case(started_on=f"{year}-02-01"), "outcome": "died", "reason": "day of death from the certificate"}
    current = api.get(_base(facility, first)).json()["treatments"][0]
    assert api.put(f"{_base(facility, first)}/{current['id']}", json={
        **fix, "outcome_on": f"{year}-03-05", "version_id": current["id"]}).status_code == 200
    certificate = _certify(api, facility, first, _died(year, 3, 5))
    # Its correction to a later day is refused the same way; to an earlier one it stands.
    correction = {**_certificate(_died(year, 3, 7)), "version_id": certificate["id"], "reason": "day mistyped"}
    later = api.put(death_url, json=correction)
    assert later.status_code == 422 and f"died on {year}-03-05, before the day" in later.json()["detail"]
    assert api.put(death_url, json={**correction, "died_at": _died(year, 3, 4)}).status_code == 200
    # Certified 4 March: a died outcome corrected to a day before it is refused, on the day itself it stands.
    current = api.get(_base(facility, first)).json()["treatments"][0]
    assert (current["death"]["certified"], current["death"]["died_on"]) == (True, f"{year}-03-04")
    fix["version_id"] = current["id"]
    before = _tb_entries(db, facility)
    early = api.put(f"{_base(facility, first)}/{current['id']}", json={**fix, "outcome_on": f"{year}-03-02"})
    assert early.status_code == 422 and early.json()["field"] == "outcome_on", early.text
    assert early.json()["detail"].startswith(f"this person was recorded deceased on 4 March {year} at ")
    assert _tb_entries(db, facility) == before
    assert api.put(f"{_base(facility, first)}/{current['id']}",
                   json={**fix, "outcome_on": f"{year}-03-04"}).status_code == 200
    # Certified first: after the death, no outcome of the living; died not before the day; died on it stands.
    treatment = api.post(_base(facility, second), json=_case(started_on=f"{year}-01-10")).json()
    _certify(api, facility, second, _died(year, 4, 1))
    before = _tb_entries(db, facility)
    outcome = f"{_base(facility, second)}/{treatment['id']}/outcome"
    lost = api.post(outcome, json={"outcome": "lost_to_follow_up", "outcome_on": f"{year}-04-10"})
    assert lost.status_code == 422 and lost.json()["field"] == "outcome", lost.text
    assert "lost to follow-up on" in lost.json()["detail"] and lost.json()["detail"].endswith("the outcome is died")
    assert api.post(outcome, json={"outcome": "died", "outcome_on": f"{year}-03-20"}).status_code == 422
    assert _tb_entries(db, facility) == before
    recorded = api.post(outcome, json={"outcome": "died", "outcome_on": f"{year}-04-01"})
    assert recorded.status_code == 200 and recorded.json()["death"]["certified"] is True, recorded.text


NAIROBI_LATE = deaths.Death(died_at=dt.datetime(2026, 3, 3, 21, 30, tzinfo=dt.UTC), tenant="t", facility="Kisumu",
                            timezone="Africa/Nairobi", entry_id=uuid.uuid4())  # 00:30 on 4 March in Nairobi


@pytest.mark.parametrize(("outcome", "day", "refused_field"), [
    ("died", dt.date(2026, 3, 3), "outcome_on"),  # the day before Nairobi's day of death
    ("died", dt.date(2026, 3, 4), None), ("died", dt.date(2026, 3, 9), None),
    ("cured", dt.date(2026, 3, 4), None),  # on the day itself: treatment may have ended that morning
    ("cured", dt.date(2026, 3, 5), "outcome"), ("lost_to_follow_up", dt.date(2026, 5, 1), "outcome"),
    ("not_evaluated", dt.date(2026, 5, 1), None),  # transferred out, the outcome unknown to the unit
])
def test_death_refusal_counts_the_certifying_facilitys_day(outcome, day, refused_field):
    said = tuberculosis.death_refusal(outcome, day, NAIROBI_LATE)
    assert (said is None) if refused_field is None else (said is not None and said[1] == refused_field), said
    assert tuberculosis.death_refusal(outcome, day, None) is None


def test_the_tb_and_art_registers_agree_that_a_person_in_hiv_care_is_hiv_positive(api, db, facility, clinician):
    """A TB case started after HIV was confirmed on the person's enrolment in HIV care here is HIV-positive at its
    start, whichever register is written first: otherwise the TB/HIV cohort row misses someone the ART register
    lists. A start before HIV was confirmed may say negative."""
    with db.tenant(facility.slug) as conn:
        in_care, tb_first = (new_patient(conn, clinician, family_name=name, given_names="Achieng", sex="female",
                                         birth_date=dt.date(1988, 3, 3))["id"] for name in ("Otieno", "Wafula"))
    hiv_base = f"{API.format(tenant=facility.slug)}/patients/{in_care}/hiv"
    enrolled = api.post(hiv_base, json={"enrolled_on": f"{YEAR}-01-20", "diagnosed_on": f"{YEAR}-01-15",
                                        "who_stage": 1, "tb_screening": "presumptive_tb"})
    assert enrolled.status_code == 201, enrolled.text
    before = _tb_entries(db, facility)
    for status in ("negative", "unknown"):
        refused = api.post(_base(facility, in_care), json=_case(started_on=f"{YEAR}-02-01", hiv_status=status))
        assert refused.status_code == 422, refused.text
        assert (refused.json()["field"], refused.json()["detail"]) == (
            "hiv_status", f"this person is enrolled in HIV care here, HIV confirmed on {YEAR}-01-15, before this "
                          f"treatment started on {YEAR}-02-01: their HIV status at its start is positive")
    assert _tb_entries(db, facility) == before
    made = api.post(_base(facility, in_care), json=_case(started_on=f"{YEAR}-02-01", hiv_status="positive"))
    assert made.status_code == 201, made.text
    made = made.json()
    corrected = api.put(f"{_base(facility, in_care)}/{made['id']}", json={
        **_case(started_on=f"{YEAR}-02-01", hiv_status="negative"), "reason": "misread", "version_id": made["id"]})
    assert (corrected.status_code, corrected.json()["field"]) == (422, "hiv_status"), corrected.text
    # Each refusal told the person's enrolment in HIV care and its day: a read of it, on their access log once
    # although the refused write rolled back.
    assert _told_by_refusal(db, facility, in_care) == [("record.hiv_care.read", "tb_treatment")] * 3

    # The TB register first: HIV confirmed on or before the treatment's start is refused, after it is not.
    assert api.post(_base(facility, tb_first), json=_case(started_on=f"{YEAR}-03-10")).status_code == 201
    other_hiv = f"{API.format(tenant=facility.slug)}/patients/{tb_first}/hiv"
    refused = api.post(other_hiv, json={"enrolled_on": f"{YEAR}-04-01", "diagnosed_on": f"{YEAR}-03-10",
                                        "who_stage": 2, "tb_screening": "on_tb_treatment"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "diagnosed_on"
    assert refused.json()["detail"].startswith(f"the TB register records this person's HIV status as negative at the "
                                               f"start of treatment {YEAR}/")
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'hiv_care' AND patient_id = :p"),
                            {"p": tb_first}).scalar() == 0
    assert _told_by_refusal(db, facility, tb_first) == [("record.tb_treatment.read", "hiv_care")]
    later = api.post(other_hiv, json={"enrolled_on": f"{YEAR}-04-01", "diagnosed_on": f"{YEAR}-03-11",
                                      "who_stage": 2, "tb_screening": "on_tb_treatment"})
    assert later.status_code == 201, later.text


def _told_by_refusal(db, facility, patient_id: uuid.UUID) -> list[tuple[str, str]]:
    """The reads a refused write told of on the patient's access log: (event type, the write refused)."""
    return [(e.event_type, e.detail["told_by_refusal_of"]) for e in audit.patient_access_log(db, facility.slug,
                                                                                           patient_id)
            if "told_by_refusal_of" in e.detail]


def _tb_or_hiv(clinician, started_on: dt.date):
    """A TB registration saying HIV-negative from `started_on` (`"tb"`) or an enrolment in HIV care confirming HIV on
    that day (`"hiv"`), for the person `who` names: what was written, or the field a refusal named."""

    def write(conn, who) -> str:
        register, patient_id = who
        try:
            if register == "tb":
                tuberculosis.register(conn, clinician, patient_id, TbRegistrationIn.model_validate(
                    _case(started_on=started_on.isoformat())), regimens=REGIMENS, today=dt.date.today())
            else:
                hiv.enrol(conn, clinician, patient_id, HivEnrolmentIn.model_validate(
                    {"enrolled_on": started_on.isoformat(), "diagnosed_on": started_on.isoformat(), "who_stage": 1,
                     "tb_screening": "on_tb_treatment"}), programme=HIV_PROGRAMME, today=dt.date.today())
        except Invalid as refused:
            return f"{register} refused on {refused.extra['field']}"
        return f"{register} written"
    return write


@pytest.mark.parametrize("first", ["tb", "hiv"])
def test_a_tb_registration_and_an_hiv_enrolment_at_once_are_checked_one_after_the_other(db, facility, clinician,
                                                                                        first):
    """The two registers took a lock each, so a TB registration saying HIV-negative and an enrolment confirming HIV
    by its start, sent at the same moment, each passed its check against the other's not yet written, and the
    registers disagreed. Now one lock for the person holds both: the second waits, sees the first, and is refused."""
    with db.tenant(facility.slug) as conn:
        person = new_patient(conn, clinician, family_name="Chebet", given_names="Naliaka", sex="female",
                             birth_date=dt.date(1990, 6, 6))["id"]
    second = "hiv" if first == "tb" else "tb"
    answers = two_at_once(db, facility.slug, _tb_or_hiv(clinician, dt.date(YEAR, 5, 5)), (first, person),
                          (second, person))
    field = {"tb": "hiv_status", "hiv": "diagnosed_on"}[second]
    assert answers == sorted([f"{first} written", f"{second} refused on {field}"])


def test_a_case_whose_patient_is_certified_dead_waits_for_its_outcome_not_its_follow_ups(api, db, clinician,
                                                                                         facility):
    """A man on treatment died at home and his death was certified; no one recorded the TB outcome. The register
    kept him 'On treatment' with month 2 overdue, counted among the follow-ups to chase. It now says he is certified
    dead, owes no follow-up, and that his outcome is still to record; once recorded, the register says died."""
    year = YEAR - 1
    with db.tenant(facility.slug) as conn:
        who = new_patient(conn, clinician, family_name="Mutiso", sex="male", birth_date=dt.date(1965, 5, 5))["id"]
    treatment = api.post(_base(facility, who), json=_case(started_on=f"{year}-08-01")).json()
    _certify(api, facility, who, _died(year, 8, 20))
    register = f"{API.format(tenant=facility.slug)}/tb/register"
    listed = api.get(register, params={"year": year}).json()
    case = next(c for c in listed["cases"] if c["register_number"] == treatment["register_number"])
    assert (case["outcome"], case["died_on"], case["overdue"]) == (None, f"{year}-08-20", [])
    assert listed["died_without_outcome"] == 1
    assert api.post(f"{_base(facility, who)}/{treatment['id']}/outcome",
                    json={"outcome": "died", "outcome_on": f"{year}-08-20"}).status_code == 200
    listed = api.get(register, params={"year": year}).json()
    case = next(c for c in listed["cases"] if c["register_number"] == treatment["register_number"])
    assert (case["outcome"], case["died_on"], listed["died_without_outcome"]) == ("died", None, 0)
