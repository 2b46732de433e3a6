"""The facility admin's pages: API tokens issued with exactly the permissions a client needs, shown once,
working on the API and refused once revoked; the staff list; bad input and other facilities refused."""

import html
import re
import uuid

import sqlalchemy as sa
from litestar.testing import TestClient

from appliance.substrate import identity
from tests.conftest import FACILITY_ZONE
from tests.web.test_regulator import count, csrf

PERMISSION = "clinical.patient.search"


def issue(admin: TestClient, tenant: str, data: dict):
    page = admin.get(f"/t/{tenant}/admin/tokens")
    assert page.status_code == 200, page.text
    return admin.post(f"/t/{tenant}/admin/tokens", data={**data, "_csrf_token": csrf(page.text)})


def bearer(app, token: str) -> TestClient:
    client = TestClient(app=app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_a_token_is_shown_once_opens_what_it_names_and_stops_when_revoked(app, db, signed_in, tenant_a):
    admin = signed_in("facility_admin", tenant_a.slug)
    tokens = admin.get(f"/t/{tenant_a.slug}/admin/tokens")
    assert tokens.status_code == 200
    # What a token may carry comes from the API's own routes, with the calls each opens; never identity's.
    assert f'value="{PERMISSION}"' in tokens.text and "GET /api/t/{tenant}/patients" in tokens.text
    assert 'value="identity.' not in tokens.text
    issued_before = count(db, "identity.token.issue")
    answer = issue(admin, tenant_a.slug, {"name": "  Registry   sync ", "permission": PERMISSION})
    assert answer.status_code == 200, answer.text
    token = re.search(r'id="issued-token"[^>]*value="(hos_[^"]+)"', answer.text).group(1)
    assert "Token issued: Registry sync" in answer.text and count(db, "identity.token.issue") == issued_before + 1
    # Shown once: the list afterwards names the token and never holds its value.
    listed = admin.get(f"/t/{tenant_a.slug}/admin/tokens").text
    assert "Registry sync" in listed and token not in listed

    client = bearer(app, token)
    assert client.get(f"/api/t/{tenant_a.slug}/patients", params={"name": "nobody"}).status_code == 200
    assert client.post(f"/api/t/{tenant_a.slug}/patients", json={}).status_code == 403  # not granted

    token_id = re.search(r'/admin/tokens/([0-9a-f-]{36})/revoke" class="inline">[^<]*<input[^>]*>'
                         r'<button[^>]*aria-label="Revoke the token for Registry sync"', listed).group(1)
    revoked = admin.post(f"/t/{tenant_a.slug}/admin/tokens/{token_id}/revoke",
                         data={"_csrf_token": csrf(listed)}, follow_redirects=False)
    assert revoked.status_code == 303 and revoked.headers["location"].endswith("done=token-revoked")
    assert client.get(f"/api/t/{tenant_a.slug}/patients", params={"name": "nobody"}).status_code == 401
    assert "revoked" in admin.get(revoked.headers["location"]).text


def test_bad_requests_say_what_is_wrong_and_issue_nothing(db, signed_in, tenant_a):
    admin = signed_in("facility_admin", tenant_a.slug)
    before = count(db, "identity.token.issue")
    for data, says in [
        ({"name": "lab feed"}, "Choose at least one permission"),
        ({"name": "", "permission": PERMISSION}, "Name the token by what it is for"),
        ({"name": "lab feed", "permission": "identity.token.create"}, "Not a permission a token can carry here"),
        ({"name": "lab feed", "permission": [PERMISSION, "audit.*"]}, "audit.*"),
        ({"name": "x" * 101, "permission": PERMISSION}, "at most 100 characters"),
    ]:
        answer = issue(admin, tenant_a.slug, data)
        assert answer.status_code == 422 and says in html.unescape(answer.text), (data, answer.text[-800:])
        assert 'id="issued-token"' not in answer.text
    assert count(db, "identity.token.issue") == before
    with db.control() as conn:
        assert not conn.execute(sa.select(identity.api_token.c.id).where(
            identity.api_token.c.tenant == tenant_a.slug, identity.api_token.c.name == "lab feed")).first()


def test_other_facilities_guessed_ids_and_other_roles_are_refused(db, policy, signed_in, tenant_a, tenant_b):
    with db.control() as conn:
        theirs = identity.issue_machine_token(conn, policy, tenant=tenant_b.slug, name="their feed",
                                              permissions=[PERMISSION])
        their_id = conn.execute(sa.select(identity.api_token.c.id).where(
            identity.api_token.c.token_hash == identity.token_digest(theirs))).scalar_one()
    admin = signed_in("facility_admin", tenant_a.slug)
    form = csrf(admin.get(f"/t/{tenant_a.slug}/admin/tokens").text)
    for token_id in (their_id, uuid.uuid4()):  # another facility's token through our path, and a guess
        refused = admin.post(f"/t/{tenant_a.slug}/admin/tokens/{token_id}/revoke", data={"_csrf_token": form})
        assert refused.status_code == 404 and "No live API token of this facility" in refused.text
    # Another facility's pages, and its tokens on ours: never listed.
    for path in ("/admin/tokens", "/admin/staff"):
        assert admin.get(f"/t/{tenant_b.slug}{path}").status_code == 403
    assert "their feed" not in admin.get(f"/t/{tenant_a.slug}/admin/tokens").text
    assert admin.post(f"/t/{tenant_b.slug}/admin/tokens/{their_id}/revoke",
                      data={"_csrf_token": form}).status_code == 403
    with db.control() as conn:
        assert identity.principal_for_token(conn, theirs) is not None  # untouched by any of it
    clinician = signed_in("clinician", tenant_a.slug)
    for path in ("/admin/tokens", "/admin/staff"):
        assert clinician.get(f"/t/{tenant_a.slug}{path}").status_code == 403
    # The form without its CSRF token is refused too.
    assert admin.post(f"/t/{tenant_a.slug}/admin/tokens", data={"name": "x", "permission": PERMISSION}
                      ).status_code == 403


def test_the_token_of_a_disabled_machine_client_lists_as_revoked_with_nothing_left_to_revoke(db, policy, signed_in,
                                                                                             tenant_a):
    """IT disabled the client's account (`healthos account disable`): its token must not read as live here."""
    with db.control() as conn:
        token = identity.issue_machine_token(conn, policy, tenant=tenant_a.slug, name="Retired scanner",
                                             permissions=[PERMISSION])
        token_id = conn.execute(sa.select(identity.api_token.c.id).where(
            identity.api_token.c.token_hash == identity.token_digest(token))).scalar_one()
        machine = conn.execute(sa.select(identity.account.c.email).where(
            identity.account.c.id == identity.principal_for_token(conn, token).account_id)).scalar_one()
        identity.disable_account(conn, machine)
    admin = signed_in("facility_admin", tenant_a.slug)
    listed = admin.get(f"/t/{tenant_a.slug}/admin/tokens").text
    row = listed.split("<td>Retired scanner</td>")[1].split("</tr>")[0]
    assert "revoked" in row and ">live<" not in row and "Revoke the token" not in row
    refused = admin.post(f"/t/{tenant_a.slug}/admin/tokens/{token_id}/revoke", data={"_csrf_token": csrf(listed)})
    assert refused.status_code == 404 and "No live API token of this facility" in refused.text
    assert bearer(admin.app, token).get(f"/api/t/{tenant_a.slug}/patients", params={"name": "x"}).status_code == 401


def test_the_staff_page_lists_who_works_here(signed_in, person_factory, tenant_a, tenant_b):
    nurse = person_factory("nurse", tenant_a.slug, ward="GEN")
    elsewhere = person_factory("clinician", tenant_b.slug)
    admin = signed_in("facility_admin", tenant_a.slug)
    page = admin.get(f"/t/{tenant_a.slug}/admin/staff")
    assert page.status_code == 200
    row = page.text.split(nurse.email)[1].split("</tr>")[0]
    assert "nurse" in row and "GEN" in row and "active" in row
    assert elsewhere.email not in page.text and "@test.invalid" in page.text
    # A facility admin's own way into the portal leads to these pages (they cannot search patients).
    home = admin.get("/")
    assert f'href="/t/{tenant_a.slug}/admin/tokens"' in home.text


def test_a_locked_account_says_until_when_on_the_staff_page(db, signed_in, person_factory, tenant_a):
    """A nurse who mistyped her password five times phoned the facility admin, whose staff page said only 'locked':
    nothing said it opens by itself, nor when. It says until when, in the facility's time."""
    nurse = person_factory("nurse", tenant_a.slug, ward="GEN")
    for _ in range(identity.DEFAULT_SETTINGS.max_failed_signins):
        with db.control() as conn:
            assert identity.check_password(conn, nurse.email, "mistyped") is None
    with db.control() as conn:
        until = identity.account_by_email(conn, nurse.email).locked_until
    page = signed_in("facility_admin", tenant_a.slug).get(f"/t/{tenant_a.slug}/admin/staff")
    row = page.text.split(nurse.email)[1].split("</tr>")[0]
    assert f"locked until {until.astimezone(FACILITY_ZONE):%H:%M}" in row
    assert "opens again by itself at the time shown" in page.text


def test_the_facility_admin_moves_a_nurse_to_another_ward(db, signed_in, person_factory, tenant_a, tenant_b):
    nurse = signed_in("nurse", tenant_a.slug, ward="GEN")
    assert nurse.get(f"/t/{tenant_a.slug}/ward").status_code == 200
    admin = signed_in("facility_admin", tenant_a.slug)
    staff = admin.get(f"/t/{tenant_a.slug}/admin/staff")
    row = staff.text.split(nurse.person.email)[1].split("</tr>")[0]
    assert f'action="/t/{tenant_a.slug}/admin/staff/{nurse.person.account_id}/ward"' in row
    form = {"_csrf_token": csrf(staff.text), "role": "nurse"}
    before = count(db, "identity.membership.update")

    unknown = admin.post(f"/t/{tenant_a.slug}/admin/staff/{nurse.person.account_id}/ward", data={**form, "ward": "XYZ"})
    assert unknown.status_code == 422 and "Choose one of this facility&#39;s wards (GEN)" in unknown.text
    elsewhere = person_factory("nurse", tenant_b.slug, ward="MAT")
    for account_id, role in ((elsewhere.account_id, "nurse"), (uuid.uuid4(), "nurse"),
                             (nurse.person.account_id, "clinician")):
        refused = admin.post(f"/t/{tenant_a.slug}/admin/staff/{account_id}/ward", data={**form, "role": role,
                                                                                     "ward": "GEN"})
        assert refused.status_code == 404, (account_id, role)
    assert count(db, "identity.membership.update") == before
    assert signed_in("clinician", tenant_a.slug).post(
        f"/t/{tenant_a.slug}/admin/staff/{nurse.person.account_id}/ward", data={**form, "ward": "GEN"}
    ).status_code == 403

    with db.tenant(tenant_a.slug) as conn:  # a second ward to move to
        conn.execute(sa.text("INSERT INTO ward (code, name, kind, active) VALUES ('SUR', 'Surgical', 'inpatient', "
                             "true) ON CONFLICT DO NOTHING"))
    moved = admin.post(f"/t/{tenant_a.slug}/admin/staff/{nurse.person.account_id}/ward",
                       data={**form, "ward": "SUR"}, follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"].endswith("done=ward-moved")
    assert count(db, "identity.membership.update") == before + 1
    # Her next page is the new ward's; the old one is refused now.
    assert "Surgical" in nurse.get(f"/t/{tenant_a.slug}/ward").text
    assert nurse.get(f"/t/{tenant_a.slug}/ward?ward_code=GEN").status_code == 403
