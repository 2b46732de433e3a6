"""A child's growth in the tenant portal: the chart summary's growth line, the growth chart page (WHO lines and
the child's points as server-drawn SVG), MUAC and oedema entered with the vital signs at arrival, and the
refusals — another facility's session, a guessed id, an adult."""

from __future__ import annotations

import datetime as dt
import re
import uuid
import xml.etree.ElementTree as ET
import zoneinfo
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn, VitalSignsIn
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.web import plots
from tests.web.test_auth import csrf_token
from tests.web.test_portal import post_form

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Growth Clinic")


@pytest.fixture(scope="module")
def elsewhere(tenant_factory):
    return tenant_factory(name="Elsewhere Growth Clinic")


def _register(conn, principal, family: str, born: dt.date, sex: str = "female") -> uuid.UUID:
    patient = service.register_patient(conn, principal, PatientIn.model_validate(
        {"family_name": family, "given_names": "Test", "birth_date": born, "sex": sex,
         "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))
    service.open_encounter(conn, principal, patient["id"], EncounterIn(encounter_class="outpatient"))
    return patient["id"]


@pytest.fixture(scope="module")
def patients(db, facility, person_factory) -> dict:
    """A girl of 20 months, thin (MUAC 112 mm), and an adult."""
    author = person_factory("clinician", facility.slug)
    principal = Principal(account_id=author.account_id, kind="staff", display_name="Dr Growth",
                          tenant=facility.slug, role="clinician")
    with db.tenant(facility.slug) as conn:
        girl = _register(conn, principal, "Achola", dt.date.today() - dt.timedelta(days=610))
        service.record_vitals(conn, principal, girl, VitalSignsIn(weight_kg=Decimal("8.0"),
                                                                  height_cm=Decimal("78.0"), muac_mm=112,
                                                                  oedema=False))
        adult = _register(conn, principal, "Mutua", dt.date(1980, 5, 1), sex="male")
    return {"girl": girl, "adult": adult}


def test_the_chart_shows_the_growth_line_and_the_growth_page_draws_the_who_lines(signed_in, facility, patients):
    clinician = signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}/patients/{patients['girl']}"
    chart = clinician.get(f"{base}/chart")
    assert chart.status_code == 200
    assert 'id="growth-line"' in chart.text and "MUAC 112 mm: severe acute malnutrition" in chart.text
    assert f'href="{base}/growth"' in chart.text
    page = clinician.get(f"{base}/growth")
    assert page.status_code == 200, page.text
    assert "Severe acute malnutrition" in page.text and "MUAC 112 mm &lt; 115 mm" in page.text
    svgs = [ET.fromstring(svg)  # noqa: S314 -- our own output, parsed to check its shape
            for svg in re.findall(r'<svg class="plot growth".*?</svg>', page.text, re.DOTALL)]
    assert [svg.find(f"{SVG}title").text for svg in svgs] == [
        "Weight-for-age, WHO", "Length/height-for-age, WHO", "BMI-for-age, WHO"]
    for svg in svgs:
        lines = svg.findall(f".//{SVG}path[@class]")
        assert sum(line.get("class").startswith("growth-ref") for line in lines) == 5  # median, ±2, ±3 SD
        assert len(svg.findall(f".//{SVG}g[@class='plot-points s1']/*")) == 1  # the girl's one measurement
    section = page.text[page.text.index('aria-labelledby="growth-title"'):]
    assert "<script" not in section and "style=" not in section  # drawn on the server; CSP: nothing inline


def test_the_growth_page_heads_with_each_index_and_its_band_not_the_acute_status_alone(signed_in, db, facility,
                                                                                      person_factory):
    """A girl of 13 months weighing 6.1 kg, her MUAC 134 mm: no acute malnutrition, and underweight. The page's
    headline said "No acute malnutrition" alone; the latest measurements follow it, each index with its band, as the
    chart summary gives them."""
    author = person_factory("clinician", facility.slug)
    principal = Principal(account_id=author.account_id, kind="staff", display_name="Dr Growth",
                          tenant=facility.slug, role="clinician")
    with db.tenant(facility.slug) as conn:
        girl = _register(conn, principal, "Wanjiru", dt.date.today() - dt.timedelta(days=400))
        service.record_vitals(conn, principal, girl, VitalSignsIn(weight_kg=Decimal("6.1"), muac_mm=134))
    page = signed_in("clinician", facility.slug).get(f"/t/{facility.slug}/patients/{girl}/growth")
    assert page.status_code == 200, page.text
    assert "<strong>No acute malnutrition</strong>" in page.text.split('id="growth-status"')[1].split("</p>")[0]
    latest = page.text.split('id="growth-latest"')[1].split("</p>")[0]
    assert re.search(r": WAZ -\d\.\d \((severely )?underweight\), MUAC 134 mm$", latest), latest


def test_another_facilitys_session_a_guessed_id_and_an_adult_are_refused(signed_in, facility, elsewhere, patients):
    intruder = signed_in("clinician", elsewhere.slug)
    taken = intruder.get(f"/t/{facility.slug}/patients/{patients['girl']}/growth")
    assert taken.status_code == 403 and "Achola" not in taken.text
    clinician = signed_in("clinician", facility.slug)
    assert clinician.get(f"/t/{facility.slug}/patients/{uuid.uuid4()}/growth").status_code == 404
    adult = clinician.get(f"/t/{facility.slug}/patients/{patients['adult']}/growth")
    assert adult.status_code == 422 and "cover children to 19 years" in adult.text
    chart = clinician.get(f"/t/{facility.slug}/patients/{patients['adult']}/chart")
    assert chart.status_code == 200 and 'id="growth-line"' not in chart.text


def _encounters(db, slug: str, patient_id: uuid.UUID) -> int:
    with db.tenant(slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM encounter WHERE patient_id = :id"),
                            {"id": patient_id}).scalar()


def test_muac_and_oedema_are_entered_with_the_vital_signs_at_arrival(signed_in, db, facility, elsewhere, patients):
    """The arrival form asks oedema absent or its grade: ++ is kept with its grade and shown on the growth page
    and the chart's line; 'true' (no longer a choice), a MUAC of 9 mm, another facility's session and a guessed
    id are refused, and no refusal opens an encounter."""
    clinician = signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}/patients/{patients['girl']}"
    form = clinician.get(f"{base}/encounters/new")
    assert 'name="muac_mm"' in form.text and 'name="oedema"' in form.text and 'name="height_cm"' in form.text
    assert '<option value="2">++ both feet and the lower legs, hands or lower arms</option>' in form.text
    opened = _encounters(db, facility.slug, patients["girl"])
    refused = post_form(clinician, f"{base}/encounters/new", f"{base}/encounters",
                        {"encounter_class": "outpatient", "muac_mm": "9"})
    assert refused.status_code == 422 and 'id="muac_mm"' in refused.text
    not_a_choice = post_form(clinician, f"{base}/encounters/new", f"{base}/encounters",
                             {"encounter_class": "outpatient", "muac_mm": "118", "oedema": "true"})
    assert not_a_choice.status_code == 422
    assert "Choose one of the listed options" in not_a_choice.text.split('id="oedema-error"')[1][:200]
    intruder = signed_in("clinician", elsewhere.slug)
    token = csrf_token(intruder.get(f"/t/{elsewhere.slug}/patients").text)
    for tenant in (facility.slug, elsewhere.slug):
        taken = intruder.post(f"/t/{tenant}/patients/{patients['girl']}/encounters", follow_redirects=False,
                              data={"encounter_class": "outpatient", "oedema": "3", "_csrf_token": token})
        assert taken.status_code in (403, 404) and "Achola" not in taken.text
    guessed = post_form(clinician, f"{base}/encounters/new", f"/t/{facility.slug}/patients/{uuid.uuid4()}/encounters",
                        {"encounter_class": "outpatient", "oedema": "3"})
    assert guessed.status_code == 404
    assert _encounters(db, facility.slug, patients["girl"]) == opened
    started = post_form(clinician, f"{base}/encounters/new", f"{base}/encounters",
                        {"encounter_class": "outpatient", "muac_mm": "118", "oedema": "2", "weight_kg": "8.2"})
    assert started.status_code == 303, started.text
    with db.tenant(facility.slug) as conn:
        latest = service.latest_vitals(conn, patients["girl"])
    assert (latest["muac_mm"], latest["oedema"], latest["oedema_grade"], latest["weight_kg"]) == (
        118, True, 2, Decimal("8.2"))
    page = clinician.get(f"{base}/growth").text
    assert "<td>bilateral ++</td>" in page and "bilateral pitting oedema ++" in page
    assert "MUAC 118 mm, bilateral oedema ++: severe acute malnutrition" in clinician.get(f"{base}/chart").text


def test_an_adults_arrival_form_asks_no_muac_or_oedema_and_refuses_one_sent(signed_in, db, facility, patients):
    """The clinic's arrival form follows the ward's rule of who is screened (a child under 16): an adult's has
    neither field, and one sent anyway is refused with the sentence, opening no encounter."""
    clinician = signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}/patients/{patients['adult']}"
    form = clinician.get(f"{base}/encounters/new").text
    assert 'name="muac_mm"' not in form and 'name="oedema"' not in form and 'name="weight_kg"' in form
    opened = _encounters(db, facility.slug, patients["adult"])
    for sent in ({"muac_mm": "240"}, {"oedema": "1"}):
        refused = post_form(clinician, f"{base}/encounters/new", f"{base}/encounters",
                            {"encounter_class": "outpatient", "heart_rate_bpm": "80", **sent})
        assert refused.status_code == 422, refused.text
        assert "recorded to screen a child under 16 for acute malnutrition" in refused.text
    assert _encounters(db, facility.slug, patients["adult"]) == opened


