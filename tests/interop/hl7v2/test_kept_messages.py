"""Each message a feed sends is kept as it was received, sealed under the facility's data key: the interface
analyst reads it on the Interfaces page (an audited read of patient data) and replays one not applied once its
cause is put right, applied once however often it is pressed; a resend after AA is a row pointing at the first.
Another facility's admin, a guessed id, other roles and tokens are refused, writing nothing."""

from __future__ import annotations

import re
import secrets
import threading
import uuid

import pytest
import sqlalchemy as sa

from appliance.interop.hl7v2 import feed as hl7_feed
from appliance.interop.hl7v2 import history
from appliance.interop.hl7v2.models import RAW_PURPOSE, hl7_message
from appliance.substrate import audit, identity, keys
from appliance.substrate.db import tenant_schema
from appliance.substrate.principal import Principal
from tests.interop.hl7v2.conftest import FEED_PERMISSIONS, adt, control_id, counts, issue_token, oru
from tests.rows import RowCounts, changed
from tests.web.test_regulator import csrf

HAEMOGLOBIN = "OBX|1|NM|718-7^Haemoglobin^LN||13.2|g/dL|12.0-16.0||||F"


def _rows(db, tenant: str, control: str) -> list:
    with db.tenant(tenant) as conn:
        return conn.execute(sa.select(hl7_message).where(hl7_message.c.control_id == control)
                            .order_by(hl7_message.c.received_at, hl7_message.c.id)).all()


def _events(db, tenant: str, event_type: str) -> int:
    with db.tenant(tenant) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM audit_event WHERE event_type = :t"),
                            {"t": event_type}).scalar()


def _mrn() -> str:
    return "K" + secrets.token_hex(4).upper()


def _all_rows(db, tenant: str) -> dict[str, int]:
    """Every row of the facility and of control, the message log included: what a refused replay must leave."""
    with db.control_autocommit() as conn:
        return RowCounts(conn, tenant).read()


def test_the_message_is_not_readable_in_the_database_without_the_key(db, facility, feed):
    control, identifier = control_id(), _mrn()
    [ack] = feed(adt(facility.slug, "A04", identifier, control=control, family="Nyamweya", birth="19901340"))
    assert ack.code == "AE"
    [row] = _rows(db, facility.slug, control)
    assert row.raw is not None and row.raw_key_id is not None
    # Read as the database's owner, every column of the row as text: no name, identifier or birth date in it.
    with db.control_autocommit() as conn:
        dumped = conn.execute(sa.text(f"SELECT m::text FROM {tenant_schema(facility.slug)}.hl7_message m "
                                      "WHERE id = :id"), {"id": row.id}).scalar()
    for private in ("Nyamweya", identifier, "19901340", "PID|"):
        assert private not in dumped and private.encode() not in row.raw
    # With the facility's key it opens, for its own row only: copied onto another row it does not.
    with db.tenant(facility.slug) as conn:
        key = audit.tenant_key(conn, facility.slug, row.raw_key_id)
    text = keys.open_value(key, row.raw, purpose=RAW_PURPOSE, bound_to=str(row.id)).decode()
    assert "Nyamweya" in text and identifier in text and text.startswith("MSH|")
    with pytest.raises(keys.KeyUnavailable):
        keys.open_value(key, row.raw, purpose=RAW_PURPOSE, bound_to=str(uuid.uuid4()))


def test_the_analyst_reads_the_message_as_received_and_the_read_is_audited(db, signed_in, facility, feed):
    control, identifier = control_id(), _mrn()
    feed(oru(facility.slug, identifier, [HAEMOGLOBIN], control=control).replace("Otieno", "Chebet"))
    [row] = _rows(db, facility.slug, control)
    admin = signed_in("facility_admin", facility.slug)
    listed = admin.get(f"/t/{facility.slug}/admin/interfaces").text
    assert f'href="/t/{facility.slug}/admin/interfaces/{row.id}"' in listed and "Chebet" not in listed
    reads = _events(db, facility.slug, "interop.hl7.message.read")
    page = admin.get(f"/t/{facility.slug}/admin/interfaces/{row.id}")
    assert page.status_code == 200, page.text
    shown = re.search(r'<pre class="mono hl7-message" id="message-text">(.*?)</pre>', page.text, re.S)[1]
    assert shown.splitlines()[1].startswith("PID|1||" + identifier) and "Chebet" in shown
    assert "204" in page.text and ">Replay</button>" in page.text  # an unknown patient: AE 204, not applied
    assert _events(db, facility.slug, "interop.hl7.message.read") == reads + 1
    assert "<script>" not in page.text


