"""The patient portal: one person registered at two facilities is one subject; the front desk invites
them; they see their record from both, and who opened it (break-the-glass with its reason) — and
nothing of anyone else's."""

from __future__ import annotations

import dataclasses
import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.financial.money import format_money
from appliance.layers.patient.release import ReleasePolicyError, load_release_rules
from appliance.substrate import audit, identity

REASON = "Unconscious on arrival, checking allergies"


def _csrf(page: str) -> str:
    return re.search(r'name="_csrf_token" value="([^"]+)"', page).group(1)


def _register(client, tenant: str, national_id: str, family: str = "Wanjiru") -> str:
    made = client.post(f"/api/t/{tenant}/patients", json={
        "family_name": family, "given_names": "Grace", "birth_date": "1988-03-14", "sex": "female",
        "identifiers": [{"system": "national_id", "value": national_id}]})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def _patient_client(db, signed_in_app, email: str):
    from litestar.testing import TestClient

    with db.control() as conn:
        account_id = conn.execute(sa.select(identity.account.c.id).where(identity.account.c.email == email)).scalar()
        token = identity.start_session(conn, account_id, mfa_passed=True)  # as sign-in makes it: no TOTP for patients
    client = TestClient(app=signed_in_app, raise_server_exceptions=False)
    client.cookies.set("healthos_session", token)
    return client


def kept_off_by_the_release_rules(db, app, email: str, tmp_path, *, table: str, setting: str, heading: str) -> None:
    """What `[table]` of policies/release.toml shows at once (`setting` of the rules): the shipped rules show it,
    `not_shown` keeps `heading` off /me and `setting` empty in the record file, and any other release is refused
    naming the table."""
    kept = app.state.release_rules
    app.state.release_rules = dataclasses.replace(kept, **{setting: "not_shown"})
    try:
        reader = _patient_client(db, app, email)
        assert heading not in reader.get("/me").text
        assert reader.get("/me/record.json").json()["facilities"][0][setting] is None
    finally:
        app.state.release_rules = kept
    assert getattr(kept, f"{setting}_shown")  # the shipped rules show it
    wrong = tmp_path / "release.toml"
    wrong.write_text(f'[{table}]\nrelease = "in_person"\n\n[default]\nrelease = "after_review"\n')
    with pytest.raises(ReleasePolicyError, match=rf"\[{table}\]: release is one of at_once, not_shown"):
        load_release_rules(wrong)


@pytest.fixture(scope="module")
def person(tenant_factory):
    return tenant_factory(name="Riverside Referral"), tenant_factory(name="Hillview Health Centre")


@pytest.fixture(scope="module")
def charts(person, app, db, policy):
    """Grace, registered at both facilities under one national ID, with an allergy at one and a problem
    at the other; and a clinician at the second who broke the glass to read her chart."""
    from litestar.testing import TestClient

    riverside, hillview = person
    national_id = "NID-" + uuid.uuid4().hex[:8]
    clients = {}
    for facility in (riverside, hillview):
        with db.control() as conn:
            machine = identity.create_account(conn, policy, kind="machine", email=f"m-{uuid.uuid4().hex[:8]}@t.invalid",
                                              display_name="feed", role="facility_admin", tenant=facility.slug)
            token = identity.issue_api_token(conn, account_id=machine.account_id, tenant=facility.slug, name="t",
                                             permissions=["clinical.*"])
        client = TestClient(app=app, raise_server_exceptions=False)
        client.headers["authorization"] = f"Bearer {token}"
        clients[facility.slug] = client
    at_riverside = _register(clients[riverside.slug], riverside.slug, national_id)
    at_hillview = _register(clients[hillview.slug], hillview.slug, national_id)
    assert clients[riverside.slug].post(f"/api/t/{riverside.slug}/patients/{at_riverside}/allergies", json={
        "substance": "Penicillin", "reaction": "hives", "severity": "moderate"}).status_code == 201
    assert clients[hillview.slug].post(f"/api/t/{hillview.slug}/patients/{at_hillview}/problems", json={
        "code": "I10"}).status_code == 201
    return riverside, hillview, at_riverside, at_hillview


