"""Births in the portal (appliance/web/delivery.py) over in-process HTTP: "Record delivery" from a woman's chart (not
a man's), the form refusing what is wrong next to its field with what was typed kept, the delivery linking to the
live-born baby's chart and that chart "born to" its mother, and a correction with a reason that changes the weight
and refuses another number of babies. Other facilities' sessions and guessed ids on these routes are in
tests/web/test_portal.py."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate import audit
from tests.web.test_death_pages import no_inline_script
from tests.web.test_portal import post_form, principal_of, withdrawn_listed


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Riverbank Maternity Unit")


@pytest.fixture(scope="module")
def author(person_factory, facility):
    return person_factory("clinician", facility.slug)


def admitted(db, tenant: str, author, **overrides) -> uuid.UUID:
    """A woman registered at `tenant` and on its ward."""
    principal = principal_of(author, tenant)
    data = PatientIn.model_validate({"family_name": "Kamau", "given_names": "Esther", "birth_date": "1995-07-01",
                                     "sex": "female", **overrides,
                                     "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]})
    linked = service.with_subject(db, data, tenant=tenant)
    with db.tenant(tenant) as conn:
        patient_id = service.register_patient(conn, principal, linked)["id"]
        service.open_encounter(conn, principal, patient_id, EncounterIn(encounter_class="inpatient",
                                                                         status="in_progress", ward_code="GEN"))
    return patient_id


def patients(db, tenant: str) -> int:
    with db.tenant(tenant) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM patient")).scalar()


def test_record_a_delivery_from_the_chart_to_the_babys_chart_and_back(signed_in, db, facility, author):
    mother = admitted(db, facility.slug, author)
    midwife = signed_in("nurse", facility.slug)
    chart = f"/t/{facility.slug}/patients/{mother}"
    assert 'id="record-delivery"' in midwife.get(f"{chart}/chart").text
    form = midwife.get(f"{chart}/deliveries/new")
    assert form.status_code == 200 and 'name="_csrf_token"' in form.text and "Baby of Kamau" in form.text
    no_inline_script(form.text)

    yesterday = dt.date.today() - dt.timedelta(days=1)
    typed = {"born_on": yesterday.isoformat(), "born_time": "00:10", "gestation_weeks": "38", "gestation_days": "4",
             "mode": "spontaneous_vaginal", "number_of_babies": "2", "blood_loss_ml": "350", "uterotonic": "oxytocin",
             "b0_outcome": "live_birth", "b0_sex": "female", "b0_weight_g": "2950", "b0_apgar_1": "8",
             "b0_apgar_5": "9", "b1_outcome": "macerated_stillbirth", "b1_sex": "male", "b1_weight_g": "2100",
             "b1_apgar_1": "3"}
    before = patients(db, facility.slug)
    refused = post_form(midwife, f"{chart}/deliveries/new", f"{chart}/deliveries", typed)
    assert refused.status_code == 422 and "no Apgar score" in refused.text and 'id="b1_apgar_1-error"' in refused.text
    assert 'value="2950"' in refused.text  # what was typed is kept
    untimed = post_form(midwife, f"{chart}/deliveries/new", f"{chart}/deliveries", {**typed, "born_time": None})
    assert untimed.status_code == 422 and "time of birth" in untimed.text
    assert patients(db, facility.slug) == before

    done = post_form(midwife, f"{chart}/deliveries/new", f"{chart}/deliveries", {**typed, "b1_apgar_1": None})
    assert done.status_code == 303, done.text
    page = midwife.get(done.headers["location"])
    assert page.status_code == 200 and "Delivery recorded" in page.text and "Macerated stillbirth" in page.text
    no_inline_script(page.text)
    assert patients(db, facility.slug) == before + 1  # the live-born baby only
    with db.tenant(facility.slug) as conn:
        baby = conn.execute(sa.text("SELECT id FROM patient WHERE given_names = 'Baby 1 of' AND family_name = 'Kamau'"
                                    )).scalar()
    assert f"/patients/{baby}/chart" in page.text
    # The baby's chart: its carers open it without breaking the glass (it is on the ward with its mother).
    babys = midwife.get(f"/t/{facility.slug}/patients/{baby}/chart")
    assert babys.status_code == 200 and 'id="born-to"' in babys.text and "Esther Kamau" in babys.text
    assert 'id="record-delivery"' not in babys.text  # a baby is nobody's mother
    mothers = midwife.get(f"{chart}/chart").text
    assert 'id="births"' in mothers and f"/patients/{baby}/chart" in mothers and "baby 2 stillborn" in mothers
    timeline = midwife.get(f"{chart}/timeline?kind=delivery").text
    assert "Delivery: spontaneous vaginal at 38+4 weeks" in timeline and "macerated stillbirth 2100 g" in timeline

    location = done.headers["location"].split("?")[0]
    unexplained = post_form(midwife, f"{location}/correction", f"{location}/correction",
                            {**typed, "b1_apgar_1": None, "b0_weight_g": "3050"})
    assert unexplained.status_code == 422 and "Say why" in unexplained.text
    fewer = post_form(midwife, f"{location}/correction", f"{location}/correction",
                      {**typed, "number_of_babies": "1", "reason": "one baby only"})
    assert fewer.status_code == 422 and "cannot change how many were born" in fewer.text
    corrected = post_form(midwife, f"{location}/correction", f"{location}/correction",
                          {**typed, "b1_apgar_1": None, "b0_weight_g": "3050", "reason": "weighed again"})
    assert corrected.status_code == 303 and "delivery-corrected" in corrected.headers["location"]
    assert "3050 g" in midwife.get(location).text
    assert patients(db, facility.slug) == before + 1  # no baby twice


def test_a_man_has_no_record_delivery_and_a_registrar_may_not(signed_in, db, facility, author):
    man = admitted(db, facility.slug, author, given_names="Joseph", sex="male")
    clinician = signed_in("clinician", facility.slug)
    chart = f"/t/{facility.slug}/patients/{man}"
    assert 'id="record-delivery"' not in clinician.get(f"{chart}/chart").text
    typed = {"born_on": (dt.date.today() - dt.timedelta(days=1)).isoformat(), "born_time": "00:10",
             "gestation_weeks": "39",
             "mode": "caesarean", "blood_loss_ml": "700", "uterotonic": "oxytocin", "b0_outcome": "live_birth",
             "b0_sex": "male", "b0_weight_g": "3300", "b0_apgar_1": "7", "b0_apgar_5": "9"}
    refused = post_form(clinician, f"{chart}/deliveries/new", f"{chart}/deliveries", typed)
    assert refused.status_code == 422 and "a man&#39;s" in refused.text
    registrar = signed_in("registrar", facility.slug)
    assert registrar.get(f"{chart}/deliveries/new").status_code == 403


def test_a_guessed_delivery_or_another_mothers_is_not_found(signed_in, db, facility, author):
    """With a real chart: a guessed delivery id, and a real delivery under another patient's chart, on the page,
    the correction form and the correction."""
    mother, other = admitted(db, facility.slug, author), admitted(db, facility.slug, author, family_name="Wafula")
    clinician = signed_in("clinician", facility.slug)
    chart, elsewhere = (f"/t/{facility.slug}/patients/{p}" for p in (mother, other))
    typed = {"born_on": (dt.date.today() - dt.timedelta(days=1)).isoformat(), "born_time": "03:00",
             "gestation_weeks": "40", "mode": "spontaneous_vaginal", "blood_loss_ml": "250", "uterotonic": "oxytocin",
             "b0_outcome": "fresh_stillbirth", "b0_sex": "male", "b0_weight_g": "3000"}
    done = post_form(clinician, f"{chart}/deliveries/new", f"{chart}/deliveries", typed)
    assert done.status_code == 303, done.text
    delivery_id = done.headers["location"].split("?")[0].rsplit("/", 1)[1]
    for wrong in (f"{chart}/deliveries/{uuid.uuid4()}", f"{elsewhere}/deliveries/{delivery_id}"):
        assert clinician.get(wrong).status_code == 404
        assert clinician.get(f"{wrong}/correction").status_code == 404
        refused = post_form(clinician, f"{chart}/chart", f"{wrong}/correction", {**typed, "reason": "a guess"})
        assert refused.status_code == 404
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'delivery'")).scalar() >= 1
        assert conn.execute(sa.text("SELECT count(*) FROM entry WHERE kind = 'delivery' AND supersedes IS NOT NULL "
                                    "AND patient_id = :p"), {"p": mother}).scalar() == 0


def test_a_delivery_on_the_wrong_woman_is_marked_entered_in_error_from_its_page(signed_in, db, facility, author):
    wrong, other = admitted(db, facility.slug, author, family_name="Mutua"), admitted(db, facility.slug, author)
    midwife = signed_in("nurse", facility.slug)
    chart, elsewhere = (f"/t/{facility.slug}/patients/{p}" for p in (wrong, other))
    typed = {"born_on": (dt.date.today() - dt.timedelta(days=1)).isoformat(), "born_time": "05:00",
             "gestation_weeks": "39", "mode": "spontaneous_vaginal", "blood_loss_ml": "300", "uterotonic": "oxytocin",
             "b0_outcome": "live_birth", "b0_sex": "male", "b0_weight_g": "3300", "b0_apgar_1": "8", "b0_apgar_5": "9"}
    done = post_form(midwife, f"{chart}/deliveries/new", f"{chart}/deliveries", typed)
    assert done.status_code == 303, done.text
    location = done.headers["location"].split("?")[0]
    delivery_id = location.rsplit("/", 1)[1]
    shown = midwife.get(location)
    assert 'id="delivery-withdraw"' in shown.text and 'name="_csrf_token"' in shown.text
    no_inline_script(shown.text)
    # Without a reason: refused beside the field, nothing written. A guessed id, another woman's address: 404.
    unexplained = post_form(midwife, location, f"{location}/entered-in-error", {"reason": ""})
    assert unexplained.status_code == 422 and "Say why the delivery is entered in error" in unexplained.text
    for wrong_address in (f"{chart}/deliveries/{uuid.uuid4()}", f"{elsewhere}/deliveries/{delivery_id}"):
        assert post_form(midwife, location, f"{wrong_address}/entered-in-error",
                         {"reason": "a guess"}).status_code == 404
    assert midwife.get(location).status_code == 200
    withdrawn = post_form(midwife, location, f"{location}/entered-in-error",
                          {"reason": "recorded on the woman in the next bed"})
    assert withdrawn.status_code == 303 and "delivery-withdrawn" in withdrawn.headers["location"]
    notice = midwife.get(withdrawn.headers["location"]).text
    assert "Delivery marked entered in error" in notice and "naming each baby" in notice
    assert midwife.get(location).status_code == 404  # in force no more
    # Her chart's Births card lists it struck through: when it was withdrawn, by whom, why, with its history.
    born = dt.datetime.combine(dt.date.today() - dt.timedelta(days=1), dt.time(5, 0))
    withdrawn_listed(notice, delivery_id, what=f"Delivery {born:%d %b %Y %H:%M} · Spontaneous vaginal · 39+0 weeks",
                     by="Test nurse", why="recorded on the woman in the next bed")
    # The right mother's Record delivery offers the baby's chart: named, the baby is linked to her, not registered
    # twice, and its chart says born to her.
    with db.tenant(facility.slug) as conn:
        baby = conn.execute(sa.text("SELECT id FROM patient WHERE family_name = 'Mutua' AND given_names = 'Baby of'"
                                    )).scalar()
    form = midwife.get(f"{elsewhere}/deliveries/new")
    assert f'value="{baby}"' in form.text and "Already has a chart here?" in form.text
    before = patients(db, facility.slug)
    linked = post_form(midwife, f"{elsewhere}/deliveries/new", f"{elsewhere}/deliveries",
                       {**typed, "b0_patient_id": str(baby)})
    assert linked.status_code == 303, linked.text
    assert patients(db, facility.slug) == before
    babys = midwife.get(f"/t/{facility.slug}/patients/{baby}/chart")
    assert babys.status_code == 200 and 'id="born-to"' in babys.text and "Esther Kamau" in babys.text
    assert f'value="{baby}"' not in midwife.get(f"{chart}/deliveries/new").text  # linked now: offered no more
    # The right mother's delivery and chart list nothing withdrawn: the one withdrawn was the other woman's.
    for hers in (linked.headers["location"], f"{elsewhere}/chart"):
        assert 'id="withdrawn-deliveries"' not in midwife.get(hers).text


def test_a_delivery_recorded_twice_is_withdrawn_and_listed_on_the_other_and_audited(signed_in, db, facility, author):
    """The duplicate marked entered in error is listed on the delivery kept (and her chart); each read of the list is
    noted on her access log. The same birth is no longer written twice while one is in force: the duplicate is
    withdrawn before the birth is recorded again, as a delivery recorded twice before that refusal was."""
    mother = admitted(db, facility.slug, author, family_name="Chebet")
    midwife = signed_in("nurse", facility.slug)
    chart = f"/t/{facility.slug}/patients/{mother}"
    typed = {"born_on": (dt.date.today() - dt.timedelta(days=2)).isoformat(), "born_time": "22:15",
             "gestation_weeks": "36", "mode": "caesarean", "blood_loss_ml": "600", "uterotonic": "oxytocin",
             "b0_outcome": "fresh_stillbirth", "b0_sex": "female", "b0_weight_g": "2400"}
    recorded = lambda: post_form(midwife, f"{chart}/deliveries/new", f"{chart}/deliveries", typed)  # noqa: E731
    twice = recorded().headers["location"].split("?")[0]
    assert 'id="withdrawn-deliveries"' not in midwife.get(twice).text
    refused = recorded()
    assert refused.status_code == 422 and "already recorded" in refused.text
    assert post_form(midwife, twice, f"{twice}/entered-in-error", {"reason": "recorded twice"}).status_code == 303
    kept = recorded().headers["location"].split("?")[0]
    reads = len(_delivery_reads(db, facility.slug, mother))
    page = midwife.get(kept).text
    born = dt.datetime.combine(dt.date.today() - dt.timedelta(days=2), dt.time(22, 15))
    what = f"Delivery {born:%d %b %Y %H:%M} · Caesarean section · 36+0 weeks"
    withdrawn_listed(page, twice.rsplit("/", 1)[1], what=what, by="Test nurse", why="recorded twice")
    assert "1 delivery marked entered in error" in page
    assert len(_delivery_reads(db, facility.slug, mother)) == reads + 2  # the delivery and the list withdrawn
    withdrawn_listed(midwife.get(f"{chart}/chart").text, twice.rsplit("/", 1)[1], what=what, by="Test nurse",
                     why="recorded twice")


def _delivery_reads(db, tenant: str, patient_id) -> list:
    return [e for e in audit.patient_access_log(db, tenant, patient_id) if e.event_type == "record.delivery.read"]
