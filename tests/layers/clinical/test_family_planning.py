"""Family planning over real HTTP and the real record (appliance/layers/clinical/family_planning.py): couple-years
of protection worked by hand, due days, a method provided and a device removed, the refusals (422 with a sentence,
nothing written), correction and entered in error, the nurse recording and the registrar refused, the facility's
clients due, every read and write on the client's access log, and another facility's credentials and guessed ids
refused on every route; and the demo's year of visits."""

from __future__ import annotations

import datetime as dt
import uuid
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import family_planning
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.errors import Invalid
from appliance.layers.clinical.family_planning_demo import PROGRAMME_FILE, generate_family_planning_demo
from appliance.layers.clinical.family_planning_policy import (
    ProgrammeError,
    Visit,
    cyp,
    load_programme,
    standing,
    tenths,
)
from appliance.layers.clinical.family_planning_schemas import FamilyPlanningIn
from appliance.substrate import audit
from tests.layers.clinical.conftest import new_patient, second_writer_waits

API = "/api/t/{tenant}"
POLICY = Path(__file__).parents[3] / "policies" / "family_planning.toml"


@pytest.fixture(scope="module")
def programme():
    return load_programme(POLICY)


def test_couple_years_of_protection_are_summed_exactly_and_rounded_once_to_tenths(programme):
    by = programme.by_code
    # USAID's factors: 15 cycles, 4 doses, 120 condoms per CYP; a Jadelle implant 3.8 CYP.
    assert cyp(by["COC"], 13) == Fraction(13, 15)  # 0.8666...: 9 tenths
    assert tenths(cyp(by["COC"], 13)) == 9
    assert cyp(by["CONDOM_M"], 100) == Fraction(5, 6)  # 0.8333...: 8 tenths
    assert tenths(cyp(by["IMPLANT_JADELLE"], 1)) == 38
    # Two DMPA injections: 0.25 + 0.25 = 0.5 CYP is 5 tenths; each rounded first (3 + 3) would make 6.
    assert tenths(cyp(by["DMPA_IM"], 1) + cyp(by["DMPA_IM"], 1)) == 5
    assert tenths(cyp(by["DMPA_IM"], 1)) == 3  # 2.5 tenths, half up
    # A month's mix: 13/15 + 1/4 + 100/120 + 3.8 = 5.75 CYP exactly, 58 tenths.
    month = cyp(by["COC"], 13) + cyp(by["DMPA_IM"], 1) + cyp(by["CONDOM_M"], 100) + cyp(by["IMPLANT_JADELLE"], 1)
    assert month == Fraction(23, 4) and tenths(month) == 58
    assert tenths(cyp(by["STERILISATION_F"], 1)) == 100 and tenths(cyp(by["LAM"], 1)) == 3


def test_due_days_follow_the_units_given_and_a_removal_ends_the_method(programme):
    day = dt.date(2026, 3, 2)
    injected = [Visit(1, "DMPA_IM", "provided", day, 1)]
    # DMPA-IM lasts 13 weeks: due 1 June; on the list from 25 May, overdue from 2 June, lost after 26 weeks more.
    assert standing(programme, injected, dt.date(2026, 5, 24)).state == "not_yet_due"
    found = standing(programme, injected, dt.date(2026, 5, 25))
    assert (found.due_on, found.due_for, found.state) == (dt.date(2026, 6, 1), "resupply", "due")
    assert standing(programme, injected, dt.date(2026, 6, 2)).state == "overdue"
    assert standing(programme, injected, dt.date(2026, 11, 30)).state == "lost"
    # Three cycles of pills: 84 days.
    assert standing(programme, [Visit(2, "COC", "provided", day, 3)], day).due_on == dt.date(2026, 5, 25)
    # An implant stays in place under condoms given later, and is due for replacement at its labelled five years.
    implant = Visit(3, "IMPLANT_JADELLE", "provided", day, 1)
    both = standing(programme, [implant, Visit(4, "CONDOM_M", "provided", dt.date(2026, 4, 1), 20)], day)
    assert [v.entry_id for v in both.in_place] == [3] and both.current.method == "CONDOM_M"
    alone = standing(programme, [implant], day)
    assert (alone.due_on, alone.due_for) == (dt.date(2031, 3, 2), "replacement")
    removed = standing(programme, [implant, Visit(5, "IMPLANT_JADELLE", "removal", dt.date(2027, 1, 5))], day)
    assert (removed.current, removed.in_place, removed.due_on) == (None, (), None)