def test_one_national_id_at_two_facilities_is_one_subject(db, charts):
    riverside, hillview, at_riverside, at_hillview = charts
    subjects = set()
    for facility, chart in ((riverside, at_riverside), (hillview, at_hillview)):
        with db.tenant(facility.slug) as conn:
            subjects.add(conn.execute(sa.text("SELECT subject_id FROM patient WHERE id = :id"), {"id": chart}).scalar())
    assert len(subjects) == 1 and None not in subjects


def test_the_front_desk_invites_the_patient_who_sees_both_records_and_who_opened_them(db, app, signed_in, charts):
    riverside, hillview, at_riverside, at_hillview = charts
    reader = signed_in("clinician", hillview.slug)
    read = reader.get(f"/api/t/{hillview.slug}/patients/{at_hillview}/chart",
                      headers={"x-break-glass-reason": REASON, "accept": "application/json"})
    assert read.status_code == 200, read.text

    desk = signed_in("registrar", riverside.slug)
    page = desk.get(f"/t/{riverside.slug}/patients/{at_riverside}")
    assert "Invite to the patient portal" in page.text
    email = f"grace-{uuid.uuid4().hex[:6]}@example.org"
    invited = desk.post(f"/t/{riverside.slug}/patients/{at_riverside}/portal-invite",
                        data={"email": email, "_csrf_token": _csrf(page.text)})
    assert invited.status_code == 200 and "/enrol?code=" in invited.text
    again = desk.post(f"/t/{riverside.slug}/patients/{at_riverside}/portal-invite",
                      data={"email": "other-" + email, "_csrf_token": _csrf(page.text)})
    assert again.status_code == 422 and "already has a patient portal account" in again.text
    # The same person's chart at the other facility says so, instead of offering a second invitation.
    elsewhere = signed_in("registrar", hillview.slug).get(f"/t/{hillview.slug}/patients/{at_hillview}").text
    assert "has a patient portal account" in elsewhere and "Invite to the patient portal" not in elsewhere

    grace = _patient_client(db, app, email)
    home = grace.get("/")
    assert 'href="/me"' in home.text
    record = grace.get("/me")
    assert record.status_code == 200
    assert f'data-facility="{riverside.slug}"' in record.text and f'data-facility="{hillview.slug}"' in record.text
    assert "Penicillin" in record.text and "Essential (primary) hypertension" in record.text
    assert "None booked" in record.text and "No bills" in record.text  # both asked of each facility
    # A screen reader names each table by its caption, and says whose facility's it is.
    for facility in (riverside, hillview):
        assert f"<caption class=\"visually-hidden\">Your results from {facility.name} a clinician has reviewed" \
            in record.text
        assert f"<caption class=\"visually-hidden\">Your bills at {facility.name}, newest first" in record.text
    for facility, chart in ((riverside, at_riverside), (hillview, at_hillview)):  # audited where it was read
        reads = [e for e in audit.patient_access_log(db, facility.slug, chart) if e.event_type == "record.chart.read"]
        assert reads[-1].who["kind"] == "patient"

    access = grace.get("/me/access")
    assert access.status_code == 200
    glass = access.text.split('id="break-glass"')[1].split('data-break-glass="1">')[1].split("</li>")[0]
    assert REASON in glass and "Hillview Health Centre" in glass and "(clinician)" in glass
    day = access.text.split('class="card access-day"')[1]
    assert 'data-break-glass="1"' in day and REASON in day  # on its day too, a line of its own
    # The patient's own reads are left out by default (they would bury the staff's), and said to be.
    assert "<strong>You</strong>" not in access.text
    # the chart, appointments, bills and discharge summaries read at each facility
    assert "your 8 are left out" in access.text
    everyone = grace.get("/me/access?who=all").text
    day = everyone.split('class="card access-day"')[1]
    assert "<strong>You</strong>" in day and "looked at your chart" in day and REASON in day
    # Every line in words: the page's reads of bills and appointments, not the record's kind names.
    assert "looked at a bill" in day and "looked at an appointment" in day
    assert "looked at invoice" not in day and "looked at appointment" not in day
    assert "1 time someone without a care relationship" in access.text


