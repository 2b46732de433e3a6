"""The tenant portal over in-process HTTP: every page, every form, what each role sees, and the
refusals — another facility's session, a guessed id, a stale CSRF token, bad input."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from markupsafe import escape

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ServiceRequestIn
from appliance.substrate import audit
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone
from tests.e2e.history import CLINICAL_CONFIG, HB, populate
from tests.web.test_auth import csrf_token


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Lakeside Portal Hospital", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def elsewhere(tenant_factory):
    return tenant_factory(name="Elsewhere Clinic", **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def author(person_factory, facility):
    return person_factory("clinician", facility.slug)


def principal_of(person, tenant: str) -> Principal:
    return Principal(account_id=person.account_id, kind="staff", display_name="Test clinician", tenant=tenant,
                     role=person.role)


@pytest.fixture(scope="module")
def charts(db, facility, author):
    with db.tenant(facility.slug) as conn:
        return populate(conn, principal_of(author, facility.slug))


def base(facility) -> str:
    return f"/t/{facility.slug}"


def post_form(client, page_path: str, action: str, data: dict, **kwargs):
    """A form post the way a browser makes it: load the page (CSRF cookie and token), then post."""
    page = client.get(page_path)
    assert page.status_code < 500, page.text
    return client.post(action, data={**data, "_csrf_token": csrf_token(page.text)}, follow_redirects=False, **kwargs)


def withdrawn_listed(page: str, entry_id: object, *, what: str, by: str, why: str) -> str:
    """The entry a tab lists as marked entered in error, in ui.withdrawn_list's words, the same on every tab: what it
    was struck through (`what` as the page writes it), "withdrawn <day and minute> by <who>: <why>", and a link to its
    history. Returns the item."""
    item = page.split(f'<li id="withdrawn-{entry_id}">')[1].split("</li>")[0]
    assert f"<s>{what}</s>" in item, item
    said = rf"withdrawn \d\d \w{{3}} \d{{4}} \d\d:\d\d by {re.escape(escape(by))}: {re.escape(escape(why))}"
    assert re.search(said, item), item
    assert re.search(rf'<a href="/t/[^/"]+/patients/[^/"]+/entries/{entry_id}/history">History<', item), item
    return item


def withdrawn_on_tab(client, tab: str, entry_id: object, reason: str, *, what: str, action: str = "") -> str:
    """Mark `entry_id` entered in error by its tab's form (`{tab}/{entry_id}/entered-in-error` unless `action` names
    another), with `reason`: the tab then lists it as `withdrawn_listed` reads, withdrawn by the one signed in."""
    done = post_form(client, tab, action or f"{tab}/{entry_id}/entered-in-error", {"reason": reason})
    assert done.status_code == 303, done.text
    return withdrawn_listed(client.get(tab).text, entry_id, what=what, by=f"Test {client.person.role}", why=reason)


# -- pages and what they show ----------------------------------------------------------------------


def test_search_finds_by_name_mrn_and_identifier_and_links_by_role(signed_in, facility, charts):
    clinician = signed_in("clinician", facility.slug)
    otieno = charts[0]
    for query in ("achieng otieno", "otien", otieno.mrn, otieno.national_id):
        page = clinician.get(f"{base(facility)}/patients", params={"q": query})
        assert page.status_code == 200, query
        assert f"/patients/{otieno.id}/chart" in page.text, query
    registrar = signed_in("registrar", facility.slug)
    page = registrar.get(f"{base(facility)}/patients", params={"q": "otieno"})
    assert f'href="{base(facility)}/patients/{otieno.id}"' in page.text
    assert "/chart" not in page.text


def test_the_search_box_finds_a_patient_by_the_phone_number_they_give(signed_in, facility, charts, db):
    """The records desk typed the number a patient gave ('0712 345 678') and read 'No patient matches': the box read
    every digit as an MRN or an identifier. It finds the chart registered with that phone now, written either way."""
    otieno = charts[0]
    with db.tenant(facility.slug) as conn:
        held = conn.execute(sa.text("SELECT phone FROM patient WHERE id = :id"), {"id": otieno.id}).scalar()
    assert held, "the chart needs a phone on its registration"
    digits = "".join(ch for ch in held if ch.isdigit())[-9:]
    registrar = signed_in("registrar", facility.slug)
    for typed in (f"0{digits[:3]} {digits[3:6]} {digits[6:]}", f"+254{digits}"):
        page = registrar.get(f"{base(facility)}/patients", params={"q": typed})
        assert page.status_code == 200 and f'href="{base(facility)}/patients/{otieno.id}"' in page.text, typed
    assert "Name, MRN, identifier or phone" in page.text


@pytest.mark.parametrize(("params", "message"), [
    ({"q": "x"}, "at least two letters"),
    ({"q": "otieno", "birth_date": "12/04/1984"}, "YYYY-MM-DD"),
])
def test_bad_search_input_is_an_inline_message(signed_in, facility, charts, params, message):
    page = signed_in("clinician", facility.slug).get(f"{base(facility)}/patients", params=params)
    assert page.status_code == 422
    assert 'class="field-error"' in page.text and message in page.text


def test_the_chart_shows_banner_allergies_problems_medications_results_and_plots(signed_in, facility, charts):
    page = signed_in("clinician", facility.slug).get(f"{base(facility)}/patients/{charts[0].id}/chart")
    assert page.status_code == 200, page.text
    html = page.text
    assert "OTIENO" in html and charts[0].mrn in html
    assert 'class="alert alert-allergy"' in html and "Paracetamol" in html
    assert "Type 2 diabetes mellitus" in html and "Metformin" in html
    assert "Haemoglobin" in html and "flag-low" in html  # today's Hb 9.8 is below 12
    assert "abnormal result" in html
    assert html.count('<svg class="plot"') >= 4  # vital signs charts
    assert html.count('<svg class="spark"') >= 3  # result trends
    assert re.search(r'<desc id="vitals-0-d">\d+ measurements', html)
    assert page.headers["cache-control"] == "no-store"


def test_pages_need_no_inline_script_or_style(signed_in, facility, charts):
    client = signed_in("clinician", facility.slug)
    pid = charts[0].id
    for path in ("/today", "/patients", f"/patients/{pid}", f"/patients/{pid}/chart", f"/patients/{pid}/timeline",
                 f"/patients/{pid}/results", f"/patients/{pid}/results/trend/{HB}", f"/patients/{pid}/orders",
                 f"/patients/{pid}/notes", f"/patients/{pid}/notes/new?template=ANC", "/patients/new",
                 f"/patients/{pid}/encounters/new", f"/patients/{pid}/problems?find=malaria"):
        page = client.get(base(facility) + path)
        assert page.status_code == 200, (path, page.text[:500])
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), path
        assert not re.search(r"\sstyle=", page.text), path
        assert not re.search(r"\son[a-z]+=", page.text), path
        assert "unsafe-inline" not in page.headers["content-security-policy"]
        fields = r'<(?:input|select|textarea)(?![^>]*type="(?:hidden|radio|checkbox)")[^>]*\bid="([^"]+)"'
        for field_id in re.findall(fields, page.text):
            assert f'for="{field_id}"' in page.text, (path, field_id)  # every input has its label


def test_each_role_sees_only_what_it_may(signed_in, facility, charts):
    pid = charts[0].id
    nurse = signed_in("nurse", facility.slug)  # reads the record; neither orders, prescribes nor signs
    chart = nurse.get(f"{base(facility)}/patients/{pid}/chart")
    assert chart.status_code == 200
    assert "Paracetamol" in chart.text and "Haemoglobin" in chart.text
    assert "Review and sign" not in chart.text and "Place orders" not in chart.text and "Prescribe" not in chart.text
    results = nurse.get(f"{base(facility)}/patients/{pid}/results")
    assert results.status_code == 200 and "sign-form" not in results.text
    orders = nurse.get(f"{base(facility)}/patients/{pid}/orders")
    assert orders.status_code == 200
    assert "order-sets" not in orders.text and "/medications" not in orders.text

    registrar = signed_in("registrar", facility.slug)
    assert registrar.get(f"{base(facility)}/patients/{pid}/chart").status_code == 403
    page = registrar.get(f"{base(facility)}/patients/{pid}")
    assert page.status_code == 200
    assert "Start an encounter" in page.text and "Paracetamol" not in page.text  # no clinical content

    clerk = signed_in("billing_clerk", facility.slug)
    page = clerk.get(f"{base(facility)}/patients/{pid}")
    assert page.status_code == 200 and "Encounters" not in page.text
    assert clerk.get(f"{base(facility)}/patients/new").status_code == 403


def test_timeline_lists_every_kind_and_filters(signed_in, facility, charts):
    client = signed_in("clinician", facility.slug)
    path = f"{base(facility)}/patients/{charts[0].id}/timeline"
    everything = client.get(path)
    assert everything.status_code == 200
    for label in ("Encounters", "Results", "Notes", "Prescriptions", "Orders", "Vital signs", "Problems", "Allergies"):
        assert f'<span class="badge kind">{label}</span>' in everything.text, label
    encounters = everything.text.split('<li class="tl-item kind-encounter')[1:]
    assert encounters and all(re.search(r'class="tl-who muted">Clinical · \w', item.split("</li>")[0])
                              for item in encounters)  # who opened it, as every other entry says
    notes_only = client.get(path, params={"layer": "clinical", "kind": "note"})
    assert '<span class="badge kind">Notes</span>' in notes_only.text
    assert '<span class="badge kind">Results</span>' not in notes_only.text
    ignored = client.get(path, params={"kind": "no_such_kind", "layer": "<script>"})
    assert ignored.status_code == 200 and "<script>" not in ignored.text.split("</head>")[1]


def test_the_timeline_places_a_corrected_record_when_it_began(signed_in, db, facility, charts, author):
    """Ferrous sulfate prescribed a year ago and stopped today: the timeline shows it stopped, marked amended,
    at the time it was prescribed, not at today's stop (its current version's time)."""
    client = signed_in("clinician", facility.slug)
    clinician = principal_of(author, facility.slug)
    chart = charts[0]
    with db.tenant(facility.slug) as conn:
        iron = next(m for m in service.list_medications(conn, clinician, chart.id, active_only=True)
                    if m["drug"] == "Ferrous sulfate")
        service.change_medication_status(conn, clinician, chart.id, iron["id"], "stopped", "Haemoglobin normal")
    page = client.get(f"{base(facility)}/patients/{chart.id}/timeline", params={"kind": "medication_request"})
    line = next(item for item in page.text.split('<li class="tl-item')[1:] if "Prescribed Ferrous sulfate" in item)
    began = iron["occurred_at"].astimezone(ZoneInfo("Africa/Nairobi")).isoformat(timespec="minutes")
    assert f'datetime="{began}"' in line and "stopped" in line and '<span class="badge">amended</span>' in line
    assert '<span class="muted">corrected <time datetime="' in line  # and when it was


def test_result_trend_page_and_unknown_code(signed_in, facility, charts):
    client = signed_in("clinician", facility.slug)
    page = client.get(f"{base(facility)}/patients/{charts[0].id}/results/trend/{HB}")
    assert page.status_code == 200
    assert '<title id="trend-718-7-t">Haemoglobin over time</title>' in page.text
    assert 'class="plot-band"' in page.text and "Reference range 12–16 g/dL" in page.text
    missing = client.get(f"{base(facility)}/patients/{charts[0].id}/results/trend/1234-5")
    assert missing.status_code == 404 and "No results" in missing.text


# -- forms -----------------------------------------------------------------------------------------


def test_register_a_patient_then_inline_errors_and_a_duplicate_identifier(signed_in, facility, charts):
    client = signed_in("registrar", facility.slug)
    new = f"{base(facility)}/patients/new"
    done = post_form(client, new, f"{base(facility)}/patients", {
        "family_name": "Mutua", "given_names": "Faith", "birth_date": "1999-02-03", "sex": "female",
        "national_id": "55500011", "nok_name": "Rose Mutua", "nok_relationship": "mother"})
    assert done.status_code == 303
    assert re.fullmatch(rf"{base(facility)}/patients/[0-9a-f-]{{36}}\?done=registered", done.headers["location"])
    landed = client.get(done.headers["location"])
    assert "Patient registered." in landed.text and "MUTUA" in landed.text

    bad = post_form(client, new, f"{base(facility)}/patients", {
        "family_name": "", "given_names": "Faith", "birth_date": "2999-01-01", "sex": "female",
        "nok_name": "Rose Mutua"})
    assert bad.status_code == 422
    assert re.search(r'id="family_name-error">This is required', bad.text)
    assert re.search(r'id="birth_date-error">Birth date is in the future', bad.text)
    assert re.search(r'id="nok_relationship-error">', bad.text)
    assert 'aria-invalid="true"' in bad.text and 'value="Faith"' in bad.text  # what was typed is kept

    duplicate = post_form(client, new, f"{base(facility)}/patients", {
        "family_name": "Other", "given_names": "Person", "birth_date": "1990-01-01", "sex": "male",
        "national_id": charts[0].national_id})
    assert duplicate.status_code == 422
    assert re.search(r'id="national_id-error">This national ID already belongs to another patient', duplicate.text)
    assert f'href="{base(facility)}/patients/{charts[0].id}"' in duplicate.text  # the record that holds it


def test_registering_someone_already_here_under_that_name_and_birth_date_asks_first(signed_in, db, facility,
                                                                                    charts, author):
    """Same birth date, a name like it, another national ID: the desk is shown the record that is likely
    the same person, with what was typed kept, and registers only when told it is someone else. A
    clinician who registers lands on the registration page, where the visit starts (the chart would ask
    them to break the glass: they have not seen the patient yet)."""
    client = signed_in("clinician", facility.slug)
    new = f"{base(facility)}/patients/new"
    typed = {"family_name": "KAMAU", "given_names": "John", "birth_date": "1962-11-03", "sex": "male",
             "national_id": "77700011", "village": "Kibos"}
    asked = post_form(client, new, f"{base(facility)}/patients", typed)
    assert asked.status_code == 409
    assert "Already registered here?" in asked.text and "Nothing was registered." in asked.text
    assert f'href="{base(facility)}/patients/{charts[1].id}"' in asked.text and charts[1].mrn in asked.text
    assert 'value="77700011"' in asked.text and 'value="Kibos"' in asked.text  # what was typed is kept
    with db.tenant(facility.slug) as conn:
        found = service.search_patients(conn, principal_of(author, facility.slug), identifier="77700011")
    assert found == []
    registered = post_form(client, new, f"{base(facility)}/patients", {**typed, "different_person": "true"})
    assert registered.status_code == 303
    assert re.fullmatch(rf"{base(facility)}/patients/[0-9a-f-]{{36}}\?done=registered",
                        registered.headers["location"])
    landed = client.get(registered.headers["location"])
    assert landed.status_code == 200 and "Patient registered." in landed.text and "Start an encounter" in landed.text


def test_a_national_id_another_facility_holds_for_someone_born_otherwise_is_questioned(signed_in, facility,
                                                                                       elsewhere):
    """Registration links a chart to the person holding its national ID at any facility of the appliance: one
    digit mistyped into another person's ID put this patient's chart on that person's patient portal, silently.
    The desk is now asked to check the card, told only what differs; the same person (same birth date and sex)
    is linked without a question."""
    there, here = signed_in("registrar", elsewhere.slug), signed_in("registrar", facility.slug)
    mistyped, shared = (f"NID-{uuid.uuid4().hex[:10]}" for _ in range(2))
    holders = {mistyped: ("Wekesa", "Halima", "1971-06-09"), shared: ("Otieno", "Pamela", "1980-03-03")}
    for national_id, (family, given, born) in holders.items():
        held = post_form(there, f"{base(elsewhere)}/patients/new", f"{base(elsewhere)}/patients", {
            "family_name": family, "given_names": given, "birth_date": born, "sex": "female",
            "national_id": national_id})
        assert held.status_code == 303
    new = f"{base(facility)}/patients/new"
    typed = {"family_name": "Barasa", "given_names": "Tom", "birth_date": "1990-02-14", "sex": "male",
             "national_id": mistyped}
    asked = post_form(here, new, f"{base(facility)}/patients", typed)
    assert asked.status_code == 409
    assert re.search(r'id="national_id-error">This national ID is held by a person with another birth date and '
                     r'sex, registered at a facility of this appliance', asked.text)
    assert "1971" not in asked.text and "Wekesa" not in asked.text  # nothing of that person is shown
    assert 'name="national_id_checked"' in asked.text and 'value="Barasa"' in asked.text
    assert here.get(f"{base(facility)}/patients", params={"q": mistyped}).text.count("BARASA") == 0
    checked = post_form(here, new, f"{base(facility)}/patients", {**typed, "national_id_checked": "true"})
    assert checked.status_code == 303
    same_person = post_form(here, new, f"{base(facility)}/patients", {  # a married name here: not the question
        "family_name": "Kiprop", "given_names": "Pamela", "birth_date": "1980-03-03", "sex": "female",
        "national_id": shared})
    assert same_person.status_code == 303


def test_the_desk_corrects_a_registration_and_the_earlier_version_stays_in_its_history(signed_in, db, facility,
                                                                                       charts, author):
    """A misspelt name corrected from the registration page: a new version with its reason supersedes the
    one in force; what the form does not show (other identifiers) is kept; a
    blank reason or a stale form is refused with what was typed kept, and a national ID another patient
    holds names its record."""
    client = signed_in("registrar", facility.slug)
    pid = charts[2].id
    form = f"{base(facility)}/patients/{pid}/registration"
    with db.tenant(facility.slug) as conn:
        before = service.patient_of(conn, pid)
    shown = client.get(form)
    assert shown.status_code == 200 and 'value="Grace Njeri"' in shown.text
    assert "History of the registration" in shown.text
    typed = {"family_name": "Wanjiru", "given_names": "Grace Njambi", "birth_date": "2019-07-21", "sex": "female",
             "national_id": charts[2].national_id, "phone": before["phone"], "version_id": str(before["version_id"])}
    no_reason = post_form(client, form, form, typed)
    assert no_reason.status_code == 422 and 'id="reason-error"' in no_reason.text
    assert 'value="Grace Njambi"' in no_reason.text  # what was typed is kept
    taken = post_form(client, form, form, {**typed, "national_id": charts[0].national_id, "reason": "typo"})
    assert taken.status_code == 422 and 'id="national_id-error"' in taken.text
    assert f'href="{base(facility)}/patients/{charts[0].id}"' in taken.text

    corrected = post_form(client, form, form, {**typed, "reason": "Given name misspelt at registration"})
    assert corrected.status_code == 303
    assert corrected.headers["location"] == f"{base(facility)}/patients/{pid}?done=registration-corrected"
    landed = client.get(corrected.headers["location"])
    assert "Registration corrected" in landed.text and "Grace Njambi" in landed.text
    with db.tenant(facility.slug) as conn:
        after = service.patient_of(conn, pid)
        versions = service.entry_history(conn, principal_of(author, facility.slug), pid, after["version_id"])
    assert after["identifiers"] == before["identifiers"]
    # The generator's chart had no one-identity subject: corrected, it is linked as its registration would be.
    assert before["subject_id"] is None and after["subject_id"] is not None
    assert after["phone"] == before["phone"]  # shown on the form, sent back unchanged
    assert [(v["detail"]["given_names"], v["reason"]) for v in versions] == [
        ("Grace Njeri", None), ("Grace Njambi", "Given name misspelt at registration")]
    history = client.get(form)
    assert "Given name misspelt at registration" in history.text and "Corrected" in history.text

    stale = post_form(client, form, form, {**typed, "given_names": "Grace", "reason": "editing an old copy"})
    assert stale.status_code == 409 and "Someone corrected this registration since you opened it" in stale.text
    assert 'value="Grace"' in stale.text


def test_a_child_is_registered_by_birth_certificate_and_it_is_corrected_alone(signed_in, db, facility, charts):
    """A child has no national ID: the desk records the birth certificate, is told when its kind is not
    chosen or another child holds it, and corrects it later without losing the NHIF number the API added."""
    client = signed_in("registrar", facility.slug)
    new = f"{base(facility)}/patients/new"
    assert 'name="other_id_system"' in client.get(new).text
    child = {"family_name": "Achieng", "given_names": "Baraka", "birth_date": "2023-05-06", "sex": "male",
             "other_id_value": "BC-7781"}
    unkinded = post_form(client, new, f"{base(facility)}/patients", child)
    assert unkinded.status_code == 422 and 'id="other_id_system-error">Choose what kind of identifier' in unkinded.text
    done = post_form(client, new, f"{base(facility)}/patients", {**child, "other_id_system": "birth_certificate"})
    assert done.status_code == 303
    pid = re.search(r"/patients/([0-9a-f-]{36})", done.headers["location"]).group(1)
    with db.tenant(facility.slug) as conn:
        assert service.patient_of(conn, pid)["identifiers"] == [{"system": "birth_certificate", "value": "BC-7781"}]
        conn.execute(sa.text("INSERT INTO patient_identifier (system, value, patient_id) VALUES ('nhif', 'N-1', :p)"),
                     {"p": pid})
    twin = post_form(client, new, f"{base(facility)}/patients", {  # a twin: asked about, then told it is another
        **child, "given_names": "Neema", "other_id_system": "birth_certificate", "different_person": "true"})
    assert twin.status_code == 422
    assert 'id="other_id_value-error">This birth certificate number already belongs to another patient' in twin.text
    assert f'href="{base(facility)}/patients/{pid}"' in twin.text

    form = f"{base(facility)}/patients/{pid}/registration"
    shown = client.get(form).text
    assert 'value="BC-7781"' in shown and '<option value="birth_certificate" selected>' in shown
    version = re.search(r'name="version_id" value="([^"]+)"', shown).group(1)
    corrected = post_form(client, form, form, {**child, "other_id_system": "birth_certificate",
                                               "other_id_value": "BC-7718", "version_id": version,
                                               "reason": "Digits swapped at registration"})
    assert corrected.status_code == 303
    with db.tenant(facility.slug) as conn:
        held = service.patient_of(conn, pid)["identifiers"]
    assert sorted((i["system"], i["value"]) for i in held) == [("birth_certificate", "BC-7718"), ("nhif", "N-1")]


def test_a_patient_who_knows_only_their_age_is_registered_with_an_estimated_birth_date(signed_in, db, facility):
    """'About forty': the desk gives the age; the birth date is estimated from it, on the facility's today,
    and marked so. An age that is not a number of years is refused next to it, with what was typed kept."""
    client = signed_in("registrar", facility.slug)
    new = f"{base(facility)}/patients/new"
    typed = {"family_name": "Lokwang", "given_names": "Ekai", "sex": "male", "village": "Lodwar"}
    refused = post_form(client, new, f"{base(facility)}/patients", {**typed, "age_years": "forty"})
    assert refused.status_code == 422 and 'id="age_years-error">Give the age as a whole number' in refused.text
    assert 'value="Lodwar"' in refused.text
    done = post_form(client, new, f"{base(facility)}/patients", {**typed, "age_years": "40"})
    assert done.status_code == 303, done.text
    pid = re.search(r"/patients/([0-9a-f-]{36})", done.headers["location"]).group(1)
    today = dt.datetime.now(ZoneInfo("Africa/Nairobi")).date()
    with db.tenant(facility.slug) as conn:
        registered = service.patient_of(conn, pid)
    assert registered["birth_date_estimated"] and registered["birth_date"].year == today.year - 40
    assert (registered["birth_date"].month, registered["birth_date"].day) in ((today.month, today.day), (2, 28))
    assert "(estimated)" in client.get(done.headers["location"]).text
    assert 'name="age_years"' not in client.get(f"{base(facility)}/patients/{pid}/registration").text


def test_start_and_finish_an_encounter(signed_in, db, facility, charts, author):
    client = signed_in("clinician", facility.slug)
    pid = charts[2].id
    form = f"{base(facility)}/patients/{pid}/encounters/new"
    refused = post_form(client, form, f"{base(facility)}/patients/{pid}/encounters",
                        {"encounter_class": "outpatient", "systolic_mmhg": "80", "diastolic_mmhg": "120"})
    assert refused.status_code == 422 and "Diastolic pressure must be below systolic" in refused.text
    started = post_form(client, form, f"{base(facility)}/patients/{pid}/encounters",
                        {"encounter_class": "emergency", "reason": "Fever for two days", "temperature_c": "38.6"})
    assert started.status_code == 303 and started.headers["location"].endswith("/chart?done=encounter-started")
    chart = client.get(started.headers["location"])
    assert "Emergency visit" in chart.text and "Fever for two days" in chart.text and "38.6" in chart.text
    with db.tenant(facility.slug) as conn:
        encounter = service.list_encounters(conn, principal_of(author, facility.slug), pid)[0]
    assert encounter["status"] == "in_progress"
    action = f"{base(facility)}/patients/{pid}/encounters/{encounter['id']}/status"
    finished = post_form(client, started.headers["location"], action, {"status": "finished", "back": "chart"})
    assert finished.status_code == 303
    again = post_form(client, started.headers["location"], action, {"status": "finished"})
    assert again.status_code == 409 and "cannot become finished" in again.text


def test_an_admission_or_an_ed_visit_ends_on_its_board_not_by_hand_on_the_chart(signed_in, db, facility, author):
    """'Finish' on the chart of an inpatient in a bed closed the admission while the patient stayed in the
    bed: the bed board still showed them, the ward's nurses lost them and their open tasks were cancelled
    (an ED visit likewise stayed on the ED board). The chart now says where each ends and offers neither
    finishing nor cancelling it; the form's post is refused in a sentence; a discharge still finishes it."""
    from appliance.layers.operations import adt, ed
    from tests.layers.operations.conftest import new_patient

    acting = principal_of(author, facility.slug)
    with db.tenant(facility.slug) as conn:
        inpatient = new_patient(conn, acting, family_name="Kiprop", given_names="Brian", sex="male")
        stay = adt.admit(conn, acting, inpatient, ward_code="GEN")
        waiting = new_patient(conn, acting, family_name="Chebet", given_names="Ruth")
        visit = ed.arrive(conn, acting, waiting, complaint="Chest pain for two hours")
    client = signed_in("clinician", facility.slug)
    try:
        for pid, encounter_id, refused_step, says, link, sentence in (
            (inpatient, stay["encounter_id"], "finished", "Ends with the discharge on the",
             f'href="{base(facility)}/beds/GEN"', "ends when the patient is discharged from the bed"),
            (waiting, visit["id"], "cancelled", "Ends with the departure recorded on the",
             f'href="{base(facility)}/ed"', "departure is recorded there"),
        ):
            chart_path = f"{base(facility)}/patients/{pid}/chart"
            chart = client.get(chart_path).text
            action = f"{base(facility)}/patients/{pid}/encounters/{encounter_id}/status"
            offered = re.findall(r'name="status" value="([a-z_]+)"', "".join(
                form for form in chart.split("<form")[1:] if f'action="{action}"' in form))
            assert "finished" not in offered and "cancelled" not in offered, offered
            assert says in chart and link in chart
            refused = post_form(client, chart_path, action, {"status": refused_step})
            assert refused.status_code == 409 and sentence in refused.text
        with db.tenant(facility.slug) as conn:
            assert [e["status"] for e in service.list_encounters(conn, acting, inpatient)] == ["in_progress"]
            adt.discharge(conn, acting, inpatient, disposition="home")
            stay = None
            assert [e["status"] for e in service.list_encounters(conn, acting, inpatient)] == ["finished"]
        assert "Ends with the discharge" not in client.get(f"{base(facility)}/patients/{inpatient}/chart").text
    finally:
        with db.tenant(facility.slug) as conn:
            if stay is not None:
                adt.discharge(conn, acting, inpatient, disposition="home")
            ed.depart(conn, acting, waiting, visit["id"], disposition="discharged")