def test_a_broken_programme_file_names_the_method_and_the_field(tmp_path):
    broken = tmp_path / "family_planning.toml"
    broken.write_text(POLICY.read_text(encoding="utf-8").replace('cyp_per_unit = "3.8"', 'cyp_per_unit = "3.8 years"'),
                      encoding="utf-8")
    with pytest.raises(ProgrammeError, match=r"method IMPLANT_JADELLE, cyp_per_unit: .*'3.8 years' is not a number"):
        load_programme(broken)


@pytest.fixture(scope="module")
def client(db, facility, clinician) -> dict:
    with db.tenant(facility.slug) as conn:
        found = new_patient(conn, clinician, family_name="Nafula", given_names="Grace", sex="female",
                            birth_date=dt.date(1996, 5, 20), phone="+254700000111")
    return {"id": found["id"]}


@pytest.fixture(scope="module")
def man(db, facility, clinician) -> dict:
    with db.tenant(facility.slug) as conn:
        return new_patient(conn, clinician, family_name="Wekesa", given_names="Peter", sex="male",
                           birth_date=dt.date(1988, 1, 9))


def _visits(db, facility, patient_id) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry WHERE patient_id = :p AND kind = 'family_planning'"),
                            {"p": patient_id}).scalar()


def _base(facility, patient_id) -> str:
    return f"{API.format(tenant=facility.slug)}/patients/{patient_id}/family-planning"


def test_an_injection_given_says_when_the_next_is_due_and_the_write_and_read_are_audited(api, db, facility, client):
    today = dt.date.today()
    given = api.post(_base(facility, client["id"]), json={
        "method": "DMPA_IM", "quantity": 1, "client_type": "new_acceptor", "counselled": True,
        "given_on": (today - dt.timedelta(days=7)).isoformat()})
    assert given.status_code == 201, given.text
    body = given.json()
    due = today - dt.timedelta(days=7) + dt.timedelta(weeks=13)
    assert body["detail"] == (f"Injectable DMPA-IM (Depo-Provera, 150 mg): 1 dose provided to a new acceptor (new to "
                              f"the programme) (short-acting). Next re-supply due {due.isoformat()}.")
    assert (body["visit"]["cyp"], body["visit"]["unit"], body["visit"]["method_class"]) == (0.25, "dose",
                                                                                             "short_acting")
    listed = api.get(_base(facility, client["id"]))
    assert listed.status_code == 200, listed.text
    standing_now = listed.json()["standing"]
    assert (standing_now["current_method"], standing_now["due_on"], standing_now["state"]) == (
        "DMPA_IM", due.isoformat(), "not_yet_due")
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, client["id"])}
    assert {"record.family_planning.create", "record.family_planning.read"} <= events


@pytest.mark.parametrize(("sent", "field", "said"), [
    ({"method": "PATCH", "quantity": 1, "client_type": "continuing"}, "method",
     "'PATCH' is not a method of the family planning programme; it has COC, "),
    ({"method": "COC", "quantity": 40, "client_type": "continuing"}, "quantity",
     "40 cycles of combined oral contraceptive pills is more than one visit gives (at most 13 cycles)"),
    ({"method": "VASECTOMY", "quantity": 1, "client_type": "new_to_method"}, "method",
     "Vasectomy is given to men, and this client is recorded female"),
    ({"method": "IMPLANT_NXT", "service": "removal", "removal_reason": "side_effects"}, "method",
     "this client has no implant, Implanon NXT (etonogestrel, one rod, 3 years) in place"),
    ({"method": "DMPA_IM", "service": "removal", "removal_reason": "side_effects"}, "method",
     "is not removed: a removal is recorded only for an implant or IUD"),
    ({"method": "COC", "quantity": 3, "client_type": "new_acceptor"}, "client_type",
     "so she is not new to the programme"),
    ({"method": "COC", "quantity": 3, "client_type": "continuing", "given_on": "2999-01-01"}, "given_on",
     "is in the future"),
    # Born 1996-05-20: eight years old that day, a mistyped year or the wrong chart, as antenatal care refuses.
    ({"method": "DMPA_IM", "quantity": 1, "client_type": "continuing", "given_on": "2004-05-20"}, "given_on",
     "was 8 years old on 2004-05-20"),
    ({"method": "COC", "quantity": 3}, None, "a method provided needs its quantity and client_type"),
    ({"method": "IUD_CU", "service": "removal"}, None, "a removal needs its removal_reason"),
])
def test_what_the_programme_or_the_client_cannot_hold_is_refused_and_nothing_is_written(api, db, facility, client,
                                                                                       sent, field, said):
    before = _visits(db, facility, client["id"])
    refused = api.post(_base(facility, client["id"]), json=sent)
    assert refused.status_code == 422, refused.text
    assert said in refused.json()["detail"]
    if field:
        assert refused.json()["field"] == field
    assert _visits(db, facility, client["id"]) == before