def test_a_patient_reaches_nothing_but_their_own(db, app, signed_in, charts):
    riverside, hillview, at_riverside, _ = charts
    stranger_page = signed_in("registrar", riverside.slug)
    other = _register_via_portal(db, stranger_page, riverside.slug)
    email = f"someone-{uuid.uuid4().hex[:6]}@example.org"
    page = stranger_page.get(f"/t/{riverside.slug}/patients/{other}")
    assert stranger_page.post(f"/t/{riverside.slug}/patients/{other}/portal-invite",
                              data={"email": email, "_csrf_token": _csrf(page.text)}).status_code == 200
    someone = _patient_client(db, app, email)
    mine = someone.get("/me")
    assert mine.status_code == 200 and "Penicillin" not in mine.text and riverside.slug in mine.text
    assert hillview.slug not in mine.text
    # A patient's session opens no facility page and no API, whatever id it guesses.
    assert someone.get(f"/t/{riverside.slug}/patients/{at_riverside}").status_code == 403
    assert someone.get(f"/api/t/{riverside.slug}/patients/{at_riverside}/chart",
                       headers={"accept": "application/json"}).status_code in (401, 403)
    # And staff have no /me.
    assert signed_in("clinician", riverside.slug).get("/me").status_code == 403


def _register_via_portal(db, registrar, tenant: str) -> str:
    page = registrar.get(f"/t/{tenant}/patients/new")
    made = registrar.post(f"/t/{tenant}/patients", data={
        "_csrf_token": _csrf(page.text), "family_name": "Kamau", "given_names": "Peter", "birth_date": "1975-06-02",
        "sex": "male", "national_id": "NID-" + uuid.uuid4().hex[:8]}, follow_redirects=False)
    assert made.status_code == 303, made.text
    return re.search(r"/patients/([0-9a-f-]{36})", made.headers["location"]).group(1)


def test_an_invitation_is_refused_for_a_bad_address_another_facility_or_a_guessed_id(db, signed_in, charts):
    riverside, hillview, at_riverside, _ = charts
    desk = signed_in("registrar", riverside.slug)
    page = desk.get(f"/t/{riverside.slug}/patients/{at_riverside}")
    before = _accounts(db)
    refused = desk.post(f"/t/{riverside.slug}/patients/{uuid.uuid4()}/portal-invite",
                        data={"email": "x@example.org", "_csrf_token": _csrf(page.text)})
    assert refused.status_code == 404
    other_desk = signed_in("registrar", hillview.slug)
    assert other_desk.post(f"/t/{riverside.slug}/patients/{at_riverside}/portal-invite",
                           data={"email": "x@example.org", "_csrf_token": _csrf(page.text)}).status_code == 403
    assert _accounts(db) == before


def _accounts(db) -> int:
    with db.control() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(identity.account)
                            .where(identity.account.c.kind == "patient")).scalar()


def test_a_bad_address_links_and_makes_nothing(db, signed_in, charts):
    from appliance.layers.clinical import service
    from appliance.layers.clinical.schemas import PatientIn
    from appliance.substrate.principal import Principal

    riverside = charts[0]
    desk_principal = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Desk", tenant=riverside.slug,
                               role="registrar")
    with db.tenant(riverside.slug) as conn:  # a chart registered before registration linked subjects
        unlinked = service.register_patient(conn, desk_principal, PatientIn.model_validate({
            "family_name": "Omondi", "given_names": "Lucy", "birth_date": "1992-02-02", "sex": "female"}))["id"]
    desk = signed_in("registrar", riverside.slug)
    page = desk.get(f"/t/{riverside.slug}/patients/{unlinked}")
    before = _accounts(db)
    for address in ("", "lucy.example.org", "x" * 250 + "@e.org"):
        refused = desk.post(f"/t/{riverside.slug}/patients/{unlinked}/portal-invite",
                            data={"email": address, "_csrf_token": _csrf(page.text)})
        assert refused.status_code == 422 and "is not an e-mail address" in refused.text
    assert _accounts(db) == before
    with db.tenant(riverside.slug) as conn:
        assert conn.execute(sa.text("SELECT subject_id FROM patient WHERE id = :id"), {"id": unlinked}).scalar() is None


