"""Authentication and authorisation, tried from the attacker's side."""

import base64
import html
import re
import time
from xml.etree import ElementTree

import pytest
import sqlalchemy as sa
from litestar import get
from litestar.testing import TestClient

from appliance.substrate import identity, passwords, totp
from appliance.substrate.shared_store import SharedStore
from appliance.web.app import create_app
from appliance.web.errors import sentence

# A national package is public too: its signature by a registered appliance is its credential.
PUBLIC_ROUTES = {"/health", "/ready", "/signin", "/signin/mfa", "/enrol", "/schema", "/schema/openapi.json",
                 "/schema/{path:str}", "/api/national/packages"}


@pytest.fixture
def fresh_client(app, db):
    """A client of the app with the throttle's counts forgotten, so sign-in rate limits counted by other tests do not
    interfere (an app of its own cost ~0.7 s a test)."""
    SharedStore(db).delete_all()
    return TestClient(app=app, raise_server_exceptions=False)


def csrf_token(page_html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', page_html)
    assert match, "the form carries no CSRF token"
    return match.group(1)


def sign_in_over_http(client: TestClient, email: str, password: str, code: str | None):
    page = client.get("/signin")
    first = client.post("/signin", data={"email": email, "password": password, "_csrf_token": csrf_token(page.text)},
                        follow_redirects=False)
    if code is None or first.status_code != 302:
        return first
    mfa_page = client.get("/signin/mfa")
    return client.post("/signin/mfa", data={"code": code, "_csrf_token": csrf_token(mfa_page.text)},
                       follow_redirects=False)


def test_full_sign_in_with_mfa_then_the_same_code_is_refused(fresh_client, db, person_factory, tenant_a):
    person = person_factory("clinician", tenant_a.slug)
    code = totp.totp_at(person.totp_secret, time.time())
    done = sign_in_over_http(fresh_client, person.email, person.password, code)
    assert done.status_code == 302 and done.headers["location"] == "/"
    # The password came hashed at the tests' cost (tests/conftest.py): the sign-in rehashed it at the appliance's.
    with db.control() as conn:
        stored = conn.execute(sa.select(identity.account.c.password_hash)
                              .where(identity.account.c.id == person.account_id)).scalar()
    assert not passwords.needs_rehash(stored, passwords.DEFAULT_POLICY)
    cookie = done.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    me = fresh_client.get("/api/me").json()
    assert me["tenant"] == tenant_a.slug and me["role"] == "clinician"

    replay = TestClient(app=fresh_client.app, raise_server_exceptions=False)
    refused = sign_in_over_http(replay, person.email, person.password, code)
    assert refused.status_code == 401
    assert replay.get("/api/me").status_code == 401



def _hidden_next(page_html: str) -> str | None:
    match = re.search(r'name="next" value="([^"]*)"', page_html)
    return html.unescape(match.group(1)) if match else None


def test_sign_in_brings_a_person_back_to_the_page_they_asked_for(fresh_client, person_factory, tenant_a):
    person = person_factory("clinician", tenant_a.slug)
    wanted = f"/t/{tenant_a.slug}/patients?q=Achieng&born=1984"
    sent = fresh_client.get(wanted, headers={"accept": "text/html"}, follow_redirects=False)
    assert sent.status_code == 302 and sent.headers["location"].startswith("/signin?next=")
    page = fresh_client.get(sent.headers["location"])
    assert _hidden_next(page.text) == wanted
    first = fresh_client.post("/signin", data={"email": person.email, "password": person.password,
                                               "_csrf_token": csrf_token(page.text), "next": wanted},
                              follow_redirects=False)
    assert first.status_code == 302 and first.headers["location"].startswith("/signin/mfa?next=")
    mfa_page = fresh_client.get(first.headers["location"])
    assert _hidden_next(mfa_page.text) == wanted
    code = totp.totp_at(person.totp_secret, time.time())
    done = fresh_client.post("/signin/mfa", data={"code": code, "_csrf_token": csrf_token(mfa_page.text),
                                                  "next": wanted}, follow_redirects=False)
    assert done.status_code == 302 and done.headers["location"] == wanted


@pytest.mark.parametrize("elsewhere", ["//evil.example/t", "https://evil.example/", "/\\evil.example",
                                       "javascript:alert(1)", "/signin", "/t/x\r\nSet-Cookie: a=b", ""])
def test_sign_in_never_sends_a_person_off_the_appliance(fresh_client, person_factory, tenant_a, elsewhere):
    person = person_factory("clinician", tenant_a.slug)
    page = fresh_client.get("/signin", params={"next": elsewhere})
    assert _hidden_next(page.text) is None
    first = fresh_client.post("/signin", data={"email": person.email, "password": person.password,
                                               "_csrf_token": csrf_token(page.text), "next": elsewhere},
                              follow_redirects=False)
    assert first.headers["location"] == "/signin/mfa"
    mfa_page = fresh_client.get("/signin/mfa")
    code = totp.totp_at(person.totp_secret, time.time())
    done = fresh_client.post("/signin/mfa", data={"code": code, "_csrf_token": csrf_token(mfa_page.text),
                                                  "next": elsewhere}, follow_redirects=False)
    assert done.headers["location"] == "/"


def test_password_alone_does_not_reach_data_when_mfa_is_required(fresh_client, person_factory, tenant_a):
    person = person_factory("nurse", tenant_a.slug)
    first = sign_in_over_http(fresh_client, person.email, person.password, None)
    assert first.headers["location"] == "/signin/mfa"
    assert fresh_client.get(f"/api/t/{tenant_a.slug}/wards").status_code == 401


def test_nth_failed_sign_in_locks_the_account(fresh_client, person_factory, tenant_a):
    person = person_factory("registrar", tenant_a.slug)
    for _ in range(identity.DEFAULT_SETTINGS.max_failed_signins):
        assert sign_in_over_http(fresh_client, person.email, "wrong-password-xx", None).status_code == 401
    locked = sign_in_over_http(fresh_client, person.email, person.password, None)
    assert locked.status_code == 401
    assert html.escape(sentence(identity.SIGNIN_REFUSED)) in locked.text


def test_the_sign_in_page_says_where_to_turn_with_a_password_forgotten(fresh_client):
    """A patient who forgot their password met a form and nothing else: no one to ask, no way on."""
    lost = fresh_client.get("/signin").text.split('id="lost-access">')[1].split("</p>")[0]
    assert "new link to set up your account" in lost and "front desk" in lost and "IT team" in lost


def test_sign_in_is_rate_limited(db, settings, person_factory, tenant_a):
    client = TestClient(app=create_app(db, settings), raise_server_exceptions=False)
    statuses = [client.post("/signin", data={"email": "x@test.invalid", "password": "y"}).status_code
                for _ in range(settings.signin_attempts_per_minute + 1)]
    assert statuses[-1] == 429
    # A person at a browser is told what to do, not 'Something went wrong: Too Many Requests.'
    page = client.post("/signin", data={"email": "x@test.invalid", "password": "y"}, headers={"accept": "text/html"})
    assert page.status_code == 429 and "<h1>Wait a minute</h1>" in page.text
    assert re.search(r"wait (\d+ seconds?|a minute), then sign in again\.", page.text)
    assert 'href="/signin"' in page.text
    assert "Too Many Requests" not in page.text


def test_form_post_without_or_with_a_stale_csrf_token_is_refused(fresh_client, person_factory, tenant_a):
    person = person_factory("clinician", tenant_a.slug)
    missing = fresh_client.post("/signin", data={"email": person.email, "password": person.password})
    assert missing.status_code == 403
    stale = csrf_token(fresh_client.get("/signin").text)
    other = TestClient(app=fresh_client.app, raise_server_exceptions=False)
    other.get("/signin")  # a different CSRF cookie
    refused = other.post("/signin", data={"email": person.email, "password": person.password, "_csrf_token": stale})
    assert refused.status_code == 403


def test_another_tenants_clinician_is_refused_and_a_guessed_tenant_is_not_found(signed_in, tenant_a, tenant_b):
    intruder = signed_in("clinician", tenant_b.slug)
    assert intruder.get(f"/api/t/{tenant_a.slug}/wards").status_code == 403
    assert intruder.get("/api/t/guessed_hospital/wards").status_code == 404
    assert intruder.get(f"/api/t/{tenant_b.slug}/wards").status_code == 200


def test_a_patient_at_a_staff_page_reads_where_their_record_is_and_staff_keep_the_permission(
        app, db, policy, signed_in, tenant_a):
    """A patient who followed a staff link read 'This needs a facility role' or 'Your role may not do this
    (appliance.status.read)', and was sent back to a home page: they now read, in words and with the facility's
    name (never its code), that the page is the staff's and where their own record is, and go back to it. Staff
    and hospital IT keep the permission's name, which tells them what to grant."""
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name="Auma", given_names="Rose",
                                                   national_id=f"STF-{time.time_ns()}").subject_id
        rose = identity.create_account(conn, policy, kind="patient", email=f"rose-{time.time_ns()}@test.invalid",
                                       display_name="Rose Auma", role="patient", subject_id=subject)
        session = identity.start_session(conn, rose.account_id, mfa_passed=True)
    patient = TestClient(app=app, raise_server_exceptions=False)
    patient.cookies.set("healthos_session", session)
    page = {"accept": "text/html"}

    staff_page = patient.get(f"/t/{tenant_a.slug}/patients", headers=page)
    assert staff_page.status_code == 403
    assert ("This page is for the staff of Facility A, not part of your record: what Facility A holds of you is "
            "under Your record.") in staff_page.text
    assert tenant_a.slug not in staff_page.text and "facility role" not in staff_page.text
    assert '<a href="/me">Back to your record</a>' in staff_page.text
    api = patient.get(f"/api/t/{tenant_a.slug}/wards")
    assert api.status_code == 403 and api.json()["detail"].startswith("this page is for the staff of Facility A")

    console = patient.get("/appliance", headers=page)
    assert console.status_code == 403 and "appliance.status.read" not in console.text
    assert "This page is for the staff who run this system, not part of your record" in console.text

    # A facility the appliance does not have, in a mistyped or old link: of a facility and their record, not "no
    # tenant named 'hilview_hc' on this appliance", which hospital IT reads.
    nowhere = patient.get("/t/hilview_hc/patients", headers=page)
    assert nowhere.status_code == 404
    assert ("No facility on this system is at this address (the link may be mistyped or out of date): what each "
            "facility holds of you is under Your record.") in nowhere.text
    assert "tenant" not in nowhere.text and "hilview_hc" not in nowhere.text
    assert '<a href="/me">Back to your record</a>' in nowhere.text
    nowhere_api = patient.get("/api/t/hilview_hc/wards")
    assert nowhere_api.status_code == 404 and nowhere_api.json()["detail"].startswith("no facility on this system")
    assert "tenant" not in nowhere_api.text
    staff = signed_in("clinician", tenant_a.slug).get("/t/hilview_hc/patients", headers=page)
    assert "No tenant named &#39;hilview_hc&#39;" in staff.text  # hospital IT's words for staff, naming the code

    clinician = signed_in("clinician", tenant_a.slug)
    assert "Your role may not do this (appliance.status.read)." in clinician.get("/appliance", headers=page).text
    assert "This needs a facility role." in signed_in("operator").get(f"/t/{tenant_a.slug}/patients", headers=page).text


