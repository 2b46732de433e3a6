"""The master patient index's review in a real browser: the operator goes from the appliance console to
the likely duplicate people, merges a pair (choosing who is kept, with a reason), undoes the merge, and
records the pair as two people — forms with CSRF, no inline script, nothing refused on the way."""

from __future__ import annotations

import datetime as dt
import secrets
import string

import pytest

from appliance.substrate import identity
from tests.e2e.conftest import Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in

pytestmark = pytest.mark.slow


def test_operator_merges_undoes_and_dismisses_a_likely_duplicate(browser, live_server, clinic, other_clinic, db,
                                                                 person_factory):
    family = "Mpi" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
    digits = "".join(secrets.choice(string.digits) for _ in range(8))
    made = []
    with db.control() as conn:  # one woman, registered at two facilities with her ID typed two ways
        for nid, facility in ((f"UG-{digits}", clinic), (f"ug {digits}", other_clinic)):
            subject_id = identity.match_or_create_subject(conn, family_name=family, given_names="Nakato Sarah",
                                                          birth_date=dt.date(1992, 11, 3), sex="female",
                                                          national_id=nid).subject_id
            identity.note_facility(conn, subject_id, facility.slug)
            made.append(subject_id)
    first, second = sorted(made)
    pair = f'section[data-pair="{first}-{second}"]'

    journey, watch = Journey("duplicates-journey"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, person_factory("operator", kind="operator"))
    page.get_by_role("link", name="Open the appliance console").click()
    page.get_by_role("link", name="Review likely duplicates").click()
    page.wait_for_url(f"{live_server}/appliance/duplicates")
    card = page.locator(pair)
    assert clinic.name in card.inner_text() and other_clinic.name in card.inner_text()
    assert f"UG-{digits}" in card.inner_text() and "1992-11-03" in card.inner_text()
    journey.shot(page, "pairs")

    card.get_by_label("B (Nakato Sarah").check()
    card.get_by_label("Why they are one person").fill("Same card seen at both desks")
    card.get_by_role("button", name="Merge").click()
    page.wait_for_url(f"{live_server}/appliance/duplicates?done=merged&offset=0")
    assert "Merged" in page.locator("#notice").inner_text() and page.locator(pair).count() == 0
    merge_row = page.locator("#merges tr", has_text="Same card seen at both desks")
    journey.shot(page, "merged")
    merge_row.get_by_role("button", name="Undo").click()
    page.wait_for_url(f"{live_server}/appliance/duplicates?done=unmerged")
    with db.control() as conn:
        assert identity.resolve_subject(conn, made[0]) == made[0]

    card = page.locator(pair)
    card.get_by_label("Why they are two people").fill("Sisters: one national ID card each")
    card.get_by_role("button", name="Not the same person").click()
    page.wait_for_url(f"{live_server}/appliance/duplicates?done=dismissed&offset=0")
    assert page.locator(pair).count() == 0
    journey.shot(page, "dismissed")
    context.close()
    watch.assert_clean()
