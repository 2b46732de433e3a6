"""A mother's deliveries on her own record (/me and the record she downloads), over real HTTP: the day and time of
birth, how she delivered, at how many weeks, and each baby born alive or stillborn with its sex and weight, as
corrected; a delivery entered in error never shows; the read noted on her record as her own; the release rules
(`[delivery]`) can keep deliveries off the portal; and no one else reads them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest
from litestar.testing import TestClient

from appliance.layers.clinical import delivery
from appliance.layers.clinical.schemas import BabyIn, DeliveryIn
from appliance.layers.patient.release import ReleasePolicyError, load_release_rules
from appliance.substrate import audit, identity
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import new_patient
from tests.web.test_me import _patient_client

BORN_AT = dt.datetime(2026, 3, 14, 4, 30, tzinfo=dt.UTC)  # 07:30 at the test facility (Nairobi)


@pytest.fixture(scope="module")
def hospital(tenant_factory):
    return tenant_factory(name="Pumwani Maternity")


def _midwife(tenant: str) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Midwife Akinyi", tenant=tenant, role="nurse")


def _deliver(conn, midwife, chart, data: DeliveryIn) -> dict:
    mother = delivery.check(conn, chart, data)
    return delivery.record_delivery(conn, midwife, chart, data, delivery.newborns(mother, data))


@pytest.fixture(scope="module")
def mother(db, policy, hospital) -> dict:
    """Wanjiru: twins by caesarean at 36+4, the first born alive, the second stillborn; and a delivery recorded on
    her by mistake and entered in error."""
    midwife = _midwife(hospital.slug)
    with db.tenant(hospital.slug) as conn:
        chart = new_patient(conn, midwife, family_name="Wanjiru", given_names="Grace", sex="female",
                            birth_date=dt.date(1994, 6, 1))["id"]
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name="Wanjiru", given_names="Grace",
                                                   national_id=f"DEL-{uuid.uuid4().hex[:8]}").subject_id
        email = f"grace-{uuid.uuid4().hex[:6]}@example.org"
        identity.create_account(conn, policy, kind="patient", email=email, display_name="Grace Wanjiru",
                                role="patient", subject_id=subject)
        identity.note_facility(conn, subject, hospital.slug)
    with db.tenant(hospital.slug) as conn:
        conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, chart))
        _deliver(conn, midwife, chart, DeliveryIn(
            born_at=BORN_AT, gestation_weeks=36, gestation_days=4, mode="caesarean", blood_loss_ml=700,
            uterotonic="oxytocin", babies=[
                BabyIn(outcome="live_birth", sex="female", weight_g=2450, apgar_1=7, apgar_5=9),
                BabyIn(outcome="fresh_stillbirth", sex="male", weight_g=2100)]))
        wrong = _deliver(conn, midwife, chart, DeliveryIn(
            born_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2), gestation_weeks=40, mode="spontaneous_vaginal",
            blood_loss_ml=200, uterotonic="oxytocin", babies=[BabyIn(outcome="macerated_stillbirth", sex="female",
                                                                     weight_g=3999)]))
        delivery.enter_in_error(conn, midwife, chart, wrong["id"], "recorded on the woman in the next bed")
    return {"email": email, "chart": chart}


def test_a_mother_reads_her_delivery_on_her_record(db, app, hospital, mother):
    client = _patient_client(db, app, mother["email"])
    page = client.get("/me")
    assert page.status_code == 200, page.text
    births = page.text.split('class="rows deliveries"')[1].split("</ul></li></ul>")[0]
    assert "14 Mar 2026 07:30" in births and "Caesarean section at 36 weeks and 4 days of pregnancy" in births
    assert "Baby 1: Born alive, a girl, 2,450 g" in births and "Baby 2: Stillborn, a boy, 2,100 g" in births
    assert "3,999" not in page.text  # entered in error: never shown
    assert "<script" not in page.text.split("<main")[1]
    reads = [e for e in audit.patient_access_log(db, hospital.slug, mother["chart"])
             if e.event_type == "record.delivery.read"]
    assert reads and reads[-1].who["kind"] == "patient"

    [facility] = client.get("/me/record.json").json()["facilities"]
    assert facility["deliveries"] == [{
        "born": "2026-03-14T07:30+03:00", "how": "caesarean section", "weeks_pregnant": "36+4",
        "babies": [{"baby": 1, "born": "born alive", "sex": "a girl", "weight_g": 2450},
                   {"baby": 2, "born": "stillborn", "sex": "a boy", "weight_g": 2100}]}]


def test_the_release_rules_can_keep_deliveries_off_the_portal(db, app, mother, tmp_path):
    kept = app.state.release_rules
    app.state.release_rules = dataclasses.replace(kept, deliveries="not_shown")
    try:
        client = _patient_client(db, app, mother["email"])
        assert "Births" not in client.get("/me").text
        assert client.get("/me/record.json").json()["facilities"][0]["deliveries"] == []
    finally:
        app.state.release_rules = kept
    assert kept.deliveries_shown  # the shipped rules show them
    wrong = tmp_path / "release.toml"
    wrong.write_text('[delivery]\nrelease = "after_review"\n\n[default]\nrelease = "after_review"\n')
    with pytest.raises(ReleasePolicyError, match=r"\[delivery\]: release is one of at_once, not_shown"):
        load_release_rules(wrong)


def test_no_one_else_reads_her_deliveries(db, app, policy, signed_in, hospital, mother):
    # Staff are not patients; no one signed in is sent to sign in.
    assert signed_in("nurse", hospital.slug).get("/me").status_code == 403
    anonymous = TestClient(app=app, raise_server_exceptions=False)
    assert anonymous.get("/me", follow_redirects=False).status_code in (302, 303, 401)
    # Another patient with a chart at the same hospital: her own record, no births, nothing of Grace's.
    with db.tenant(hospital.slug) as conn:
        chart = new_patient(conn, _midwife(hospital.slug), family_name="Otieno", given_names="Jane")["id"]
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name="Otieno", given_names="Jane",
                                                   national_id=f"DEL-{uuid.uuid4().hex[:8]}").subject_id
        email = f"jane-{uuid.uuid4().hex[:6]}@example.org"
        identity.create_account(conn, policy, kind="patient", email=email, display_name="Jane Otieno",
                                role="patient", subject_id=subject)
        identity.note_facility(conn, subject, hospital.slug)
    with db.tenant(hospital.slug) as conn:
        conn.exec_driver_sql("UPDATE patient SET subject_id = %s WHERE id = %s", (subject, chart))
    theirs = _patient_client(db, app, email).get("/me")
    assert theirs.status_code == 200 and "Otieno" in theirs.text
    assert "Births" not in theirs.text and "Wanjiru" not in theirs.text and "2,450" not in theirs.text
    # Her record holds no delivery: her access log says nothing of births.
    assert not [e for e in audit.patient_access_log(db, hospital.slug, chart) if e.event_type == "record.delivery.read"]
