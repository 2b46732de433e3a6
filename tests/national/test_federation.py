"""Federation by signed aggregate packages: a hospital appliance's month reaches the ministry's appliance
as a file, is accepted only from a registered key, unaltered, with the same age bands and a disclosure
rule at least as strict, and never counts a facility twice. Every refusal keeps nothing. An appliance on
another version of the indicator list is received: what it does not count is "not reported", what this
appliance does not know is ignored and named."""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as dt
import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.national import federation
from appliance.national import indicators as national
from appliance.substrate import audit, keys
from tests.conftest import make_tenant_config
from tests.national.test_indicators import DEFINITIONS_FILE
from tests.test_cli import run, tenant_toml  # noqa: F401  (run: the CLI fixture)

# Months long past, so the page and export tests of other modules (this month and the last) never
# see the facilities these tests receive.
MONTH = national.Period(2003, 5)


@pytest.fixture(scope="module")
def definitions() -> national.Definitions:
    return national.load_definitions(DEFINITIONS_FILE)


@pytest.fixture(scope="module")
def hospital(tmp_path_factory) -> keys.Keyring:
    """The signing key of another appliance: its own home, its own appliance key."""
    return keys.Keyring(tmp_path_factory.mktemp("hospital-appliance"))


@pytest.fixture(scope="module")
def coast(db, hospital) -> federation.Peer:
    return federation.register_peer(db, "Coast Regional Hospital", hospital.public_key_pem())


def _facility(definitions, org_unit: str, name: str, counts: dict | None = None) -> national.Facility:
    facility = national.Facility(org_unit, name, "hospital", "Mombasa", "Coast", org_unit=org_unit)
    for indicator in definitions.indicators:
        facility.figures[indicator.id] = national.withhold(counts or {("F", definitions.age_bands[2].code): 40,
                                                                      ("M", definitions.age_bands[2].code): 12},
                                                           definitions.cells, definitions.threshold)
    return facility


def _package_bytes(package: dict) -> bytes:
    return json.dumps(package).encode()


def _kept(db) -> int:
    with db.control() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(federation.national_package)).scalar()


def _refused(db, data: bytes, definitions, expected: str) -> None:
    before = _kept(db)
    with pytest.raises(federation.PackageError, match=expected):
        federation.receive_package(db, data, definitions)
    assert _kept(db) == before


def test_a_registered_appliances_month_is_received_shown_and_audited(db, definitions, hospital, coast):
    sent = [_facility(definitions, "KE-CST-001", "Coast General"), _facility(definitions, "KE-CST-002", "Likoni HC")]
    package = federation.make_package(sent, MONTH, definitions, hospital)

    receipt = federation.receive_package(db, _package_bytes(package), definitions)

    assert (receipt.peer, receipt.period, receipt.facilities, receipt.replaced) == (coast.name, MONTH, 2, False)
    received = federation.received_facilities(db, MONTH, definitions)
    assert [(f.org_unit, f.name, f.source) for f in received] == [("KE-CST-001", "Coast General", coast.name),
                                                                  ("KE-CST-002", "Likoni HC", coast.name)]
    assert received[0].figures == sent[0].figures  # published figures survive the trip unchanged
    assert national.total(received, "opd_attendance").value == 104
    report = next(r for r in federation.reports(db, MONTH, definitions) if r.peer.key_id == coast.key_id)
    assert report.facilities == 2 and report.received_at is not None and report.not_counted == ()
    assert report.produced_at == dt.datetime.fromisoformat(package["produced_at"])
    events = audit.read_events(db, None, event_type="national.package.receive")
    assert events[-1]["event"]["detail"]["peer"] == coast.name
    assert events[-1]["event"]["detail"]["period"] == MONTH.value


