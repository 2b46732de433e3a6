"""VXU^V04 over a real MLLP connection (appliance/interop/hl7v2/immunization.py): each RXA a dose on the child's
card — its vaccine by CVX or the schedule's own code, given here or historical, route, site, lot, its number given
or the next the schedule expects — audited as the feed; a refused dose (unknown vaccine, a day before birth or to
come, no RXA) AE naming the segment and field with nothing of the message written; a resend written once; the
ministry's count judging a fed dose as the card does; a token without the permission, another facility's token and
another facility's message refused."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
import sqlalchemy as sa

from appliance.interop.hl7v2 import feed as hl7_feed
from appliance.interop.hl7v2 import listener
from appliance.layers.clinical import immunization
from appliance.layers.clinical.immunization_schedule import load_schedule
from appliance.national import indicators as national
from appliance.substrate import audit, identity
from appliance.substrate.tenancy import facility_timezone
from tests.interop.hl7v2.conftest import (
    FEED_PERMISSIONS,
    Ack,
    adt,
    control_id,
    counts,
    issue_token,
    msh,
    pid,
)
from tests.rows import without_audit

BORN = dt.date.today() - dt.timedelta(days=120)
VXU_PERMISSIONS = [*FEED_PERMISSIONS, "clinical.immunization.write"]


@pytest.fixture(scope="module")
def feed_token(db, policy, facility) -> str:
    """The module's listener serves an EPI register's feed: the registration feed's permissions and the doses'."""
    return issue_token(db, policy, facility.slug, VXU_PERMISSIONS, name="EPI register feed")


def _day(days_old: int) -> str:
    return (BORN + dt.timedelta(days=days_old)).strftime("%Y%m%d")


def rxa(day: str, vaccine: str, *, completion: str = "CP", notes: str = "00", lot: str = "", expiry: str = "",
        refusal: str = "", action: str = "A") -> str:
    fields = ["RXA", "0", "1", day, "", vaccine, "999", "", "", f"{notes}^^NIP001" if notes else "", "", "", "", "",
              "", lot, expiry, "", refusal, "", completion, action]
    return "|".join(fields)


def dose_number(number: str) -> str:
    return f"OBX|1|NM|30973-2^Dose number in series^LN||{number}||||||F"


def vxu(tenant: str, identifier: str, *doses: str, control: str | None = None) -> str:
    return "\r".join([msh(tenant, "VXU^V04", control or control_id(), app="EPI_TABLET", sender="OUTREACH"),
                      pid(identifier, family="Achieng", given="Baby", birth=BORN.strftime("%Y%m%d")),
                      *doses]) + "\r"


def _child(feed, tenant: str) -> str:
    identifier = "C" + secrets.token_hex(4).upper()
    [ack] = feed(adt(tenant, "A04", identifier, family="Achieng", given="Baby", birth=BORN.strftime("%Y%m%d")))
    assert ack.code == "AA", ack.text
    return identifier


def _card(db, settings, tenant: str, token: str, identifier: str) -> dict:
    """The child's doses and schedule as the Immunizations page reads them, as the feed's principal."""
    with db.control_autocommit() as conn:
        principal = identity.principal_for_token(conn, token)
    tz = facility_timezone(db, tenant)
    with db.tenant(tenant) as conn:
        patient_id = conn.execute(sa.text(
            "SELECT patient_id FROM patient_identifier WHERE value = :v"), {"v": identifier}).scalar_one()
        return immunization.patient_immunizations(
            conn, principal, patient_id, schedule=load_schedule(settings.policies_dir / "immunization.toml"),
            today=dt.datetime.now(tz).date(), tz=tz)


def _state(card: dict, vaccine: str, number: int) -> str:
    return next(s["state"] for s in card["schedule"] if s["vaccine"] == vaccine and s["dose_number"] == number)


def _last_seq(db, tenant: str) -> int:
    events = audit.read_events(db, tenant)
    return events[-1]["seq"] + 1 if events else 0


def test_a_vxu_puts_each_dose_on_the_childs_card_audited_as_the_feed(db, settings, facility, feed, feed_token):
    identifier = _child(feed, facility.slug)
    first = _last_seq(db, facility.slug)
    given_here = rxa(_day(70), "198^DTP-hepB-Hib Pentavalent Non-US^CVX", lot="PV-2231", expiry="202712")
    from_card = rxa(_day(1), "BCG^BCG^L", notes="01")
    [ack] = feed(vxu(facility.slug, identifier, "ORC|RE||9001^EPI", given_here, "RXR|IM^^HL70162|LT^^HL70163",
                     "ORC|RE||9002^EPI", from_card))
    assert ack.code == "AA", ack.text
    card = _card(db, settings, facility.slug, feed_token, identifier)
    doses = {d["vaccine"]: d for d in card["doses"]}
    penta, bcg = doses["PENTA"], doses["BCG"]
    assert (penta["dose_number"], penta["source"], penta["route"], penta["site"]) == (
        1, "administered", "intramuscular", "left_thigh")
    assert (penta["lot_number"], penta["expiry_date"], penta["given_on"]) == (
        "PV-2231", dt.date(2027, 12, 31), BORN + dt.timedelta(days=70))
    assert (bcg["dose_number"], bcg["source"], bcg["given_on"]) == (1, "historical", BORN + dt.timedelta(days=1))
    assert _state(card, "PENTA", 1) == "given" and _state(card, "BCG", 1) == "given"
    # Every act of the message, look-ups included, is the feed's.
    written = audit.read_events(db, facility.slug, first_seq=first)
    types = [e["type"] for e in written]
    assert types.count("record.immunization.create") == 2
    assert {"record.patient.search", "record.patient.read"} <= set(types), types
    with db.control_autocommit() as conn:
        principal = identity.principal_for_token(conn, feed_token)
    for event in written:
        who = event["event"]["agent"][0]["who"]
        assert who["account"] == str(principal.account_id) and who["name"] == "EPI register feed", event


def test_a_dose_number_given_zero_for_a_campaign_and_none_the_next_the_schedule_expects(db, settings, facility,
                                                                                          feed, feed_token):
    identifier = _child(feed, facility.slug)
    # OPV at 30 days: younger than its minimum age of 6 weeks, so recorded and not counted; the next OPV without a
    # number is then dose 1 again. PCV named dose 2 by its OBX; MCV 0 a campaign dose.
    [ack] = feed(vxu(facility.slug, identifier, rxa(_day(30), "178^OPV bivalent^CVX"),
                     rxa(_day(50), "OPV^bOPV^99EPI"), rxa(_day(84), "152^PCV^CVX"), dose_number("2"),
                     rxa(_day(100), "04^M/R^CVX"), dose_number("0")))
    assert ack.code == "AA", ack.text
    card = _card(db, settings, facility.slug, feed_token, identifier)
    opv = [d for d in card["doses"] if d["vaccine"] == "OPV"]
    assert [d["dose_number"] for d in opv] == [1, 1]
    attempts = next(s for s in card["schedule"] if s["vaccine"] == "OPV" and s["dose_number"] == 1)["attempts"]
    assert [a["counts"] for a in attempts] == [False, True] and "too early" in attempts[0]["why"]
    assert [(d["dose_number"]) for d in card["doses"] if d["vaccine"] in {"PCV", "MCV"}] == [None, 2]
    assert _state(card, "MCV", 1) == "not_yet_due"  # a campaign dose counts for no dose of the series


def _penta1_counted(db, settings, tenant: str, days_old: list[int]) -> int:
    """The national Penta1 count of the facility over the months of these days of the children's age."""
    definitions = national.load_definitions(settings.policies_dir / "indicators.toml")
    periods = {national.Period.containing(BORN + dt.timedelta(days=days)) for days in days_old}
    return sum(sum(national.count_facility(db, tenant, facility_timezone(db, tenant).key, period, definitions)
                   ["penta1_under1"].values()) for period in periods)


