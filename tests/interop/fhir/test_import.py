"""Bulk import of Synthea-shaped bundles: each bundle all or nothing, what the record cannot hold
counted as skipped, refusals named, the acts attributed to the principal the operator names — through
the library and through `healthos fhir import`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from appliance.cli import main
from appliance.interop.fhir import bulk
from appliance.substrate import audit
from tests.interop.fhir.conftest import answer, base, count
from tests.interop.fhir.synthea import expected, synthea_bundle


def _write(folder: Path, name: str, bundle: dict | str) -> Path:
    path = folder / name
    path.write_text(bundle if isinstance(bundle, str) else json.dumps(bundle), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def imported(db, facility, tmp_path_factory):
    """Two transaction bundles and a collection bundle, one bundle with a bad diagnosis and a file that
    is not JSON, imported together."""
    folder = tmp_path_factory.mktemp("synthea")
    _write(folder, "Wambui123_Wanjiru512_a.json", synthea_bundle(100))
    _write(folder, "Otieno123_Otieno731_b.json", synthea_bundle(101))
    _write(folder, "collection_c.json", synthea_bundle(102, kind="collection"))
    bad = synthea_bundle(103)
    condition = next(e["resource"] for e in bad["entry"] if e["resource"]["resourceType"] == "Condition")
    condition["code"]["coding"][-1]["code"] = "X99.999"
    _write(folder, "bad_diagnosis.json", bad)
    _write(folder, "notes.json", "this is not JSON")
    patients_before = count(db, facility.slug, "patient")
    principal = bulk.import_principal(db, facility.slug, "Synthea test run")
    seen: list[str] = []
    summary = bulk.import_path(db, facility.slug, principal, folder, progress=lambda f: seen.append(f.name))
    return {"summary": summary, "principal": principal, "seen": seen, "folder": folder,
            "patients_before": patients_before}


def test_each_good_bundle_is_imported_and_the_rest_counted(imported, db, facility):
    summary = imported["summary"]
    assert (summary.bundles, summary.imported_bundles) == (5, 3)
    one = expected()
    assert dict(summary.imported) == {kind: 3 * n for kind, n in one["imported"].items()}
    assert dict(summary.skipped) == {why: 3 * n for why, n in one["skipped"].items()}
    assert count(db, facility.slug, "patient") == imported["patients_before"] + 3
    assert sorted(imported["seen"]) == sorted(p.name for p in imported["folder"].iterdir())


def test_a_bad_bundle_is_refused_whole_with_its_reason(imported, db, facility):
    refused = dict(imported["summary"].refused)
    assert set(refused) == {"bad_diagnosis.json", "notes.json"}
    assert "X99.999" in refused["bad_diagnosis.json"] and "Bundle.entry[" in refused["bad_diagnosis.json"]
    assert "not a readable JSON file" in refused["notes.json"]
    with db.tenant(facility.slug) as conn:  # nothing of its patient (Synthea's seed 103) was written
        assert conn.execute(sa.text("SELECT count(*) FROM patient_identifier WHERE value LIKE '%-103'")).scalar() == 0


def test_the_import_keeps_the_record_as_synthea_wrote_it(imported, api, db, facility):
    found = answer(api.get(f"{base(facility.slug)}/Patient", params={"family": "Wanjiru512"}))
    [patient] = [e["resource"] for e in found["entry"]]
    identifiers = {i["system"].rsplit(":", 1)[-1]: i["value"] for i in patient["identifier"]}
    assert identifiers["national_id"].startswith("999-") and identifiers["passport"] == "X00000100X"
    assert identifiers["source_mrn"] == identifiers["source_id"]
    everything = answer(api.get(f"{base(facility.slug)}/Patient/{patient['id']}/$everything"))
    visits = sorted(e["resource"]["period"]["start"] for e in everything["entry"]
                    if e["resource"]["resourceType"] == "Encounter")
    assert len(visits) == 3 and visits[0].startswith("2015-04")  # the visits keep their dates
    # Synthea's one Observation per measurement become the record's one set per visit, at the visit's time.
    sets = [e["resource"] for e in everything["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert len(sets) == 3 and all(s["effectiveDateTime"].startswith(("2015", "2016", "2017")) for s in sets)
    for measured in sets:
        assert {c["code"]["coding"][0]["code"] for c in measured["component"]} == {
            "8302-2", "29463-7", "8867-4", "9279-1", "8480-6", "8462-4"}
        assert measured["encounter"]["reference"].startswith("Encounter/")
    codes = sorted(e["resource"]["code"]["coding"][0]["code"] for e in everything["entry"]
                   if e["resource"]["resourceType"] == "Condition")
    assert len(codes) == 2


def test_the_acts_are_the_named_principals(imported, db, facility):
    principal = imported["principal"]
    with db.tenant(facility.slug) as conn:
        authors = conn.execute(sa.text("SELECT DISTINCT e.author_id FROM entry e JOIN encounter n ON n.entry_id = e.id "
                                       "WHERE e.kind = 'encounter'")).scalars().all()
    assert principal.account_id in authors
    with db.control() as conn:
        name = conn.execute(sa.text("SELECT display_name FROM control.account WHERE id = :a"),
                            {"a": principal.account_id}).scalar()
    assert name == "FHIR import (Synthea test run)"
    with db.tenant(facility.slug) as conn:
        patient_id = conn.execute(sa.text("SELECT id FROM patient WHERE family_name = 'Wanjiru512'")).scalar()
    log = audit.patient_access_log(db, facility.slug, patient_id)
    assert {e.who["account"] for e in log if e.event_type.endswith(".create")} == {str(principal.account_id)}


def test_importing_the_same_patient_again_is_refused(imported, db, facility):
    before = count(db, facility.slug, "entry")
    summary = bulk.import_path(db, facility.slug, imported["principal"],
                               imported["folder"] / "Wambui123_Wanjiru512_a.json")
    assert summary.imported_bundles == 0 and "already belongs to another patient" in summary.refused[0][1]
    assert count(db, facility.slug, "entry") == before


def test_the_command_line_import(settings, db, facility, tmp_path):
    env = {"HEALTHOS_HOME": str(settings.home), "HEALTHOS_LOG_FORMAT": "console"}
    if settings.database_url:
        env["HEALTHOS_DATABASE_URL"] = settings.database_url
    _write(tmp_path, "one.json", synthea_bundle(200))
    run = CliRunner().invoke(main, ["fhir", "import", "--tenant", facility.slug, "--as", "CLI test",
                                    str(tmp_path)], env=env, catch_exceptions=False)
    assert run.exit_code == 0, run.output
    assert "1 of 1 bundles imported" in run.output and "FHIR import (CLI test)" in run.output
    assert "Claim: the record has no place for this resource type" in run.output
    assert "39156-5 (Body mass index (BMI) [Ratio])" in run.output  # printed as written, not as markup
    again = CliRunner().invoke(main, ["fhir", "import", "--tenant", facility.slug, "--as", "CLI test",
                                      str(tmp_path / "one.json")], env=env, catch_exceptions=False)
    assert again.exit_code == 1 and "already belongs to another patient" in again.output
    unknown = CliRunner().invoke(main, ["fhir", "import", "--tenant", "no_such_place", "--as", "x", str(tmp_path)],
                                 env=env, catch_exceptions=False)
    assert unknown.exit_code == 1 and "no tenant named" in unknown.output


def test_an_encounter_the_record_cannot_classify_is_skipped_with_what_pointed_at_it(db, facility, tmp_path):
    bundle = synthea_bundle(300, encounters=1)
    visit = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter")
    visit["resource"]["class"]["code"] = "SPACE"  # no such encounter class in the record
    _write(tmp_path, "odd_visit.json", bundle)
    principal = bulk.import_principal(db, facility.slug, "odd visit")
    summary = bulk.import_path(db, facility.slug, principal, tmp_path)
    assert summary.imported_bundles == 1 and "Encounter" not in summary.imported
    assert any(why.startswith("Encounter: class 'SPACE'") for why in summary.skipped)
    # The diagnosis and vital signs of that visit are kept, without the visit they pointed at.
    assert summary.imported["Condition"] == 1 and summary.imported["Observation"] == 5


def test_measurements_taken_together_become_one_set_and_a_repeat_another():
    from appliance.interop.fhir import writes

    bundle = synthea_bundle(400, encounters=1)
    pulse = next(e for e in bundle["entry"] if e["resource"].get("code", {}).get("coding", [{}])[0].get("code")
                 == "8867-4")
    repeat = json.loads(json.dumps(pulse))
    repeat["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-000000000400"
    repeat["resource"]["id"] = "00000000-0000-4000-8000-000000000400"
    bundle["entry"].append(repeat)
    planned = writes.plan_bundle(bundle, strict=False)
    sets = [w for w in writes.sets_of_vital_signs(planned.writes) if w.resource_type == "Observation"]
    assert [w.sources for w in sets] == [5, 1]  # height, weight, pulse, breathing, pressure; the pulse again
    assert sets[0].data.heart_rate_bpm == sets[1].data.heart_rate_bpm and sets[0].data.systolic_mmhg is not None
