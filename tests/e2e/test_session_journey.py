"""A clinician's day in a real browser, from where they land to a note that outlives the idle timeout:
today's patients → a chart → a long note, kept alive while typed, warned about before the timeout, posted
after it anyway, and put back after signing in again; then what a shared ward computer must not keep (the
draft, once a colleague signs in in the same tab or someone signs out).

The server's idle timeout is the real fifteen minutes: a session is made idle by dating its last use back
(what fifteen idle minutes leave behind), and the page's own clock (its warning) is moved on by Playwright."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa

from appliance.substrate import identity, totp
from tests.e2e.conftest import Journey, Watch
from tests.e2e.test_journeys import new_page

pytestmark = pytest.mark.slow

DRAFTS = "Object.keys(sessionStorage).filter((key) => key.startsWith('healthos.draft:'))"


def session_token(context) -> str:
    return next(c["value"] for c in context.cookies() if c["name"] == "healthos_session")


def idle_for(db, token: str, minutes: float) -> None:
    with db.control() as conn:
        conn.execute(sa.update(identity.session).where(identity.session.c.token_hash == identity.token_digest(token))
                     .values(last_seen_at=sa.func.now() - sa.text(f"interval '{float(minutes)} minutes'")))


def minutes_since_seen(db, token: str) -> float:
    with db.control() as conn:
        return conn.execute(sa.select(sa.extract("epoch", sa.func.now() - identity.session.c.last_seen_at) / 60)
                            .where(identity.session.c.token_hash == identity.token_digest(token))).scalar_one()


def sign_in_here(page, base: str, person) -> None:
    """The sign-in form of the page the browser is on, then the authenticator code."""
    page.get_by_label("E-mail").fill(person.email)
    page.get_by_label("Password").fill(person.password)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(rf"{re.escape(base)}/signin/mfa"))
    page.get_by_label("Code").fill(totp.totp_at(person.totp_secret, time.time()))
    page.get_by_role("button", name="Sign in").click()


def test_a_note_outlives_the_idle_timeout_and_no_one_else_finds_it(browser, live_server, clinic, person_factory, db):
    journey, watch = Journey("session-timeout-journey"), Watch()
    doctor, colleague = person_factory("clinician", clinic.slug), person_factory("clinician", clinic.slug)
    patient = clinic.charts[0]
    context, page = new_page(browser, watch)
    page.clock.install()  # the page's timers (the warning) run on a clock the test moves on
    # Already signed in (a session as the sign-in pages leave it): the authenticator code of this minute is
    # kept for signing in again below, where a code used twice would be refused.
    with db.control() as conn:
        token = identity.start_session(conn, doctor.account_id, mfa_passed=True)
    context.add_cookies([{"name": "healthos_session", "value": token, "url": live_server}])

    # Where a clinician lands: today's patients, each linked to the chart.
    page.goto(f"{live_server}/t/{clinic.slug}")
    page.wait_for_url(f"{live_server}/t/{clinic.slug}/today")
    listed = page.locator("#todays-patients")
    assert "OTIENO" in listed.inner_text() and "Being seen" in listed.inner_text()
    journey.shot(page, "todays-patients")
    listed.get_by_role("link", name=re.compile("OTIENO")).click()
    page.wait_for_url(re.compile(rf"/patients/{patient.id}/chart$"))

    # A long note, typed slowly: near the timeout the page warns, and 'Stay signed in' keeps the session.
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient.id}/notes/new")
    note = page.locator("textarea#text")
    note.press_sequentially("Reviewed at the bedside with the family. ")
    idle_for(db, token, 12.5)
    page.clock.fast_forward("12:30")
    warning = page.locator("#session-warning")
    warning.get_by_text("signed out in two minutes").wait_for()
    journey.shot(page, "warned-before-the-timeout")
    with page.expect_response(f"{live_server}/session/alive") as kept_alive:
        warning.get_by_role("button", name="Stay signed in").click()
    assert kept_alive.value.status == 204 and minutes_since_seen(db, token) < 1
    assert warning.is_hidden()
    # Typing is activity too: past a minute since the last contact, a keystroke keeps the session alive.
    idle_for(db, token, 14)
    page.clock.fast_forward("01:05")
    with page.expect_response(f"{live_server}/session/alive") as typed_alive:
        note.press_sequentially("Dizzy on standing; ")
    assert typed_alive.value.status == 204 and minutes_since_seen(db, token) < 1
    note.press_sequentially("orthostatic blood pressure to be measured.")
    typed = note.input_value()

    # Then the clinician is called away; past the timeout the note is saved anyway: refused, but kept.
    idle_for(db, token, 16)
    page.get_by_role("button", name="Save note").click()
    page.get_by_role("heading", name="Sign in first").wait_for()
    assert page.locator("[data-draft-kept]").is_visible()
    journey.shot(page, "posted-after-the-timeout")
    page.get_by_role("link", name="Sign in again").click()
    page.wait_for_url(f"{live_server}/signin")
    assert page.locator("[data-draft-kept]").is_visible()
    sign_in_here(page, live_server, doctor)
    page.wait_for_url(f"{live_server}/t/{clinic.slug}/patients/{patient.id}/notes/new")
    assert note.input_value() == typed
    assert "has been put back" in page.locator("p.notice[role=status]").inner_text()
    journey.shot(page, "note-put-back")
    page.get_by_role("button", name="Save note").click()
    page.wait_for_url(re.compile(r"/notes\?done=note$"))
    assert "orthostatic blood pressure" in page.locator("main").inner_text()
    assert page.evaluate(DRAFTS) == []  # saved: nothing kept

    # A shared ward computer: the next note is interrupted too, and a colleague signs in in the same tab.
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient.id}/notes/new")
    note.press_sequentially("Private words of the first clinician")
    assert len(page.evaluate(DRAFTS)) == 1
    idle_for(db, session_token(context), 16)
    page.get_by_role("button", name="Save note").click()
    page.get_by_role("link", name="Sign in again").click()
    sign_in_here(page, live_server, colleague)
    page.wait_for_url(re.compile(rf"{re.escape(live_server)}/t/{clinic.slug}/"))
    assert page.evaluate(DRAFTS) == []
    assert "Private words" not in page.content()
    journey.shot(page, "colleague-finds-nothing")

    # And signing out leaves no draft behind.
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient.id}/notes/new")
    note.press_sequentially("Half a sentence")
    assert len(page.evaluate(DRAFTS)) == 1
    page.on("dialog", lambda dialog: dialog.accept())  # 'leave the page?' for the unsaved note: yes
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_server}/signin")
    assert page.evaluate(DRAFTS) == []
    context.close()
    watch.assert_clean(provoked={401})
