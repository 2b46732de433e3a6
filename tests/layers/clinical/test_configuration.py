"""The clinical sections of tenant files: validated whole (a bad reference names what is wrong),
different per facility, synchronised into the tenant schema and deactivated, never deleted, when
removed."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from appliance.layers.clinical import catalogue
from appliance.layers.clinical.models import order_set, orderable
from appliance.substrate.db import Database
from appliance.substrate.tenancy import apply_config, load_tenant_files
from appliance.substrate.tenant_config import TenantConfig, loinc_check_digit_ok
from tests.conftest import REPO, make_tenant_config
from tests.layers.clinical.conftest import CLINICAL_CONFIG


def test_the_demo_facilities_ship_different_clinical_configurations():
    configs = {config.slug: config for _, config in load_tenant_files(REPO / "tenants")}
    hillview, lakeshore = configs["hillview_hc"], configs["lakeshore_district"]
    riverside = configs["riverside_referral"]
    assert len(hillview.catalogue) < len(lakeshore.catalogue) < len(riverside.catalogue)
    malaria = next(o for o in hillview.order_sets if o.name == "Suspected malaria")
    names = {item.loinc: item.name for item in hillview.catalogue}
    assert [names[t] for t in malaria.tests] == ["Malaria blood smear", "Malaria rapid diagnostic test",
                                                 "Full blood count"]
    assert [m.drug for m in malaria.medications] == ["Paracetamol"]
    assert {"CARDIO", "LABOUR"} <= {t.code for t in riverside.note_templates}
    assert "CARDIO" not in {t.code for t in hillview.note_templates}
    assert {o.code for o in riverside.order_sets} != {o.code for o in lakeshore.order_sets}


def test_an_order_set_naming_a_test_outside_the_catalogue_is_refused_naming_it():
    broken = {**CLINICAL_CONFIG, "order_sets": [{"code": "SEPSIS", "name": "Sepsis", "tests": ["58410-2", "600-7"]}]}
    with pytest.raises(ValidationError) as refused:
        make_tenant_config(**broken)
    message = refused.value.errors()[0]["msg"]
    assert "SEPSIS" in message and message.endswith("not in this facility's catalogue: 600-7")


@pytest.mark.parametrize(("change", "expected"), [
    ({"catalogue": [{"loinc": "718-8", "name": "Haemoglobin"}]}, "wrong check digit"),
    ({"catalogue": [{"loinc": "718-7", "name": "Hb", "low": 16, "high": 12}]}, "above high"),
    ({"catalogue": [{"loinc": "718-7", "name": "Hb"}, {"loinc": "718-7", "name": "Hb again"}]}, "unique: 718-7"),
    ({"catalogue": [{"loinc": "718-7", "name": "Hb", "choices": ["low"], "abnormal": ["high"]}]}, "not among"),
    ({"note_templates": [{"code": "X", "name": "X", "fields": [{"key": "a", "label": "A", "type": "choice"}]}]},
     "needs its choices"),
    ({"note_templates": [{"code": "X", "name": "X", "fields": [{"key": "a", "label": "A", "unit": "cm"}]}]},
     "has a unit"),
    ({"note_templates": [{"code": "X", "name": "X", "fields": [
        {"key": "a", "label": "A"}, {"key": "a", "label": "A again"}]}]}, "field keys must be unique: a"),
    ({"note_templates": [{"code": "X", "name": "X", "fields": [{"key": "a", "label": "A", "colour": "red"}]}]},
     "Extra inputs"),
    ({"order_sets": [{"code": "EMPTY", "name": "Nothing"}]}, "places nothing"),
])
def test_malformed_clinical_sections_are_refused(change, expected):
    with pytest.raises(ValidationError, match=expected):
        make_tenant_config(**change)


def test_loinc_check_digits():
    assert all(loinc_check_digit_ok(code) for code in ("718-7", "58410-2", "32700-7", "10839-9", "2345-7"))
    assert not any(loinc_check_digit_ok(code) for code in ("718-1", "58410-3", "2345-8"))


def test_a_facility_without_clinical_sections_keeps_its_fingerprint():
    """Optional sections left out of the dump: an upgrade re-applies old files as unchanged."""
    bare = make_tenant_config(slug="fingerprint_probe")
    assert "catalogue" not in bare.model_dump() and "order_sets" not in bare.model_dump(mode="json")
    assert TenantConfig.model_validate(bare.model_dump()).fingerprint() == bare.fingerprint()
    configured = make_tenant_config(slug="fingerprint_probe", **CLINICAL_CONFIG)
    assert configured.fingerprint() != bare.fingerprint()


def test_applying_the_file_synchronises_and_deactivates(db: Database, tenant_factory, tmp_path: Path):
    config = tenant_factory(**CLINICAL_CONFIG)
    with db.tenant(config.slug) as conn:
        assert {row["code"] for row in catalogue.list_catalogue(conn)} == {
            item["loinc"] for item in CLINICAL_CONFIG["catalogue"]}
        assert catalogue.get_order_set(conn, "MALARIA").name == "Suspected malaria"
    trimmed = {**CLINICAL_CONFIG,
               "catalogue": [i for i in CLINICAL_CONFIG["catalogue"] if i["loinc"] != "36643-5"],
               "order_sets": []}
    apply_config(db, make_tenant_config(slug=config.slug, name=config.name, **trimmed))
    with db.tenant(config.slug) as conn:
        xray = conn.execute(sa.select(orderable.c.active).where(orderable.c.code == "36643-5")).scalar()
        malaria = conn.execute(sa.select(order_set.c.active).where(order_set.c.code == "MALARIA")).scalar()
        assert (xray, malaria) == (False, False)  # kept for the orders that point at them, but not offered
        assert "36643-5" not in {row["code"] for row in catalogue.list_catalogue(conn)}
