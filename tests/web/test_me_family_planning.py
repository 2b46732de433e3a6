"""A client's family planning on her own record (/me and the record she downloads), over real HTTP: each method she
was given and her next injection's day; a visit entered in error never shows; the read noted on her record as her
own; the release rules (`[family_planning]`) can keep it off the portal; and no one else reads it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from appliance.layers.clinical import family_planning
from appliance.layers.clinical.family_planning_policy import load_programme
from appliance.layers.clinical.family_planning_schemas import FamilyPlanningIn
from appliance.substrate import audit, identity
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone
from tests.layers.clinical.conftest import new_patient
from tests.web.test_me import _patient_client, kept_off_by_the_release_rules


@pytest.fixture(scope="module")
def clinic(tenant_factory):
    return tenant_factory(name="Marie Stopes Clinic")


def _account(db, policy, clinic, chart, family: str) -> str:
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name=family, given_names="Faith",
                                                   national_id=f"FP-{uuid.uuid4().hex[:8]}").subject_id
        email = f"{family.lower()}-{uuid.uuid4().hex[:6]}@example.org"
        identity.create_account(conn, policy, kind="patient", email=email, display_name=f"Faith {family}",
                                role="patient", subject_id=subject)
        identity.note_facility(conn, subject, clinic.slug)
    with db.tenant(clinic.slug) as conn:
        conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, chart))
    return email


def a_registered_patients_page(db, app, policy, clinic, family: str, given: str) -> tuple[str, list]:
    """The /me page of someone the front desk registered at `clinic` and nothing more, and their access log there
    after reading it: what a programme shows of a person never in it (nothing, not even a read)."""
    with db.tenant(clinic.slug) as conn:
        chart = new_patient(conn, Principal(account_id=uuid.uuid4(), kind="staff", display_name="Registrar",
                                            tenant=clinic.slug, role="registrar"),
                            family_name=family, given_names=given)["id"]
    page = _patient_client(db, app, _account(db, policy, clinic, chart, family)).get("/me")
    assert page.status_code == 200, page.text
    return page.text, audit.patient_access_log(db, clinic.slug, chart)


@pytest.fixture(scope="module")
def client(db, policy, settings, clinic) -> dict:
    """Faith Muthoni: an injection of DMPA-SC a week ago, and condoms recorded on her by mistake, entered in error."""
    nurse = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Nurse Atieno", tenant=clinic.slug,
                      role="nurse")
    programme = load_programme(settings.policies_dir / "family_planning.toml")
    tz = facility_timezone(db, clinic.slug)
    today = dt.datetime.now(tz).date()
    with db.tenant(clinic.slug) as conn:
        chart = new_patient(conn, nurse, family_name="Muthoni", given_names="Faith", sex="female",
                            birth_date=dt.date(1995, 3, 3))["id"]
        family_planning.record_visit(conn, nurse, chart, FamilyPlanningIn(
            method="DMPA_SC", quantity=1, client_type="new_acceptor", given_on=today - dt.timedelta(days=7)),
            programme=programme, today=today, tz=tz)
        wrong = family_planning.record_visit(conn, nurse, chart, FamilyPlanningIn(
            method="CONDOM_F", quantity=37, client_type="continuing"), programme=programme, today=today, tz=tz)
        family_planning.withdraw_visit(conn, nurse, chart, wrong["visit"]["id"], "recorded on the wrong client")
    due = today - dt.timedelta(days=7) + dt.timedelta(weeks=13)
    return {"email": _account(db, policy, clinic, chart, "Muthoni"), "chart": chart, "due": due}


def test_a_client_reads_her_methods_and_next_injection_on_her_record(db, app, clinic, client):
    reader = _patient_client(db, app, client["email"])
    page = reader.get("/me")
    assert page.status_code == 200, page.text
    section = page.text.split("<h2>Family planning</h2>")[1].split("</ul>")[0]
    assert "Injectable DMPA-SC (Sayana Press, 104 mg), 1 dose" in section and "is due" in section
    assert "37 pieces" not in page.text  # entered in error: never shown
    reads = [e for e in audit.patient_access_log(db, clinic.slug, client["chart"])
             if e.event_type == "record.family_planning.read"]
    assert reads and reads[-1].who["kind"] == "patient"
    [facility] = reader.get("/me/record.json").json()["facilities"]
    assert facility["family_planning"]["next_due"] == client["due"].isoformat()
    assert [(v["method"], v["what"]) for v in facility["family_planning"]["visits"]] == [
        ("Injectable DMPA-SC (Sayana Press, 104 mg)", "1 dose")]


def test_the_release_rules_can_keep_family_planning_off_the_portal(db, app, client, tmp_path):
    kept_off_by_the_release_rules(db, app, client["email"], tmp_path, table="family_planning",
                                  setting="family_planning", heading="Family planning")


def test_no_one_else_reads_it_and_a_record_without_any_says_nothing_of_it(db, app, policy, signed_in, clinic,
                                                                           client):
    assert signed_in("nurse", clinic.slug).get("/me").status_code == 403
    with db.tenant(clinic.slug) as conn:
        chart = new_patient(conn, Principal(account_id=uuid.uuid4(), kind="staff", display_name="Registrar",
                                            tenant=clinic.slug, role="registrar"),
                            family_name="Otieno", given_names="Jane")["id"]
    theirs = _patient_client(db, app, _account(db, policy, clinic, chart, "Otieno")).get("/me")
    assert theirs.status_code == 200 and "Otieno" in theirs.text
    assert "Family planning" not in theirs.text and "Muthoni" not in theirs.text and "Sayana" not in theirs.text
    assert not [e for e in audit.patient_access_log(db, clinic.slug, chart)
                if e.event_type == "record.family_planning.read"]
