"""The policy files the appliance refuses to start without: `healthos check` and the app's start read one table,
so a broken edit that would stop the start is one `healthos check` names first, before IT restarts anything."""

import dataclasses
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import appliance.cli
import appliance.web.app
from appliance.cli import main
from appliance.web.policy_files import POLICY_FILES
from tests.conftest import REPO

# A tiny broken edit of each file: (what the shipped file says, what a slip makes of it, the item its refusal names).
BROKEN_EDITS = {
    "access.toml": ("mfa = true,  description", "mfa = 3,  description", "roles.clinician.mfa"),
    "release.toml": ('[delivery]\nrelease = "at_once"', '[delivery]\nrelease = "at once"', "[delivery]: release"),
    "appointments.toml": ("weeks_ahead = 4", "weeks_ahead = 0", "weeks_ahead"),
    "immunization.toml": ('recommended_age = "15m"', 'recommended_age = "15q"', "vaccine MCV, dose 2, recommended_age"),
    "surveillance.toml": ('icd10 = ["B05"]', 'icd10 = ["B5"]', "disease 'measles': icd10"),
    "family_planning.toml": ('cyp_per_unit = "1/15"', 'cyp_per_unit = "1/0"', "method COC, cyp_per_unit"),
    "tuberculosis.toml": ("follow_up_months = [2, 5, 6]", "follow_up_months = [2, 6, 5]", "regimen 2HRZE/4HR"),
    "hiv.toml": ('line = "first"', 'line = "fourth"', "line"),
    "icd10_words.toml": ('means = "hypertension"', 'means = "hypertenshun"', "'hypertenshun'"),
    "indicators.toml": ("threshold = 5", "threshold = 1", "threshold must be at least 2"),
    "kpis.toml": ("window_days = 30", "window_days = 0", "window_days"),
}


def check(*args: str):
    """`healthos check` as IT runs it: no HEALTHOS_HOME of a running appliance, no database."""
    return CliRunner().invoke(main, ["check", *args], catch_exceptions=False)


def test_the_start_and_the_check_read_one_table_with_a_broken_edit_for_each_file():
    assert appliance.web.app.POLICY_FILES is appliance.cli.POLICY_FILES is POLICY_FILES
    # A file added to the table without a broken edit here is a file no test shows `healthos check` refusing.
    assert sorted(BROKEN_EDITS) == sorted(policy_file.name for policy_file in POLICY_FILES)


def test_the_shipped_policies_and_tenant_files_pass(tmp_path: Path):
    home = tmp_path / "home"
    result = CliRunner().invoke(main, ["check"], catch_exceptions=False, env={
        "HEALTHOS_HOME": str(home), "HEALTHOS_POLICIES_DIR": None, "HEALTHOS_TENANTS_DIR": None})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for policy_file in POLICY_FILES:
        assert f"ok      {REPO / 'policies' / policy_file.name}" in lines
    for tenant_file in sorted((REPO / "tenants").glob("*.toml")):
        assert f"ok      {tenant_file}" in lines
    assert f"all {len(POLICY_FILES) + len(list((REPO / 'tenants').glob('*.toml')))} files ok" in result.output
    assert not home.exists()  # nothing started, nothing written


@pytest.mark.parametrize("name", sorted(BROKEN_EDITS))
def test_a_broken_policy_file_is_named_by_check_and_stops_the_start(name: str, tmp_path: Path, settings):
    shipped, broken, item = BROKEN_EDITS[name]
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    text = (policies / name).read_text(encoding="utf-8")
    assert shipped in text
    (policies / name).write_text(text.replace(shipped, broken, 1), encoding="utf-8")

    result = check("--policies", str(policies), "--tenants", str(REPO / "tenants"))

    assert result.exit_code == 1, result.output
    broken_lines = [line for line in result.output.splitlines() if line.startswith("BROKEN")]
    named = [line for line in broken_lines if line.startswith(f"BROKEN  {policies / name}")]
    assert len(named) == 1 and item in named[0], broken_lines
    # Any other is a file that reads this one (indicators.toml counts with family_planning.toml's methods).
    assert all(str(policies / name) in line for line in broken_lines), broken_lines
    assert "files broken" in result.output and "Traceback" not in result.output
    # The same refusal stops the start, before the app is built (the database is never touched).
    with pytest.raises(ValueError, match=str(policies / name)) as refused:
        appliance.web.app.create_app(None, dataclasses.replace(settings, policies_dir=policies))
    assert item in str(refused.value)


def test_up_refuses_a_broken_policy_file_before_anything_starts_quoting_it_whole(tmp_path: Path):
    shipped, broken, item = BROKEN_EDITS["release.toml"]
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    (policies / "release.toml").write_text((policies / "release.toml").read_text(encoding="utf-8").replace(
        shipped, broken, 1), encoding="utf-8")
    home = tmp_path / "home"
    result = CliRunner().invoke(main, ["up"], env={"HEALTHOS_HOME": str(home), "HEALTHOS_POLICIES_DIR": str(policies)})
    assert result.exit_code == 1, result.output
    assert f"{policies / 'release.toml'} {item} is one of" in result.output  # the file's own [delivery], not markup
    assert not home.exists()


def test_a_broken_tenant_file_and_a_slug_two_files_define_are_each_named(tmp_path: Path):
    tenants = tmp_path / "tenants"
    shutil.copytree(REPO / "tenants", tenants)
    hillview = (tenants / "hillview_hc.toml").read_text(encoding="utf-8")
    (tenants / "hillview_copy.toml").write_text(hillview, encoding="utf-8")
    lakeshore = (tenants / "lakeshore_district.toml").read_text(encoding="utf-8")
    assert 'timezone = "Africa/Nairobi"' in lakeshore
    (tenants / "lakeshore_district.toml").write_text(lakeshore.replace('"Africa/Nairobi"', '"Nowhere/Else"', 1),
                                                    encoding="utf-8")

    result = check("--tenants", str(tenants))

    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert f"ok      {tenants / 'riverside_referral.toml'}" in lines
    assert any(line.startswith(f"BROKEN  {tenants / 'lakeshore_district.toml'}: timezone") for line in lines), lines
    assert f"BROKEN  {tenants}: slug 'hillview_hc' is defined by more than one file" in lines
    assert "2 of " in result.output