def test_a_registration_naming_an_unknown_subject_is_refused_and_writes_nothing(db, charts, token_client):
    riverside = charts[0]
    api = token_client(riverside.slug, permissions=["clinical.patient.create"])
    ghost = uuid.uuid4()
    refused = api.post(f"/api/t/{riverside.slug}/patients", json={
        "family_name": "Ghost", "given_names": "Nobody", "birth_date": "1990-01-01", "sex": "male",
        "subject_id": str(ghost)})
    assert refused.status_code == 422 and str(ghost) in refused.json()["detail"]
    with db.tenant(riverside.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM patient WHERE family_name = 'Ghost'")).scalar() == 0


def test_the_portal_asks_only_the_facilities_holding_a_chart_of_the_person(db, charts, tenant_factory, monkeypatch):
    import importlib

    from appliance.layers.patient import portal

    riverside, hillview, at_riverside, _ = charts
    elsewhere = tenant_factory(name="Unrelated Dispensary")
    with db.tenant(riverside.slug) as conn:
        subject_id = conn.execute(sa.text("SELECT subject_id FROM patient WHERE id = :id"),
                                  {"id": at_riverside}).scalar()
    with db.control() as conn:
        assert identity.facilities_of(conn, subject_id)[1] == {riverside.slug, hillview.slug}
    opened: list[str] = []
    real_tenant = db.tenant

    def recording_tenant(slug):
        opened.append(slug)
        return real_tenant(slug)

    monkeypatch.setattr(db, "tenant", recording_tenant)
    holdings = portal.portal_records(db, subject_id).shown
    monkeypatch.undo()

    assert {h.tenant for h in holdings} == {riverside.slug, hillview.slug}
    assert sorted(opened) == sorted([riverside.slug, hillview.slug]) and elsewhere.slug not in opened

    # An appliance upgraded to c0006 notes the charts already linked: the same statement, run again here.
    migration = importlib.import_module("appliance.substrate.migrations.control.versions.c0006_subject_facility")
    with db.control() as conn:
        conn.execute(sa.delete(identity.subject_facility).where(identity.subject_facility.c.subject_id == subject_id))
        assert identity.facilities_of(conn, subject_id)[1] == set()
        conn.exec_driver_sql(migration.BACKFILL)
        assert identity.facilities_of(conn, subject_id)[1] == {riverside.slug, hillview.slug}

    # A facility dropped from the appliance is no longer one to ask.
    from appliance.substrate.tenancy import apply_config, drop_tenant
    from tests.conftest import make_tenant_config

    closing = make_tenant_config(name="Closing Clinic")
    apply_config(db, closing)
    with db.control() as conn:
        identity.note_facility(conn, subject_id, closing.slug)
        assert closing.slug in identity.facilities_of(conn, subject_id)[1]
    drop_tenant(db, closing.slug)
    with db.control() as conn:
        assert identity.facilities_of(conn, subject_id)[1] == {riverside.slug, hillview.slug}


def _portal_of(db, app, policy, tenant: str, patient_id, family_name: str, given_names: str):
    """A chart registered by a test linked to a subject with a portal account, and that account's client."""
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name=family_name, given_names=given_names,
                                                   national_id=f"BIL-{uuid.uuid4().hex[:8]}").subject_id
        identity.note_facility(conn, subject, tenant)
        email = f"{given_names.lower()}-{uuid.uuid4().hex[:6]}@example.org"
        identity.create_account(conn, policy, kind="patient", email=email, display_name=f"{given_names} {family_name}",
                                role="patient", subject_id=subject)
    with db.tenant(tenant) as conn:
        conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, patient_id))
    return _patient_client(db, app, email)