def test_the_pages_count_a_childs_age_on_the_facilitys_calendar(signed_in, db, facility, person_factory):
    """Measured at 01:00 in Nairobi on the day a boy turns six months (22:00 the day before in UTC, five
    months): the growth page and the chart's line read him as six months old, so his MUAC is severe."""
    nairobi = zoneinfo.ZoneInfo(facility.timezone)
    author = person_factory("clinician", facility.slug)
    principal = Principal(account_id=author.account_id, kind="staff", display_name="Dr Growth",
                          tenant=facility.slug, role="clinician")
    born = (dt.date.today() - dt.timedelta(days=200)).replace(day=15)
    month = born.year * 12 + born.month - 1 + 6
    six_months = dt.date(month // 12, month % 12 + 1, 15)
    with db.tenant(facility.slug) as conn:
        boy = _register(conn, principal, "Kamau", born, sex="male")
        record.append(conn, principal, "vital_signs", patient_id=boy, detail={"muac_mm": 110},
                      occurred_at=dt.datetime.combine(six_months, dt.time(1, 0), nairobi))
    clinician = signed_in("clinician", facility.slug)
    page = clinician.get(f"/t/{facility.slug}/patients/{boy}/growth")
    assert page.status_code == 200, page.text
    assert "<td>6 mo</td>" in page.text and "Severe acute malnutrition" in page.text
    chart = clinician.get(f"/t/{facility.slug}/patients/{boy}/chart")
    assert "6 months)" in chart.text and "MUAC 110 mm: severe acute malnutrition" in chart.text
    [point] = clinician.get(f"/api/t/{facility.slug}/patients/{boy}/growth").json()["points"]  # and the API
    assert (point["age_months"], point["acute_malnutrition"]) == (6, "severe")


def test_the_growth_chart_is_well_formed_and_escapes_text():
    hostile = "</title><script>alert(1)</script>"
    svg = str(plots.growth_chart([(0, [(0, 3.2), (12, 9.0)]), (-2, [(0, 2.5), (12, 7.7)])],
                                 [plots.AgePoint(6, 7.0, label=hostile, abnormal=True)], ident="g", title=hostile,
                                 description=hostile, unit=hostile))
    assert "<script>" not in svg and "style=" not in svg
    root = ET.fromstring(svg)  # noqa: S314 -- our own output, parsed to check its shape
    assert root.get("role") == "img" and len(root.findall(f".//{SVG}path[@class='abn']")) == 1


def _weights(db, slug: str, patient_id: uuid.UUID) -> list[Decimal]:
    with db.tenant(slug) as conn:
        return conn.execute(sa.text("SELECT v.weight_kg FROM vital_signs v JOIN entry e ON e.id = v.entry_id "
                                    "WHERE e.patient_id = :id AND v.weight_kg IS NOT NULL ORDER BY e.recorded_at"),
                            {"id": patient_id}).scalars().all()


def test_a_newborns_weight_is_kept_and_shown_to_the_gram_and_an_adults_to_100_g(
        signed_in, token_client, db, facility, elsewhere, patients, person_factory):
    """A 1450 g preterm baby weighed at arrival is kept as 1.450 kg and shown so on the chart and the growth page
    (it read 1.4 kg); a weight finer than a gram is refused with the sentence, on the form and by the API, and opens
    nothing; an adult's 72.5 kg still reads 72.5 kg; another facility writes no weight on the baby."""
    author = person_factory("clinician", facility.slug)
    principal = Principal(account_id=author.account_id, kind="staff", display_name="Dr Growth",
                          tenant=facility.slug, role="clinician")
    with db.tenant(facility.slug) as conn:
        baby = _register(conn, principal, "Nafula", dt.date.today() - dt.timedelta(days=12))
        service.record_vitals(conn, principal, patients["adult"], VitalSignsIn(weight_kg=Decimal("72.5")))
    clinician = signed_in("clinician", facility.slug)
    base = f"/t/{facility.slug}/patients/{baby}"
    assert 'step="0.001"' in clinician.get(f"{base}/encounters/new").text.split('id="weight_kg"')[1][:200]
    opened = _encounters(db, facility.slug, baby)
    finer = post_form(clinician, f"{base}/encounters/new", f"{base}/encounters",
                      {"encounter_class": "outpatient", "weight_kg": "1.4505"})
    assert finer.status_code == 422
    assert "A weight is kept to the gram: give at most 3 decimals in kilograms" in \
        finer.text.split('id="weight_kg-error"')[1][:300]
    api = token_client(facility.slug, role="clinician")
    by_api = api.post(f"/api/t/{facility.slug}/patients/{baby}/vitals", json={"weight_kg": "1.4505"})
    assert by_api.status_code == 422 and "kept to the gram" in by_api.text
    assert (_encounters(db, facility.slug, baby), _weights(db, facility.slug, baby)) == (opened, [])
    weighed = post_form(clinician, f"{base}/encounters/new", f"{base}/encounters",
                        {"encounter_class": "outpatient", "weight_kg": "1.450"})
    assert weighed.status_code == 303, weighed.text
    assert _weights(db, facility.slug, baby) == [Decimal("1.450")]
    chart = clinician.get(f"{base}/chart").text
    assert '<span class="tile-label">Weight</span> <span class="tile-value">1.450</span>' in chart
    assert "<td>1.450</td></tr>" in chart  # the vital signs table
    assert "Weight 1.450 kg" in chart  # the chart drawn over time, its point and its description
    assert ">1.4<" not in chart and "1.45 kg" not in chart
    growth = clinician.get(f"{base}/growth").text
    assert "<td>1.450 kg</td>" in growth
    adult_chart = clinician.get(f"/t/{facility.slug}/patients/{patients['adult']}/chart").text
    assert '<span class="tile-value">72.5</span>' in adult_chart and "72.500" not in adult_chart
    intruder = token_client(elsewhere.slug, role="clinician")
    for tenant in (facility.slug, elsewhere.slug):
        planted = intruder.post(f"/api/t/{tenant}/patients/{baby}/vitals", json={"weight_kg": "9.999"})
        assert planted.status_code in (403, 404) and "9.999" not in planted.text
    assert _weights(db, facility.slug, baby) == [Decimal("1.450")]