def test_another_facility_a_guessed_id_other_roles_and_tokens_are_refused(db, signed_in, token_client, facility,
                                                                         tenant_b, feed):
    control = control_id()
    feed(oru(facility.slug, _mrn(), [HAEMOGLOBIN], control=control))
    [row] = _rows(db, facility.slug, control)
    mine = signed_in("facility_admin", facility.slug)
    form = {"_csrf_token": csrf(mine.get(f"/t/{facility.slug}/admin/interfaces/{row.id}").text)}
    theirs = signed_in("facility_admin", tenant_b.slug)
    their_form = {"_csrf_token": csrf(theirs.get(f"/t/{tenant_b.slug}/admin/tokens").text)}
    clinician = signed_in("clinician", facility.slug)
    machine = token_client(facility.slug, permissions=["clinical.patient.search"])
    before = _all_rows(db, facility.slug)
    reads = _events(db, facility.slug, "interop.hl7.message.read")
    page = f"/t/{facility.slug}/admin/interfaces/{row.id}"
    replay = f"{page}/replay"
    assert theirs.get(page).status_code == 403
    assert theirs.post(replay, data=their_form).status_code == 403
    # Their own facility's address with this facility's message id: not theirs, so none of theirs has that id.
    assert theirs.get(f"/t/{tenant_b.slug}/admin/interfaces/{row.id}").status_code == 404
    assert theirs.post(f"/t/{tenant_b.slug}/admin/interfaces/{row.id}/replay", data=their_form).status_code == 404
    guessed = uuid.uuid4()
    missing = mine.get(f"/t/{facility.slug}/admin/interfaces/{guessed}")
    assert missing.status_code == 404 and "No message your feeds sent to this facility has that id" in missing.text
    assert mine.post(f"/t/{facility.slug}/admin/interfaces/{guessed}/replay", data=form).status_code == 404
    assert mine.post(replay, data={}).status_code == 403  # no CSRF token
    assert clinician.get(page).status_code == 403
    assert machine.get(page).status_code in {401, 403}
    assert _events(db, facility.slug, "interop.hl7.message.read") == reads
    assert changed(before, _all_rows(db, facility.slug)) == ""