def test_what_a_patient_owes_counts_every_bill_not_only_those_listed(db, app, policy, tenant_factory):
    """A patient with more final bills than the page lists (21, each a blood count's, none paid): the sum
    owed is over all of them, the page says it lists the latest, and the download lists them all."""
    from decimal import Decimal

    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import EncounterIn, PatientIn, ServiceRequestIn
    from appliance.layers.financial import service as financial
    from appliance.substrate.principal import Principal
    from appliance.web.me import BILLS_SHOWN
    from tests.layers.financial.conftest import FINANCIAL_CONFIG, FULL_BLOOD_COUNT

    facility = tenant_factory(name="Many Bills Clinic", **FINANCIAL_CONFIG)
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr B", tenant=facility.slug,
                       role="clinician")
    clerk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Clerk B", tenant=facility.slug,
                      role="billing_clerk")
    with db.tenant(facility.slug) as conn:
        patient = clinical.register_patient(conn, doctor, PatientIn.model_validate({
            "family_name": "Njeri", "given_names": "Lucy", "birth_date": "1960-01-01", "sex": "female"}))
        for _ in range(BILLS_SHOWN + 1):
            visit = clinical.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class="outpatient"))
            clinical.order_test(conn, doctor, patient["id"], ServiceRequestIn(code=FULL_BLOOD_COUNT,
                                                                              encounter_id=visit["id"]))
        for account in financial.list_accounts(conn, clerk, patient_id=patient["id"]):
            financial.finalise_invoice(conn, clerk, financial.draft_invoice(conn, clerk, account["id"])["id"])
        bills = financial.bills_of_patient(conn, clerk, patient["id"], limit=100)
    assert len(bills) == BILLS_SHOWN + 1 and all(b["outstanding"] > 0 for b in bills)
    owed = sum((b["outstanding"] for b in bills), Decimal(0))
    lucy = _portal_of(db, app, policy, facility.slug, patient["id"], "Njeri", "Lucy")

    page = lucy.get("/me").text
    shown = format_money(owed, bills[0]["currency"])
    assert f"You owe {shown} here" in page
    assert page.split('class="list bills"')[1].split("</table>")[0].count("<tr") == BILLS_SHOWN + 1  # and the head
    assert f"The latest {BILLS_SHOWN} of your {BILLS_SHOWN + 1} bills here" in page
    [part] = lucy.get("/me/record.json").json()["facilities"]
    assert len(part["bills"]) == BILLS_SHOWN + 1 and part["you_owe"] == shown


def _registered(db, tenant_factory, facility_name: str, role: str, family_name: str, given_names: str,
                birth_date: str):
    """A facility of its own, one of its staff in `role`, and a man they registered: (facility, staff, patient)."""
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import PatientIn
    from appliance.substrate.principal import Principal

    facility = tenant_factory(name=facility_name)
    staff = Principal(account_id=uuid.uuid4(), kind="staff", display_name=f"{role} of {facility_name}",
                      tenant=facility.slug, role=role)
    with db.tenant(facility.slug) as conn:
        patient = clinical.register_patient(conn, staff, PatientIn.model_validate({
            "family_name": family_name, "given_names": given_names, "birth_date": birth_date, "sex": "male"}))
    return facility, staff, patient


def test_a_problem_not_confirmed_says_so_in_words(db, app, policy, tenant_factory):
    """A diagnosis the clinician is still considering read 'Lobar pneumonia J18.1 · differential' on the patient's
    record, a word they need not know, beside a problem as if made; a provisional one 'provisional'."""
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import ConditionIn

    facility, doctor, patient = _registered(db, tenant_factory, "Considering Clinic", "clinician", "Odera", "Ben",
                                            "1980-01-01")
    with db.tenant(facility.slug) as conn:
        for code, verification in (("J18.1", "differential"), ("B54", "provisional"), ("I10", "confirmed")):
            clinical.add_condition(conn, doctor, patient["id"], ConditionIn(code=code, verification=verification))
    ben = _portal_of(db, app, policy, facility.slug, patient["id"], "Odera", "Ben")
    problems = ben.get("/me").text.split('class="rows problems"')[1].split("</ul>")[0]
    said = {line.split(" <span")[0].split(">")[-1]: line for line in problems.split("</li>")[:-1]}
    assert "a possibility still being checked" in said["Lobar pneumonia, unspecified"]
    assert "not yet confirmed" in said["Unspecified malaria"]
    assert "differential" not in problems and "provisional" not in problems
    assert "not yet" not in said["Essential (primary) hypertension"]