def test_the_national_count_judges_a_fed_dose_as_the_card_does(db, settings, facility, feed, feed_token):
    """A first pentavalent dose sent too young, one from an expired lot, and one that counts: the ministry's Penta1
    grows by the one the card counts."""
    days = [40, 60]
    before = _penta1_counted(db, settings, facility.slug, days)
    for dose, valid in ((rxa(_day(40), "198^Penta^CVX"), False),
                        (rxa(_day(60), "198^Penta^CVX", lot="OLD-1", expiry=_day(59)), False),
                        (rxa(_day(60), "198^Penta^CVX", lot="PV-2231", expiry="202712"), True)):
        identifier = _child(feed, facility.slug)
        [ack] = feed(vxu(facility.slug, identifier, dose, dose_number("1")))
        assert ack.code == "AA", ack.text
        [attempt] = next(s for s in _card(db, settings, facility.slug, feed_token, identifier)["schedule"]
                         if s["vaccine"] == "PENTA" and s["dose_number"] == 1)["attempts"]
        assert attempt["counts"] is valid, attempt
    assert _penta1_counted(db, settings, facility.slug, days) == before + 1


def test_doses_refused_or_not_given_are_recorded_not_done_with_their_reason(db, settings, facility, feed, feed_token):
    identifier = _child(feed, facility.slug)
    [ack] = feed(vxu(facility.slug, identifier,
                     rxa(_day(70), "198^Penta^CVX", completion="RE", refusal="00^parental decision^NIP002"),
                     rxa(_day(70), "122^Rota^CVX", completion="NA"),
                     rxa(_day(70), "OPV^bOPV^L", completion="PA", refusal="out_of_stock"),
                     rxa(_day(70), "198^Penta^CVX")))
    assert ack.code == "AA", ack.text
    doses = _card(db, settings, facility.slug, feed_token, identifier)["doses"]
    said = {(d["vaccine"], d["status"]): (d["not_done_reason"], d["note"]) for d in doses}
    assert said[("PENTA", "not_done")] == ("refused", "refused (RXA-20 RE); parental decision")
    assert said[("ROTA", "not_done")] == ("other", "not administered (RXA-20 NA)")
    assert said[("OPV", "not_done")] == ("out_of_stock", "partially administered (RXA-20 PA)")
    # Given the same day after the refusal: a dose of its own, not a resend of the refusal.
    assert said[("PENTA", "completed")] == (None, None)


