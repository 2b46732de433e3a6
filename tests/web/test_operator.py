"""The operator's console: schemas at head, the last backup and the failures since, the disks,
facilities with their staff and tokens, accounts waiting for someone, audit logs being sealed — for the
operator only."""

import datetime as dt
import uuid

import pytest
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
    assert locked.email in attention and "locked until" in attention  # it ends by itself, or sooner:
    assert "<code>healthos account unlock</code>" in page.text
    assert "The appliance" in page.text.split('id="audit-logs"')[1]


def test_a_log_whose_events_wait_without_a_checkpoint_is_late(db, signed_in, tenant_a, monkeypatch):
    from appliance.substrate import standing

    # Nothing runs the checkpointer in the test process: events of the sign-in above wait unsealed.
    monkeypatch.setattr(standing, "CHECKPOINT_LATE", dt.timedelta(0))
    page = signed_in("operator", kind="operator").get("/appliance")
    assert "late</span>" in page.text and "is <code>healthos up</code> (its checkpointer) running?" in page.text


def test_only_the_operator_opens_the_console(signed_in, tenant_a):
    for client in (signed_in("clinician", tenant_a.slug), signed_in("facility_admin", tenant_a.slug),
                   signed_in("regulator", kind="regulator"), signed_in("ministry_analyst", kind="ministry_analyst")):
        refused = client.get("/appliance")
        assert refused.status_code == 403 and tenant_a.slug not in refused.text



def test_the_operator_sees_the_last_backup_the_failures_since_and_the_disks(db, signed_in, tenant_a, tmp_path,
                                                                          monkeypatch):
    from appliance.substrate import backup, keys, standing

    # A real backup of control and one facility: the session's other facilities would only make it slower.
    monkeypatch.setattr(backup, "active_slugs_in", lambda _conn: [tenant_a.slug])
    made = backup.create(db, keys.keyring_for(db), tmp_path / "nightly.hbk")
    operator = signed_in("operator", kind="operator")
    page = operator.get("/appliance").text
    readiness = page.split('id="readiness"')[1].split("</ul>")[0]
    assert "backed up</span> The last backup was made under a minute ago" in readiness
    last = page.split('id="last-backup"')[1].split("</p>")[0]
    assert str(made.path) in last and 'id="backup-failures"' not in page
    assert f"control and 1 facility, {made.rows:,} rows" in " ".join(last.split())  # control's rows counted too
    assert made.rows > sum(made.tenants[tenant_a.slug].values())
    disks = page.split('id="disks"')[1].split("</table>")[0]
    assert str(tmp_path) in disks and "Backups" in disks
    if db.cluster is not None:
        assert "PostgreSQL&#39;s data" in disks or "PostgreSQL's data" in disks

    with pytest.raises(backup.BackupFailed):
        backup.create(db, keys.keyring_for(db), tmp_path / "gone" / "nightly.hbk")
    page = operator.get("/appliance").text
    failures = page.split('id="backup-failures"')[1].split("</p>")[0]
    assert "1 attempt failed since the last good backup" in failures and "No such file or directory" in failures
    attempts = page.split('id="backup-attempts"')[1].split("</table>")[0]
    assert attempts.index("gone/nightly.hbk") < attempts.index(str(made.path))  # newest first

    monkeypatch.setattr(standing, "BACKUP_LATE", dt.timedelta(0))
    readiness = operator.get("/appliance").text.split('id="readiness"')[1].split("</ul>")[0]
    assert "late</span> No backup for under a minute" in readiness and "1 failed" in readiness


def feeds_heard_from(db, policy, slug: str, sent: dict[str, list[tuple[str, dt.timedelta]]]) -> dict[str, uuid.UUID]:
    """A facility's feeds, each a token named 'HL7 feed <name>' as the playbook names them, and the messages each
    was heard sending (its acknowledgement code, how long ago): the token ids by name."""
    from appliance.interop.hl7v2.models import hl7_message

    now = dt.datetime.now(dt.UTC)
    with db.control() as conn:
        ids = {name: identity.principal_for_token(conn, identity.issue_machine_token(
            conn, policy, tenant=slug, name=f"HL7 feed {name}", permissions=["clinical.patient.search"])).token_id
            for name in sent}
    with db.tenant(slug) as conn:
        conn.execute(hl7_message.insert(), [
            {"id": uuid.uuid4(), "received_at": now - ago, "sending_application": name.upper(),
             "sending_facility": "HOSP", "message_type": "ORU^R01", "control_id": uuid.uuid4().hex, "ack_code": ack,
             "token_id": ids[name]} for name, messages in sent.items() for ack, ago in messages])
    return ids


def test_the_operator_sees_a_feed_gone_quiet_and_one_failing(db, policy, signed_in, tenant_a):
    ids = feeds_heard_from(db, policy, tenant_a.slug, {
        "lab": [("AA", dt.timedelta(hours=3)), *(("AE", dt.timedelta(minutes=50 - i)) for i in range(6))],
        "registration": [("AA", dt.timedelta(days=2))]})
    page = signed_in("operator", kind="operator").get("/appliance").text
    assert "2 HL7 v2 feeds have gone quiet or are failing" in page.split('id="readiness"')[1].split("</ul>")[0]
    lab_row = page.split(f'data-token="{ids["lab"]}"')[1].split("</tr>")[0]
    assert "HL7 feed lab" in lab_row and "failing" in lab_row and "its last 6 messages were refused" in lab_row
    assert f'href="/t/{tenant_a.slug}/admin/interfaces?show=not-applied"' in lab_row
    quiet_row = page.split(f'data-token="{ids["registration"]}"')[1].split("</tr>")[0]
    assert "quiet" in quiet_row and "systemctl status healthos-hl7@registration" in quiet_row
    # The message log holds no patient data, and the console shows none: no control id, no sender's messages.
    assert "ORU^R01" not in page