@pytest.mark.parametrize("how", ["signed_out", "signed_out_everywhere", "revoked", "expired"])
def test_ended_sessions_get_401(signed_in, db, tenant_a, how):
    client = signed_in("clinician", tenant_a.slug)
    assert client.get("/api/me").status_code == 200
    if how in {"signed_out", "signed_out_everywhere"}:
        page = client.get("/")
        path = "/signout" if how == "signed_out" else "/signout/everywhere"
        assert client.post(path, data={"_csrf_token": csrf_token(page.text)}, follow_redirects=False).status_code == 302
    else:
        import sqlalchemy as sa

        with db.control() as conn:
            values = {"revoked_at": sa.func.now()} if how == "revoked" else {"expires_at": sa.func.now()}
            conn.execute(sa.update(identity.session).where(
                identity.session.c.account_id == client.person.account_id).values(**values))
    assert client.get("/api/me").status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"] == "/signin"


def test_cookie_sessions_cannot_write_under_the_api(signed_in, tenant_a):
    client = signed_in("facility_admin", tenant_a.slug)
    assert client.post("/api/me").status_code in {401, 405}


def test_api_tokens_are_scoped_to_their_tenant_and_permissions(token_client, db, tenant_a, tenant_b):
    reader = token_client(tenant_a.slug, permissions=["operations.ward.read"])
    assert reader.get(f"/api/t/{tenant_a.slug}/wards").status_code == 200
    assert reader.get(f"/api/t/{tenant_b.slug}/wards").status_code == 403
    no_rights = token_client(tenant_a.slug, permissions=["financial.invoice.read"])
    assert no_rights.get(f"/api/t/{tenant_a.slug}/wards").status_code == 403
    with db.control() as conn:
        row = conn.execute(identity.api_token.select().where(
            identity.api_token.c.token_hash == identity.token_digest(reader.token))).first()
        identity.revoke_api_token(conn, row.id)
    assert reader.get(f"/api/t/{tenant_a.slug}/wards").status_code == 401
    forged = TestClient(app=reader.app, raise_server_exceptions=False)
    forged.headers["authorization"] = "Bearer hos_guess"
    assert forged.get(f"/api/t/{tenant_a.slug}/wards").status_code == 401