def test_a_resent_vaccination_is_recorded_once(db, facility, feed):
    identifier = _child(feed, facility.slug)
    control = control_id()
    doses = (rxa(_day(70), "198^Penta^CVX"), rxa(_day(1), "19^BCG^CVX", notes="01"))
    [first] = feed(vxu(facility.slug, identifier, *doses, control=control))
    assert first.code == "AA", first.text
    before = counts(db, facility.slug)
    # The same control id: its first ACK. A new one (a tablet resending its session): AA, no second row.
    [again] = feed(vxu(facility.slug, identifier, *doses, control=control))
    seq = _last_seq(db, facility.slug)
    [resent] = feed(vxu(facility.slug, identifier, *doses))
    assert again.text == first.text and resent.code == "AA", resent.text
    assert without_audit(counts(db, facility.slug)) == without_audit(before)
    # Judging it a resend read the child's doses: one read event, as the feed, naming both.
    [read] = audit.read_events(db, facility.slug, first_seq=seq, event_type="record.immunization.read")
    assert len(next(e["ids"] for e in read["event"]["entity"] if "ids" in e)) == 2
    assert read["event"]["agent"][0]["who"]["name"] == "EPI register feed"


def _assert_refused(ack: Ack, code: str, error: str, location: str, says: str) -> None:
    assert ack.code == code, ack.text
    assert ack.field("ERR", 3) == error and ack.field("ERR", 3, 3) == "HL70357", ack.text
    segment, sequence, field = location.split("-")
    assert (ack.field("ERR", 2), ack.field("ERR", 2, 2), ack.field("ERR", 2, 3)) == (segment, sequence, field), ack.text
    assert says in ack.field("ERR", 8), ack.text


