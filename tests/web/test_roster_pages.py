"""The duty roster's pages (appliance/web/roster.py): the ward's week grid with its CSRF forms and no script, adding and
taking someone off as the nurse in charge does, a refusal beside the form with nothing written, a nurse of another
ward and a registrar refused the forms, a guessed id, My shifts, the staffing view and the command center's figures.
Another facility's session on every page and form is in tests/web/test_portal.py's lists."""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from tests.web.test_auth import csrf_token

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Roster Pages Hospital", wards=[
        {"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 3},
        {"code": "MAT", "name": "Maternity", "kind": "maternity", "beds": 2}])


def entries(db, facility) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM roster_entry")).scalar_one()


def test_the_nurse_in_charge_keeps_her_wards_week(db, facility, signed_in, person_factory):
    base = f"/t/{facility.slug}"
    day = dt.datetime.now(NAIROBI).date() + dt.timedelta(days=1)
    colleague = person_factory("nurse", facility.slug, ward="GEN")
    charge = signed_in("nurse", facility.slug, ward="GEN")
    week = charge.get(f"{base}/roster", params={"ward": "GEN", "week": day.isoformat()})
    assert week.status_code == 200 and 'id="roster-grid"' in week.text and 'id="roster-add"' in week.text
    assert f'href="{base}/roster/mine"' in week.text and 'name="_csrf_token"' in week.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", week.text) and not re.search(r"\son[a-z]+=", week.text)
    body = {"_csrf_token": csrf_token(week.text), "ward_code": "GEN", "week": day.isoformat(),
            "shift_date": day.isoformat(), "shift_code": "N", "account_id": str(colleague.account_id),
            "role_on_shift": "nurse"}
    added = charge.post(f"{base}/roster", data=body, follow_redirects=False)
    assert added.status_code == 303, added.text
    shown = charge.get(added.headers["location"])
    assert "Added to the roster" in shown.text
    cell = re.search(rf'id="cell-{day.isoformat()}-N">(.*?)</td>', shown.text, re.S).group(1)
    assert "Test nurse" in cell and "Take off" in cell
    entry_id = re.search(r'id="entry-([0-9a-f-]{36})"', cell).group(1)

    clash = charge.post(f"{base}/roster", data={**body, "ward_code": "MAT"}, follow_redirects=False)
    assert clash.status_code == 403 and "keep the roster of GEN only" in clash.text  # not her ward to write
    twice = charge.post(f"{base}/roster", data=body, follow_redirects=False)
    assert twice.status_code == 409 and "already on GEN" in twice.text and 'id="roster-add"' in twice.text
    assert entries(db, facility) == 1

    # A nurse of another ward reads the grid, without its forms, and is refused them.
    other_ward = signed_in("nurse", facility.slug, ward="MAT")
    theirs = other_ward.get(f"{base}/roster", params={"ward": "GEN", "week": day.isoformat()})
    assert theirs.status_code == 200 and "Test nurse" in theirs.text and 'id="roster-add"' not in theirs.text
    token = csrf_token(theirs.text)
    refused = other_ward.post(f"{base}/roster/{entry_id}/withdraw",
                              data={"_csrf_token": token, "reason": "Not mine", "ward_code": "GEN"},
                              follow_redirects=False)
    assert refused.status_code == 403
    registrar = signed_in("registrar", facility.slug)
    desk = registrar.get(f"{base}/roster", params={"ward": "GEN", "week": day.isoformat()})
    assert desk.status_code == 200 and 'id="roster-add"' not in desk.text
    assert registrar.post(f"{base}/roster", data={**body, "_csrf_token": csrf_token(desk.text)},
                          follow_redirects=False).status_code == 403
    own_token = csrf_token(charge.get(f"{base}/roster", params={"ward": "GEN"}).text)
    assert charge.post(f"{base}/roster/{uuid.uuid4()}/withdraw", data={"_csrf_token": own_token, "reason": "Guess"},
                       follow_redirects=False).status_code == 404

    # Taking her off: a reason is needed; then she is off the grid, the entry kept.
    week = charge.get(f"{base}/roster", params={"ward": "GEN", "week": day.isoformat()})
    token = csrf_token(week.text)
    blank = charge.post(f"{base}/roster/{entry_id}/withdraw",
                        data={"_csrf_token": token, "reason": "", "ward_code": "GEN", "week": day.isoformat()},
                        follow_redirects=False)
    assert blank.status_code == 422 and "Say why" in blank.text
    off = charge.post(f"{base}/roster/{entry_id}/withdraw",
                      data={"_csrf_token": token, "reason": "Swapped", "ward_code": "GEN", "week": day.isoformat()},
                      follow_redirects=False)
    assert off.status_code == 303
    assert f'id="entry-{entry_id}"' not in charge.get(off.headers["location"]).text
    assert entries(db, facility) == 1

    # The printable grid, My shifts, the staffing view and the command center.
    assert charge.get("/static/roster.css").status_code == 200
    again = {**body, "_csrf_token": token, "account_id": str(charge.person.account_id), "role_on_shift": "in_charge"}
    assert charge.post(f"{base}/roster", data=again, follow_redirects=False).status_code == 303
    mine = charge.get(f"{base}/roster/mine")
    assert mine.status_code == 200 and day.strftime("%a %d %b %Y") in mine.text and "In charge" in mine.text
    staffing = charge.get(f"{base}/staffing", params={"date": day.isoformat()})
    assert staffing.status_code == 200 and 'id="staffing-GEN-N"' in staffing.text
    assert charge.get(f"{base}/staffing", params={"date": "tomorrow"}).status_code == 422
    manager = signed_in("bed_manager", facility.slug)
    center = manager.get(f"{base}/command-center")
    assert center.status_code == 200 and 'id="understaffed-this-week"' in center.text
    assert 'id="patients-per-nurse-now"' in center.text
