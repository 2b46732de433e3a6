"""The master patient index's review page, `/appliance/duplicates`, and its JSON list: the operator sees a
pair with what it takes to judge it, merges it, undoes the merge and records another pair as two people;
everyone else (a facility's clerk, another facility, the ministry, the regulator, a facility's API token)
is refused, and a guessed id changes nothing."""

import datetime as dt
import re
import secrets
import string
import uuid

import sqlalchemy as sa

from appliance.substrate import audit, identity
from appliance.substrate.audit import control_audit_event


def csrf(html: str) -> str:
    return re.search(r'name="_csrf_token" value="([^"]+)"', html).group(1)


def id_variant_pair(db, tenant_a, tenant_b) -> tuple[uuid.UUID, uuid.UUID]:
    """One person registered at two facilities under one national ID typed two ways: the strongest signal,
    so the pair is on the review's first page however many lookalikes the session's other modules made."""
    family = "Mpi" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
    digits = "".join(secrets.choice(string.digits) for _ in range(8))
    made = []
    with db.control() as conn:
        for nid, facility in ((f"KE {digits[:4]}-{digits[4:]}", tenant_a), (f"ke{digits}", tenant_b)):
            subject_id = identity.match_or_create_subject(conn, family_name=family, given_names="Achieng Rose",
                                                          birth_date=dt.date(1988, 2, 14), sex="female",
                                                          national_id=nid).subject_id
            identity.note_facility(conn, subject_id, facility.slug)
            made.append(subject_id)
    first, second = sorted(made)
    return first, second


def events(db, event_type: str) -> int:
    with db.control() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(control_audit_event)
                            .where(control_audit_event.c.event_type == event_type)).scalar()


def pair_section(html: str, first, second) -> str | None:
    marker = f'data-pair="{first}-{second}"'
    return html.split(marker)[1].split("</section>")[0] if marker in html else None


def test_the_operator_merges_a_pair_undoes_it_and_records_another_as_two_people(db, signed_in, tenant_a, tenant_b):
    first, second = id_variant_pair(db, tenant_a, tenant_b)
    other_first, other_second = id_variant_pair(db, tenant_a, tenant_b)
    operator = signed_in("operator", kind="operator")
    assert 'href="/appliance/duplicates"' in operator.get("/appliance").text
    read_before, merges_before = events(db, "identity.subject.duplicates.read"), events(db, "identity.subject.merge")

    page = operator.get("/appliance/duplicates")
    assert page.status_code == 200
    pair = pair_section(page.text, first, second)
    assert pair is not None and "the same national ID, written differently" in pair
    with db.control() as conn:
        typed = conn.execute(sa.select(identity.subject.c.national_id).where(identity.subject.c.id == first)).scalar()
    assert typed in pair and "Achieng Rose" in pair and "1988-02-14" in pair and "female" in pair
    assert tenant_a.name in pair and tenant_b.name in pair
    assert events(db, "identity.subject.duplicates.read") == read_before + 1

    token = csrf(page.text)
    refused = operator.post("/appliance/duplicates/merge", data={"first": str(first), "second": str(second),
                                                                 "survivor": str(second), "reason": "same card"})
    assert refused.status_code == 403  # no CSRF token
    no_reason = operator.post("/appliance/duplicates/merge", data={
        "first": str(first), "second": str(second), "survivor": str(second), "reason": " ", "_csrf_token": token})
    assert no_reason.status_code == 422 and "A merge needs a stated reason." in no_reason.text
    merged = operator.post("/appliance/duplicates/merge", follow_redirects=False, data={
        "first": str(first), "second": str(second), "survivor": str(second), "reason": "one card, ID typed twice",
        "_csrf_token": token})
    assert merged.status_code == 303
    assert events(db, "identity.subject.merge") == merges_before + 1
    with db.control() as conn:
        assert identity.resolve_subject(conn, first) == second
        merge_id = conn.execute(sa.select(identity.subject_merge.c.id).where(
            identity.subject_merge.c.merged_id == first, identity.subject_merge.c.undone_at.is_(None))).scalar()
    page = operator.get(merged.headers["location"])
    assert 'id="notice"' in page.text and pair_section(page.text, first, second) is None
    assert f'data-merge="{merge_id}"' in page.text.split('id="merges"')[1]

    undone = operator.post(f"/appliance/duplicates/merges/{merge_id}/undo", data={"_csrf_token": token},
                           follow_redirects=False)
    assert undone.status_code == 303
    again = operator.post(f"/appliance/duplicates/merges/{merge_id}/undo", data={"_csrf_token": token})
    assert again.status_code == 404 and "no such merge to undo" in again.text.lower()
    assert pair_section(operator.get("/appliance/duplicates").text, first, second) is not None

    dismiss = {"first": str(other_first), "second": str(other_second), "_csrf_token": token}
    blank = operator.post("/appliance/duplicates/dismiss", data={**dismiss, "reason": ""})
    assert blank.status_code == 422 and "Say why they are two people" in blank.text
    with db.control() as conn:
        kept = sa.select(sa.func.count()).select_from(identity.subject_distinct).where(
            identity.subject_distinct.c.first_id == other_first)
        assert conn.execute(kept).scalar() == 0  # the refused write left nothing
    done = operator.post("/appliance/duplicates/dismiss", data={**dismiss, "reason": "sisters, one card each"},
                         follow_redirects=False)
    assert done.status_code == 303
    assert pair_section(operator.get("/appliance/duplicates").text, other_first, other_second) is None
    assert operator.post("/appliance/duplicates/dismiss",
                         data={**dismiss, "reason": "again"}).status_code == 409  # no longer listed

    # Guessed or mistyped ids: refused with a sentence, nothing merged.
    for form, status in [({"first": str(uuid.uuid4()), "second": str(second), "survivor": str(second)}, 404),
                         ({"first": "1 OR 1=1", "second": str(second), "survivor": str(second)}, 404),
                         ({"first": str(first), "second": str(second), "survivor": str(uuid.uuid4())}, 422)]:
        guessed = operator.post("/appliance/duplicates/merge", data={**form, "reason": "x", "_csrf_token": token})
        assert guessed.status_code == status and 'id="refusal"' in guessed.text
    assert operator.post(f"/appliance/duplicates/merges/{uuid.uuid4()}/undo",
                         data={"_csrf_token": token}).status_code == 404
    with db.control() as conn:
        assert identity.resolve_subject(conn, first) == first


