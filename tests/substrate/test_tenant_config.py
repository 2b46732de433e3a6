"""Reading tenant files: a malformed file names the file, the field and what was expected."""

import datetime as dt
from pathlib import Path

import pytest

from appliance.substrate.tenant_config import TenantFileError, parse_tenant_file

VALID = """
slug = "sample_clinic"
name = "Sample Clinic"
facility_type = "clinic"
country_code = "KE"
region = "Central Region"
district = "Hillview"
timezone = "Africa/Nairobi"
currency = "KES"

[[wards]]
code = "OBS"
name = "Observation"
beds = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "facility.toml"
    path.write_text(text)
    return path


def test_valid_file_parses_with_generated_bed_codes(tmp_path):
    config = parse_tenant_file(write(tmp_path, VALID))
    assert config.slug == "sample_clinic"
    assert config.wards[0].bed_codes() == ["OBS-01", "OBS-02"]


@pytest.mark.parametrize(
    ("change", "field", "expectation"),
    [
        (('timezone = "Africa/Nairobi"', 'timezone = "Mars/Olympus"'), "timezone", "unknown IANA time zone"),
        (('currency = "KES"', 'currency = "shillings"'), "currency", "should match pattern"),
        (('slug = "sample_clinic"', 'slug = "Sample Clinic!"'), "slug", "lowercase letters"),
        (('beds = 2', 'beds = "two"'), "wards[0].beds", "expected a number of beds"),
        (('facility_type = "clinic"', 'facility_type = "spa"'), "facility_type", "referral_hospital"),
        (('name = "Sample Clinic"', 'nmae = "Sample Clinic"'), "nmae", "unknown field"),
        (('name = "Sample Clinic"\n', ''), "name", "required field is missing"),
        (('currency = "KES"', 'currency = "KES"\nrecording_since = "2026-02-30"'), "recording_since",
         "a real date written YYYY-MM-DD"),
        (('currency = "KES"', 'currency = "KES"\nrecording_since = "March 2026"'), "recording_since",
         "a real date written YYYY-MM-DD"),
        (('currency = "KES"', 'currency = "KES"\nrecording_since = 2026'), "recording_since",
         "a real date written YYYY-MM-DD"),
        (('currency = "KES"', 'currency = "KES"\nphone = "call the desk"'), "phone", "the number patients phone"),
        (('currency = "KES"', 'currency = "KES"\nphone = "+254 20"'), "phone", "6 to 15 digits"),
        (('currency = "KES"', 'currency = "KES"\nphone = "+254 20 555 0100 0100 0100"'), "phone", "6 to 15 digits"),
        (('currency = "KES"', 'currency = "KES"\nphone = 254205550100'), "phone", "valid string"),
        (('currency = "KES"', 'currency = "KES"\nopening_hours = """Monday\nto Friday"""'), "opening_hours",
         "one line a patient reads"),
    ],
)
def test_malformed_file_names_file_field_and_expectation(tmp_path, change, field, expectation):
    path = write(tmp_path, VALID.replace(*change, 1))
    with pytest.raises(TenantFileError) as failure:
        parse_tenant_file(path)
    message = str(failure.value)
    assert message.startswith(str(path))
    problems = failure.value.problems
    assert any(problem.startswith(f"{field}:") and expectation in problem for problem in problems), message


def test_recording_since_is_a_day_in_toml_or_as_a_string_and_left_out_of_the_stored_file_when_unset(tmp_path):
    unset = parse_tenant_file(write(tmp_path, VALID))
    written = parse_tenant_file(write(tmp_path, VALID.replace('currency = "KES"', 'currency = "KES"\n'
                                                                                   "recording_since = 2026-03-01")))
    quoted = parse_tenant_file(write(tmp_path, VALID.replace('currency = "KES"', 'currency = "KES"\n'
                                                                                  'recording_since = "2026-03-01"')))
    assert written.recording_since == quoted.recording_since == dt.date(2026, 3, 1)
    assert written.model_dump(mode="json")["recording_since"] == "2026-03-01"
    # A file without it keeps the stored form and fingerprint it had before the field existed.
    assert "recording_since" not in unset.model_dump(mode="json")


def test_phone_and_opening_hours_are_read_as_written_and_left_out_of_the_stored_file_when_unset(tmp_path):
    unset = parse_tenant_file(write(tmp_path, VALID))
    given = parse_tenant_file(write(tmp_path, VALID.replace('currency = "KES"', 'currency = "KES"\n'
                                                            'phone = "(020) 555-0100"\n'
                                                            'opening_hours = "Monday to Friday 08:00-17:00"')))
    assert (given.phone, given.opening_hours) == ("(020) 555-0100", "Monday to Friday 08:00-17:00")
    # A file without them keeps the stored form and fingerprint it had before the fields existed.
    assert not {"phone", "opening_hours"} & set(unset.model_dump(mode="json"))


def test_not_toml_at_all(tmp_path):
    with pytest.raises(TenantFileError, match="not valid TOML"):
        parse_tenant_file(write(tmp_path, "slug = [unclosed"))


def test_duplicate_bed_codes_across_wards_are_named(tmp_path):
    text = VALID + '\n[[wards]]\ncode = "MAT"\nname = "Maternity"\nbeds = ["OBS-01"]\n'
    with pytest.raises(TenantFileError, match="OBS-01"):
        parse_tenant_file(write(tmp_path, text))


def test_shipped_demo_facilities_are_valid_and_span_two_districts():
    from appliance.substrate.config import PROJECT_ROOT
    from appliance.substrate.tenancy import load_tenant_files

    configs = [config for _, config in load_tenant_files(PROJECT_ROOT / "tenants")]
    assert {c.facility_type for c in configs} >= {"referral_hospital", "district_hospital", "health_centre"}
    assert len({c.district for c in configs}) >= 2