def test_order_set_asks_for_an_override_reason_when_an_allergy_matches(signed_in, db, facility, charts, author):
    client = signed_in("clinician", facility.slug)
    chart = charts[0]
    orders = f"{base(facility)}/patients/{chart.id}/orders"
    action = f"{base(facility)}/patients/{chart.id}/order-sets"
    blocked = post_form(client, orders, action, {"code": "MALARIA", "encounter_id": str(chart.encounter_id),
                                                 "priority": "urgent"})
    assert blocked.status_code == 409
    assert "Drug–allergy check" in blocked.text and "Paracetamol" in blocked.text
    assert 'name="allergy_override_reason"' in blocked.text
    assert 'name="code" value="MALARIA"' in blocked.text and 'name="priority" value="urgent"' in blocked.text
    with db.tenant(facility.slug) as conn:
        before = service.orders_of(conn, chart.id)
    too_short = client.post(action, data={"code": "MALARIA", "allergy_override_reason": "x",
                                          "_csrf_token": csrf_token(blocked.text)}, follow_redirects=False)
    assert too_short.status_code == 409 and "at least 3 characters" in too_short.text
    # Asked again, it still names the allergy the drug matches and still offers the set without it.
    assert "the recorded allergy to <strong>Paracetamol</strong>" in too_short.text
    assert 'name="leave_out" value="Paracetamol"' in too_short.text
    placed = client.post(action, data={"code": "MALARIA", "encounter_id": str(chart.encounter_id),
                                       "priority": "urgent", "_csrf_token": csrf_token(blocked.text),
                                       "allergy_override_reason": "Rash was mild; no alternative antipyretic"},
                         follow_redirects=False)
    assert placed.status_code == 303 and placed.headers["location"].endswith("?done=order-set-override")
    with db.tenant(facility.slug) as conn:
        after = service.orders_of(conn, chart.id)
        meds = service.list_medications(conn, principal_of(author, facility.slug), chart.id, active_only=True)
    assert len(after) == len(before) + 3
    assert any(m["drug"] == "Paracetamol" and m["allergy_override_reason"] for m in meds)
    landed = client.get(placed.headers["location"])
    assert "allergy override and its reason are on the record" in landed.text