def test_a_replay_after_the_cause_is_put_right_applies_once(db, signed_in, facility, feed):
    control, identifier = control_id(), _mrn()
    [refused] = feed(oru(facility.slug, identifier, [HAEMOGLOBIN], control=control))
    assert refused.code == "AE"
    [message] = _rows(db, facility.slug, control)
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"  # the patient registered
    admin = signed_in("facility_admin", facility.slug)
    page = f"/t/{facility.slug}/admin/interfaces/{message.id}"
    form = {"_csrf_token": csrf(admin.get(page).text)}
    replays = _events(db, facility.slug, "interop.hl7.message.replay")
    done = admin.post(f"{page}/replay", data=form, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"{page}?done=hl7-replay-applied"
    rows = _rows(db, facility.slug, control)
    assert [(r.ack_code, r.replay_of) for r in rows] == [("AE", None), ("AA", message.id)]
    assert rows[1].ack is not None and rows[1].raw is None and rows[1].created["result"]
    assert _events(db, facility.slug, "interop.hl7.message.replay") == replays + 1
    shown = admin.get(f"{page}?done=hl7-replay-applied").text
    assert "Replayed and applied" in shown and 'data-later="replay"' in shown and ">Replay</button>" not in shown
    # Pressed again (a second tab), or the sender resending it: applied once.
    before = _all_rows(db, facility.slug)
    again = admin.post(f"{page}/replay", data=form)
    assert again.status_code == 409 and "replaying it would change nothing" in again.text
    assert changed(before, _all_rows(db, facility.slug)) == ""


def test_replays_pressed_at_once_apply_the_message_once(db, facility, feed, person_factory):
    control, identifier = control_id(), _mrn()
    feed(oru(facility.slug, identifier, [HAEMOGLOBIN], control=control))
    [message] = _rows(db, facility.slug, control)
    feed(adt(facility.slug, "A04", identifier))
    analyst = Principal(account_id=person_factory("facility_admin", facility.slug).account_id, kind="staff",
                        display_name="Interface analyst", tenant=facility.slug, role="facility_admin",
                        permissions=frozenset({"interop.hl7.message.replay"}))
    outcomes: list[str] = []

    def press() -> None:
        try:
            outcomes.append(hl7_feed.replay(db, facility.slug, message.id, analyst)[1].code)
        except hl7_feed.ReplayRefused as refused:
            outcomes.append(str(refused.status))

    pressing = [threading.Thread(target=press) for _ in range(3)]
    for thread in pressing:
        thread.start()
    for thread in pressing:
        thread.join()
    assert sorted(outcomes) == ["409", "409", "AA"]
    assert [r.ack_code for r in _rows(db, facility.slug, control)] == ["AE", "AA"]


def test_a_refused_replay_writes_nothing_of_the_message(db, signed_in, facility, feed):
    control = control_id()
    feed(oru(facility.slug, _mrn(), [HAEMOGLOBIN], control=control))  # nobody registered it: replay is AE again
    [message] = _rows(db, facility.slug, control)
    admin = signed_in("facility_admin", facility.slug)
    page = f"/t/{facility.slug}/admin/interfaces/{message.id}"
    before = counts(db, facility.slug)
    done = admin.post(f"{page}/replay", data={"_csrf_token": csrf(admin.get(page).text)}, follow_redirects=False)
    assert done.headers["location"] == f"{page}?done=hl7-replay-refused"
    # Of the record nothing: only the replay's own row, whole, and its audit event.
    assert changed(before, counts(db, facility.slug)) == "audit_event +2, audit_pending +2"
    [_, replayed] = _rows(db, facility.slug, control)
    assert (replayed.ack_code, replayed.error_code, replayed.replay_of) == ("AE", "204", message.id)
    assert replayed.error_text and replayed.token_id == message.token_id
    shown = admin.get(f"{page}?done=hl7-replay-refused").text
    assert "not applied again" in shown and ">Replay</button>" in shown  # still to put right


def _applied_today(page: str) -> int:
    return int(re.search(r'id="count-AA">(\d+)<', page)[1])


def test_a_resend_after_aa_is_a_row_pointing_at_the_first(db, signed_in, facility, feed):
    admin = signed_in("facility_admin", facility.slug)
    applied_before = _applied_today(admin.get(f"/t/{facility.slug}/admin/interfaces").text)
    control = control_id()
    message = adt(facility.slug, "A04", _mrn(), control=control)
    [first, again] = feed(message, message)
    assert again.text == first.text
    accepted, resent = _rows(db, facility.slug, control)
    assert resent.duplicate_of == accepted.id and resent.raw is not None and accepted.duplicate_of is None
    listed = admin.get(f"/t/{facility.slug}/admin/interfaces").text
    assert "resent after it was applied" in listed
    assert _applied_today(listed) == applied_before + 1  # applied once, however often it came
    shown = admin.get(f"/t/{facility.slug}/admin/interfaces/{accepted.id}").text
    assert 'data-later="resend"' in shown and ">Replay</button>" not in shown
    refused = admin.post(f"/t/{facility.slug}/admin/interfaces/{accepted.id}/replay",
                         data={"_csrf_token": csrf(shown)})
    assert refused.status_code == 409 and "applied when it arrived" in refused.text


def test_a_message_whose_feed_token_was_revoked_is_not_replayed(db, policy, signed_in, facility):
    token = issue_token(db, policy, facility.slug, FEED_PERMISSIONS, name="retired lab feed")
    control = control_id()
    assert hl7_feed.handle(db, facility.slug, token, oru(facility.slug, _mrn(), [HAEMOGLOBIN], control=control)
                           ).code == "AE"
    [message] = _rows(db, facility.slug, control)
    with db.control() as conn:
        identity.revoke_api_token(conn, message.token_id, tenant=facility.slug)
    admin = signed_in("facility_admin", facility.slug)
    page = f"/t/{facility.slug}/admin/interfaces/{message.id}"
    before = _all_rows(db, facility.slug)
    shown = admin.get(page).text
    assert 'id="replay-unavailable"' in shown and ">Replay</button>" not in shown
    refused = admin.post(f"{page}/replay", data={"_csrf_token": csrf(shown)})
    assert refused.status_code == 409 and "a replay runs as that feed" in refused.text
    # The page's read is audited; nothing else was written.
    assert changed(before, _all_rows(db, facility.slug)) == "audit_event +1, audit_pending +1"


def test_the_console_does_not_take_a_resend_for_a_message_applied(db, policy, facility):
    token = issue_token(db, policy, facility.slug, FEED_PERMISSIONS, name="resending feed")
    message = adt(facility.slug, "A04", _mrn())
    assert hl7_feed.handle(db, facility.slug, token, message).code == "AA"
    assert hl7_feed.handle(db, facility.slug, token, message).code == "AA"
    with db.tenant(facility.slug) as conn:
        first, resent = conn.execute(sa.select(hl7_message.c.received_at, hl7_message.c.token_id).where(
            hl7_message.c.control_id == message.split("|")[9]).order_by(hl7_message.c.received_at)).all()
        [state] = [s for s in history.feed_states(conn, resent.received_at) if s.token_id == first.token_id]
    assert (state.last_at, state.applied_at, state.refused_since) == (resent.received_at, first.received_at, 0)
