"""`catalogue.find_analyte`: which definition (name, unit, range, choices) a result is read against — the
ordered test's own component first, then a test of that code, then a component of any test — and that
the answer follows the facility's file as soon as it is applied again."""

from __future__ import annotations

import pytest

from appliance.layers.clinical import catalogue
from appliance.layers.clinical.errors import Invalid
from appliance.substrate.tenancy import apply_config
from tests.conftest import make_tenant_config
from tests.layers.clinical.conftest import CLINICAL_CONFIG

# A second panel holding haemoglobin with a range of its own: the ordered panel's range must win.
DIFFERENTIAL = {"loinc": "57021-8", "name": "Full blood count with differential", "specimen": "blood", "components": [
    {"loinc": "718-7", "name": "Haemoglobin (differential)", "unit": "g/dL", "low": 11.5, "high": 16.5},
    {"loinc": "789-8", "name": "Red cell count", "unit": "10*6/uL", "low": 3.8, "high": 5.8},
]}
CONFIG = {**CLINICAL_CONFIG, "catalogue": [*CLINICAL_CONFIG["catalogue"], DIFFERENTIAL]}


@pytest.fixture(scope="module")
def laboratory(tenant_factory):
    return tenant_factory(name="Catalogue Test Laboratory", **CONFIG)


def _answer(db, slug: str, code: str, ordered: str | None) -> tuple:
    with db.tenant(slug) as conn:
        name, definition = catalogue.find_analyte(conn, code, ordered)
    return name, definition.unit, definition.low, definition.high, definition.choices


def test_the_ordered_tests_component_comes_first_then_the_test_itself_then_any_panels(db, laboratory):
    slug = laboratory.slug
    assert _answer(db, slug, "718-7", "58410-2") == ("Haemoglobin", "g/dL", 12.0, 16.0, [])
    assert _answer(db, slug, "718-7", "57021-8") == ("Haemoglobin (differential)", "g/dL", 11.5, 16.5, [])
    assert _answer(db, slug, "58410-2", "58410-2")[0] == "Full blood count"  # the ordered test is the analyte
    # No order, or an order that does not hold the code: the test of that code, else a panel's component.
    assert _answer(db, slug, "2345-7", None) == ("Glucose", "mmol/L", 3.9, 7.8, [])
    assert _answer(db, slug, "2345-7", "32700-7") == ("Glucose", "mmol/L", 3.9, 7.8, [])
    assert _answer(db, slug, "789-8", None) == ("Red cell count", "10*6/uL", 3.8, 5.8, [])
    assert _answer(db, slug, "777-3", "32700-7") == ("Platelets", "10*3/uL", 150, 400, [])
    assert _answer(db, slug, "32700-7", None) == ("Malaria blood smear", None, None, None, ["negative", "positive"])
    # Two panels hold haemoglobin: a result sent without its order is read against the first by code, every time.
    assert [_answer(db, slug, "718-7", None) for _ in range(3)] == [
        ("Haemoglobin (differential)", "g/dL", 11.5, 16.5, [])] * 3


def test_an_analyte_or_an_ordered_test_outside_the_catalogue_is_refused_naming_it(db, laboratory):
    with db.tenant(laboratory.slug) as conn:
        with pytest.raises(Invalid) as unknown:
            catalogue.find_analyte(conn, "2160-0", None)
        assert str(unknown.value) == "analyte 2160-0 is not in this facility's catalogue"
        assert unknown.value.extra == {"field": "code", "code": "2160-0"}
        with pytest.raises(Invalid) as not_offered:
            catalogue.find_analyte(conn, "718-7", "24356-8")
        assert str(not_offered.value) == "test 24356-8 is not in this facility's catalogue"
        assert not_offered.value.extra == {"field": "code", "code": "24356-8"}


def test_the_answer_follows_the_file_applied_again(db, tenant_factory):
    facility = tenant_factory(name="Catalogue Reapplied", **CONFIG)
    assert _answer(db, facility.slug, "2345-7", None)[2:4] == (3.9, 7.8)
    assert _answer(db, facility.slug, "789-8", "57021-8")[0] == "Red cell count"

    glucose = {"loinc": "2345-7", "name": "Glucose (fasting)", "specimen": "serum", "unit": "mmol/L", "low": 3.5,
               "high": 6.1}
    trimmed = {**DIFFERENTIAL, "components": DIFFERENTIAL["components"][:1]}  # no red cell count any more
    kept = [item for item in CLINICAL_CONFIG["catalogue"] if item["loinc"] not in {"2345-7", "32700-7"}]
    apply_config(db, make_tenant_config(slug=facility.slug, name=facility.name,
                                        **{**CLINICAL_CONFIG, "order_sets": [],
                                           "catalogue": [*kept, glucose, trimmed]}))

    assert _answer(db, facility.slug, "2345-7", None) == ("Glucose (fasting)", "mmol/L", 3.5, 6.1, [])
    with db.tenant(facility.slug) as conn:
        with pytest.raises(Invalid, match="analyte 789-8 is not in this facility's catalogue"):
            catalogue.find_analyte(conn, "789-8", "57021-8")
        with pytest.raises(Invalid, match="test 32700-7 is not in this facility's catalogue"):
            catalogue.find_analyte(conn, "32700-7", "32700-7")  # dropped from the file: deactivated