def test_an_order_set_whose_drug_is_already_active_asks_before_doubling_it(signed_in, db, facility, charts, author):
    """The malaria set again, a day later: its paracetamol is still active, so the set is not placed until
    the clinician says to give both, as the prescribe form asks for one drug."""
    client = signed_in("clinician", facility.slug)
    chart = charts[1]
    orders = f"{base(facility)}/patients/{chart.id}/orders"
    action = f"{base(facility)}/patients/{chart.id}/order-sets"
    first = post_form(client, orders, action, {"code": "MALARIA", "encounter_id": str(chart.encounter_id)})
    assert first.status_code == 303
    clinician = principal_of(author, facility.slug)
    with db.tenant(facility.slug) as conn:
        before = len(service.orders_of(conn, chart.id))
        active = len(service.list_medications(conn, clinician, chart.id, active_only=True))
    asked = post_form(client, orders, action, {"code": "MALARIA", "encounter_id": str(chart.encounter_id)})
    assert asked.status_code == 409 and "Paracetamol is already prescribed and active" in asked.text
    assert 'id="set-MALARIA-also-active"' in asked.text
    with db.tenant(facility.slug) as conn:
        assert len(service.orders_of(conn, chart.id)) == before  # nothing of the set was placed
    given = client.post(action, data={"code": "MALARIA", "encounter_id": str(chart.encounter_id),
                                      "also_active": "true", "_csrf_token": csrf_token(asked.text)},
                        follow_redirects=False)
    assert given.status_code == 303
    with db.tenant(facility.slug) as conn:
        assert len(service.orders_of(conn, chart.id)) == before + 3
        assert len(service.list_medications(conn, clinician, chart.id, active_only=True)) == active + 1