def test_a_later_package_replaces_the_earlier_and_an_older_one_is_refused(db, definitions, hospital, coast):
    month = national.Period(2003, 6)
    first = federation.make_package([_facility(definitions, "KE-CST-010", "Kilifi")], month, definitions, hospital,
                                    produced_at=dt.datetime(2003, 7, 1, 8, tzinfo=dt.UTC))
    federation.receive_package(db, _package_bytes(first), definitions)
    corrected = _facility(definitions, "KE-CST-010", "Kilifi", {("F", definitions.age_bands[3].code): 90})
    second = federation.make_package([corrected], month, definitions, hospital,
                                     produced_at=dt.datetime(2003, 7, 2, 8, tzinfo=dt.UTC))

    assert federation.receive_package(db, _package_bytes(second), definitions).replaced
    assert national.total(federation.received_facilities(db, month, definitions), "opd_attendance").value == 90
    _refused(db, _package_bytes(first), definitions, "already here")
    _refused(db, _package_bytes(second), definitions, "already here")  # the same file again changes nothing


def test_refusals_name_the_problem_and_keep_nothing(db, definitions, hospital, coast, tmp_path):
    month = national.Period(2003, 8)

    def signed(facilities, *, by=hospital, with_definitions=definitions):
        return federation.make_package(facilities, month, with_definitions, by)

    stranger = keys.Keyring(tmp_path / "stranger")
    _refused(db, _package_bytes(signed([_facility(definitions, "KE-X-1", "X")], by=stranger)), definitions,
             "not registered here")

    altered = signed([_facility(definitions, "KE-CST-020", "Malindi")])
    altered["facilities"][0]["figures"]["opd_attendance"]["total"] = 5200
    _refused(db, _package_bytes(altered), definitions, "signature does not verify")

    small = _facility(definitions, "KE-CST-021", "Watamu")
    small.figures["opd_attendance"] = national.Published(43, {**small.figures["opd_attendance"].cells,
                                                              ("U", definitions.age_bands[0].code): 3})
    _refused(db, _package_bytes(signed([small])), definitions, "count of 3, under .* threshold of 5")

    revealing = _facility(definitions, "KE-CST-022", "Lamu")
    cells = dict(revealing.figures["opd_attendance"].cells)
    cells[("F", definitions.age_bands[2].code)] = None
    revealing.figures["opd_attendance"] = national.Published(52, cells)
    _refused(db, _package_bytes(signed([revealing])), definitions, "single cell beside its total")

    other_bands = dataclasses.replace(definitions, age_bands=(
        national.AgeBand("0-14Y", "0-14", 0, 15), national.AgeBand("15+Y", "15+", 15, None)))
    _refused(db, _package_bytes(signed([_facility(other_bands, "KE-CST-023", "Voi", {("F", "15+Y"): 40})],
                                       with_definitions=other_bands)),
             definitions, "age bands are not this appliance's, so its cells would not add up")

    laxer = dataclasses.replace(definitions, threshold=3)
    _refused(db, _package_bytes(signed([_facility(laxer, "KE-CST-024", "Taveta")], with_definitions=laxer)),
             definitions, "threshold of 3, under this appliance's 5")

    ahead = federation.make_package([_facility(definitions, "KE-CST-025", "Mwatate")], month, definitions, hospital,
                                    produced_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
    _refused(db, _package_bytes(ahead), definitions, "in the future: check the sending appliance's clock")
    unbegun = federation.make_package([_facility(definitions, "KE-CST-026", "Wundanyi")], national.Period(2999, 1),
                                      definitions, hospital)
    _refused(db, _package_bytes(unbegun), definitions, "January 2999, which has not begun")
    worded = signed([_facility(definitions, "KE-CST-027", "Kinango")])
    worded["threshold"] = "five"
    _refused(db, _package_bytes(worded), definitions, "threshold 'five' is not a whole number")

    _refused(db, b"{not json", definitions, "not JSON")
    _refused(db, b'{"format": "something else"}', definitions, "not a healthos-national-package/1")
    _refused(db, _package_bytes(signed([])), definitions, "no facility")


def test_a_facility_is_counted_by_one_appliance_only(db, definitions, hospital, coast, tenant_factory, tmp_path):
    local = tenant_factory(name="Ministry Own Clinic", dhis2_org_unit="KE-OWN-001")
    month = national.Period(2003, 9)
    _refused(db, _package_bytes(federation.make_package([_facility(definitions, local.dhis2_org_unit, "Own")], month,
                                                        definitions, hospital)),
             definitions, "is a facility of this appliance")

    inland = keys.Keyring(tmp_path / "inland")
    federation.register_peer(db, "Inland District Office", inland.public_key_pem())
    federation.receive_package(db, _package_bytes(federation.make_package(
        [_facility(definitions, "KE-INL-001", "Taita")], month, definitions, inland)), definitions)
    _refused(db, _package_bytes(federation.make_package([_facility(definitions, "KE-INL-001", "Taita")], month,
                                                        definitions, hospital)),
             definitions, "already reported for September 2003 by Inland District Office")


def test_a_facility_of_this_appliance_under_one_another_appliance_counts_is_refused(
        db, definitions, tmp_path, run):  # noqa: F811  (the CLI fixture)
    """Only the reverse was refused: a package naming one of this appliance's facilities. A facility applied here
    under an organisation unit another appliance had reported was taken, and the national figures of that month
    then held two facilities under one organisation unit, of which DHIS2 keeps one."""
    lakeside = keys.Keyring(tmp_path / "lakeside")
    federation.register_peer(db, "Lakeside District Office", lakeside.public_key_pem())
    federation.receive_package(db, _package_bytes(federation.make_package(
        [_facility(definitions, "KE-LAK-001", "Kisumu Lakeside")], national.Period(2003, 10), definitions,
        lakeside)), definitions)
    copied = make_tenant_config(name="Kisumu Copy Clinic", dhis2_org_unit="KE-LAK-001")
    (tmp_path / "copy.toml").write_text(tenant_toml(copied))
    refused = run("tenant", "apply", str(tmp_path / "copy.toml"))
    said = " ".join(refused.output.split())  # as read, whatever the terminal's width wrapped
    assert refused.exit_code == 1 and "'KE-LAK-001' is given to more than one facility" in said
    assert "Kisumu Lakeside (counted by Lakeside District Office, last for October 2003)" in said
    assert f"Kisumu Copy Clinic ({copied.slug})" in said
    assert copied.slug not in {row["slug"] for row in json.loads(run("tenant", "list", "--json").output)}


def test_registering_refuses_our_own_key_a_second_registration_and_a_non_key(db, hospital, coast):
    with pytest.raises(federation.PackageError, match="this appliance's own key"):
        federation.register_peer(db, "Myself", keys.keyring_for(db).public_key_pem())
    with pytest.raises(federation.PackageError, match="already registered"):
        federation.register_peer(db, "Coast again", hospital.public_key_pem())
    with pytest.raises(federation.PackageError, match="not an Ed25519 public key"):
        federation.register_peer(db, "Garbage", b"hello")
    with pytest.raises(federation.PackageError, match="give the appliance a name"):
        federation.register_peer(db, "   ", hospital.public_key_pem())


def test_an_appliance_packages_its_own_facilities_signed_and_audited(db, definitions, tenant_factory):
    facility = tenant_factory(name="Packaging Clinic")
    package = federation.export_package(db, MONTH, definitions)

    assert facility.slug in {f["org_unit"] for f in package["facilities"]}
    assert all(f["org_unit"] not in {"KE-CST-001", "KE-CST-002"} for f in package["facilities"])  # never passed on
    statement = federation._statement({k: v for k, v in package.items() if k != "signature"})
    keys.keyring_for(db).public_key().verify(base64.b64decode(package["signature"]), statement)
    assert audit.read_events(db, None, event_type="national.package.export")[-1]["event"]["detail"]["period"] == \
        MONTH.value


def test_a_facility_says_the_month_it_records_from_and_is_not_sent_for_a_month_before_it(
        run, db, definitions, hospital, coast, tenant_factory, tmp_path):  # noqa: F811
    """A facility moved onto an appliance in September 2003 kept August's records elsewhere: its appliance's
    package for August leaves it out (no zeros to overwrite what the earlier system sent to DHIS2), its package
    from September on says so, the ministry keeps it, and a package sending a month before it is refused."""
    late = tenant_factory(name="Late Clinic", recording_since="2003-09-15")
    early = tenant_factory(name="Early Clinic")  # the tests' facilities record from January 2000
    august = federation.export_package(db, national.Period(2003, 8), definitions)
    assert late.slug not in {f["org_unit"] for f in august["facilities"]}
    assert [f["recording_since"] for f in august["facilities"] if f["org_unit"] == early.slug] == ["2000-01"]
    september = federation.export_package(db, national.Period(2003, 9), definitions)
    assert [f["recording_since"] for f in september["facilities"] if f["org_unit"] == late.slug] == ["2003-09"]
    exported = run("national", "export", "--period", "2003-08", "--format", "dhis2", "--out", str(tmp_path / "a.json"))
    assert exported.exit_code == 0 and "1 facility not recording yet in August 2003 left out" in " ".join(
        exported.output.split())
    assert late.slug not in (tmp_path / "a.json").read_text()

    month = national.Period(2004, 1)
    moved = dataclasses.replace(_facility(definitions, "KE-CST-050", "Msambweni"), recording_since=month)
    unsaid = _facility(definitions, "KE-CST-051", "Lunga Lunga")  # as a package made before it was carried
    package = federation.make_package([moved, unsaid], month, definitions, hospital)
    assert "recording_since" not in package["facilities"][1]
    federation.receive_package(db, _package_bytes(package), definitions)
    received = {f.org_unit: f for f in federation.received_facilities(db, month, definitions)}
    assert received["KE-CST-050"].recording_since == month and received["KE-CST-050"].recording
    assert received["KE-CST-051"].recording_since is None and received["KE-CST-051"].recording
    assert national.total(received.values(), "opd_attendance").value == 104

    # An appliance that sends a facility's month before the one it says it records from (it cannot be right).
    too_soon = dataclasses.replace(_facility(definitions, "KE-CST-052", "Diani"),
                                   recording_since=national.Period(2004, 3))
    _refused(db, _package_bytes(federation.make_package([too_soon], national.Period(2004, 2), definitions, hospital)),
             definitions, "of Diani, which records from March 2004: a month before a facility recorded is left out")
    # One of a release that still made a package when none of its facilities recorded yet: said in words.
    _refused(db, _package_bytes(federation.make_package([], national.Period(2004, 1), definitions, hospital)),
             definitions, "the package holds no facility, so nothing of January 2004 to receive: an appliance whose "
             "facilities did not record yet in a month has nothing to send for it")


def test_the_cli_carries_a_month_from_one_appliance_to_another(run, db, definitions, tmp_path: Path,  # noqa: F811
                                                               hospital, coast):
    printed = run("audit", "public-key")  # the key another appliance registers to accept this one's packages
    assert printed.exit_code == 0 and printed.stdout.encode() == keys.keyring_for(db).public_key_pem()

    hospital_key = tmp_path / "hospital.pem"
    hospital_key.write_bytes(hospital.public_key_pem())
    added = run("national", "peer", "add", "--name", "Coast Regional Hospital", "--key", str(hospital_key))
    assert added.exit_code != 0 and "already registered" in added.output  # the module's fixture registered it

    month = national.Period(2003, 10)
    listed = run("national", "peer", "list", "--period", month.value)
    assert "Coast Regional Hospital" in listed.output and "NOT RECEIVED" in listed.output

    package_file = tmp_path / "coast-2003-10.json"
    package_file.write_text(json.dumps(federation.make_package([_facility(definitions, "KE-CST-030", "Kwale")], month,
                                                               definitions, hospital)))
    received = run("national", "receive", str(package_file))
    assert received.exit_code == 0, received.output
    assert "Coast Regional Hospital, October 2003: 1 facility received" in received.output
    assert "1 facility, produced" in run("national", "peer", "list", "--period", month.value).output
    again = run("national", "receive", str(package_file))
    assert again.exit_code != 0 and "refused: " in again.output and "already here" in again.output

    exported = tmp_path / "national.csv"
    assert run("national", "export", "--period", month.value, "--out", str(exported)).exit_code == 0
    kwale = [line for line in exported.read_text().splitlines() if ",KE-CST-030," in line]
    assert kwale and all(line.endswith(",Coast Regional Hospital,yes,no") for line in kwale)

    skewed = national.Period(2003, 11)  # from an appliance on the previous indicator list: received, and said
    previous = _previous(definitions)
    package_file.write_text(json.dumps(federation.make_package([_facility(previous, "KE-CST-031", "Ukunda")], skewed,
                                                               previous, hospital)))
    received = run("national", "receive", str(package_file))
    assert received.exit_code == 0, received.output
    assert f"not reported for its facilities: {', '.join(ADDED)}" in " ".join(received.output.split())
    assert f"not counting {', '.join(ADDED)}" in run("national", "peer", "list", "--period", skewed.value).output
    exported_skew = run("national", "export", "--period", skewed.value, "--out", str(exported))
    # Words, not lines: the message wraps at the terminal's width after a path whose length varies from run to run.
    assert exported_skew.exit_code == 0 and "facility indicators not reported" in " ".join(exported_skew.output.split())

    future = run("national", "package", "--period", "2999-01", "--out", str(tmp_path / "never.json"))
    assert future.exit_code != 0 and "January 2999 has not begun" in future.output
    assert not (tmp_path / "never.json").exists()

    own = tmp_path / "own.json"
    assert run("national", "package", "--period", month.value, "--out", str(own)).exit_code == 0
    assert json.loads(own.read_text())["format"] == federation.PACKAGE_FORMAT
    # A package written to a file is exported, and nothing says it was sent anywhere.
    written = audit.read_events(db, None, event_type="national.package.export")[-1]
    assert written["event"]["detail"]["period"] == month.value and "to" not in written["event"]["detail"]
    assert not audit.read_events(db, None, event_type="national.package.push", first_seq=written["seq"])


# -- version skew in the indicator list ------------------------------------------------------------

# The indicators the acute malnutrition commit (fd574a6) added: an appliance not yet upgraded lacks them.
ADDED = ("nutrition_screened", "sam_cases", "mam_cases")


def _previous(definitions: national.Definitions) -> national.Definitions:
    """The definitions of an appliance on the version before the acute malnutrition indicators."""
    return dataclasses.replace(definitions, indicators=tuple(i for i in definitions.indicators if i.id not in ADDED))


def test_a_package_from_an_appliance_on_the_previous_indicator_list_is_received_its_new_ones_not_reported(
        db, definitions, hospital, coast):
    month = national.Period(2002, 1)
    previous = _previous(definitions)
    package = federation.make_package([_facility(previous, "KE-CST-040", "Msambweni")], month, previous, hospital)

    receipt = federation.receive_package(db, _package_bytes(package), definitions)

    assert (receipt.facilities, receipt.not_counted, receipt.ignored) == (1, ADDED, ())
    detail = audit.read_events(db, None, event_type="national.package.receive")[-1]["event"]["detail"]
    assert (detail["not_counted"], detail["ignored"]) == (list(ADDED), [])
    [old] = federation.received_facilities(db, month, definitions)
    assert old.figure("opd_attendance").total == 52 and old.figure("sam_cases") is None
    # Beside a facility of this appliance's version, the sums count the old one apart: neither 0 nor withheld.
    current = _facility(definitions, "KE-OWN-040", "Upgraded")
    both = [old, current]
    assert national.total(both, "opd_attendance") == national.Sum(104, 0, 0)
    assert national.total(both, "sam_cases") == national.Sum(52, 0, 1)
    assert {(s.value, s.withheld, s.not_reported) for s in national.breakdown(both, "sam_cases", definitions).values()
            } == {(0, 0, 1), (40, 0, 1), (12, 0, 1)}
    dhis2 = national.to_dhis2(both, month, definitions)["dataValues"]
    elements = {v["dataElement"] for v in dhis2 if v["orgUnit"] == "KE-CST-040"}
    assert "HOS_OPD_ATTENDANCE" in elements and not elements & {"HOS_NUT_SCREENED", "HOS_SAM_CASES", "HOS_MAM_CASES"}
    assert {v["orgUnit"] for v in dhis2 if v["dataElement"] == "HOS_SAM_CASES"} == {"KE-OWN-040"}
    rows = [row.split(",") for row in national.to_csv(both, month, definitions).splitlines()]
    reported = {(r[1], r[3], r[7]): (r[9], r[10], r[13]) for r in rows[1:] if r[8] in ("all", "15-49Y")}
    assert reported[("sam_cases", "KE-CST-040", "all")] == ("", "", "no")
    assert reported[("sam_cases", "KE-CST-040", "F")] == ("", "", "no")
    assert reported[("sam_cases", "KE-OWN-040", "all")] == ("52", "no", "yes")
    assert reported[("opd_attendance", "KE-CST-040", "all")] == ("52", "no", "yes")
    report = next(r for r in federation.reports(db, month, definitions) if r.peer.key_id == coast.key_id)
    assert report.not_counted == ADDED and report.facilities == 1


def test_a_package_held_before_the_definitions_grew_reads_the_same_after(db, definitions, hospital, coast):
    month = national.Period(2002, 2)
    previous = _previous(definitions)
    # The ministry's appliance, before its upgrade, receives the hospital's month as both then counted it.
    federation.receive_package(db, _package_bytes(federation.make_package(
        [_facility(previous, "KE-CST-041", "Kinondo")], month, previous, hospital)), previous)
    assert next(r for r in federation.reports(db, month, previous) if r.peer.key_id == coast.key_id).not_counted == ()

    [held] = federation.received_facilities(db, month, definitions)  # read after the upgrade

    assert held.org_unit == "KE-CST-041" and held.figure("opd_attendance").total == 52
    assert held.figure("nutrition_screened") is None and set(held.figures) == {i.id for i in previous.indicators}
    assert next(r for r in federation.reports(db, month, definitions) if r.peer.key_id == coast.key_id
                ).not_counted == ADDED


def test_a_package_counting_an_indicator_not_known_here_is_received_for_the_rest_and_names_it(
        db, definitions, hospital, coast):
    month = national.Period(2002, 3)
    stunting = national.Indicator("stunting_cases", "Stunting", "HOS_STUNTING", "screenings", finding="severe")
    newer = dataclasses.replace(definitions, indicators=(*definitions.indicators, stunting))
    facility = _facility(newer, "KE-CST-042", "Gazi")

    receipt = federation.receive_package(db, _package_bytes(federation.make_package([facility], month, newer,
                                                                                    hospital)), definitions)

    assert (receipt.not_counted, receipt.ignored) == ((), ("stunting_cases",))
    detail = audit.read_events(db, None, event_type="national.package.receive")[-1]["event"]["detail"]
    assert (detail["not_counted"], detail["ignored"]) == ([], ["stunting_cases"])
    [received] = federation.received_facilities(db, month, definitions)
    assert set(received.figures) == {i.id for i in definitions.indicators}
    assert received.figures == {k: v for k, v in facility.figures.items() if k != "stunting_cases"}
    # What is ignored still obeys the disclosure rule: a small count in it refuses the whole package.
    small = _facility(newer, "KE-CST-043", "Shimoni")
    small.figures["stunting_cases"] = national.Published(3, {**small.figures["stunting_cases"].cells,
                                                             ("F", definitions.age_bands[2].code): 3,
                                                             ("M", definitions.age_bands[2].code): 0})
    _refused(db, _package_bytes(federation.make_package([small], national.Period(2002, 4), newer, hospital)),
             definitions, "Shimoni, stunting_cases: publishes a count of 3")
    only_unknown = dataclasses.replace(definitions, indicators=(stunting,))
    _refused(db, _package_bytes(federation.make_package([_facility(only_unknown, "KE-CST-044", "Funzi")],
                                                        national.Period(2002, 4), only_unknown, hospital)),
             definitions, "counts none of this appliance's indicators")


# -- the ministry changes its age bands or raises its threshold -----------------------------------

# 15-49 split in two, as a ministry might to see young adults apart: 15-49Y is then an earlier band.
SPLIT_15_TO_49 = ('[[age_band]]\ncode = "15-49Y"\nlabel = "15–49"\nfrom_years = 15\nto_years = 50\n',
                  '[[age_band]]\ncode = "15-24Y"\nlabel = "15–24"\nfrom_years = 15\nto_years = 25\n\n'
                  '[[age_band]]\ncode = "25-49Y"\nlabel = "25–49"\nfrom_years = 25\nto_years = 50\n')
THRESHOLD_RAISED = ("threshold = 5", "threshold = 10")


def changed_definitions(directory: Path, *changes: tuple[str, str]) -> Path:
    """A copy of policies/indicators.toml as the ministry edited it later, in `directory`."""
    text = DEFINITIONS_FILE.read_text()
    for before, after in changes:
        assert before in text
        text = text.replace(before, after, 1)
    path = directory / "indicators.toml"
    path.write_text(text)
    return path


def test_a_month_held_from_before_the_age_bands_changed_still_counts_its_facility(db, definitions, hospital, coast,
                                                                                  tmp_path):
    month = national.Period(2001, 1)
    federation.receive_package(db, _package_bytes(federation.make_package([_facility(
        definitions, "KE-CST-050", "Mtwapa", {("F", "15-49Y"): 40, ("M", "1-4Y"): 12, ("F", "50PLUSY"): 7})],
        month, definitions, hospital)), definitions)
    rebanded = national.load_definitions(changed_definitions(tmp_path, SPLIT_15_TO_49))

    [held] = federation.received_facilities(db, month, rebanded)

    opd = held.figure("opd_attendance")
    assert opd.total == 59 and opd.under_earlier_bands and opd.withheld == 0
    assert [opd.sex_total(sex) for sex in ("F", "M", "U")] == [47, 12, 0]  # all ages, as published
    assert opd.cells[("M", "1-4Y")] == 12 and opd.cells[("F", "50PLUSY")] == 7  # bands still defined
    assert ("F", "15-24Y") not in opd.cells and ("F", "25-49Y") not in opd.cells
    assert opd.earlier == {("F", "15-49Y"): 40, ("M", "15-49Y"): 0, ("U", "15-49Y"): 0}
    # Beside a facility counted under the new bands: totals and sums by sex take both, a new band only it.
    current = _facility(rebanded, "KE-OWN-050", "Counted since", {("F", "15-24Y"): 9, ("F", "25-49Y"): 20})
    both = [held, current]
    assert national.total(both, "opd_attendance") == national.Sum(88)
    by_band = national.breakdown(both, "opd_attendance", rebanded)
    assert by_band[("F", "15-24Y")] == national.Sum(9, earlier_bands=1)
    assert by_band[("M", "1-4Y")] == national.Sum(12) and by_band[("F", "50PLUSY")] == national.Sum(7)
    assert national.by_sex(both, "opd_attendance")["F"] == national.Sum(76)
    sent = {v["categoryOptionCombo"]: v["value"] for v in national.to_dhis2(both, month, rebanded)["dataValues"]
            if v["orgUnit"] == "KE-CST-050" and v["dataElement"] == "HOS_OPD_ATTENDANCE"}
    assert sent["M_1-4Y"] == "12" and sent["F_50PLUSY"] == "7"
    assert not [combo for combo in sent if combo.endswith(("_15-49Y", "_15-24Y", "_25-49Y"))]
    rows = {(r["sex"], r["age_band"]): (r["value"], r["withheld"], r["earlier_age_bands"])
            for r in csv.DictReader(io.StringIO(national.to_csv([held], month, rebanded)))
            if r["indicator"] == "opd_attendance"}
    assert rows[("all", "all")] == ("59", "no", "no") and rows[("M", "1-4Y")] == ("12", "no", "no")
    assert rows[("F", "15-49Y")] == ("40", "no", "yes")  # as published, under its own band
    assert rows[("F", "15-24Y")] == ("", "", "yes")  # a band it did not have: neither 0 nor withheld
    report = next(r for r in federation.reports(db, month, rebanded) if r.peer.key_id == coast.key_id)
    assert report.earlier_bands == ("LT1Y", "1-4Y", "5-14Y", "50PLUSY", "15-49Y")
    assert (report.unreadable, report.withheld_by_raised_threshold, report.facilities) == (None, 0, 1)
    assert federation.reports(db, month, definitions)[0].earlier_bands == ()  # under its own bands, as sent


def test_a_raised_threshold_withholds_what_a_held_month_published_under_it(db, definitions, hospital, coast,
                                                                          tmp_path):
    month = national.Period(2001, 2)
    federation.receive_package(db, _package_bytes(federation.make_package([
        _facility(definitions, "KE-CST-051", "Kikambala", {("F", "15-49Y"): 40, ("M", "1-4Y"): 6, ("F", "1-4Y"): 12}),
        _facility(definitions, "KE-CST-052", "Vipingo", {("F", "15-49Y"): 8})], month, definitions, hospital)),
        definitions)
    stricter = national.load_definitions(changed_definitions(tmp_path, THRESHOLD_RAISED))

    kikambala, vipingo = federation.received_facilities(db, month, stricter)

    opd = kikambala.figure("opd_attendance")
    # 6 is under 10 now; alone it would be 58 - 40 - 12, so the next smallest (12) goes with it.
    assert opd.total == 58 and opd.cells[("M", "1-4Y")] is None and opd.cells[("F", "1-4Y")] is None
    assert opd.cells[("F", "15-49Y")] == 40 and opd.withheld_by_raised_threshold == 2
    assert not opd.under_earlier_bands and opd.sex_total("F") is None
    small = vipingo.figure("opd_attendance")  # a facility total of 8 is itself small now
    assert small.total is None and small.cells[("F", "15-49Y")] is None and small.withheld_by_raised_threshold == 2
    assert national.total([kikambala, vipingo], "opd_attendance") == national.Sum(58, withheld=1)
    sent = {(v["orgUnit"], v["categoryOptionCombo"]) for v in national.to_dhis2(
        [kikambala, vipingo], month, stricter)["dataValues"] if v["dataElement"] == "HOS_OPD_ATTENDANCE"}
    assert ("KE-CST-051", "F_15-49Y") in sent
    assert not sent & {("KE-CST-051", "M_1-4Y"), ("KE-CST-051", "F_1-4Y"), ("KE-CST-052", "F_15-49Y")}
    report = next(r for r in federation.reports(db, month, stricter) if r.peer.key_id == coast.key_id)
    assert report.withheld_by_raised_threshold == 4 * len(definitions.indicators) and report.earlier_bands == ()
    # Under the threshold it was received with, the month reads as it was sent.
    assert federation.received_facilities(db, month, definitions)[0].figure("opd_attendance").cells[
        ("M", "1-4Y")] == 6


def test_a_held_package_that_cannot_be_read_is_named_with_the_reason(run, db, definitions, hospital,  # noqa: F811
                                                                     coast):
    month = national.Period(2001, 3)
    federation.receive_package(db, _package_bytes(federation.make_package(
        [_facility(definitions, "KE-CST-053", "Takaungu")], month, definitions, hospital)), definitions)
    package = federation.national_package
    held = (package.c.key_id == coast.key_id) & (package.c.period == month.value)
    with db.control() as conn:  # a row damaged since it was received: one cell of one figure gone
        [item] = conn.execute(sa.select(package.c.facilities).where(held)).scalar()
        del item["figures"]["opd_attendance"]["cells"]["U|LT1Y"]
        conn.execute(package.update().where(held).values(facilities=[item]))

    assert federation.received_facilities(db, month, definitions) == []
    report = next(r for r in federation.reports(db, month, definitions) if r.peer.key_id == coast.key_id)
    assert report.facilities == 1 and report.unreadable == \
        "Takaungu, opd_attendance: its cells are not sexes by age bands"
    listed = " ".join(run("national", "peer", "list", "--period", month.value).output.split())
    assert "CANNOT BE READ (Takaungu, opd_attendance: its cells are not sexes by age bands)" in listed