def test_a_patient_reads_a_bill_line_by_line_and_no_one_elses(db, app, policy, signed_in, tenant_factory):
    """A patient read 'INV-0000021 · KES 1,000.00' and what they owed, never what for: the bill opens line by line,
    with what was paid and is still owed. Another patient's bill, a guessed id, a facility that holds no chart of
    theirs are not found, and the other patient's record notes no read; staff have no patient's pages."""
    from decimal import Decimal

    from appliance.layers.financial import service as financial
    from appliance.substrate.principal import Principal
    from tests.layers.financial.conftest import FINANCIAL_CONFIG
    from tests.web.test_billing import billed_for_a_blood_count

    facility = tenant_factory(name="Itemising Clinic", **FINANCIAL_CONFIG)
    elsewhere = tenant_factory(name="Other Itemising Clinic", **FINANCIAL_CONFIG)
    invoice = billed_for_a_blood_count(db, facility, "Wafula", "Joy")
    theirs = billed_for_a_blood_count(db, facility, "Kibet", "Ann")
    clerk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Clerk I", tenant=facility.slug,
                      role="billing_clerk")
    with db.tenant(facility.slug) as conn:
        receipt = financial.record_payment(conn, clerk, invoice["id"], method="cash", amount=Decimal("200"))
    joy = _portal_of(db, app, policy, facility.slug, invoice["patient_id"], "Wafula", "Joy")
    url = f"/me/bills/{facility.slug}/{invoice['id']}"
    assert f'href="{url}"' in joy.get("/me").text

    page = joy.get(url)
    assert page.status_code == 200, page.text
    [line] = invoice["lines"]
    assert line["description"] in page.text and invoice["number"] in page.text
    assert 'id="total">KES 450.00<' in page.text and 'id="still-owed">KES 250.00<' in page.text
    assert receipt["receipt_number"] in page.text and "Pay at Itemising Clinic's cashier" in page.text
    assert f"<caption class=\"visually-hidden\">What bill {invoice['number']} charges for, line by line" in page.text
    reads = [e for e in audit.patient_access_log(db, facility.slug, invoice["patient_id"])
             if e.event_type == "record.invoice.read"]
    assert reads[-1].who["kind"] == "patient"

    before = len(audit.patient_access_log(db, facility.slug, theirs["patient_id"]))
    for wrong in (f"/me/bills/{facility.slug}/{theirs['id']}", f"/me/bills/{facility.slug}/{uuid.uuid4()}",
                  f"/me/bills/{elsewhere.slug}/{invoice['id']}", f"/me/bills/nowhere/{invoice['id']}"):
        refused = joy.get(wrong)
        assert refused.status_code == 404 and "Kibet" not in refused.text, wrong
    assert len(audit.patient_access_log(db, facility.slug, theirs["patient_id"])) == before
    assert signed_in("billing_clerk", facility.slug).get(url).status_code == 403


def test_a_bill_lowered_after_it_was_paid_says_the_refund_owed_until_it_is_given(db, app, policy, tenant_factory):
    """Paid in full (450), then a credit note of 70 on the blood count: the bill said 'paid' and the page owed
    nothing, as if the 70 were the facility's. The page and the download now say the refund owed to the patient,
    until the cashier records it; then the bill is simply paid."""
    from decimal import Decimal

    from appliance.layers.financial import credits, refunds
    from appliance.layers.financial import service as financial
    from appliance.substrate.principal import Principal
    from tests.layers.financial.conftest import FINANCIAL_CONFIG
    from tests.web.test_billing import billed_for_a_blood_count

    facility = tenant_factory(name="Refunding Clinic", **FINANCIAL_CONFIG)
    clerk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Clerk R", tenant=facility.slug,
                      role="billing_clerk")
    invoice = billed_for_a_blood_count(db, facility, "Atieno", "Mercy")
    with db.tenant(facility.slug) as conn:
        financial.record_payment(conn, clerk, invoice["id"], method="cash", amount=Decimal("450"))
        credits.issue_credit_note(conn, clerk, invoice["id"], lines=[(invoice["lines"][0]["id"], Decimal("70"))],
                                  reason="priced at the private tariff in error")
    mercy = _portal_of(db, app, policy, facility.slug, invoice["patient_id"], "Atieno", "Mercy")

    page = mercy.get("/me").text
    assert "Refunding Clinic owes you a refund of KES 70.00" in page and "You owe" not in page
    bill = page.split('class="list bills"')[1].split("</table>")[0]
    assert "Refund due to you: KES 70.00" in bill and ">paid<" not in bill
    [part] = mercy.get("/me/record.json").json()["facilities"]
    assert part["refund_due_to_you"] == "KES 70.00" and part["bills"][0]["refund_due_to_you"] == "KES 70.00"

    with db.tenant(facility.slug) as conn:
        refunds.record_refund(conn, clerk, invoice["id"], method="cash", amount=Decimal("70"),
                              reason="credit note for the private tariff")
    page = mercy.get("/me").text
    assert "owes you a refund" not in page and "Refund due" not in page
    assert ">paid<" in page.split('class="list bills"')[1].split("</table>")[0]
    [part] = mercy.get("/me/record.json").json()["facilities"]
    assert part["refund_due_to_you"] is None and "refund_due_to_you" not in part["bills"][0]


