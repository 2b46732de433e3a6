"""Paging of searchsets over HTTP: `_count`, and `next`/`previous`/`first` links followed as given —
every match once while records are added between pages, every page a valid R4B Bundle and audited,
and a cursor altered, moved to another search, or carried to another facility refused."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest
import sqlalchemy as sa

from appliance.interop.fhir.paging import MAX_COUNT
from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ConditionIn, EncounterIn, PatientIn, ResultIn, VitalSignsIn
from appliance.substrate import audit, record
from tests.interop.fhir.conftest import answer, base, refusal

FAMILY = "Pagewell"
REGISTERED = 23


def _register(db, tenant: str, writer, given: str) -> uuid.UUID:
    with db.tenant(tenant) as conn:
        return service.register_patient(conn, writer, PatientIn(
            family_name=FAMILY, given_names=given, birth_date=dt.date(1990, 5, 17), sex="female"))["id"]


@pytest.fixture(scope="module")
def namesakes(db, facility, writer) -> list[uuid.UUID]:
    """Patients who share a family name, so a search by it has several pages."""
    return [_register(db, facility.slug, writer, f"Given{n:02d}") for n in range(REGISTERED)]


@pytest.fixture(scope="module")
def observed(db, facility, writer) -> dict:
    """A patient with several vital signs sets and laboratory results: an Observation search of two kinds."""
    patient_id = _register(db, facility.slug, writer, "Observed")
    with db.tenant(facility.slug) as conn:
        for n in range(4):
            service.record_vitals(conn, writer, patient_id, VitalSignsIn(heart_rate_bpm=70 + n))
            service.record_result(conn, writer, patient_id, ResultIn(code="718-7", value=str(11 + n)))
        service.add_condition(conn, writer, patient_id, ConditionIn(code="I10"))
    return {"patient": patient_id}


def link(bundle: dict, relation: str) -> str | None:
    return next((item["url"] for item in bundle["link"] if item["relation"] == relation), None)


def follow(client, url: str) -> dict:
    """GET a link exactly as the Bundle gave it (an absolute URL: its path and query)."""
    parts = urlsplit(url)
    return answer(client.get(parts.path, params=parse_qsl(parts.query)))


def ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_next_to_the_end_gives_every_match_once_while_patients_are_added(api, db, facility, writer, namesakes):
    first = answer(api.get(f"{base(facility.slug)}/Patient", params={"family": FAMILY, "_count": "5"}))
    assert first["total"] == REGISTERED and len(first["entry"]) == 5
    assert link(first, "previous") is None and link(first, "first") and link(first, "self")
    seen, page, pages = ids(first), first, 1
    while (following := link(page, "next")) is not None:
        # Records added mid-way neither repeat nor hide a match the client has not yet seen.
        _register(db, facility.slug, writer, f"Latecomer{pages:02d}")
        page = follow(api, following)
        assert len(page["entry"]) <= 5 and page["total"] >= REGISTERED
        seen += ids(page)
        pages += 1
    assert len(seen) == len(set(seen)), "a match came twice"
    assert {str(p) for p in namesakes} <= set(seen)
    assert pages >= REGISTERED // 5


def test_previous_and_first_lead_back(api, facility, namesakes):
    url = f"{base(facility.slug)}/Patient"
    first = answer(api.get(url, params={"family": FAMILY, "given": "given", "_count": "4"}))
    second = follow(api, link(first, "next"))
    third = follow(api, link(second, "next"))
    assert follow(api, link(third, "previous"))["entry"] == second["entry"]
    back = follow(api, link(second, "previous"))
    assert ids(back) == ids(first) and link(back, "previous") is None
    assert ids(follow(api, link(third, "first"))) == ids(first)
    assert len(set(ids(first) + ids(second) + ids(third))) == 12


def test_count_zero_is_the_total_alone(api, facility, namesakes):
    found = answer(api.get(f"{base(facility.slug)}/Patient", params={"family": FAMILY, "given": "given",
                                                                     "_count": "0"}))
    assert found["total"] == REGISTERED and not found.get("entry") and link(found, "next") is None


def test_the_default_page_and_the_largest(api, facility, namesakes):
    url = f"{base(facility.slug)}/Patient"
    assert len(answer(api.get(url, params={"family": FAMILY, "given": "given"}))["entry"]) == REGISTERED  # under 50
    whole = answer(api.get(url, params={"family": FAMILY, "given": "given", "_count": str(MAX_COUNT)}))
    assert whole["total"] == len(whole["entry"]) == REGISTERED and link(whole, "next") is None


@pytest.mark.parametrize("count", [str(MAX_COUNT + 1), "-1", "ten", "2.5", ""])
def test_a_count_out_of_range_is_named(api, facility, count):
    body = refusal(api.get(f"{base(facility.slug)}/Patient", params={"family": FAMILY, "_count": count}), 400)
    assert body["issue"][0]["expression"] == ["_count"] and str(MAX_COUNT) in body["issue"][0]["diagnostics"]
    twice = refusal(api.get(f"{base(facility.slug)}/Patient", params=[("family", FAMILY), ("_count", "2"),
                                                                       ("_count", "3")]), 400)
    assert twice["issue"][0]["expression"] == ["_count"]


def test_an_altered_or_moved_cursor_is_refused(api, facility, namesakes):
    url = f"{base(facility.slug)}/Patient"
    following = link(answer(api.get(url, params={"family": FAMILY, "_count": "5"})), "next")
    params = dict(parse_qsl(urlsplit(following).query))
    cursor = params["_cursor"]
    flipped = cursor[:-6] + ("A" if cursor[-6] != "A" else "B") + cursor[-5:]
    for bad in (flipped, cursor[:-4], "not-a-cursor", "hos1:!!!", cursor + "x"):
        body = refusal(api.get(url, params={**params, "_cursor": bad}), 400)
        assert body["issue"][0]["expression"] == ["_cursor"], bad
    # A cursor is this search's: on another search (or another type's) it does not open.
    moved = refusal(api.get(url, params={"family": "Achieng", "_count": "5", "_cursor": cursor}), 400)
    assert moved["issue"][0]["expression"] == ["_cursor"]
    assert refusal(api.get(f"{base(facility.slug)}/Condition", params={"_cursor": cursor, "patient": str(uuid.uuid4()),
                                                                        "_count": "5"}), 400)


def test_a_cursor_carried_to_another_facility_opens_nothing_there(api, token_client, facility, other_facility,
                                                                  namesakes):
    following = link(answer(api.get(f"{base(facility.slug)}/Patient", params={"family": FAMILY, "_count": "5"})),
                     "next")
    intruder = token_client(other_facility.slug, role="clinician")
    moved = urlsplit(following).path.replace(f"/t/{facility.slug}/", f"/t/{other_facility.slug}/")
    body = refusal(intruder.get(moved, params=parse_qsl(urlsplit(following).query)), 400)
    assert body["issue"][0]["expression"] == ["_cursor"] and FAMILY not in str(body)
    # And the first facility's link itself, with the other facility's token: refused outright.
    assert refusal(follow_raw(intruder, following), 403)


def follow_raw(client, url: str):
    parts = urlsplit(url)
    return client.get(parts.path, params=parse_qsl(parts.query))


def test_observations_of_two_kinds_page_in_one_order(api, facility, observed):
    url = f"{base(facility.slug)}/Observation"
    whole = answer(api.get(url, params={"patient": str(observed["patient"]), "_count": str(MAX_COUNT)}))
    assert whole["total"] == len(whole["entry"]) == 8
    page = answer(api.get(url, params={"patient": str(observed["patient"]), "_count": "3"}))
    assert page["total"] == 8
    seen = ids(page)
    while (following := link(page, "next")) is not None:
        page = follow(api, following)
        seen += ids(page)
    assert seen == ids(whole)  # the same order, newest first, results and vital signs interleaved
    vitals = answer(api.get(url, params={"patient": str(observed["patient"]), "category": "vital-signs",
                                         "_count": "3"}))
    assert vitals["total"] == 4 and len(vitals["entry"]) == 3
    assert {e["resource"]["category"][0]["coding"][0]["code"] for e in vitals["entry"]} == {"vital-signs"}


def test_each_page_is_audited_naming_only_its_rows(api, db, facility, observed):
    before = len(audit.patient_access_log(db, facility.slug, observed["patient"]))
    url = f"{base(facility.slug)}/Observation"
    first = answer(api.get(url, params={"patient": str(observed["patient"]), "category": "laboratory",
                                        "_count": "2"}))
    follow(api, link(first, "next"))
    new = audit.patient_access_log(db, facility.slug, observed["patient"])[before:]
    assert [e.event_type for e in new] == ["record.result.read", "record.result.read"]


def test_a_page_opens_only_as_the_first_would(signed_in, db, facility, writer):
    """A clinician with no care relationship follows a page link made under break-the-glass: without
    stating the reason again the page is refused as the first would be; with it, it opens and is flagged."""
    unseen = _register(db, facility.slug, writer, "Guarded")
    with db.tenant(facility.slug) as conn:
        for code in ("I10", "E11.9", "J45.9"):
            service.add_condition(conn, writer, unseen, ConditionIn(code=code))
    clinician = signed_in("clinician", facility.slug)
    reason = {"x-break-glass-reason": "unconscious on arrival, history needed now"}
    first = answer(clinician.get(f"{base(facility.slug)}/Condition", params={"patient": str(unseen), "_count": "1"},
                                 headers=reason))
    following = link(first, "next")
    refused = refusal(follow_raw(clinician, following), 403)
    assert refused["issue"][0]["details"]["coding"][0]["code"] == "break-glass-required" and "I10" not in str(refused)
    parts = urlsplit(following)
    second = answer(clinician.get(parts.path, params=parse_qsl(parts.query), headers=reason))
    assert len(second["entry"]) == 1 and ids(second) != ids(first)
    assert len([e for e in audit.patient_access_log(db, facility.slug, unseen) if e.break_the_glass]) >= 2


def test_searches_and_patients_of_no_match(api, facility):
    found = answer(api.get(f"{base(facility.slug)}/Patient", params={"family": "Nobodyhere", "_count": "5"}))
    assert found["total"] == 0 and not found.get("entry") and link(found, "next") is None


def test_everything_pages_in_the_order_of_the_whole(api, facility, observed):
    url = f"{base(facility.slug)}/Patient/{observed['patient']}/$everything"
    whole = answer(api.get(url))
    assert whole["total"] == len(whole["entry"]) == 10 and link(whole, "next") is None  # patient, 8, a condition
    assert whole["entry"][0]["resource"]["resourceType"] == "Patient"
    page = answer(api.get(url, params={"_count": "3"}))
    assert page["total"] == 10
    seen = ids(page)
    while (following := link(page, "next")) is not None:
        page = follow(api, following)
        seen += ids(page)
    assert seen == ids(whole)
    nothing = answer(api.get(url, params={"_count": "0"}))
    assert nothing["total"] == 10 and not nothing.get("entry")


def test_everything_since_an_instant(api, db, facility, writer):
    patient_id = _register(db, facility.slug, writer, "Since")
    with db.tenant(facility.slug) as conn:
        for code in ("I10", "J45.9"):
            service.add_condition(conn, writer, patient_id, ConditionIn(code=code))
        mark = conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
    with db.tenant(facility.slug) as conn:  # recorded at its own transaction's start: after the mark
        later = service.add_condition(conn, writer, patient_id, ConditionIn(code="E11.9"))
    url = f"{base(facility.slug)}/Patient/{patient_id}/$everything"
    since = answer(api.get(url, params={"_since": mark.isoformat()}))
    assert ids(since) == [str(later["root_id"])] and since["total"] == 1
    assert answer(api.get(url, params={"_since": "2000-01-01T00:00:00Z"}))["total"] == 4
    paged = answer(api.get(url, params={"_since": "2000-01-01T00:00:00Z", "_count": "3"}))
    assert "_since=2000-01-01T00%3A00%3A00Z" in link(paged, "next")
    rest = follow(api, link(paged, "next"))
    assert len(ids(paged)) + len(ids(rest)) == 4 and link(rest, "next") is None


@pytest.mark.parametrize(("params", "named"), [
    ({"_since": "2024-05-01"}, "_since"), ({"_since": "2024-05-01T08:00:00"}, "_since"),
    ({"_since": "yesterday"}, "_since"), ({"_type": "Condition"}, "_type"), ({"_count": "501"}, "_count"),
    ({"_cursor": "sealed1:AAAA"}, "_cursor")])
def test_everything_refuses_what_it_does_not_take_naming_it(api, facility, observed, params, named):
    url = f"{base(facility.slug)}/Patient/{observed['patient']}/$everything"
    assert refusal(api.get(url, params=params), 400)["issue"][0]["expression"] == [named]


def test_everything_cursor_is_this_patients(api, facility, observed, namesakes):
    url = f"{base(facility.slug)}/Patient/{{}}/$everything"
    following = link(answer(api.get(url.format(observed["patient"]), params={"_count": "2"})), "next")
    query = parse_qsl(urlsplit(following).query)
    assert refusal(api.get(url.format(namesakes[0]), params=query), 400)["issue"][0]["expression"] == ["_cursor"]


def test_the_capability_statement_names_count_and_since_where_served(api, facility):
    statement = answer(api.get(f"{base(facility.slug)}/metadata"))
    for resource in statement["rest"][0]["resource"]:
        assert "_count" in [p["name"] for p in resource["searchParam"]], resource["type"]
    [patient] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Patient"]
    assert "_since" in patient["operation"][0]["documentation"]
    assert "_count" in patient["operation"][0]["documentation"]


def test_each_patient_search_page_is_noted_as_a_search_of_each_patient_it_shows(api, facility, namesakes):
    """One event per patient shown, naming them, so the search is in each one's access log."""
    noted: list[tuple[str, str, set[str]]] = []

    def hook(conn, principal, action, patient_id, entity_kind, entity_ids):
        assert entity_ids == (patient_id,)
        noted.append((action, entity_kind, {str(patient_id)}))

    record.register_access_hook(hook)
    try:
        first = answer(api.get(f"{base(facility.slug)}/Patient", params={"family": FAMILY, "given": "given",
                                                                         "_count": "10"}))
        second = follow(api, link(first, "next"))
    finally:
        record.unregister_access_hook(hook)
    assert noted == [("search", "patient", {shown}) for shown in ids(first) + ids(second)]


def test_encounters_page_even_those_with_no_date(api, db, facility, writer):
    """A planned visit with no date sorts last (by when it was recorded), never lost between pages."""
    patient_id = _register(db, facility.slug, writer, "Encountered")
    with db.tenant(facility.slug) as conn:
        opened = [service.open_encounter(conn, writer, patient_id, EncounterIn(encounter_class="outpatient"))["id"]
                  for _ in range(3)]
        undated = service.open_encounter(conn, writer, patient_id, EncounterIn(encounter_class="outpatient",
                                                                               status="planned"))["id"]
    url = f"{base(facility.slug)}/Encounter"
    page = answer(api.get(url, params={"patient": str(patient_id), "_count": "1"}))
    seen = ids(page)
    while (following := link(page, "next")) is not None:
        page = follow(api, following)
        seen += ids(page)
    assert sorted(seen) == sorted(str(e) for e in [*opened, undated]) and seen[-1] == str(undated)
    planned = answer(api.get(url, params={"patient": str(patient_id), "status": "planned", "_count": "1"}))
    assert planned["total"] == 1 and ids(planned) == [str(undated)]
