"""The feed is one facility's machine client: its token is checked when the listener starts and again
for every message; a permission it lacks, a revoked token or another facility's token is refused (AR)
with nothing written; a failure inside answers AE 207 without a stack trace."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import sqlalchemy as sa

from appliance.interop.hl7v2 import feed as hl7_feed
from appliance.interop.hl7v2 import listener
from appliance.substrate import audit, identity
from appliance.substrate.db import tenant_schema
from tests.interop.hl7v2.conftest import (
    CATALOGUE,
    FEED_PERMISSIONS,
    WARDS,
    Ack,
    RunningListener,
    adt,
    counts,
    issue_token,
    orm,
    send,
)


def _mrn() -> str:
    return "R" + secrets.token_hex(4).upper()


def test_the_listener_refuses_to_start_with_a_bad_or_foreign_token(db, policy, facility, tenant_b):
    theirs = issue_token(db, policy, tenant_b.slug, ["clinical.patient.search"])
    for token, says in [("hos_" + secrets.token_urlsafe(32), "unknown, revoked"),
                        ("not-a-token", "unknown, revoked"),
                        (theirs, "another facility")]:
        with pytest.raises(listener.ListenerRefused, match=says):
            asyncio.run(listener.start(db, facility.slug, token, "127.0.0.1", 0))
    with pytest.raises(listener.ListenerRefused, match="no facility"):
        asyncio.run(listener.start(db, "no_such_place", theirs, "127.0.0.1", 0))
    # And message by message: another facility's token applies nothing here. The refused message is kept sealed
    # under the facility's data key, made by whatever first needs it: here, before the count.
    with db.tenant(facility.slug) as conn:
        audit.tenant_key(conn, facility.slug)
    before = counts(db, facility.slug)
    ack = Ack(hl7_feed.handle(db, facility.slug, theirs, adt(facility.slug, "A04", _mrn())).text)
    assert ack.code == "AR" and "another facility" in ack.field("ERR", 8), ack.text
    assert counts(db, facility.slug) == before


def test_a_revoked_token_stops_the_feed_at_its_next_message(db, policy, facility):
    token = issue_token(db, policy, facility.slug, FEED_PERMISSIONS, name="registration feed")
    served = RunningListener(db, facility.slug, token)
    try:
        [ack] = send(served.port, adt(facility.slug, "A04", _mrn()))
        assert ack.code == "AA", ack.text
        with db.control() as conn:
            token_id = conn.execute(sa.select(identity.api_token.c.id).where(
                identity.api_token.c.token_hash == identity.token_digest(token))).scalar()
            identity.revoke_api_token(conn, token_id)
        before = counts(db, facility.slug)
        [ack] = send(served.port, adt(facility.slug, "A04", _mrn()))
        assert ack.code == "AR" and ack.field("ERR", 3) == "207", ack.text
        assert "revoked" in ack.field("ERR", 8)
        assert counts(db, facility.slug) == before
    finally:
        served.stop()


def test_a_permission_the_token_lacks_is_named_and_nothing_is_written(db, policy, facility):
    # A laboratory feed may record results but not register patients or place orders.
    token = issue_token(db, policy, facility.slug, ["clinical.patient.search", "clinical.result.create"],
                        name="lab results feed")
    served = RunningListener(db, facility.slug, token)
    try:
        for message, permission in [(adt(facility.slug, "A04", _mrn()), "clinical.patient.create"),
                                    (orm(facility.slug, _mrn(), "2345-7"), None)]:
            before = counts(db, facility.slug)
            [ack] = send(served.port, message)
            if permission:
                assert ack.code == "AR" and permission in ack.field("ERR", 8), ack.text
            else:  # the patient is unknown: looked up (allowed) before the order's permission is needed
                assert ack.code == "AE", ack.text
            assert counts(db, facility.slug) == before
    finally:
        served.stop()


def test_a_failure_inside_answers_ae_207_without_a_trace_and_writes_nothing(db, policy, tenant_factory):
    broken = tenant_factory(name="Broken Hospital", catalogue=CATALOGUE, wards=WARDS)
    token = issue_token(db, policy, broken.slug, FEED_PERMISSIONS)
    identifier = _mrn()
    assert Ack(hl7_feed.handle(db, broken.slug, token, adt(broken.slug, "A04", identifier)).text).code == "AA"
    # A real fault, as an operator's mistake would make one: the interface's order table is gone.
    with db.control() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "{tenant_schema(broken.slug)}".hl7_placer_order RENAME TO misplaced')
    before = counts_without_placer(db, broken.slug)
    ack = Ack(hl7_feed.handle(db, broken.slug, token, orm(broken.slug, identifier, "2345-7", placer="P1")).text)
    assert ack.code == "AE" and ack.field("ERR", 3) == "207", ack.text
    assert "internal error" in ack.field("ERR", 8)
    assert "Traceback" not in ack.text and "misplaced" not in ack.text and "hl7_placer_order" not in ack.text
    assert counts_without_placer(db, broken.slug) == before


def counts_without_placer(db, tenant: str) -> dict:
    with db.tenant(tenant) as conn:
        return {table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("patient", "entry", "service_request")}