def test_the_access_log_says_each_day_in_a_few_lines_and_lists_its_every_access_on_its_own_page(
        db, app, policy, signed_in, tenant_factory):
    """A registrar opens a child's registration three times: the day says so in one line per thing looked at,
    '3 times, 08:10–08:12', not three; the day's own page lists every access. A day or page that is not one is
    refused with a sentence; a day with nothing says so."""
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import PatientIn

    facility, desk, child = _registered(db, tenant_factory, "Paediatric Ward Clinic", "registrar", "Odhiambo",
                                        "Baraka", "2022-02-02")
    parent = _portal_of(db, app, policy, facility.slug, child["id"], "Odhiambo", "Baraka")
    registrar = signed_in("registrar", facility.slug)
    for _ in range(3):
        assert registrar.get(f"/t/{facility.slug}/patients/{child['id']}").status_code == 200

    page = parent.get("/me/access").text
    [day] = page.split('class="card access-day"')[1:]
    lines = day.split('class="rows access-groups">')[1].split("</ul>")[0].split("<li")[1:]
    by_registrar = [line for line in lines if "Test registrar" in line]
    thrice = [line for line in by_registrar if re.search(r" 3 times(, \d\d:\d\d–\d\d:\d\d| at \d\d:\d\d)", line)]
    assert thrice and thrice == by_registrar  # each thing looked at is one line, none said once of three
    every = int(re.search(r"Every entry of this day \((\d+)\)", day)[1])
    assert every >= 3 * len(thrice) + 1  # and the registration itself
    date = day.split('data-day="')[1].split('"')[0]
    whole = parent.get(f"/me/access?day={date}").text
    assert whole.split('id="access-log"')[1].split("<tbody>")[1].split("</tbody>")[0].count("<tr") == every
    assert 'href="/me/access">All days</a>' in whole
    assert "1 day," in page and "Earlier days" not in page  # one page; a page past it shows the last
    assert parent.get("/me/access?page=5").text.count('class="card access-day"') == 1

    assert "Nothing recorded on this day" in parent.get("/me/access?day=2001-01-01").text
    # Another patient's account asking for the same day gets their own log; staff have none.
    with db.tenant(facility.slug) as conn:
        sibling = clinical.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Odhiambo", "given_names": "Neema", "birth_date": "2024-04-04", "sex": "female"}))
    other = _portal_of(db, app, policy, facility.slug, sibling["id"], "Odhiambo", "Neema").get(f"/me/access?day={date}")
    assert other.status_code == 200 and desk.display_name in other.text and "Test registrar" not in other.text
    assert registrar.get(f"/me/access?day={date}").status_code == 403
    for bad, said in (("day=yesterday", "'yesterday' is not a day"), ("day=2026-02-30", "'2026-02-30' is not a day"),
                      ("page=0", "there is no page '0'"), ("page=two", "there is no page 'two'")):
        refused = parent.get(f"/me/access?{bad}")
        assert refused.status_code == 400 and said in refused.json()["detail"], (bad, refused.text)


def test_a_command_center_drill_down_reads_as_the_figure_it_was_behind(db, app, policy, tenant_factory):
    """The entries behind a command center figure, read on the seam the drill-down reads them on, name the figure
    in the patient's log ('Bed occupancy'), not 'kpi'."""
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import PatientIn
    from appliance.substrate.principal import Principal
    from appliance.substrate.record import note_list_read

    facility = tenant_factory(name="Figures Clinic")
    manager = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Manager F", tenant=facility.slug,
                        role="facility_admin")
    with db.tenant(facility.slug) as conn:
        child = clinical.register_patient(conn, manager, PatientIn.model_validate({
            "family_name": "Wekesa", "given_names": "Imani", "birth_date": "2021-07-07", "sex": "female"}))
        note_list_read(conn, manager, "kpi.bed_occupancy", [{"patient_id": child["id"], "entry_id": uuid.uuid4()}],
                       id_key="entry_id")
    parent = _portal_of(db, app, policy, facility.slug, child["id"], "Wekesa", "Imani")
    page = parent.get("/me/access").text
    assert "Manager F" in page and "looked at your record in the list behind a facility&#39;s figure: Bed occupancy" \
        in page and "looked at kpi" not in page