def test_a_man_is_refused_a_womans_method_and_given_a_vasectomy(api, facility, man):
    base = _base(facility, man["id"])
    refused = api.post(base, json={"method": "STERILISATION_F", "quantity": 1, "client_type": "new_acceptor"})
    assert refused.status_code == 422 and refused.json()["field"] == "method", refused.text
    done = api.post(base, json={"method": "VASECTOMY", "quantity": 1, "client_type": "new_acceptor"})
    assert done.status_code == 201, done.text
    assert done.json()["detail"].endswith("(permanent). No re-supply is due.")
    again = api.post(base, json={"method": "VASECTOMY", "quantity": 1, "client_type": "continuing"})
    assert again.status_code == 422 and "already recorded" in again.json()["detail"], again.text


def test_an_implant_is_inserted_once_removed_only_while_in_place_and_the_nurse_records_it(token_client, db, facility,
                                                                                          clinician):
    with db.tenant(facility.slug) as conn:
        woman = new_patient(conn, clinician, family_name="Chebet", given_names="Ruth", sex="female",
                            birth_date=dt.date(1999, 2, 3))["id"]
    nurse = token_client(facility.slug, role="nurse")
    base = _base(facility, woman)
    inserted = nurse.post(base, json={"method": "IMPLANT_NXT", "quantity": 1, "client_type": "new_acceptor",
                                      "given_on": (dt.date.today() - dt.timedelta(days=30)).isoformat()})
    assert inserted.status_code == 201, inserted.text
    assert [d["method"] for d in inserted.json()["standing"]["in_place"]] == ["IMPLANT_NXT"]
    second = nurse.post(base, json={"method": "IMPLANT_NXT", "quantity": 1, "client_type": "continuing"})
    assert second.status_code == 422 and "already in place since" in second.json()["detail"], second.text
    removed = nurse.post(base, json={"method": "IMPLANT_NXT", "service": "removal",
                                     "removal_reason": "wants_pregnancy"})
    assert removed.status_code == 201, removed.text
    assert removed.json()["standing"]["in_place"] == [] and removed.json()["standing"]["current_method"] is None
    registrar = token_client(facility.slug, role="registrar")
    for answer in (registrar.get(base), registrar.post(base, json={"method": "COC", "quantity": 1,
                                                                   "client_type": "continuing"}),
                   registrar.get(f"{API.format(tenant=facility.slug)}/family-planning/due")):
        assert answer.status_code == 403, answer.text
        assert "Chebet" not in answer.text


def test_two_insertions_at_once_are_checked_one_after_the_other(db, facility, clinician, programme):
    """The first insertion holds the client's family planning lock until it commits; the second waits for it, then
    reads the first's implant and is refused: one implant in place, not two."""
    with db.tenant(facility.slug) as conn:
        woman = new_patient(conn, clinician, family_name="Kerubo", given_names="Ann", sex="female",
                            birth_date=dt.date(1997, 9, 9))["id"]
    implant = FamilyPlanningIn(method="IMPLANT_JADELLE", quantity=1, client_type="new_acceptor")
    today, outcome = dt.date.today(), {}

    def second() -> None:
        try:
            with db.tenant(facility.slug) as conn:
                family_planning.record_visit(conn, clinician, woman, implant.model_copy(
                    update={"client_type": "continuing"}), programme=programme, today=today, tz=dt.UTC)
            outcome["second"] = "written"
        except Invalid as exc:
            outcome["second"] = exc.detail

    with db.tenant(facility.slug) as first:
        family_planning.record_visit(first, clinician, woman, implant, programme=programme, today=today, tz=dt.UTC)
        waiting = second_writer_waits(db, second)
    waiting.join(10)
    assert "already in place" in outcome["second"]
    assert _visits(db, facility, woman) == 1


