"""The facility admin's "Interfaces" page over HTTP: today's AA/AE/AR counts and the latest messages with
what was wrong, no patient data; refused to another facility's admin, to other roles and to tokens."""

from __future__ import annotations

import re
import secrets

from tests.interop.hl7v2.conftest import adt, control_id


def _count(page: str, code: str) -> int:
    return int(re.search(rf'id="count-{code}">(\d+)<', page)[1])


def test_the_admin_sees_todays_counts_and_the_latest_messages(signed_in, facility, feed):
    admin = signed_in("facility_admin", facility.slug)
    before = admin.get(f"/t/{facility.slug}/admin/interfaces")
    assert before.status_code == 200, before.text
    accepted, refused = control_id(), control_id()
    identifier = "W" + secrets.token_hex(4)
    feed(adt(facility.slug, "A04", identifier, control=accepted, family="Kamau"),
         adt(facility.slug, "A04", "W" + secrets.token_hex(4), control=refused, birth="19901340", family="Wambui"),
         "PID|1||not a message\r")
    page = admin.get(f"/t/{facility.slug}/admin/interfaces")
    assert page.status_code == 200
    text = page.text
    assert _count(text, "AA") == _count(before.text, "AA") + 1 and _count(text, "AE") == _count(before.text, "AE") + 1
    assert _count(text, "AR") == _count(before.text, "AR") + 1 and "(unreadable message)" in text
    row = re.search(rf'<tr data-control-id="{refused}">(.*?)</tr>', text, re.S)[1]
    assert "ADT^A04" in row and "REGSYS" in row and ">AE<" in row and "PID-7 birth date is not a date" in row
    assert f'data-control-id="{accepted}"' in text
    # The log keeps no demographics, so the page shows none.
    for private in ("Kamau", "Wambui", "19901340", identifier):
        assert private not in text
    assert "<script>" not in text and 'href="/t/' in text  # no inline script; the navigation is links
    assert "Interfaces" in admin.get(f"/t/{facility.slug}/admin/tokens").text  # in the admin's navigation


def test_other_facilities_other_roles_and_tokens_are_refused(signed_in, token_client, facility, tenant_b):
    theirs = signed_in("facility_admin", tenant_b.slug)
    assert theirs.get(f"/t/{facility.slug}/admin/interfaces").status_code == 403
    assert theirs.get("/t/no_such_facility/admin/interfaces").status_code == 404
    clinician = signed_in("clinician", facility.slug)
    assert clinician.get(f"/t/{facility.slug}/admin/interfaces").status_code == 403
    machine = token_client(facility.slug, permissions=["clinical.patient.search"])
    assert machine.get(f"/t/{facility.slug}/admin/interfaces").status_code in {401, 403}