def test_an_order_set_whose_drug_the_patient_is_allergic_to_is_placed_without_it(signed_in, db, facility, charts,
                                                                                   author):
    """The malaria set's paracetamol matches Achieng's allergy: the clinician keeps the set's tests and
    leaves the drug out, with no override to justify and no prescription of it."""
    client = signed_in("clinician", facility.slug)
    chart = charts[0]
    orders = f"{base(facility)}/patients/{chart.id}/orders"
    action = f"{base(facility)}/patients/{chart.id}/order-sets"
    # Paracetamol may already be active (the override test above gave it): give both, past that question.
    blocked = post_form(client, orders, action, {"code": "MALARIA", "encounter_id": str(chart.encounter_id),
                                                 "also_active": "true"})
    assert blocked.status_code == 409 and "the order set Suspected malaria was not ordered" in blocked.text
    assert 'name="leave_out" value="Paracetamol"' in blocked.text
    assert "Order the rest, without Paracetamol" in blocked.text
    with db.tenant(facility.slug) as conn:
        before = service.orders_of(conn, chart.id)
        prescribed = len(service.list_medications(conn, principal_of(author, facility.slug), chart.id))
    placed = client.post(action, data={"code": "MALARIA", "encounter_id": str(chart.encounter_id),
                                       "leave_out": "Paracetamol", "_csrf_token": csrf_token(blocked.text)},
                         follow_redirects=False)
    assert placed.status_code == 303 and placed.headers["location"].endswith("?done=order-set-without")
    with db.tenant(facility.slug) as conn:
        after = service.orders_of(conn, chart.id)
        meds = service.list_medications(conn, principal_of(author, facility.slug), chart.id)
    assert len(after) == len(before) + 3 and len(meds) == prescribed  # the tests, and no paracetamol
    assert "without the drug the patient is allergic to" in client.get(placed.headers["location"]).text
    strange = client.post(action, data={"code": "MALARIA", "leave_out": "Quinine",
                                        "_csrf_token": csrf_token(blocked.text)}, follow_redirects=False)
    assert strange.status_code == 422 and "has no drug Quinine to leave out; nothing was ordered." in strange.text


def test_a_prescription_is_stopped_with_a_reason_and_stays_in_its_history(signed_in, db, facility, charts, author):
    """Amlodipine stopped for ankle swelling: off the active list, the reason on the record's new version;
    a blank reason is said next to the field; stopping it twice is a 409; a nurse may not."""
    client = signed_in("clinician", facility.slug)
    chart = charts[0]
    orders = f"{base(facility)}/patients/{chart.id}/orders"
    clinician = principal_of(author, facility.slug)
    with db.tenant(facility.slug) as conn:
        amlodipine = next(m for m in service.list_medications(conn, clinician, chart.id, active_only=True)
                          if m["drug"] == "Amlodipine")
    action = f"{orders.removesuffix('/orders')}/medications/{amlodipine['id']}/status"
    assert f'action="{action}"' in client.get(orders).text
    blank = post_form(client, orders, action, {"status": "stopped", "reason": " "})
    assert blank.status_code == 422 and f'id="med-{amlodipine["id"]}-reason"' in blank.text
    assert re.search(r'id="reason-error">This is required', blank.text)
    stopped = post_form(client, orders, action, {"status": "stopped", "reason": "Ankle swelling"})
    assert stopped.status_code == 303 and stopped.headers["location"].endswith("/orders?done=medication-stopped")
    landed = client.get(stopped.headers["location"]).text
    assert "Prescription stopped" in landed and f'action="{action}"' not in landed
    with db.tenant(facility.slug) as conn:
        active = [m["drug"] for m in service.list_medications(conn, clinician, chart.id, active_only=True)]
        versions = service.entry_history(conn, clinician, chart.id, amlodipine["id"])
    assert "Amlodipine" not in active
    assert [(v["detail"]["status"], v["reason"]) for v in versions] == [("active", None), ("stopped", "Ankle swelling")]
    assert post_form(client, orders, action, {"status": "stopped", "reason": "again"}).status_code == 409
    nurse = signed_in("nurse", facility.slug)
    assert post_form(nurse, orders, action, {"status": "completed", "reason": "done"}).status_code == 403


def test_prescribing_a_drug_already_active_asks_before_doubling_it(signed_in, db, facility, charts, author):
    """Metformin is active for Achieng: a second Metformin (a refill written as new) is not placed until the
    clinician says to give both; what was typed is kept."""
    client = signed_in("clinician", facility.slug)
    chart = charts[0]
    orders = f"{base(facility)}/patients/{chart.id}/orders"
    action = f"{orders.removesuffix('/orders')}/medications"
    typed = {"drug": "metformin 500 mg tablets", "dose": "500", "dose_unit": "mg", "route": "oral",
             "frequency": "twice daily", "duration_days": "30"}
    clinician = principal_of(author, facility.slug)
    with db.tenant(facility.slug) as conn:
        before = len(service.list_medications(conn, clinician, chart.id, active_only=True))
    asked = post_form(client, orders, action, typed)
    assert asked.status_code == 409
    assert re.search(r'id="drug-error">Metformin is already prescribed \(500 mg oral, twice daily, since', asked.text)
    assert 'name="also_active"' in asked.text and 'value="twice daily"' in asked.text
    with db.tenant(facility.slug) as conn:
        assert len(service.list_medications(conn, clinician, chart.id, active_only=True)) == before
    given = post_form(client, orders, action, {**typed, "also_active": "true"})
    assert given.status_code == 303 and given.headers["location"].endswith("/orders?done=prescribed")
    with db.tenant(facility.slug) as conn:
        assert len(service.list_medications(conn, clinician, chart.id, active_only=True)) == before + 1


def test_prescribe_single_test_and_bad_input(signed_in, facility, charts):
    client = signed_in("clinician", facility.slug)
    pid = charts[1].id
    orders = f"{base(facility)}/patients/{pid}/orders"
    blocked = post_form(client, orders, f"{base(facility)}/patients/{pid}/medications", {
        "drug": "Amoxicillin", "dose": "500", "dose_unit": "mg", "route": "oral", "frequency": "every 8 hours"})
    assert blocked.status_code == 409 and "Penicillin" in blocked.text and "penicillins" in blocked.text
    too_short = post_form(client, orders, f"{base(facility)}/patients/{pid}/medications", {
        "drug": "Amoxicillin", "dose": "500", "dose_unit": "mg", "route": "oral", "frequency": "every 8 hours",
        "allergy_override_reason": "ok"})
    assert too_short.status_code == 409 and "at least 3 characters" in too_short.text
    assert "the recorded allergy to <strong>Penicillin</strong>" in too_short.text  # not only "an allergy"
    bad = post_form(client, orders, f"{base(facility)}/patients/{pid}/medications", {
        "drug": "Metronidazole", "dose": "-4", "dose_unit": "", "route": "oral", "frequency": "tds"})
    assert bad.status_code == 422
    assert re.search(r'id="dose-error">', bad.text) and re.search(r'id="dose_unit-error">', bad.text)
    ok = post_form(client, orders, f"{base(facility)}/patients/{pid}/medications", {
        "drug": "Metronidazole", "dose": "400", "dose_unit": "mg", "route": "oral", "frequency": "every 8 hours",
        "duration_days": "7"})
    assert ok.status_code == 303 and ok.headers["location"].endswith("?done=prescribed")
    test = post_form(client, orders, f"{base(facility)}/patients/{pid}/orders", {"code": "2345-7"})
    assert test.status_code == 303
    unknown = post_form(client, orders, f"{base(facility)}/patients/{pid}/orders", {"code": "1234-5"})
    assert unknown.status_code == 422 and "not in this facility" in unknown.text