def test_a_correction_supersedes_the_visit_and_entered_in_error_takes_it_off(api, token_client, facility, client):
    base = _base(facility, client["id"])
    given = api.post(base, json={"method": "CONDOM_M", "quantity": 30, "client_type": "continuing"})
    assert given.status_code == 201, given.text
    first = given.json()["visit"]["id"]
    corrected = api.put(f"{base}/{first}", json={"method": "CONDOM_M", "quantity": 20, "client_type": "continuing",
                                                 "reason": "twenty were given, not thirty"})
    assert corrected.status_code == 200, corrected.text
    version = corrected.json()["visit"]
    assert (version["entry_status"], version["root_id"], version["quantity"]) == ("amended", first, 20)
    stale = api.put(f"{base}/{first}", json={"method": "CONDOM_M", "quantity": 10, "client_type": "continuing",
                                             "reason": "a second go at it"})
    assert stale.status_code == 409, stale.text
    nurse = token_client(facility.slug, role="nurse")
    withdrawn = nurse.post(f"{base}/{version['id']}/entered-in-error", json={"reason": "recorded on the wrong client"})
    assert withdrawn.status_code == 200 and withdrawn.json()["entry_status"] == "entered_in_error", withdrawn.text
    listed = api.get(base).json()
    assert [w["id"] for w in listed["withdrawn"]] == [version["id"]]
    assert version["id"] not in {v["id"] for v in listed["visits"]}
    assert listed["standing"]["current_method"] == "DMPA_IM"  # the condoms no longer count


def test_the_clients_due_list_names_who_is_due_and_overdue_and_audits_them(api, db, facility, clinician):
    today = dt.date.today()
    people = {}
    with db.tenant(facility.slug) as conn:
        for name in ("Due", "Overdue", "Lost"):
            people[name] = new_patient(conn, clinician, family_name=f"Fp{name}", given_names="Client", sex="female",
                                       birth_date=dt.date(1995, 1, 1))["id"]
    for name, weeks in (("Due", 12), ("Overdue", 15), ("Lost", 60)):
        answer = api.post(_base(facility, people[name]), json={
            "method": "DMPA_SC", "quantity": 1, "client_type": "new_acceptor",
            "given_on": (today - dt.timedelta(weeks=weeks)).isoformat()})
        assert answer.status_code == 201, answer.text
    listed = api.get(f"{API.format(tenant=facility.slug)}/family-planning/due")
    assert listed.status_code == 200, listed.text
    states = {c["patient_id"]: c["state"] for c in listed.json()["clients"]}
    assert states[str(people["Due"])] == "due" and states[str(people["Overdue"])] == "overdue"
    assert str(people["Lost"]) not in states  # overdue for over 26 weeks: lost to follow-up, traced no more here
    overdue = api.get(f"{API.format(tenant=facility.slug)}/family-planning/due", params={"state": "overdue"}).json()
    assert all(c["state"] == "overdue" for c in overdue["clients"])
    late = api.get(f"{API.format(tenant=facility.slug)}/family-planning/due", params={"state": "late"})
    assert late.status_code == 422, late.text
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, people["Due"])}
    assert "record.family_planning_due.read" in events


