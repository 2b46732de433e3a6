"""Family planning counted for the ministry (policies/indicators.toml, source "family_planning"): on a hand-built
month at one facility, new acceptors (each client once) by method class, the continuing users, and couple-years of
protection summed exactly and reported in tenths; a removal, a visit entered in error and one corrected into the next
month not counted in it; small cells withheld as any other; the DHIS2 file carries the CYP by its code."""

from __future__ import annotations

import datetime as dt
import json
import uuid
import zoneinfo

import pytest

from appliance.layers.clinical import family_planning
from appliance.layers.clinical.family_planning_policy import load_programme
from appliance.layers.clinical.family_planning_schemas import FamilyPlanningIn
from appliance.national import indicators as national
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import new_patient
from tests.national.test_indicators import DEFINITIONS_FILE

ZONE = "Africa/Nairobi"


@pytest.fixture(scope="module")
def counted(db, settings, tenant_factory):
    facility = tenant_factory(name="Family Planning Facility", timezone=ZONE)
    zone = zoneinfo.ZoneInfo(ZONE)
    nurse = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Nurse Wanjiku", tenant=facility.slug,
                      role="nurse")
    programme = load_programme(settings.policies_dir / "family_planning.toml")
    today = dt.datetime.now(zone).date()
    this_month = national.Period.containing(today)
    last_month = this_month.previous()
    day = dt.date(last_month.year, last_month.month, 15)

    def client(sex: str, age: int) -> uuid.UUID:
        with db.tenant(facility.slug) as conn:
            return new_patient(conn, nurse, family_name="Wafula", given_names="Client", sex=sex,
                               birth_date=day.replace(year=day.year - age) - dt.timedelta(days=30))["id"]

    def visit(patient_id: uuid.UUID, method: str, quantity: int | None, client_type: str | None, on: dt.date = day,
              **fields) -> dict:
        with db.tenant(facility.slug) as conn:
            return family_planning.record_visit(conn, nurse, patient_id, FamilyPlanningIn.model_validate(
                {"method": method, "quantity": quantity, "client_type": client_type, "given_on": on, **fields}),
                programme=programme, today=today, tz=zone)["visit"]

    # Last month's new acceptors: four women (pills, an injection, an implant, a sterilisation), two men (condoms,
    # a vasectomy); one woman continuing on DMPA.
    visit(client("female", 25), "COC", 13, "new_acceptor")
    visit(client("female", 30), "DMPA_IM", 1, "new_acceptor")
    visit(client("female", 28), "IMPLANT_JADELLE", 1, "new_acceptor")
    visit(client("female", 35), "STERILISATION_F", 1, "new_acceptor")
    visit(client("female", 22), "DMPA_IM", 1, "continuing")
    visit(client("male", 40), "CONDOM_M", 100, "new_acceptor")
    visit(client("male", 45), "VASECTOMY", 1, "new_acceptor")
    # Not in last month's figures: an implant inserted two years ago and removed last month, a visit entered in error,
    # and a visit whose day is corrected into this month.
    removed = client("female", 33)
    visit(removed, "IMPLANT_NXT", 1, "new_acceptor", on=day - dt.timedelta(days=730))
    visit(removed, "IMPLANT_NXT", None, None, service="removal", removal_reason="wants_pregnancy")
    mistaken = visit(client("female", 27), "COC", 3, "continuing")
    moved = visit(client("female", 31), "DMPA_IM", 1, "continuing")
    first_of_month = dt.date(this_month.year, this_month.month, 1)
    with db.tenant(facility.slug) as conn:
        family_planning.withdraw_visit(conn, nurse, mistaken["patient_id"], mistaken["id"], "the wrong client")
        family_planning.correct_visit(conn, nurse, moved["patient_id"], moved["id"], FamilyPlanningIn(
            method="DMPA_IM", quantity=1, client_type="continuing", given_on=first_of_month),
            "given at the outreach of the 1st", programme=programme, today=today, tz=zone)
    definitions = national.load_definitions(DEFINITIONS_FILE)
    return facility, last_month, definitions, *(national.count_facility(db, facility.slug, ZONE, period, definitions)
                                                for period in (last_month, this_month))


def test_new_acceptors_by_method_class_continuing_users_and_cyp_in_tenths(counted):
    _, _, definitions, last_month, this_month = counted
    adults = "15-49Y"
    assert last_month["fp_new_acceptors"] == {("F", adults): 4, ("M", adults): 2}
    assert last_month["fp_new_acceptors_short_acting"] == {("F", adults): 2, ("M", adults): 1}
    assert last_month["fp_new_acceptors_long_acting"] == {("F", adults): 1}
    assert last_month["fp_new_acceptors_permanent"] == {("F", adults): 1, ("M", adults): 1}
    assert last_month["fp_continuing_users"] == {("F", adults): 1}
    # Women: 13/15 (pills) + 1/4 + 3.8 (Jadelle) + 10 (sterilisation) + 1/4 = 15.1667 CYP: 152 tenths.
    # Men: 100/120 (condoms) + 10 (vasectomy) = 10.8333 CYP: 108 tenths.
    assert last_month["fp_cyp_tenths"] == {("F", adults): 152, ("M", adults): 108}
    # The visit corrected to the 1st: one DMPA dose, 0.25 CYP, 2.5 tenths rounded half up.
    assert this_month["fp_continuing_users"] == {("F", adults): 1}
    assert this_month["fp_cyp_tenths"] == {("F", adults): 3}
    assert this_month["fp_new_acceptors"] == {}
    published = national.withhold(last_month["fp_new_acceptors"], definitions.cells, definitions.threshold)
    # Two men and four women: both cells withheld, the facility's six published.
    assert (published.total, published.cells[("M", adults)], published.cells[("F", adults)]) == (6, None, None)


def test_the_ministry_takes_the_cyp_away_by_its_dhis2_code(counted, signed_in):
    facility, month, *_ = counted
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    dhis2 = analyst.get(f"/national/export?period={month.value}&format=dhis2")
    assert dhis2.status_code == 200, dhis2.text
    mine = {(v["dataElement"], v["categoryOptionCombo"]): v["value"] for v in json.loads(dhis2.text)["dataValues"]
            if v["orgUnit"] == facility.slug and v["dataElement"].startswith("HOS_FP_")}
    assert mine[("HOS_FP_CYP_TENTHS", "F_15-49Y")] == "152" and mine[("HOS_FP_CYP_TENTHS", "M_15-49Y")] == "108"
    assert ("HOS_FP_NEW_ACCEPTORS", "F_15-49Y") not in mine  # four women: withheld


@pytest.mark.parametrize(("fields", "said"), [
    ('measure = "acceptors"', "measure must be one of new_acceptors, new_to_method, continuing_users, restarts, cyp"),
    ('measure = "new_acceptors"\nmethod_class = "hormonal"', "method_class must be one of short_acting"),
])
def test_a_family_planning_indicator_is_refused_without_a_measure_it_knows(tmp_path, fields, said):
    path = tmp_path / "indicators.toml"
    path.write_text(f'{DEFINITIONS_FILE.read_text(encoding="utf-8")}\n[[indicator]]\nid = "broken"\nname = "Broken"\n'
                    f'dhis2 = "X"\nsource = "family_planning"\n{fields}\n', encoding="utf-8")
    with pytest.raises(national.IndicatorError, match=said):
        national.load_definitions(path)