def test_a_token_never_opens_the_appliances_own_pages(token_client, db, policy, tenant_a):
    # Tokens written straight into the store with appliance-level permissions, as an older release or a
    # mistaken script might have: the guard still keeps them to their facility's API.
    for permission, path in (("appliance.status.read", "/appliance"), ("audit.log.read", "/regulator"),
                             ("national.indicator.read", "/national")):
        refused = token_client(tenant_a.slug, permissions=[permission]).get(path)
        assert refused.status_code == 403 and "acts only inside its own facility" in refused.text, path
    # And none is issued any more: no facility role holds those permissions.
    with db.control() as conn, pytest.raises(identity.IdentityError,
                                             match=r"cannot carry audit\.log\.read, national\.indicator\.read"):
        identity.issue_machine_token(conn, policy, tenant=tenant_a.slug, name="wide feed",
                                     permissions=["operations.ward.read", "audit.log.read", "national.indicator.read"])


def test_security_headers_and_secure_cookies_under_tls(db, settings, person_factory, tenant_a):
    client = TestClient(app=create_app(db, settings), base_url="https://appliance.test", raise_server_exceptions=False)
    page = client.get("/signin")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"
    assert "max-age" in page.headers["strict-transport-security"]
    person = person_factory("clinician", tenant_a.slug)
    first = client.post("/signin", data={"email": person.email, "password": person.password,
                                         "_csrf_token": csrf_token(page.text)}, follow_redirects=False)
    assert "secure" in first.headers["set-cookie"].lower()


