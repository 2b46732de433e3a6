"""The demo's HL7 v2 feed history: applied through the listener's path as a facility's machine client,
mostly AA with the two AE a real feed sends most, the same messages from the same seed, written once,
and no live token left behind."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from appliance.interop.hl7v2 import history
from appliance.interop.hl7v2.demo import FEED_NAME, feed_history, generate_feed_demo
from appliance.substrate import identity
from appliance.substrate.demo import demo_stream
from tests.e2e.history import CLINICAL_CONFIG
from tests.interop.hl7v2.conftest import counts

NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)


def test_the_same_seed_gives_the_same_messages_and_another_facility_others():
    first = feed_history("lakeshore_district", demo_stream("hl7", 2026, "lakeshore_district"), NOW)
    again = feed_history("lakeshore_district", demo_stream("hl7", 2026, "lakeshore_district"), NOW)
    elsewhere = feed_history("hillview_hc", demo_stream("hl7", 2026, "hillview_hc"), NOW)
    assert first == again and len(first) == 10
    assert first != elsewhere and all("|HEALTHOS|hillview_hc|" in text for text in elsewhere)


def test_the_feed_history_is_written_once_mostly_applied_and_its_token_revoked(db, policy, tenant_factory):
    facility = tenant_factory(name="Demo Feed Hospital", **CLINICAL_CONFIG)
    assert generate_feed_demo(db, policy, facility.slug) == {"AA": 8, "AE": 2}

    with db.tenant(facility.slug) as conn:
        logged = history.recent(conn)
        registered = conn.execute(sa.text(
            "SELECT count(*) FROM patient_identifier WHERE system = 'regsys_mr'")).scalar()
        results = conn.execute(sa.text("SELECT count(*) FROM result")).scalar()
    assert sorted({m["sending_application"] for m in logged}) == ["HIS", "LABSYS", "REGSYS"]
    refused = sorted((m["error_code"], m["error_text"]) for m in logged if m["ack_code"] == "AE")
    assert [code for code, _ in refused] == ["103", "204"]
    assert "2276-4 is not in this facility's catalogue" in refused[0][1]
    assert "match no patient of this facility" in refused[1][1]
    assert registered == 3 and results == 5  # three OBX of a blood count, a malaria RDT, a glucose

    with db.control() as conn:
        tokens = [t for t in identity.api_tokens_of(conn, facility.slug) if t["name"] == FEED_NAME]
        machine = conn.execute(sa.text(
            "SELECT a.disabled_at FROM control.account a JOIN control.api_token t ON t.account_id = a.id "
            "WHERE t.tenant = :t AND t.name = :n"), {"t": facility.slug, "n": FEED_NAME}).scalar_one()
    assert len(tokens) == 1 and tokens[0]["revoked_at"] is not None and machine is not None

    # `healthos up --demo` runs it at every start: a facility with messages gets no more.
    before = counts(db, facility.slug)
    assert generate_feed_demo(db, policy, facility.slug) == {}
    assert counts(db, facility.slug) == before