def test_another_facilitys_credentials_and_guessed_ids_are_refused_on_every_route(api, token_client, facility,
                                                                                   other_facility, client, db,
                                                                                   clinician):
    base = _base(facility, client["id"])
    some_visit = api.get(base).json()["visits"][0]["id"]
    intruder = token_client(other_facility.slug, role="clinician")
    visit = {"method": "COC", "quantity": 1, "client_type": "continuing"}
    before = _visits(db, facility, client["id"])
    for method, path, body in [("get", base, None), ("post", base, visit),
                               ("put", f"{base}/{some_visit}", {**visit, "reason": "not mine to correct"}),
                               ("post", f"{base}/{some_visit}/entered-in-error", {"reason": "not mine to withdraw"}),
                               ("get", f"{API.format(tenant=facility.slug)}/family-planning/due", None)]:
        answer = getattr(intruder, method)(path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 403, (path, answer.text)
        assert "Nafula" not in answer.text
    elsewhere = _base(other_facility, client["id"])
    assert intruder.get(elsewhere).status_code == 404 and intruder.post(elsewhere, json=visit).status_code == 404
    guessed = uuid.uuid4()
    guessed_base = _base(facility, guessed)
    for method, path, body in [("get", guessed_base, None), ("post", guessed_base, visit),
                               ("put", f"{base}/{guessed}", {**visit, "reason": "a guess at it"}),
                               ("post", f"{base}/{guessed}/entered-in-error", {"reason": "a guess at it"}),
                               ("put", f"{guessed_base}/{some_visit}", {**visit, "reason": "another client's"})]:
        answer = getattr(api, method)(path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 404, (path, answer.text)
    with db.tenant(facility.slug) as conn:
        sibling = new_patient(conn, clinician, family_name="Nafula", given_names="Joy", sex="female",
                              birth_date=dt.date(1998, 8, 8))["id"]
    other_base = _base(facility, sibling)
    assert api.put(f"{other_base}/{some_visit}", json={**visit, "reason": "another client's visit"}).status_code == 404
    assert api.post(f"{other_base}/{some_visit}/entered-in-error", json={"reason": "another's"}).status_code == 404
    assert _visits(db, facility, client["id"]) == before


def test_the_demo_writes_a_year_of_visits_once_and_the_due_list_has_its_clients(db, facility):
    """appliance/layers/clinical/family_planning_demo.py, over this module's facility: nineteen visits to people new to
    the programme, a woman on DMPA overdue by nine days and one on DMPA-SC due in three; a second run writes nothing."""
    author = demo_principal(facility.slug)
    today = dt.date.today()
    with db.tenant(facility.slug) as conn:
        for n in range(9):
            new_patient(conn, author, family_name=f"Demo{n}", sex="female", birth_date=dt.date(1996, 1, 1 + n))
        new_patient(conn, author, family_name="DemoMan", sex="male", birth_date=dt.date(1985, 5, 5))
    assert generate_family_planning_demo(db, [facility.slug], as_of=today, facilities=(facility.slug,)) == 19
    with db.tenant(facility.slug) as conn:
        theirs = set(conn.execute(sa.text("SELECT patient_id FROM entry WHERE kind = 'family_planning' "
                                          "AND author_id = :a"), {"a": author.account_id}).scalars())
        due = family_planning.due_list(conn, author, programme=load_programme(PROGRAMME_FILE), today=today,
                                       tz=dt.UTC)
    assert len(theirs) == 9
    assert sorted((c["method"], c["state"], c["due_on"]) for c in due["clients"] if c["patient_id"] in theirs) == [
        ("DMPA_IM", "overdue", today - dt.timedelta(days=9)), ("DMPA_SC", "due", today + dt.timedelta(days=3))]
    assert generate_family_planning_demo(db, [facility.slug], as_of=today, facilities=(facility.slug,)) == 0


def test_a_client_with_a_pregnancy_going_on_is_not_traced_for_her_injection(api, db, facility, clinician):
    """A woman on DMPA who became pregnant was on the clients due, overdue, for an injection she must not be given,
    while the ANC clinic listed her pregnancy; once her pregnancy ends she is listed again if a method is owed."""
    today = dt.date.today()
    with db.tenant(facility.slug) as conn:
        woman = new_patient(conn, clinician, family_name="FpPregnant", given_names="Client", sex="female",
                            birth_date=dt.date(1994, 3, 3))["id"]
    given = api.post(_base(facility, woman), json={"method": "DMPA_IM", "quantity": 1, "client_type": "new_acceptor",
                                                   "given_on": (today - dt.timedelta(weeks=16)).isoformat()})
    assert given.status_code == 201, given.text
    due = lambda: {c["patient_id"] for c in api.get(  # noqa: E731
        f"{API.format(tenant=facility.slug)}/family-planning/due").json()["clients"]}
    assert str(woman) in due()
    booked = api.post(f"{API.format(tenant=facility.slug)}/patients/{woman}/antenatal",
                      json={"lmp": (today - dt.timedelta(weeks=9)).isoformat()})
    assert booked.status_code == 201, booked.text
    assert str(woman) not in due()
    born = api.post(f"{API.format(tenant=facility.slug)}/patients/{woman}/deliveries", json={
        "born_at": (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat(), "gestation_weeks": 22,
        "gestation_days": 0, "mode": "spontaneous_vaginal", "blood_loss_ml": 200, "uterotonic": "oxytocin",
        "babies": [{"outcome": "macerated_stillbirth", "sex": "female", "weight_g": 480}]})
    assert born.status_code == 201, born.text
    assert str(woman) in due()