def test_an_order_given_earlier_is_written_up_at_the_time_it_was_placed(signed_in, db, facility, elsewhere, charts):
    """A test ordered by telephone at 06:10 and written up at the ward round, and an order set given in theatre, keep
    the time they were placed (facility time, as typed), as the API and HL7 orders do; the record keeps the arrival.
    A time before the patient was born, before the visit it is ordered on began, still to come or not a time is
    refused beside "Placed at", nothing written; another facility's session places nothing."""
    client = signed_in("clinician", facility.slug)
    tz = facility_timezone(db, facility.slug)
    adult, visited = charts[0], charts[1]
    orders = f"{base(facility)}/patients/{adult.id}/orders"
    earlier = (dt.datetime.now(tz) - dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    typed = earlier.strftime("%Y-%m-%dT%H:%M")
    test = post_form(client, orders, orders, {"code": "2345-7", "occurred_at": typed})
    assert test.status_code == 303, test.text
    placed_set = post_form(client, orders, orders.replace("/orders", "/order-sets"),
                           {"code": "DM-REVIEW", "occurred_at": typed})
    assert placed_set.status_code == 303, placed_set.text
    with db.tenant(facility.slug) as conn:
        rows = conn.execute(sa.text("SELECT kind, occurred_at, recorded_at FROM entry WHERE patient_id = :p "
                                    "AND kind = 'service_request'"), {"p": adult.id}).all()
        entries = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    placed = [r for r in rows if r.occurred_at == earlier]
    assert len(placed) == 4, rows
    assert all(r.recorded_at > earlier + dt.timedelta(hours=1) for r in placed)

    before_birth = "1980-05-01T09:00"
    refused = [
        (adult, before_birth, "is before the patient was born (12 April 1984): give the time the Glucose"),
        (adult, "yesterday", "Give the day and time the order was placed, or leave it empty for now."),
        (adult, (dt.datetime.now(tz) + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"), "is still to come"),
        (visited, typed, "is before the visit it is ordered on began"),
    ]
    for chart, at, says in refused:
        path = f"{base(facility)}/patients/{chart.id}/orders"
        fields = {"code": "2345-7", "occurred_at": at}
        if chart is visited:
            fields["encounter_id"] = str(chart.encounter_id)
        answer = post_form(client, path, path, fields)
        assert answer.status_code == 422 and re.search(r'id="occurred_at-error">[^<]*' + re.escape(says),
                                                       answer.text), (at, answer.text)
        assert f'value="{at}"' in answer.text  # what was typed comes back
    refused_set = post_form(client, orders, orders.replace("/orders", "/order-sets"),
                            {"code": "DM-REVIEW", "occurred_at": before_birth})
    assert refused_set.status_code == 422 and "is before the patient was born" in refused_set.text
    assert "give the time the order set Diabetes review was placed" in refused_set.text
    outsider = signed_in("clinician", elsewhere.slug)
    assert post_form(outsider, f"{base(elsewhere)}/today", orders, {"code": "2345-7", "occurred_at": typed}
                     ).status_code in {403, 404}
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == entries


def test_the_prescribe_page_says_a_cephalosporin_can_cross_react_with_the_penicillin_allergy(signed_in, facility,
                                                                                              charts):
    client = signed_in("clinician", facility.slug)
    orders = f"{base(facility)}/patients/{charts[1].id}/orders"
    asked = post_form(client, orders, orders.removesuffix("/orders") + "/medications", {
        "drug": "Ceftriaxone", "dose": "1", "dose_unit": "g", "route": "IV", "frequency": "once daily"})
    assert asked.status_code == 409 and 'name="allergy_override_reason"' in asked.text
    assert ("<strong>Ceftriaxone</strong> may cross-react with the recorded allergy to <strong>Penicillin</strong> "
            "(Ceftriaxone is a cephalosporin, which can cross-react with penicillins).") in asked.text


def test_templated_note_validates_inline_then_saves(signed_in, facility, charts):
    client = signed_in("clinician", facility.slug)
    pid = charts[0].id
    form = f"{base(facility)}/patients/{pid}/notes/new?template=ANC"
    page = client.get(form)
    assert 'id="f-gestational_age"' in page.text and 'type="checkbox" name="f.danger_signs"' in page.text
    missing = post_form(client, form, f"{base(facility)}/patients/{pid}/notes",
                        {"template_code": "ANC", "f.fundal_height": "24", "f.presentation": "cephalic"})
    assert missing.status_code == 422
    assert ('<p class="field-error" id="f-gestational_age-error">'
            'Gestational age is required by the Antenatal visit template (ANC).</p>') in missing.text
    assert 'value="24"' in missing.text  # what was typed stays
    out_of_range = post_form(client, form, f"{base(facility)}/patients/{pid}/notes",
                             {"template_code": "ANC", "f.gestational_age": "60"})
    assert out_of_range.status_code == 422 and "between 4.0 and 44.0" in out_of_range.text
    saved = post_form(client, form, f"{base(facility)}/patients/{pid}/notes", {
        "template_code": "ANC", "f.gestational_age": "28", "f.fundal_height": "27.5", "f.presentation": "cephalic",
        "f.danger_signs": ["headache", "bleeding"], "f.next_visit": "2030-01-15", "text": "Doing well."})
    assert saved.status_code == 303 and saved.headers["location"].endswith("/notes?done=note")
    notes = client.get(saved.headers["location"])
    assert "Antenatal visit" in notes.text and "headache, bleeding" in notes.text and "27.5 cm" in notes.text
    free = post_form(client, f"{base(facility)}/patients/{pid}/notes/new", f"{base(facility)}/patients/{pid}/notes",
                     {"title": "Telephone call", "text": ""})
    assert free.status_code == 422 and 'id="text-error"' in free.text
    unknown = client.get(f"{base(facility)}/patients/{pid}/notes/new?template=NOPE")
    assert unknown.status_code == 422


def test_a_templated_note_names_every_field_to_fix_at_once(signed_in, facility, charts):
    """Two required fields left blank and a third out of range: all three are said on the first attempt,
    next to their fields, not one per attempt."""
    client = signed_in("clinician", facility.slug)
    pid = charts[0].id
    form = f"{base(facility)}/patients/{pid}/notes/new?template=OPD"
    refused = post_form(client, form, f"{base(facility)}/patients/{pid}/notes",
                        {"template_code": "OPD", "f.temperature": "55", "f.plan": "Review in a week"})
    assert refused.status_code == 422
    for field, said in (("complaint", "Presenting complaint is required"), ("assessment", "Assessment is required"),
                        ("temperature", "Temperature expects")):
        assert re.search(rf'id="f-{field}-error">{said}', refused.text), field
    assert "Review in a week" in refused.text


def test_a_note_is_corrected_by_its_author_with_a_reason_or_marked_entered_in_error(signed_in, db, facility, charts):
    """A note could not be corrected from the portal: a wrong dose in a note, or a note written on the wrong
    patient, stayed as written. Its author now corrects it (the form filled with what it says, a reason
    required, a refusal keeping what was typed and naming the field), the earlier version stays in its
    history; another clinician is told to write their own; a note is marked entered in error with a reason
    and leaves the notes."""
    client = signed_in("clinician", facility.slug)
    pid = charts[0].id
    notes_path = f"{base(facility)}/patients/{pid}/notes"
    for data in ({"title": "Telephone call", "text": "Amoxicillin 5000 mg three times a day."},
                 {"template_code": "ANC", "f.gestational_age": "28", "f.presentation": "cephalic",
                  "f.danger_signs": ["headache"]}):
        assert post_form(client, f"{notes_path}/new", notes_path, data).status_code == 303
    with db.tenant(facility.slug) as conn:
        written = {n["title"]: n for n in service.list_notes(conn, principal_of(client.person, facility.slug), pid)
                   if n["record_author_id"] == client.person.account_id}
    call, anc = written["Telephone call"], written["Antenatal visit"]
    listed = client.get(notes_path).text
    correct_path = f"{notes_path}/{call['id']}/correct"
    assert f'href="{correct_path}"' in listed
    form = client.get(correct_path).text
    assert "Amoxicillin 5000 mg three times a day." in form and 'id="reason"' in form

    no_reason = post_form(client, correct_path, correct_path, {"title": "Telephone call",
                                                               "text": "Amoxicillin 500 mg three times a day."})
    assert no_reason.status_code == 422 and "Say why the note is corrected" in no_reason.text
    assert "Amoxicillin 500 mg three times a day." in no_reason.text
    corrected = post_form(client, correct_path, correct_path, {
        "title": "Telephone call", "text": "Amoxicillin 500 mg three times a day.", "reason": "dose mistyped"})
    assert corrected.status_code == 303 and corrected.headers["location"].endswith("/notes?done=note-corrected")
    after = client.get(corrected.headers["location"]).text
    assert "Amoxicillin 500 mg three times a day." in after and "5000 mg" not in after
    assert '<span class="badge">amended</span>' in after
    with db.tenant(facility.slug) as conn:
        versions = service.entry_history(conn, principal_of(client.person, facility.slug), pid, call["id"])
    assert [v["reason"] for v in versions] == [None, "dose mistyped"]
    stale = post_form(client, f"{notes_path}/new", correct_path, {"text": "again", "reason": "again"})
    assert stale.status_code == 409 and "corrected or withdrawn since" in stale.text

    anc_path = f"{notes_path}/{anc['id']}/correct"
    filled = client.get(anc_path).text
    assert re.search(r'id="f-gestational_age"[^>]*value="28"|value="28"[^>]*id="f-gestational_age"', filled)
    assert 'value="headache" checked' in filled
    missing = post_form(client, anc_path, anc_path, {"f.presentation": "breech", "reason": "presentation wrong"})
    assert missing.status_code == 422 and "Gestational age is required" in missing.text
    assert 'value="breech" checked' in missing.text

    other = signed_in("clinician", facility.slug)
    assert f'href="{anc_path}"' not in other.get(notes_path).text
    refused = post_form(other, anc_path, anc_path, {"f.gestational_age": "30", "reason": "not mine"})
    assert refused.status_code == 422 and "corrected only by its author" in refused.text

    withdraw = f"{notes_path}/{anc['id']}/entered-in-error"
    no_why = post_form(client, anc_path, withdraw, {})
    assert no_why.status_code == 422 and "Say why the note is entered in error" in no_why.text
    # The chart's one 'entered in error' form (ui.entered_in_error), opened on its refusal with the sentence beside
    # its own reason, none beside the correction's.
    refusal = no_why.text.split("Written on the wrong patient? Mark entered in error")
    assert len(refusal) == 2 and refusal[0].endswith("<details open>\n  <summary>")
    assert 'id="note-withdraw-reason"' in refusal[1] and refusal[1].count('id="reason-error"') == 1
    assert 'id="reason-error"' not in refusal[0]
    gone = post_form(client, anc_path, withdraw, {"reason": "written on the wrong patient"})
    assert gone.status_code == 303 and gone.headers["location"].endswith("/notes?done=note-withdrawn")
    def note_reads() -> int:
        return sum(1 for e in audit.patient_access_log(db, facility.slug, pid) if e.event_type == "record.note.read")

    before = note_reads()
    listed = client.get(notes_path).text
    assert note_reads() == before + 2  # the notes in force and those withdrawn, each read audited
    assert f'id="note-{anc["id"]}"' not in listed
    # Still on the notes, as the chart's other withdrawn entries are: who withdrew it, when and why, its history.
    withdrawn = withdrawn_listed(listed, anc["id"], what="Antenatal visit", by="Test clinician",
                                 why="written on the wrong patient")
    assert f'{notes_path[:-6]}/entries/{anc["id"]}/history' in withdrawn
    history = client.get(f'{notes_path[:-6]}/entries/{anc["id"]}/history').text
    assert "written on the wrong patient" in history and "cephalic" in history  # what it said, still readable


def test_review_and_sign_a_result_once(signed_in, facility, charts):
    client = signed_in("clinician", facility.slug)
    chart = charts[0]
    results = f"{base(facility)}/patients/{chart.id}/results"
    page = client.get(results)
    assert f'id="result-{chart.unsigned[0]}"' in page.text
    action = f"{results[:-8]}/results/{chart.unsigned[0]}/sign"
    signed = post_form(client, results, action, {"comment": "Known anaemia; continue iron"})
    assert signed.status_code == 303 and signed.headers["location"].endswith("/results?done=signed")
    after = client.get(signed.headers["location"])
    assert "Result signed." in after.text and f'id="result-{chart.unsigned[0]}"' not in after.text
    twice = post_form(client, results, action, {})
    assert twice.status_code == 409 and "already signed" in twice.text


# -- care relationships and break-the-glass ------------------------------------------------------


def test_a_clinician_enters_an_orders_result_by_hand_and_a_refusal_keeps_what_was_typed(signed_in, db, facility,
                                                                                       charts, author):
    """A result reached the chart only from a laboratory's feed or the API: a point-of-care test, a value
    read out on the telephone or an imaging report had no way in from the portal. Each open order now has
    'Enter result' with a field per analyte (a number with its unit and range, one of its choices, or a
    report); the catalogue's range flags it; a refusal names the field, keeps every value and records
    nothing; an answered order refuses a second result in a sentence."""
    from tests.e2e.history import FBC, HB, PLT, SMEAR, WBC, XRAY

    acting = principal_of(author, facility.slug)
    pid = charts[1].id
    with db.tenant(facility.slug) as conn:
        fbc, smear, xray = (service.order_test(conn, acting, pid, ServiceRequestIn(
            code=code, encounter_id=charts[1].encounter_id)) for code in (FBC, SMEAR, XRAY))
    client = signed_in("clinician", facility.slug)
    orders_path = f"{base(facility)}/patients/{pid}/orders"

    def results_of(order: dict) -> list[dict]:
        with db.tenant(facility.slug) as conn:
            return [r for r in service.results_of(conn, pid) if r["service_request_id"] == order["root_id"]]

    def action(order: dict) -> str:
        return f"{base(facility)}/patients/{pid}/orders/{order['id']}/results"

    page = client.get(orders_path).text
    assert f'action="{action(fbc)}"' in page and "Reference 12–16 g/dL" in page and "Enter result" in page
    refused = post_form(client, orders_path, action(fbc), {f"v.{HB}": "10.2", f"v.{WBC}": "lots", f"v.{PLT}": "210"})
    assert refused.status_code == 422 and "White cell count is a number" in refused.text
    assert 'value="10.2"' in refused.text and 'value="lots"' in refused.text and 'value="210"' in refused.text
    assert results_of(fbc) == []  # the haemoglobin before it was not kept either
    empty = post_form(client, orders_path, action(fbc), {})
    assert empty.status_code == 422 and "Enter a value for at least one" in empty.text
    recorded = post_form(client, orders_path, action(fbc), {f"v.{HB}": "10.2", f"v.{WBC}": "6.1", f"v.{PLT}": "210",
                                                             "note": "point-of-care analyser"})
    assert recorded.status_code == 303 and recorded.headers["location"].endswith("/results?done=result-recorded")
    shown = client.get(recorded.headers["location"]).text
    assert "Result recorded" in shown and "10.2 g/dL" in shown and "point-of-care analyser" in shown
    for order, value in ((smear, "positive"), (xray, "No focal consolidation. Heart size normal.")):
        code = SMEAR if order is smear else XRAY
        assert post_form(client, orders_path, action(order), {f"v.{code}": value}).status_code == 303
    entered = results_of(fbc) + results_of(smear)
    assert {r["author_id"] for r in entered} == {client.person.account_id}
    assert {r["code"]: (r["flag"], r["unit"]) for r in entered} == {
        HB: ("L", "g/dL"), WBC: ("N", "10*3/uL"), PLT: ("N", "10*3/uL"), SMEAR: ("A", None)}
    (report,) = results_of(xray)
    assert report["value_text"] == "No focal consolidation. Heart size normal." and report["flag"] is None
    again = post_form(client, orders_path, action(fbc), {f"v.{HB}": "11"})
    assert again.status_code == 409 and "has a result already" in again.text and len(results_of(fbc)) == 3
    assert f'action="{action(fbc)}"' not in client.get(orders_path).text  # answered: no longer open


def test_a_chart_without_a_care_relationship_opens_only_by_breaking_the_glass(signed_in, db, facility, charts):
    """The reason is posted once and kept, for this patient's pages only, in a cookie: never in an address (the
    browser's history, a proxy's log), where it travelled before. Each page read under it is recorded with it."""
    client = signed_in("clinician", facility.slug)
    never_seen = charts[3]
    patient = f"{base(facility)}/patients/{never_seen.id}"
    chart = f"{patient}/chart"
    asked = client.get(chart)
    assert asked.status_code == 403
    assert "no care relationship" in asked.text and 'name="break_glass_reason"' in asked.text
    assert f'action="{patient}/break-glass"' in asked.text and 'method="post"' in asked.text
    assert "HASSAN" not in asked.text  # nothing of the chart before the reason is given
    registration = client.get(patient)
    assert registration.status_code == 200 and "HASSAN" in registration.text  # how a relationship begins

    glass = f"{patient}/break-glass"
    too_short = post_form(client, chart, glass, {"break_glass_reason": "need", "next": chart})
    assert too_short.status_code == 422 and "at least 8 characters" in too_short.text
    assert "hos_glass" not in too_short.headers.get("set-cookie", "")
    reason = "Called to the ward: collapsed in the queue"
    elsewhere = post_form(client, chart, glass, {"break_glass_reason": reason, "next": "https://evil.example/x"})
    assert elsewhere.status_code == 303 and elsewhere.headers["location"] == chart  # never off this patient's pages
    kept = elsewhere.headers["set-cookie"]
    assert f"Path={patient}" in kept and "HttpOnly" in kept and "SameSite=strict" in kept and "Max-Age=900" in kept
    opened = client.get(chart)
    assert opened.status_code == 200, opened.text
    assert "Opened by breaking the glass" in opened.text and "HASSAN" in opened.text
    assert "break_glass_reason=" not in opened.text  # no link carries it
    notes = f"{patient}/notes"
    saved = post_form(client, f"{notes}/new", notes, {"title": "Seen", "text": "Seen in the queue."})
    assert saved.status_code == 303 and "break_glass_reason" not in saved.headers["location"]
    client.cookies.delete("hos_glass", path=patient)
    without = post_form(client, f"{notes}/new", notes, {"text": "Without the reason"})
    assert without.status_code == 403 and "no care relationship" in without.text

    glass_events = [e for e in audit.patient_access_log(db, facility.slug, never_seen.id) if e.break_the_glass]
    assert len(glass_events) == 3  # the chart, the note form, the note: each page under the glass is recorded
    assert {e.reason for e in glass_events} == {reason} and all(e.purpose_of_use == "ETREAT" for e in glass_events)
    assert {e.who["account"] for e in glass_events} == {str(client.person.account_id)}


# -- refusals --------------------------------------------------------------------------------------

PAGES = ["", "/today", "/patients", "/patients/new", "/patients/{pid}", "/patients/{pid}/registration",
         "/patients/{pid}/encounters/new", "/patients/{pid}/chart",
         "/patients/{pid}/timeline", "/patients/{pid}/results", "/patients/{pid}/results/trend/{code}",
         "/patients/{pid}/orders", "/patients/{pid}/notes", "/patients/{pid}/notes/new",
         "/patients/{pid}/notes/{any}/correct"]
FORMS = ["/patients", "/patients/{pid}/break-glass", "/patients/{pid}/registration", "/patients/{pid}/encounters",
         "/patients/{pid}/encounters/{any}/status",
         "/patients/{pid}/results/{any}/sign", "/patients/{pid}/results/{any}/disclose",
         "/patients/{pid}/results/{any}/disclose/withdraw", "/patients/{pid}/order-sets",
         "/patients/{pid}/orders", "/patients/{pid}/orders/{any}/results", "/patients/{pid}/medications",
         "/patients/{pid}/medications/{any}/status",
         "/patients/{pid}/notes", "/patients/{pid}/notes/{any}/correct", "/patients/{pid}/notes/{any}/entered-in-error",
         "/patients/{pid}/portal-invite"]
# The nursing pages (appliance/web/nursing.py); their forms are a nurse's to post.
NURSING_FORMS = ["/patients/{pid}/mar", "/patients/{pid}/care-plans", "/patients/{pid}/care-plans/{any}/evaluate",
                 "/patients/{pid}/tasks/{any}/done", "/patients/{pid}/tasks/{any}/defer"]
PAGES += ["/ward", "/ward/handover", "/patients/{pid}/observations", "/patients/{pid}/mar",
          "/patients/{pid}/care-plans"]
FORMS += ["/ward/handover", "/patients/{pid}/observations", *NURSING_FORMS]
PAGES += ["/ward/round"]
# The billing pages (appliance/web/billing.py); a billing clerk's. Refusals with real ids, and the forms
# posted from another facility, are in tests/web/test_billing.py.
PAGES += ["/billing", "/billing/accounts", "/billing/accounts/{any}", "/billing/invoices/{any}",
          "/billing/receipts/{any}", "/billing/takings", "/billing/aging", "/billing/credit-notes/{any}",
          "/billing/refunds/{any}"]
FORMS += ["/billing/charges/{any}/price", "/billing/bed-days", "/billing/accounts/{any}/invoices",
          "/billing/accounts/{any}/coverage", "/billing/invoices/{any}/adjustments", "/billing/invoices/{any}/finalise",
          "/billing/invoices/{any}/payments", "/billing/invoices/{any}/claim", "/billing/invoices/{any}/claim/status",
          "/billing/invoices/{any}/credit-notes", "/billing/invoices/{any}/write-off",
          "/billing/invoices/{any}/transfer-to-patient", "/billing/invoices/{any}/refunds"]
# The operations pages (appliance/web/operations.py): bed board, ED, clinics, command center; their forms
# are a bed manager's, a registrar's or (an expected discharge date) a clinician's or nurse's, so refusals with
# real ids, guessed ids (a patient's too) and other roles are in tests/web/test_operations.py.
PAGES += ["/beds", "/beds/{any}", "/ed", "/ed/{any}/admit", "/clinics", "/clinics/{code}", "/command-center",
          "/command-center/{code}", "/appointments/{any}/reschedule", "/beds/{any}/admit"]
FORMS += ["/beds/{any}/state", "/beds/{any}/admit", "/beds/patients/{any}/discharge", "/beds/patients/{any}/transfer",
          "/beds/patients/{any}/expected-discharge", "/ed/arrivals", "/ed/{any}/{any}", "/ed/{any}/admit",
          "/clinics/{any}/appointments", "/appointments/{any}/reschedule", "/appointments/{any}/{any}"]
# The desk's appointments a withdrawn death certificate had cancelled (rows: tests/layers/clinical/test_death.py).
PAGES += ["/appointments/to-rebook"]
# The facility admin's pages (appliance/web/admin.py); another facility's token and guessed ids are in
# tests/web/test_admin.py, and for a message the HL7 feed sent and its replay in
# tests/interop/hl7v2/test_kept_messages.py.
PAGES += ["/admin/tokens", "/admin/staff", "/admin/interfaces", "/admin/interfaces/{any}"]
FORMS += ["/admin/tokens", "/admin/tokens/{any}/revoke", "/admin/staff/{any}/ward", "/admin/interfaces/{any}/replay"]
# The chart's problems and allergies (appliance/web/problems.py); what they write and refuse is in
# tests/web/test_portal_problems.py.
PAGES += ["/patients/{pid}/problems", "/patients/{pid}/entries/{any}/history"]
FORMS += ["/patients/{pid}/problems", "/patients/{pid}/problems/{any}", "/patients/{pid}/allergies",
          "/patients/{pid}/allergies/{any}", "/patients/{pid}/entries/{any}/entered-in-error"]
# The discharge summary (appliance/web/discharge.py); signing, refusals with the form kept, correcting and the
# patient's own view are in tests/web/test_portal_discharge.py.
PAGES += ["/patients/{pid}/discharge-summaries/new", "/patients/{pid}/discharge-summaries/{any}",
          "/patients/{pid}/discharge-summaries/{any}/correct"]
FORMS += ["/patients/{pid}/discharge-summaries", "/patients/{pid}/discharge-summaries/{any}/correct",
          "/patients/{pid}/discharge-summaries/{any}/entered-in-error"]

# Medicines reconciliation on admission (appliance/web/nursing.py), a clinician's form; what it writes and
# refuses, and the nurse who reads it, are in tests/layers/nursing/test_reconciliation.py.
PAGES += ["/patients/{pid}/reconciliation"]
FORMS += ["/patients/{pid}/reconciliation"]

# A child's growth chart (appliance/web/growth.py); what it draws, and an adult's refusal, are in
# tests/web/test_growth.py.
PAGES += ["/patients/{pid}/growth"]

# The outpatient pharmacy (appliance/web/pharmacy.py), a pharmacist's pages and forms, and the dispensing
# history on the chart; stocking, dispensing and refusals with real ids are in tests/web/test_pharmacy.py.
PAGES += ["/pharmacy", "/pharmacy/stock", "/pharmacy/returns", "/patients/{pid}/dispensing"]
FORMS += ["/pharmacy/dispenses", "/pharmacy/dispenses/{any}/reversal", "/pharmacy/dispenses/{any}/returns",
          "/pharmacy/items", "/pharmacy/items/{any}/receipts", "/pharmacy/items/{any}/adjustments"]

# The laboratory bench (appliance/web/lab.py), a lab technician's (and a clinician's) page and forms; receiving,
# entering and correcting with real ids, and another facility's lab technician, are in tests/web/test_lab.py.
PAGES += ["/lab"]
FORMS += ["/lab/orders/{any}/receipt", "/lab/orders/{any}/rejection", "/lab/orders/{any}/results",
          "/lab/results/{any}/correction"]

# The imaging bench (appliance/web/imaging.py), a radiographer's (and a clinician's) page and forms; performing,
# reporting and correcting with real ids, and another facility's radiographer, are in tests/web/test_imaging.py.
PAGES += ["/imaging"]
FORMS += ["/imaging/orders/{any}/performed", "/imaging/orders/{any}/performed/entered-in-error",
          "/imaging/orders/{any}/report", "/imaging/results/{any}/correction"]

# Death certification (appliance/web/death.py), a clinician's pages and forms; certifying, correcting, withdrawing
# and the banner at another facility are in tests/web/test_death_pages.py, a departure corrected from died in
# tests/web/test_operations.py.
PAGES += ["/patients/{pid}/death", "/patients/{pid}/death/new", "/patients/{pid}/death/correction",
          "/deaths/to-certify"]
FORMS += ["/patients/{pid}/death", "/patients/{pid}/death/correction", "/patients/{pid}/death/entered-in-error",
          "/patients/{pid}/death/departure-correction"]

# Immunizations (appliance/web/immunization.py): the chart's tab, a dose's correction form, the children due; recording,
# correcting and withdrawing a dose, and a registrar refused, are in tests/web/test_immunization_pages.py.
PAGES += ["/patients/{pid}/immunizations", "/patients/{pid}/immunizations/{any}/correct", "/immunizations/due"]
FORMS += ["/patients/{pid}/immunizations", "/patients/{pid}/immunizations/{any}",
          "/patients/{pid}/immunizations/{any}/entered-in-error"]

# Referrals (appliance/web/referral.py): the chart's tab and form, the facility's received and sent, one referral and
# its acts; referring, accepting, declining and feedback with real ids, and a third facility, are in
# tests/web/test_referral_pages.py.
PAGES += ["/patients/{pid}/referrals", "/patients/{pid}/referrals/new", "/referrals", "/referrals/sent",
          "/referrals/{any}"]
FORMS += ["/patients/{pid}/referrals", "/referrals/{any}/accept", "/referrals/{any}/decline",
          "/referrals/{any}/feedback", "/referrals/{any}/withdraw"]

# The fluid balance chart (appliance/web/nursing.py), a nurse's (and a clinician's) tab; charting, refusals, the
# ward's marker and another facility's nurse are in tests/layers/nursing/test_fluid.py.
PAGES += ["/patients/{pid}/fluids"]
FORMS += ["/patients/{pid}/fluids"]
# Diet orders (appliance/web/diet.py): the chart's Diet tab and the kitchen's printable list; ordering, refusals,
# withdrawing and the list with real ids, and another facility's nurse, are in tests/layers/nursing/test_diet.py.
PAGES += ["/patients/{pid}/diet", "/kitchen"]
FORMS += ["/patients/{pid}/diet", "/patients/{pid}/diet/{any}", "/patients/{pid}/diet/{any}/entered-in-error"]

# Births (appliance/web/delivery.py), a midwife's (a nurse's) or a clinician's form, the delivery and its correction;
# recording, the babies' charts and refusals with real ids are in tests/web/test_delivery_pages.py.
PAGES += ["/patients/{pid}/deliveries/new", "/patients/{pid}/deliveries/{any}",
          "/patients/{pid}/deliveries/{any}/correction"]
FORMS += ["/patients/{pid}/deliveries", "/patients/{pid}/deliveries/{any}/correction",
          "/patients/{pid}/deliveries/{any}/entered-in-error"]

# Antenatal care (appliance/web/antenatal.py): the chart's tab, a contact's correction form, the ANC clinic list;
# recording, refusals and the card with real ids are in tests/web/test_antenatal_pages.py.
PAGES += ["/patients/{pid}/antenatal", "/patients/{pid}/antenatal/{any}/correct", "/antenatal/clinic"]
FORMS += ["/patients/{pid}/antenatal", "/patients/{pid}/antenatal/{any}",
          "/patients/{pid}/antenatal/{any}/entered-in-error"]

# The operating theatre (appliance/web/theatre.py): the day's list and a case's page with its checklist, moves and
# operation note, and "Book surgery" from the chart; booking, the checklist's gate, the note and refusals with real
# ids are in tests/web/test_theatre_pages.py.
PAGES += ["/theatre", "/theatre/cases/{any}", "/patients/{pid}/surgery/new"]
FORMS += ["/patients/{pid}/surgery", "/theatre/cases/{any}/checklist/{any}", "/theatre/cases/{any}/status",
          "/theatre/cases/{any}/note", "/theatre/cases/{any}/note/correction", "/theatre/cases/{any}/correction",
          "/theatre/cases/{any}/entered-in-error"]

# Family planning (appliance/web/family_planning.py): the chart's tab, a visit's correction form, the clients due;
# recording, refusals, correcting and withdrawing with real ids are in tests/web/test_family_planning_pages.py.
PAGES += ["/patients/{pid}/family-planning", "/patients/{pid}/family-planning/{any}/correct", "/family-planning/due"]
FORMS += ["/patients/{pid}/family-planning", "/patients/{pid}/family-planning/{any}",
          "/patients/{pid}/family-planning/{any}/entered-in-error"]


# The blood bank (appliance/web/blood.py), a lab technician's page and forms, and the chart's Blood tab
# (appliance/web/transfusion.py): the request a clinician sends, the nurse's bedside record; receiving, reserving,
# issuing and the bedside refusals with real ids are in tests/web/test_blood_pages.py.
TRANSFUSION_FORMS = ["/patients/{pid}/transfusions", "/patients/{pid}/transfusions/{any}/observations",
                     "/patients/{pid}/transfusions/{any}/end", "/patients/{pid}/transfusions/{any}/reactions"]
NURSING_FORMS += TRANSFUSION_FORMS
PAGES += ["/blood", "/patients/{pid}/transfusions"]
FORMS += ["/blood/units", "/blood/units/{any}/discard", "/blood/units/{any}/issue", "/blood/units/{any}/release",
          "/blood/requests/{any}/reservations", "/patients/{pid}/transfusions/requests", *TRANSFUSION_FORMS]
FORMS += ["/patients/{pid}/transfusions/requests/{any}/cancel"]  # the clinician cancels a request for blood
# TB (appliance/web/tuberculosis.py): the chart's tab and the facility's register; registering, a follow-up, an outcome
# refused and recorded with real ids, and a registrar, are in tests/web/test_tb_pages.py.
PAGES += ["/patients/{pid}/tb", "/patients/{pid}/tb/{any}/correct", "/tb/register"]
FORMS += ["/patients/{pid}/tb", "/patients/{pid}/tb/{any}", "/patients/{pid}/tb/{any}/follow-ups",
          "/patients/{pid}/tb/{any}/outcome", "/patients/{pid}/tb/{any}/entered-in-error"]
# HIV care (appliance/web/hiv.py): the chart's tab and the facility's ART register; enrolling, ART, a visit, viral
# loads refused and recorded with real ids, a nurse and a registrar are in tests/web/test_hiv_pages.py.
PAGES += ["/patients/{pid}/hiv", "/hiv/register"]
FORMS += ["/patients/{pid}/hiv", "/patients/{pid}/hiv/{any}/regimens", "/patients/{pid}/hiv/{any}/visits",
          "/patients/{pid}/hiv/{any}/viral-loads", "/patients/{pid}/hiv/{any}/status",
          "/patients/{pid}/hiv/{any}/entered-in-error"]


# Patient safety incidents (appliance/web/incidents.py): the report form every role has, My reports, the quality
# manager's list and review; reporting, refusals and the review with real ids are in tests/web/test_incidents_pages.py.
PAGES += ["/incidents", "/incidents/new", "/incidents/mine", "/incidents/{any}"]
FORMS += ["/incidents/new", "/incidents/{any}/review"]
# Documents (appliance/web/documents.py): the chart's tab and a document's file; filing, refusals, correcting and
# withdrawing with real ids, the desk, and another patient's document are in tests/web/test_document_pages.py.
PAGES += ["/patients/{pid}/documents", "/patients/{pid}/documents/{any}/content"]
FORMS += ["/patients/{pid}/documents", "/patients/{pid}/documents/{any}",
          "/patients/{pid}/documents/{any}/entered-in-error"]
# The duty roster (appliance/web/roster.py): a ward's week, My shifts, the staffing view; adding and taking off with
# real ids, a nurse of another ward and a member of another facility are in tests/web/test_roster_pages.py.
PAGES += ["/roster", "/roster/mine", "/staffing"]
FORMS += ["/roster", "/roster/{any}/withdraw"]
# The nurse who charted a set of vital signs withdraws it (appliance/web/problems.py, ACC-035); another nurse, the
# author after 12 hours and guessed ids with real ones are in tests/layers/nursing/test_pages.py.
NURSING_FORMS += ["/patients/{pid}/vitals/{any}/entered-in-error"]
FORMS += ["/patients/{pid}/vitals/{any}/entered-in-error"]
# And a dose on the MAR or a fluid balance line (appliance/web/nursing.py, ACC-035); the same refusals with real ids
# are in tests/layers/nursing/test_pages.py.
NURSING_FORMS += ["/patients/{pid}/mar/{any}/entered-in-error", "/patients/{pid}/fluids/{any}/entered-in-error"]
FORMS += ["/patients/{pid}/mar/{any}/entered-in-error", "/patients/{pid}/fluids/{any}/entered-in-error"]


def test_every_portal_route_is_in_these_lists(app):
    routes = {(route.path, method) for route in app.routes if route.path.startswith("/t/")
              for handler in route.route_handlers for method in handler.http_methods if method != "OPTIONS"}
    listed = {("/t/{tenant}" + p, m) for ps, m in ((PAGES, "GET"), (FORMS, "POST")) for p in ps}
    normalise = lambda path: re.sub(r"\{(\w+)(:\w+)?\}", "{}", path)  # noqa: E731
    assert {(normalise(p), m) for p, m in routes} == {(normalise(p), m) for p, m in listed}


@pytest.mark.parametrize("path", PAGES)
def test_another_facilitys_session_gets_403_on_every_page(signed_in, facility, elsewhere, charts, path):
    intruder = signed_in("clinician", elsewhere.slug)
    page = intruder.get(base(facility) + path.format(pid=charts[0].id, code=HB, any=uuid.uuid4()))
    assert page.status_code == 403
    assert "Otieno" not in page.text and "OTIENO" not in page.text


@pytest.mark.parametrize("path", FORMS)
def test_another_facilitys_session_gets_403_on_every_form(signed_in, facility, elsewhere, charts, path):
    intruder = signed_in("clinician", elsewhere.slug)
    own_page = intruder.get(f"{base(elsewhere)}/patients")
    action = base(facility) + path.format(pid=charts[0].id, any=uuid.uuid4())
    refused = intruder.post(action, data={"_csrf_token": csrf_token(own_page.text), "status": "finished",
                                          "code": "MALARIA"}, follow_redirects=False)
    assert refused.status_code == 403


@pytest.mark.parametrize("path", [p for p in PAGES if "{pid}" in p])
def test_a_guessed_patient_id_is_404(signed_in, facility, charts, path):
    page = signed_in("clinician", facility.slug).get(base(facility) + path.format(pid=uuid.uuid4(), code=HB,
                                                                                  any=uuid.uuid4()))
    assert page.status_code == 404
    assert "no patient" in page.text.lower()


@pytest.mark.parametrize("path", [p for p in FORMS if "{pid}" in p])
def test_a_guessed_patient_id_is_404_on_every_form(signed_in, facility, charts, path):
    client = signed_in("nurse" if path in NURSING_FORMS else "clinician", facility.slug)
    page = client.get(f"{base(facility)}/patients")
    action = base(facility) + path.format(pid=uuid.uuid4(), any=uuid.uuid4())
    refused = client.post(action, data={"_csrf_token": csrf_token(page.text), "status": "finished",
                                        "code": "MALARIA", "encounter_class": "outpatient", "drug": "Zinc",
                                        "dose": "10", "dose_unit": "mg", "route": "oral", "frequency": "daily",
                                        "text": "x"}, follow_redirects=False)
    assert refused.status_code == 404, refused.text


def test_a_guessed_entry_id_is_404(signed_in, facility, charts):
    client = signed_in("clinician", facility.slug)
    results = f"{base(facility)}/patients/{charts[0].id}/results"
    refused = post_form(client, results, f"{base(facility)}/patients/{charts[0].id}/results/{uuid.uuid4()}/sign", {})
    assert refused.status_code == 404
    other_patients = post_form(client, results,
                               f"{base(facility)}/patients/{charts[1].id}/results/{charts[0].unsigned[-1]}/sign", {})
    assert other_patients.status_code == 404
    guessed = post_form(client, results, f"{base(facility)}/patients/{charts[0].id}/results/{uuid.uuid4()}/disclose",
                        {})
    assert guessed.status_code == 404


def test_a_stale_or_missing_csrf_token_is_refused(signed_in, app, facility, charts):
    client = signed_in("clinician", facility.slug)
    action = f"{base(facility)}/patients/{charts[0].id}/notes"
    missing = client.post(action, data={"text": "no token"}, follow_redirects=False)
    assert missing.status_code == 403
    stale = csrf_token(client.get(f"{base(facility)}/patients").text)
    other = signed_in("clinician", facility.slug)
    other.get(f"{base(facility)}/patients")  # its own, different CSRF cookie
    refused = other.post(action, data={"text": "stale token", "_csrf_token": stale}, follow_redirects=False)
    assert refused.status_code == 403


def test_signed_out_browser_is_sent_to_sign_in(app, facility, charts):
    from litestar.testing import TestClient

    anonymous = TestClient(app=app, raise_server_exceptions=False)
    chart = f"{base(facility)}/patients/{charts[0].id}/chart"
    page = anonymous.get(chart, follow_redirects=False)
    assert page.status_code == 302 and page.headers["location"] == f"/signin?{urlencode({'next': chart})}"


@pytest.mark.parametrize(("role", "first_page"), [("clinician", "/today"), ("registrar", "/patients"),
                                                  ("facility_admin", "/admin/tokens")])
def test_the_facilitys_own_address_opens_the_first_page_the_role_may(signed_in, facility, role, first_page):
    client = signed_in(role, facility.slug)
    for address in (base(facility), base(facility) + "/"):
        sent = client.get(address, follow_redirects=False)
        assert sent.status_code == 303 and sent.headers["location"] == base(facility) + first_page, address


def test_home_links_into_the_portal(signed_in, facility):
    client = signed_in("clinician", facility.slug)
    home = client.get("/")
    assert f'href="/t/{facility.slug}/today"' in home.text
    admin = signed_in("facility_admin", facility.slug)
    assert f'href="/t/{facility.slug}/patients"' not in admin.get("/").text


JUNK = [
    {"status": ["finished", "cancelled"], "code": ["MALARIA", "DM-REVIEW"], "template_code": ["ANC", "OPD"]},
    {"text": "a\x00b", "title": "x" * 5000, "drug": "é" * 300, "dose": "1e400", "birth_date": "0000-00-00"},
    {"encounter_id": "not-a-uuid", "priority": "yesterday", "f.gestational_age": ["1", "2"], "comment": "c" * 3000},
    {"family_name": " ", "given_names": "\t", "sex": "robot", "dose_unit": "mg", "frequency": "now", "route": "oral"},
]


@pytest.mark.parametrize("junk", JUNK, ids=["lists", "text", "types", "blanks"])
@pytest.mark.parametrize("path", FORMS)
def test_junk_in_any_form_gets_a_page_never_a_500(signed_in, facility, charts, path, junk):
    client = signed_in("billing_clerk" if path.startswith("/billing") else "clinician", facility.slug)
    page = client.get(f"{base(facility)}/patients")
    action = base(facility) + path.format(pid=charts[0].id, any=charts[0].unsigned[-1])
    answer = client.post(action, data={"_csrf_token": csrf_token(page.text), **junk}, follow_redirects=False)
    assert answer.status_code < 500, answer.text
    assert "Traceback" not in answer.text