# -- every route declares its permission -------------------------------------------------------------


def routes_without_permission(app) -> list[str]:
    missing = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            opt = handler.opt
            if set(handler.http_methods) == {"OPTIONS"}:
                continue  # Litestar's automatic preflight answer, which serves no data
            if opt.get("permission"):
                continue
            if opt.get("public") and (route.path in PUBLIC_ROUTES or route.path.startswith("/static")):
                continue
            missing.append(route.path)
    return missing


def test_every_route_declares_a_permission(app):
    assert routes_without_permission(app) == []


def test_the_route_walk_catches_a_route_that_forgot_its_permission(db, settings, signed_in, tenant_a):
    @get("/forgetful", operation_id="TestForgetful", sync_to_thread=False)
    def forgetful() -> dict:
        return {"leak": True}

    careless = create_app(db, settings, extra_route_handlers=[forgetful])
    assert routes_without_permission(careless) == ["/forgetful"]
    # and the guard fails closed: even a signed-in operator cannot reach it
    client = TestClient(app=careless, raise_server_exceptions=False)
    client.cookies.update(signed_in("clinician", tenant_a.slug).cookies)
    assert client.get("/forgetful").status_code == 403


def test_enrolment_over_http_sets_password_and_authenticator_once(fresh_client, db, policy, tenant_a):
    with db.control() as conn:
        new = identity.create_account(conn, policy, kind="staff", email=f"enrol-{time.time_ns()}@test.invalid",
                                      display_name="New Nurse", role="nurse", tenant=tenant_a.slug)
    page = fresh_client.get(f"/enrol?code={new.enrolment_code}")
    assert page.status_code == 200
    assert 'src="data:image/svg+xml;base64,' in page.text  # the QR code, rendered here, not fetched
    # an SVG document a browser draws as an image: the inline form (no namespace) was a broken image on every
    # enrolment, so no one could scan it
    drawn = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', page.text).group(1)
    drawn = ElementTree.fromstring(base64.b64decode(drawn))  # noqa: S314 -- our own output, parsed to check its shape
    assert drawn.tag == "{http://www.w3.org/2000/svg}svg"
    assert "leave it empty" not in page.text  # staff must add one
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.text).group(1)
    weak = fresh_client.post("/enrol", data={"code": new.enrolment_code, "password": "short",
                                             "totp_code": totp.totp_at(secret, time.time()),
                                             "_csrf_token": csrf_token(page.text)})
    assert weak.status_code == 422 and "12" in weak.text
    done = fresh_client.post("/enrol", data={"code": new.enrolment_code, "password": "a long enough passphrase",
                                             "totp_code": totp.totp_at(secret, time.time()),
                                             "_csrf_token": csrf_token(page.text)}, follow_redirects=False)
    assert done.status_code in {302, 303} and done.headers["location"].startswith("/signin")
    # told where they are: the sign-in page said nothing, and looked as if the password had not been taken
    assert "Your account is ready" in fresh_client.get(done.headers["location"]).text
    assert fresh_client.get(f"/enrol?code={new.enrolment_code}").status_code == 404