def test_the_json_list_says_the_same_with_its_permission_in_the_openapi_document(db, signed_in, tenant_a, tenant_b,
                                                                              client):
    first, second = id_variant_pair(db, tenant_a, tenant_b)
    operator = signed_in("operator", kind="operator")
    since = dt.datetime.now(dt.UTC)
    answer = operator.get("/api/subjects/duplicates", params={"limit": 200})
    assert answer.status_code == 200
    body = answer.json()
    pair = next(p for p in body["pairs"] if (p["first"]["id"], p["second"]["id"]) == (str(first), str(second)))
    assert pair["signals"] == ["national_id", "demographics"]
    assert pair["shares"] == ["the same national ID, written differently", "the same names, birth date and sex"]
    assert pair["first"]["birth_date"] == "1988-02-14"
    assert sorted(pair["first"]["facilities"] + pair["second"]["facilities"]) == [tenant_a.name, tenant_b.name]
    assert set(pair["first"]) == {"id", "family_name", "given_names", "birth_date", "sex", "national_id",
                                  "facilities"}
    seen = audit.read_events(db, None, event_type="identity.subject.duplicates.read", since=since)
    assert str(first) in seen[-1]["event"]["detail"]["subjects"]
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "many"}):
        refused = operator.get("/api/subjects/duplicates", params=bad)
        assert refused.status_code == 422 and refused.json()["detail"].startswith("invalid ")
    operation = client.get("/schema/openapi.json").json()["paths"]["/api/subjects/duplicates"]["get"]
    assert operation["operationId"] == "IdentityListDuplicateSubjects"
    assert {"bearer": ["identity.subject.read"]} in operation["security"]


def test_nobody_but_the_holder_of_identity_subject_sees_or_decides(db, signed_in, token_client, tenant_a, tenant_b):
    first, second = id_variant_pair(db, tenant_a, tenant_b)
    people = [signed_in("registrar", tenant_a.slug), signed_in("facility_admin", tenant_b.slug),
              signed_in("ministry_analyst", kind="ministry_analyst"), signed_in("regulator", kind="regulator")]
    for person in people:
        token = csrf(person.get("/").text)
        for answer in (person.get("/appliance/duplicates"), person.get("/api/subjects/duplicates"),
                       person.post("/appliance/duplicates/merge", data={
                           "first": str(first), "second": str(second), "survivor": str(second), "reason": "x",
                           "_csrf_token": token}),
                       person.post("/appliance/duplicates/dismiss", data={
                           "first": str(first), "second": str(second), "reason": "x", "_csrf_token": token})):
            assert answer.status_code == 403 and "Achieng" not in answer.text
    for facility in (tenant_a, tenant_b):  # a facility's API token, even one holding every registrar permission
        machine = token_client(facility.slug, role="registrar")
        assert machine.get("/api/subjects/duplicates").status_code == 403
    with db.control() as conn:
        assert identity.duplicate_signals(conn, first, second) == ["national_id", "demographics"]  # nothing was decided
