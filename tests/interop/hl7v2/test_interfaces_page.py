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


def test_the_not_applied_list_keeps_what_no_resend_has_put_right(signed_in, facility, feed):
    admin = signed_in("facility_admin", facility.slug)
    corrected, waiting, accepted = control_id(), control_id(), control_id()
    identifier = "W" + secrets.token_hex(4)
    feed(adt(facility.slug, "A04", identifier, control=corrected, birth="19901340"),
         adt(facility.slug, "A04", identifier, control=corrected),  # the sender fixed PID-7 and resent it
         adt(facility.slug, "A04", "W" + secrets.token_hex(4), control=waiting, birth="19901340"),
         adt(facility.slug, "A04", "W" + secrets.token_hex(4), control=accepted).replace("|REGSYS|", "|ADMITSYS|", 1))
    every = admin.get(f"/t/{facility.slug}/admin/interfaces").text
    first = re.findall(rf'<tr data-control-id="{corrected}">(.*?)</tr>', every, re.S)
    assert len(first) == 2 and "applied when resent" in first[1] and ">AE<" in first[1]
    waiting_row = re.search(rf'<tr data-control-id="{waiting}">(.*?)</tr>', every, re.S)[1]
    assert "applied when resent" not in waiting_row
    open_ones = admin.get(f"/t/{facility.slug}/admin/interfaces?show=not-applied")
    assert open_ones.status_code == 200
    assert f'data-control-id="{waiting}"' in open_ones.text
    for put_right in (corrected, accepted):
        assert f'data-control-id="{put_right}"' not in open_ones.text
    one_sender = admin.get(f"/t/{facility.slug}/admin/interfaces?sender=ADMITSYS").text
    assert f'data-control-id="{accepted}"' in one_sender and f'data-control-id="{waiting}"' not in one_sender
    assert '<option value="ADMITSYS"' in every
    refused = admin.get(f"/t/{facility.slug}/admin/interfaces?show=errors")
    assert refused.status_code == 422 and "show=not-applied" in refused.text
    assert "This page has no list &#39;errors&#39;" in refused.text


def test_another_facilitys_admin_cannot_list_this_ones_messages_not_applied(signed_in, facility, tenant_b):
    theirs = signed_in("facility_admin", tenant_b.slug)
    assert theirs.get(f"/t/{facility.slug}/admin/interfaces?show=not-applied").status_code == 403
    assert theirs.get(f"/t/{facility.slug}/admin/interfaces?sender=REGSYS").status_code == 403
