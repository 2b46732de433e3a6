"""The FHIR facade's Immunization over HTTP (appliance/interop/fhir/resources.py `immunization`): a dose given
here, one read from the child's card, one due and not given, one corrected to another day and one entered in
error, each a valid R4B Immunization with the spec's required elements; read by id, searched by patient, date,
status and vaccine code, in $everything and the CapabilityStatement; every read on the child's access log; and
another facility's token, a guessed id, another facility's dose, a token without the permission and a clinician
outside the child's care refused. A dose POSTed (an outreach tablet's, the national registry's), alone or as an
entry of a transaction Bundle (an EPI app's session), is written by the immunization service, so the schedule judges
it as the chart does, and the ministry's count with it; every refusal writes nothing, a bundle's none of its entries."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest

from appliance.layers.clinical import immunization, service
from appliance.layers.clinical.immunization_schedule import load_schedule
from appliance.layers.clinical.schemas import EncounterIn, ImmunizationIn, PatientIn
from appliance.national import indicators as national
from appliance.substrate import audit
from tests.interop.fhir.conftest import answer, base, count, refusal

UTC = zoneinfo.ZoneInfo("UTC")  # the test facilities' zone


def _child(db, tenant: str, writer, family: str, *, seen: bool = True) -> uuid.UUID:
    with db.tenant(tenant) as conn:
        child = service.register_patient(conn, writer, PatientIn(
            family_name=family, given_names="Baby", birth_date=dt.date.today() - dt.timedelta(days=120), sex="female"))
        if seen:
            service.open_encounter(conn, writer, child["id"], EncounterIn(encounter_class="outpatient",
                                                                          reason="immunization clinic"))
    return child["id"]


def _dose(conn, writer, settings, child: uuid.UUID, **fields) -> dict:
    written = immunization.record_dose(conn, writer, child, ImmunizationIn.model_validate(fields),
                                       schedule=load_schedule(settings.policies_dir / "immunization.toml"),
                                       today=dt.date.today(), tz=UTC)
    return written["immunization"]


@pytest.fixture(scope="module")
def vaccinated(db, settings, facility, writer) -> dict:
    child = _child(db, facility.slug, writer, "Chanzu")
    today = dt.date.today()
    schedule = load_schedule(settings.policies_dir / "immunization.toml")
    with db.tenant(facility.slug) as conn:
        penta = _dose(conn, writer, settings, child, vaccine="PENTA", dose_number=1, lot_number="PV-2231",
                      expiry_date="2027-06-30", site="left_thigh", route="intramuscular",
                      given_on=(today - dt.timedelta(days=70)).isoformat())
        bcg = _dose(conn, writer, settings, child, vaccine="BCG", dose_number=1, source="historical",
                    given_on=(today - dt.timedelta(days=119)).isoformat(), note="from the child's card")
        opv = _dose(conn, writer, settings, child, vaccine="OPV", dose_number=2, status="not_done",
                    not_done_reason="out_of_stock")
        rota = _dose(conn, writer, settings, child, vaccine="ROTA", dose_number=1,
                     given_on=(today - dt.timedelta(days=60)).isoformat())
        # The nurse wrote the wrong day: corrected to the day it was given, which the resource must then say.
        corrected = immunization.correct_dose(
            conn, writer, child, rota["id"], ImmunizationIn(vaccine="ROTA", dose_number=1,
                                                            given_on=today - dt.timedelta(days=69)),
            "the day on the card is 69 days ago", schedule=schedule, today=today, tz=UTC)["immunization"]
        mistaken = _dose(conn, writer, settings, child, vaccine="PCV", dose_number=1)
        immunization.withdraw_dose(conn, writer, child, mistaken["id"], "recorded on the wrong child")
    return {"child": child, "penta": penta["root_id"], "bcg": bcg["root_id"], "opv": opv["root_id"],
            "rota": rota["root_id"], "rota_day": (today - dt.timedelta(days=69)).isoformat(),
            "rota_version": corrected["id"], "mistaken": mistaken["root_id"]}


def test_a_dose_given_here_is_a_complete_immunization(api, facility, vaccinated, writer):
    dose = answer(api.get(f"{base(facility.slug)}/Immunization/{vaccinated['penta']}"))
    # The spec's required elements: status, vaccineCode, patient, occurrence[x].
    assert dose["status"] == "completed" and "statusReason" not in dose
    assert dose["vaccineCode"]["coding"] == [{"system": "urn:healthos:vaccine", "code": "PENTA"},
                                             {"system": "http://hl7.org/fhir/sid/cvx", "code": "198",
                                              "display": "DTP-hepB-Hib Pentavalent Non-US"}]
    assert dose["patient"] == {"reference": f"Patient/{vaccinated['child']}"}
    assert dose["occurrenceDateTime"].startswith((dt.date.today() - dt.timedelta(days=70)).isoformat())
    assert dose["primarySource"] is True and "reportOrigin" not in dose
    assert (dose["lotNumber"], dose["expirationDate"]) == ("PV-2231", "2027-06-30")
    assert dose["site"]["coding"][0] == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActSite", "code": "LT",
                                         "display": "left thigh"}
    assert dose["route"]["coding"][0]["code"] == "IM"
    assert dose["protocolApplied"] == [{"doseNumberPositiveInt": 1}]
    assert dose["performer"][0]["function"]["coding"][0]["code"] == "AP"
    assert dose["performer"][0]["actor"]["identifier"]["value"] == str(writer.account_id)


def test_a_dose_from_the_card_and_a_dose_not_given(api, facility, vaccinated):
    url = base(facility.slug)
    card = answer(api.get(f"{url}/Immunization/{vaccinated['bcg']}"))
    assert card["primarySource"] is False and card["reportOrigin"]["coding"][0]["code"] == "record"
    assert "performer" not in card and card["note"] == [{"text": "from the child's card"}]
    assert card["vaccineCode"]["coding"][1]["code"] == "19"
    missed = answer(api.get(f"{url}/Immunization/{vaccinated['opv']}"))
    assert missed["status"] == "not-done" and "performer" not in missed
    assert missed["statusReason"] == {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                                  "code": "OSTOCK", "display": "product out of stock"}],
                                      "text": "out of stock"}
    assert missed["protocolApplied"] == [{"doseNumberPositiveInt": 2}]


def test_a_corrected_day_and_an_entry_in_error(api, facility, vaccinated):
    url = base(facility.slug)
    rota = answer(api.get(f"{url}/Immunization/{vaccinated['rota']}"))
    assert rota["meta"]["versionId"] == str(vaccinated["rota_version"])
    assert rota["occurrenceDateTime"].startswith(vaccinated["rota_day"])  # the corrected day, not the first one
    mistaken = answer(api.get(f"{url}/Immunization/{vaccinated['mistaken']}"))
    assert mistaken["status"] == "entered-in-error" and mistaken["vaccineCode"]["coding"][0]["code"] == "PCV"
    assert mistaken["occurrenceDateTime"].startswith(dt.date.today().isoformat())


def test_search_by_patient_date_status_and_vaccine_code(api, facility, vaccinated):
    url, child = base(facility.slug), str(vaccinated["child"])

    def ids(**params) -> list[str]:
        bundle = answer(api.get(f"{url}/Immunization", params={"patient": child, **params}))
        assert bundle["total"] == len(bundle["entry"])
        return [e["resource"]["id"] for e in bundle["entry"]]

    # Newest first; the dose entered in error is no longer in force.
    assert ids() == [str(vaccinated[k]) for k in ("opv", "rota", "penta", "bcg")]
    assert ids(status="not-done") == [str(vaccinated["opv"])]
    assert ids(**{"vaccine-code": "http://hl7.org/fhir/sid/cvx|198"}) == [str(vaccinated["penta"])]
    assert ids(**{"vaccine-code": "urn:healthos:vaccine|BCG"}) == [str(vaccinated["bcg"])]
    assert ids(date=f"ge{(dt.date.today() - dt.timedelta(days=69)).isoformat()}") == [
        str(vaccinated["opv"]), str(vaccinated["rota"])]
    assert refusal(api.get(f"{url}/Immunization", params={"patient": child, "date": "last week"}), 400)
    assert refusal(api.get(f"{url}/Immunization", params={"patient": child, "lot-number": "PV-2231"}), 400)


def test_everything_and_the_capability_statement(api, facility, vaccinated):
    url = base(facility.slug)
    everything = answer(api.get(f"{url}/Patient/{vaccinated['child']}/$everything"))
    assert {e["resource"]["id"] for e in everything["entry"] if e["resource"]["resourceType"] == "Immunization"} == {
        str(vaccinated[k]) for k in ("opv", "rota", "penta", "bcg")}
    statement = answer(api.get(f"{url}/metadata"))
    [served] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Immunization"]
    assert [i["code"] for i in served["interaction"]] == ["read", "search-type", "create"]
    assert "protocolApplied (one: doseNumberPositiveInt)" in served["documentation"]
    assert {p["name"] for p in served["searchParam"]} == {"patient", "date", "status", "vaccine-code", "_count"}


def test_every_read_is_on_the_childs_access_log(api, db, facility, vaccinated):
    before = len(audit.patient_access_log(db, facility.slug, vaccinated["child"]))
    answer(api.get(f"{base(facility.slug)}/Immunization/{vaccinated['penta']}"))
    answer(api.get(f"{base(facility.slug)}/Immunization", params={"patient": str(vaccinated["child"])}))
    events = audit.patient_access_log(db, facility.slug, vaccinated["child"])[before:]
    assert [(e.event_type, e.action) for e in events] == [("record.immunization.read", "R")] * 2


def test_the_attackers_side(token_client, signed_in, db, settings, facility, other_facility, writer, api,
                            vaccinated):
    url = base(facility.slug)
    dose, child = vaccinated["penta"], vaccinated["child"]
    intruder = token_client(other_facility.slug, role="clinician")
    for path in (f"/Immunization/{dose}", f"/Immunization?patient={child}"):
        assert refusal(intruder.get(url + path), 403)["issue"][0]["code"] == "forbidden"
    # A dose of another facility's child, and a guessed id, read the same: not found here.
    theirs_child = _child(db, other_facility.slug, writer, "Elsewhere")
    with db.tenant(other_facility.slug) as conn:
        theirs = _dose(conn, writer, settings, theirs_child, vaccine="BCG", dose_number=1)["root_id"]
    guess = uuid.uuid4()
    known = refusal(api.get(f"{url}/Immunization/{theirs}"), 404)["issue"][0]["diagnostics"]
    guessed = refusal(api.get(f"{url}/Immunization/{guess}"), 404)["issue"][0]["diagnostics"]
    assert known.replace(str(theirs), "ID") == guessed.replace(str(guess), "ID")
    assert refusal(api.get(f"{url}/Immunization", params={"patient": str(theirs_child)}), 404)
    # A condition's id is no Immunization, nor is a dose a Condition.
    assert refusal(api.get(f"{url}/Condition/{dose}"), 404)
    # A token that may read patients but not immunizations.
    reader = token_client(facility.slug, permissions=["clinical.patient.read", "clinical.chart.read"])
    assert "clinical.immunization.read" in refusal(reader.get(f"{url}/Immunization/{dose}"), 403)[
        "issue"][0]["diagnostics"]
    # A clinician with no care relationship with the child: break-the-glass, by id and by search.
    unseen = _child(db, facility.slug, writer, "Unseen", seen=False)
    with db.tenant(facility.slug) as conn:
        unseen_dose = _dose(conn, writer, settings, unseen, vaccine="BCG", dose_number=1)["root_id"]
    clinician = signed_in("clinician", facility.slug)
    for path in (f"/Immunization/{unseen_dose}", f"/Immunization?patient={unseen}"):
        assert "break-the-glass" in refusal(clinician.get(url + path), 403)["issue"][0]["diagnostics"], path
    # A dose is created, never replaced or deleted through the facade: that is the chart's, with its reason.
    assert refusal(api.put(f"{url}/Immunization/{dose}", json={"resourceType": "Immunization"}), 405)


def _posted(patient: uuid.UUID, **elements) -> dict:
    """An Immunization as a registry sends one: PENTA by its CVX code, given 40 days ago."""
    return {"resourceType": "Immunization", "status": "completed", "patient": {"reference": f"Patient/{patient}"},
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "198"}]},
            "occurrenceDateTime": (dt.date.today() - dt.timedelta(days=40)).isoformat(), **elements}


def test_a_dose_posted_is_recorded_as_the_chart_records_it(api, db, settings, facility, writer):
    url, child = base(facility.slug), _child(db, facility.slug, writer, "Posted")
    before = len(audit.patient_access_log(db, facility.slug, child))
    response = api.post(f"{url}/Immunization", json=_posted(
        child, lotNumber="PV-9", protocolApplied=[{"doseNumberPositiveInt": 1}], primarySource=True,
        site={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActSite", "code": "LT"}]},
        route={"text": "intramuscular"}))
    created = answer(response, 201)
    version = created["meta"]["versionId"]
    assert response.headers["location"].endswith(f"Immunization/{created['id']}/_history/{version}")
    assert created["vaccineCode"]["coding"][0] == {"system": "urn:healthos:vaccine", "code": "PENTA"}
    assert (created["lotNumber"], created["site"]["coding"][0]["code"], created["route"]["coding"][0]["code"]) == (
        "PV-9", "LT", "IM")
    assert created["occurrenceDateTime"].startswith((dt.date.today() - dt.timedelta(days=40)).isoformat())
    assert answer(api.get(f"{url}/Immunization/{created['id']}")) == created
    # Without its number, the next dose the schedule expects; a dose not given, read from a card, with its reason.
    second = answer(api.post(f"{url}/Immunization", json=_posted(
        child, occurrenceDateTime=dt.datetime.now(dt.UTC).isoformat())), 201)
    assert second["protocolApplied"] == [{"doseNumberPositiveInt": 2}]
    missed = answer(api.post(f"{url}/Immunization", json=_posted(
        child, status="not-done", primarySource=False,
        vaccineCode={"coding": [{"system": "urn:healthos:vaccine", "code": "opv"}]},
        statusReason={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "OSTOCK"}]},
        reportOrigin={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/immunization-origin",
                                  "code": "record"}]})), 201)
    assert (missed["status"], missed["statusReason"]["text"], missed["primarySource"]) == (
        "not-done", "out of stock", False)
    # The chart's own read of the child's doses: the schedule counts the two PENTA doses the facade wrote.
    with db.tenant(facility.slug) as conn:
        chart = immunization.patient_immunizations(conn, writer, child, today=dt.date.today(), tz=UTC,
                                                   schedule=load_schedule(settings.policies_dir / "immunization.toml"))
    assert {(d["vaccine"], d["dose_number"], d["status"], d["source"]) for d in chart["doses"]} == {
        ("PENTA", 1, "completed", "administered"), ("PENTA", 2, "completed", "administered"),
        ("OPV", 1, "not_done", "historical")}
    written = [e for e in audit.patient_access_log(db, facility.slug, child)[before:]
               if e.event_type == "record.immunization.create"]
    assert len(written) == 3, [e.event_type for e in audit.patient_access_log(db, facility.slug, child)[before:]]


def test_the_national_count_judges_a_posted_dose_as_the_chart_does(api, db, settings, facility, writer):
    """A first pentavalent dose posted from a lot that expired the day before, and one that counts: the ministry's
    Penta1 of the month grows by the one the chart counts."""
    given = dt.date.today() - dt.timedelta(days=40)
    definitions = national.load_definitions(settings.policies_dir / "indicators.toml")

    def penta1() -> int:
        return sum(national.count_facility(db, facility.slug, "UTC", national.Period.containing(given),
                                           definitions)["penta1_under1"].values())

    before = penta1()
    for lot, expiry in (("OLD-1", given - dt.timedelta(days=1)), ("PV-9", dt.date(2099, 12, 31))):
        answer(api.post(f"{base(facility.slug)}/Immunization", json=_posted(
            _child(db, facility.slug, writer, "Counted"), lotNumber=lot, expirationDate=expiry.isoformat(),
            protocolApplied=[{"doseNumberPositiveInt": 1}], primarySource=True)), 201)
    assert penta1() == before + 1


def test_a_dose_the_record_cannot_take_is_refused_and_writes_nothing(api, db, facility, writer):
    url, child = base(facility.slug), _child(db, facility.slug, writer, "Refused")
    before = count(db, facility.slug, "immunization")

    def refused(body: dict, status: int = 422) -> dict:
        issue = refusal(api.post(f"{url}/Immunization", json=body), status)["issue"][0]
        return {"diagnostics": issue["diagnostics"], "expression": issue.get("expression")}

    cvx_999 = {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "999"}]}
    unknown = refused(_posted(child, vaccineCode=cvx_999))
    assert "http://hl7.org/fhir/sid/cvx|999" in unknown["diagnostics"] and "PENTA (CVX 198)" in unknown["diagnostics"]
    assert unknown["expression"] == ["Immunization.vaccineCode"]
    future = refused(_posted(child, occurrenceDateTime=(dt.date.today() + dt.timedelta(days=2)).isoformat()))
    assert "in the future" in future["diagnostics"] and future["expression"] == ["Immunization.occurrenceDateTime"]
    beyond = refused(_posted(child, protocolApplied=[{"doseNumberPositiveInt": 7}]))
    assert "no dose 7" in beyond["diagnostics"]
    assert "no dose" not in refused(_posted(child, performer=[{"actor": {"display": "Nurse Wambui"}}]))["diagnostics"]
    assert refused(_posted(child, status="entered-in-error"))["expression"] == ["Immunization.status"]
    assert refused(_posted(child, site={"text": "left buttock"}))["expression"] == ["Immunization.site"]
    assert count(db, facility.slug, "immunization") == before


def test_the_attackers_side_of_a_dose_posted(token_client, db, facility, other_facility, writer, api):
    url, child = base(facility.slug), _child(db, facility.slug, writer, "Guarded")
    theirs = _child(db, other_facility.slug, writer, "Theirs")
    before = (count(db, facility.slug, "immunization"), count(db, other_facility.slug, "immunization"))
    # Another facility's token at this facility's address; a guessed patient id; another facility's child.
    intruder = token_client(other_facility.slug, role="clinician")
    assert refusal(intruder.post(f"{url}/Immunization", json=_posted(child)), 403)["issue"][0]["code"] == "forbidden"
    assert refusal(api.post(f"{url}/Immunization", json=_posted(uuid.uuid4())), 404)
    assert refusal(api.post(f"{url}/Immunization", json=_posted(theirs)), 404)
    # A token that reads doses but may not record one.
    reader = token_client(facility.slug, permissions=["clinical.immunization.read", "clinical.patient.read"])
    assert "clinical.immunization.write" in refusal(reader.post(f"{url}/Immunization", json=_posted(child)), 403)[
        "issue"][0]["diagnostics"]
    assert (count(db, facility.slug, "immunization"), count(db, other_facility.slug, "immunization")) == before


def _transaction(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": e.pop("fullUrl", f"urn:uuid:{uuid.uuid4()}"), "resource": e,
         "request": {"method": "POST", "url": e["resourceType"]}} for e in entries]}


def _of_newborn(full_url: str, **elements) -> dict:
    """A dose of the child the same bundle registers (its fullUrl the reference)."""
    return _posted(uuid.uuid4(), **elements) | {"patient": {"reference": full_url}}


def _newborn(full_url: str) -> dict:
    return {"fullUrl": full_url, "resourceType": "Patient", "name": [{"family": "Session", "given": ["Baby"]}],
            "gender": "male", "birthDate": (dt.date.today() - dt.timedelta(days=50)).isoformat()}


def test_a_session_of_doses_in_a_transaction_is_recorded_and_reads_back_as_sent(api, db, facility, writer):
    """An EPI app's session: a child registered there and their doses, and a dose of a child already charted here,
    in one bundle; each dose reads back with what was sent, and is audited as a write of the child's record."""
    url, known = base(facility.slug), _child(db, facility.slug, writer, "Known")
    before = len(audit.patient_access_log(db, facility.slug, known))
    newborn = f"urn:uuid:{uuid.uuid4()}"
    day = (dt.date.today() - dt.timedelta(days=8)).isoformat()
    sent = [_of_newborn(newborn, occurrenceDateTime=day, lotNumber="B-77", expirationDate="2027-01-31",
                    vaccineCode={"coding": [{"system": "urn:healthos:vaccine", "code": "BCG"}]},
                    protocolApplied=[{"doseNumberPositiveInt": 1}], primarySource=True,
                    site={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActSite", "code": "LA"}]},
                    route={"text": "intradermal"}),
            _of_newborn(newborn, occurrenceDateTime=day, protocolApplied=[{"doseNumberPositiveInt": 1}],
                    vaccineCode={"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "178"}]}),
            _posted(known, protocolApplied=[{"doseNumberPositiveInt": 1}], lotNumber="PV-10")]
    response = answer(api.post(url, json=_transaction(_newborn(newborn), *[dict(d) for d in sent])))
    assert response["type"] == "transaction-response"
    child = response["entry"][0]["resource"]["id"]
    created = [e for e in response["entry"] if e["resource"]["resourceType"] == "Immunization"]
    assert [e["response"]["status"] for e in created] == ["201 Created"] * 3
    for entry, posted in zip(created, sent, strict=True):
        dose = entry["resource"]
        assert answer(api.get(f"{url}/Immunization/{dose['id']}")) == dose  # read back as the answer said
        assert dose["patient"]["reference"] == (f"Patient/{child}" if posted["patient"]["reference"] == newborn
                                                else posted["patient"]["reference"])
        for element in ("status", "lotNumber", "expirationDate", "primarySource", "protocolApplied"):
            assert dose.get(element) == posted.get(element, dose.get(element)), element
        assert dose["occurrenceDateTime"].startswith(posted["occurrenceDateTime"])
        sent_code = posted["vaccineCode"]["coding"][0]
        assert {"system": sent_code["system"], "code": sent_code["code"]} in [
            {"system": c["system"], "code": c["code"]} for c in dose["vaccineCode"]["coding"]]
    assert (created[0]["resource"]["site"]["coding"][0]["code"], created[0]["resource"]["route"]["coding"][0]["code"]
            ) == ("LA", "IDINJ")
    assert created[1]["resource"]["vaccineCode"]["coding"][0]["code"] == "OPV"
    written = [e for e in audit.patient_access_log(db, facility.slug, known)[before:]
               if e.event_type == "record.immunization.create"]
    assert len(written) == 1
    assert len([e for e in audit.patient_access_log(db, facility.slug, uuid.UUID(child))
                if e.event_type == "record.immunization.create"]) == 2
    # The CapabilityStatement says so: Immunization created, and the transaction it may come in.
    statement = answer(api.get(f"{url}/metadata"))
    [served] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Immunization"]
    assert "create" in [i["code"] for i in served["interaction"]]
    assert statement["rest"][0]["interaction"] == [{"code": "transaction"}]


def test_one_bad_dose_and_the_transaction_writes_nothing(api, db, facility, writer):
    """A vaccine the schedule does not have, a day in the future: the bundle is refused naming the entry's element,
    and neither the child it registered nor the good doses beside it are written."""
    url, known = base(facility.slug), _child(db, facility.slug, writer, "Batch")
    before = (count(db, facility.slug, "patient"), count(db, facility.slug, "immunization"))
    newborn = f"urn:uuid:{uuid.uuid4()}"
    unknown = refusal(api.post(url, json=_transaction(
        _newborn(newborn), _of_newborn(newborn, protocolApplied=[{"doseNumberPositiveInt": 1}]),
        _posted(known, vaccineCode={"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "999"}]}))), 422)
    assert unknown["issue"][0]["expression"] == ["Bundle.entry[2].resource.vaccineCode"]
    assert "http://hl7.org/fhir/sid/cvx|999" in unknown["issue"][0]["diagnostics"]
    future = refusal(api.post(url, json=_transaction(
        _posted(known, protocolApplied=[{"doseNumberPositiveInt": 1}]),
        _posted(known, occurrenceDateTime=(dt.date.today() + dt.timedelta(days=3)).isoformat(),
                vaccineCode={"coding": [{"system": "urn:healthos:vaccine", "code": "BCG"}]}))), 422)
    assert future["issue"][0]["expression"] == ["Bundle.entry[1].resource.occurrenceDateTime"]
    assert "in the future" in future["issue"][0]["diagnostics"]
    assert (count(db, facility.slug, "patient"), count(db, facility.slug, "immunization")) == before


def test_the_attackers_side_of_a_dose_in_a_transaction(token_client, db, facility, other_facility, writer, api):
    url, child = base(facility.slug), _child(db, facility.slug, writer, "Bundled")
    theirs = _child(db, other_facility.slug, writer, "TheirsBundled")
    before = (count(db, facility.slug, "immunization"), count(db, other_facility.slug, "immunization"))
    intruder = token_client(other_facility.slug, role="clinician")
    assert refusal(intruder.post(url, json=_transaction(_posted(child))), 403)["issue"][0]["code"] == "forbidden"
    # A guessed patient reference, and another facility's child: not found here, nothing written.
    for patient in (uuid.uuid4(), theirs):
        assert refusal(api.post(url, json=_transaction(_posted(patient))), 404)
    # A token that registers patients but may not record a dose.
    registrar = token_client(facility.slug, permissions=["clinical.patient.create", "clinical.patient.read"])
    denied = refusal(registrar.post(url, json=_transaction(_posted(child))), 403)["issue"][0]
    assert "clinical.immunization.write" in denied["diagnostics"]
    assert denied["expression"] == ["Bundle.entry[0].resource"]
    assert (count(db, facility.slug, "immunization"), count(db, other_facility.slug, "immunization")) == before