def test_a_patient_is_told_the_authenticator_is_optional_and_enrols_without_one(fresh_client, db, policy):
    """A patient may skip the authenticator: the page said so above the QR code only, and the box below, 'Code from
    the app', read as one to fill. The box says to leave it empty, and it may be."""
    with db.control() as conn:
        subject = identity.match_or_create_subject(conn, family_name="Auma", given_names="Rose",
                                                   national_id=f"ENR-{time.time_ns()}").subject_id
        email = f"rose-{time.time_ns()}@test.invalid"
        new = identity.create_account(conn, policy, kind="patient", email=email, display_name="Rose Auma",
                                      role="patient", subject_id=subject)
    page = fresh_client.get(f"/enrol?code={new.enrolment_code}")
    label = re.search(r'<label for="totp_code">(.*?)</label>', page.text).group(1)
    assert label == "Code from the app (leave it empty if you did not add one)"
    assert 'id="authenticator-optional"' in page.text and "six-digit code" in page.text
    assert re.search(r'<input id="totp_code"[^>]*required', page.text) is None
    done = fresh_client.post("/enrol", data={"code": new.enrolment_code, "password": "a long enough passphrase",
                                             "totp_code": "", "_csrf_token": csrf_token(page.text)},
                             follow_redirects=False)
    assert done.status_code in {302, 303}
    assert sign_in_over_http(fresh_client, email, "a long enough passphrase", None).headers["location"] == "/"


def _alert(page_html: str) -> str:
    match = re.search(r'<p class="alert" role="alert">(.*?)</p>', page_html, re.S)
    assert match, "the page shows no refusal"
    return html.unescape(match.group(1))


def test_every_refusal_on_the_sign_in_pages_reads_as_a_sentence(fresh_client, db, policy, person_factory, tenant_a):
    """Each begins with a capital and ends with a full stop: the sign-in refusal read 'the e-mail, password
    or code is not right, ...', as did the enrolment link's and the authenticator code's."""
    person = person_factory("clinician", tenant_a.slug)
    wrong_password = sign_in_over_http(fresh_client, person.email, "not-the-password", None)
    wrong_code = sign_in_over_http(fresh_client, person.email, person.password, "000000")
    expired = fresh_client.get("/enrol", params={"code": "no-such-enrolment-code"})
    with db.control() as conn:
        new = identity.create_account(conn, policy, kind="staff", email=f"enrol-{time.time_ns()}@test.invalid",
                                      display_name="New Clinician", role="clinician", tenant=tenant_a.slug)
    enrol_page = fresh_client.get("/enrol", params={"code": new.enrolment_code})
    bad_code = fresh_client.post("/enrol", data={"code": new.enrolment_code, "password": "a long enough passphrase",
                                                 "totp_code": "000000", "_csrf_token": csrf_token(enrol_page.text)})
    refusals = {"password": (wrong_password, 401), "authenticator": (wrong_code, 401), "link": (expired, 404),
                "enrolment code": (bad_code, 422)}
    for name, (answer, status) in refusals.items():
        assert answer.status_code == status, name
        said = _alert(answer.text)
        assert said[0].isupper() and said.endswith("."), (name, said)
    assert _alert(wrong_password.text).startswith("The e-mail, password or code is not right")

    # The home page's facility switch, refused, is a page in the same words, not JSON.
    signed = sign_in_over_http(fresh_client, person.email, person.password, totp.totp_at(person.totp_secret,
                                                                                          time.time()))
    assert signed.status_code == 302
    home = fresh_client.get("/")
    switch = fresh_client.post("/session/facility", data={"tenant": "nowhere", "role": "clinician",
                                                          "_csrf_token": csrf_token(home.text)},
                               headers={"accept": "text/html"})
    assert switch.status_code == 403 and "You hold no such role in that facility." in html.unescape(switch.text)