def test_a_refused_dose_names_its_field_and_nothing_of_the_message_is_written(db, facility, feed):
    identifier = _child(feed, facility.slug)
    good = rxa(_day(70), "198^Penta^CVX")
    future = (dt.date.today() + dt.timedelta(days=2)).strftime("%Y%m%d")
    cases = [
        (vxu(facility.slug, identifier, good, rxa(_day(71), "999^Mystery^CVX")), "AE", "103", "RXA-2-5",
         "RXA-5 administered code 999 (CVX) is not a vaccine of the national immunization schedule"),
        (vxu(facility.slug, identifier, good, rxa(_day(-10), "19^BCG^CVX")), "AE", "102", "RXA-2-3",
         f"is before the patient's birth on {BORN.isoformat()}"),
        (vxu(facility.slug, identifier, good, rxa(future, "19^BCG^CVX")), "AE", "102", "RXA-2-3", "in the future"),
        (vxu(facility.slug, identifier, good, rxa(_day(71)[:6], "19^BCG^CVX")), "AE", "102", "RXA-2-3",
         "is not a full date"),
        (vxu(facility.slug, identifier, rxa(_day(70), "198^Penta^CVX", completion="XX")), "AE", "103", "RXA-1-20",
         "completion status XX"),
        (vxu(facility.slug, identifier, rxa(_day(70), "198^Penta^CVX", action="D")), "AE", "103", "RXA-1-21",
         "on the patient's chart"),
        (vxu(facility.slug, identifier, good, "RXR|IV"), "AE", "103", "RXR-1-1", "route IV"),
        (vxu(facility.slug, identifier, rxa(_day(70), "178^OPV^CVX"), dose_number("4")), "AE", "103", "OBX-1-5",
         "beyond"),
        (vxu(facility.slug, identifier, "ORC|RE||9003^EPI"), "AE", "101", "--", "no RXA segment"),
        (vxu(facility.slug, "C" + secrets.token_hex(4).upper(), good), "AE", "204", "PID-1-3", "register the patient"),
        (vxu(facility.slug, identifier, good).replace(f"|HEALTHOS|{facility.slug}|", "|HEALTHOS|elsewhere|"),
         "AR", "103", "MSH-1-6", "receiving facility elsewhere is not this facility"),
    ]
    for message, code, error, location, says in cases:
        before = counts(db, facility.slug)
        [ack] = feed(message)
        if location == "--":  # a refusal of the whole message names no field
            assert ack.code == code and ack.field("ERR", 3) == error and says in ack.field("ERR", 8), ack.text
        else:
            _assert_refused(ack, code, error, location, says)
        assert counts(db, facility.slug) == before, message


def test_a_token_without_the_permission_or_of_another_facility_is_refused(db, policy, facility, tenant_b, feed):
    identifier = _child(feed, facility.slug)
    message = vxu(facility.slug, identifier, rxa(_day(70), "198^Penta^CVX"))
    lab_only = issue_token(db, policy, facility.slug, FEED_PERMISSIONS)
    theirs = issue_token(db, policy, tenant_b.slug, VXU_PERMISSIONS)
    before = counts(db, facility.slug)
    for token, says in [(lab_only, "needs the permission clinical.immunization.write"),
                        (theirs, "belongs to another facility")]:
        ack = Ack(hl7_feed.handle(db, facility.slug, token, message).text)
        assert ack.code == "AR" and says in ack.field("ERR", 8), ack.text
    assert counts(db, facility.slug) == before


def test_the_listener_refuses_to_start_with_a_schedule_it_cannot_record_against(db, settings, facility, feed_token,
                                                                                   tmp_path, monkeypatch):
    import asyncio
    import shutil

    policies = tmp_path / "policies"
    shutil.copytree(settings.policies_dir, policies)
    text = (policies / "immunization.toml").read_text(encoding="utf-8")
    (policies / "immunization.toml").write_text(text.replace('cvx = "152"', 'cvx = "198"'), encoding="utf-8")
    monkeypatch.setenv("HEALTHOS_POLICIES_DIR", str(policies))
    with pytest.raises(listener.ListenerRefused, match="vaccine PCV has cvx 198, which vaccine PENTA has too"):
        asyncio.run(listener.start(db, facility.slug, feed_token, "127.0.0.1", 0))
