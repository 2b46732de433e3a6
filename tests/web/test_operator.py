"""The operator's console: schemas at head, facilities with their staff and tokens, accounts waiting for
someone, audit logs being sealed — for the operator only."""

import datetime as dt

import sqlalchemy as sa

from appliance.substrate import identity


def test_the_operator_sees_where_the_appliance_stands(db, policy, signed_in, person_factory, tenant_a):
    waiting = f"new-{tenant_a.slug}@test.invalid"
    with db.control() as conn:
        identity.create_account(conn, policy, kind="staff", email=waiting, display_name="New nurse",
                                role="nurse", tenant=tenant_a.slug)
    locked = person_factory("clinician", tenant_a.slug)
    with db.control() as conn:
        conn.execute(sa.update(identity.account).where(identity.account.c.id == locked.account_id)
                     .values(locked_until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15)))
    operator = signed_in("operator", kind="operator")
    assert 'href="/appliance"' in operator.get("/").text
    page = operator.get("/appliance")
    assert page.status_code == 200
    readiness = page.text.split('id="readiness"')[1].split("</ul>")[0]
    schemas = readiness.split("<li>")[1:3]  # the third line is the audit logs' (no checkpointer runs here)
    assert "Every facility's schema is at" in schemas[1] and not any("flag-critical" in line for line in schemas)
    row = page.text.split(f'data-tenant="{tenant_a.slug}"')[1].split("</tr>")[0]
    assert tenant_a.name in row and "at head" in row
    attention = page.text.split('id="attention"')[1].split("</table>")[0]
    assert waiting in attention and "awaiting enrolment" in attention
    assert locked.email in attention and "locked" in attention
    assert "The appliance" in page.text.split('id="audit-logs"')[1]


def test_a_log_whose_events_wait_without_a_checkpoint_is_late(db, signed_in, tenant_a, monkeypatch):
    from appliance.web import operator as console

    # Nothing runs the checkpointer in the test process: events of the sign-in above wait unsealed.
    monkeypatch.setattr(console, "CHECKPOINT_LATE", dt.timedelta(0))
    page = signed_in("operator", kind="operator").get("/appliance")
    assert "late</span>" in page.text and "is <code>healthos up</code> (its checkpointer) running?" in page.text


def test_only_the_operator_opens_the_console(signed_in, tenant_a):
    for client in (signed_in("clinician", tenant_a.slug), signed_in("facility_admin", tenant_a.slug),
                   signed_in("regulator", kind="regulator"), signed_in("ministry_analyst", kind="ministry_analyst")):
        refused = client.get("/appliance")
        assert refused.status_code == 403 and tenant_a.slug not in refused.text

