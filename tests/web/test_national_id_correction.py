"""A national ID typed wrong at registration, then corrected: the chart follows the corrected ID to its
own person in the master patient index, and the person whose ID it was keeps their record to themselves.

Riverside holds Otieno (national ID A) and Wanjiru (national ID B). At Hillview a clerk registers
Wanjiru under Otieno's A, which links her chart to Otieno's one-identity subject; the desk then corrects
the ID to B, through the JSON API or the registration page. Since a national ID whose holder was born on another
day or is of another sex is asked about before anything links to its holder (at registration, at a correction,
and when a chart without a subject is linked later), the desk had to say the wrong card was right."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.substrate import audit, identity
from tests.web.test_auth import csrf_token


def _person(family: str, given: str, born: str, sex: str, national_id: str | None, **more) -> dict:
    body = {"family_name": family, "given_names": given, "birth_date": born, "sex": sex, **more}
    if national_id:
        body["identifiers"] = [{"system": "national_id", "value": national_id}]
    return body


def _register(api, tenant: str, body: dict) -> dict:
    made = api.post(f"/api/t/{tenant}/patients", json=body)
    assert made.status_code == 201, made.text
    return made.json()


def _subject_row(db, subject_id) -> dict:
    with db.control() as conn:
        return dict(conn.execute(sa.select(identity.subject).where(identity.subject.c.id == subject_id))
                    .mappings().one())


def _facilities(db, subject_id) -> set[str]:
    with db.control() as conn:
        return identity.facilities_of(conn, subject_id)[1]


@pytest.fixture(scope="module")
def facilities(tenant_factory):
    return tenant_factory(name="Riverside Referral"), tenant_factory(name="Hillview Health Centre")


@pytest.fixture
def people(facilities, token_client):
    """Otieno and Wanjiru at Riverside under their own IDs, and Wanjiru at Hillview under Otieno's."""
    riverside, hillview = facilities
    a, b = "NID-" + uuid.uuid4().hex[:8], "NID-" + uuid.uuid4().hex[:8]
    at_riverside = token_client(riverside.slug, permissions=["clinical.patient.create"])
    otieno = _register(at_riverside, riverside.slug, _person("Otieno", "Peter", "1975-02-11", "male", a))
    wanjiru = _register(at_riverside, riverside.slug, _person("Wanjiru", "Grace", "1990-06-03", "female", b))
    desk = token_client(hillview.slug, permissions=["clinical.patient.create", "clinical.patient.update",
                                                    "clinical.patient.read", "clinical.entry.retract"])
    # The desk was asked (Otieno was born on another day, of another sex) and said the wrong card was right.
    mistaken = _register(desk, hillview.slug, _person("Wanjiru", "Grace", "1990-06-03", "female", a,
                                                      national_id_confirmed=True))
    assert mistaken["subject_id"] == otieno["subject_id"]  # the defect's premise: joined by the wrong ID
    return {"a": a, "b": b, "otieno": otieno, "wanjiru": wanjiru, "mistaken": mistaken, "desk": desk}


def _invite_from(desk, chart_page: str):
    """The desk invites the chart's patient to the portal: the address it gave, and the page answered."""
    email = f"grace-{uuid.uuid4().hex[:6]}@example.org"
    return email, desk.post(chart_page + "/portal-invite",
                            data={"email": email, "_csrf_token": csrf_token(desk.get(chart_page).text)})


def _correct(desk, tenant: str, patient: dict, national_id: str | None, **more):
    body = _person("Wanjiru", "Grace", "1990-06-03", "female", national_id,
                   reason="National ID typed from the wrong card", version_id=patient["version_id"], **more)
    return desk.put(f"/api/t/{tenant}/patients/{patient['id']}", json=body)


def test_a_corrected_national_id_relinks_the_chart_and_leaves_the_other_person_as_they_were(db, facilities, people):
    riverside, hillview = facilities
    otieno_subject = people["otieno"]["subject_id"]
    otieno_before = _subject_row(db, otieno_subject)
    assert _facilities(db, otieno_subject) == {riverside.slug, hillview.slug}

    corrected = _correct(people["desk"], hillview.slug, people["mistaken"], people["b"])
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["subject_id"] == people["wanjiru"]["subject_id"]  # one person, two facilities again
    assert corrected.json()["identifiers"] == [{"system": "national_id", "value": people["b"]}]
    shown = people["desk"].get(f"/api/t/{hillview.slug}/patients/{people['mistaken']['id']}").json()
    assert shown["subject_id"] == people["wanjiru"]["subject_id"]

    # Otieno: his subject, his chart and where his record is held are as before the mistake.
    assert _subject_row(db, otieno_subject) == otieno_before
    assert _facilities(db, otieno_subject) == {riverside.slug}
    assert _facilities(db, people["wanjiru"]["subject_id"]) == {riverside.slug, hillview.slug}
    with db.tenant(riverside.slug) as conn:
        assert conn.execute(sa.text("SELECT subject_id FROM patient WHERE id = :id"),
                            {"id": people["otieno"]["id"]}).scalar() == uuid.UUID(otieno_subject)

    # Audited: on the chart, in the same transaction as the correction, and in the appliance's trail.
    relinks = [e for e in audit.patient_access_log(db, hillview.slug, people["mistaken"]["id"])
               if e.detail.get("to_subject")]
    assert [(e.detail["from_subject"], e.detail["to_subject"]) for e in relinks] == [
        (otieno_subject, people["wanjiru"]["subject_id"])]
    events = [e["event"]["detail"] for e in audit.read_events(db, None, event_type="identity.subject.relink")
              if e["event"]["detail"].get("from") == otieno_subject]
    assert [(e["to"], e["tenant"]) for e in events] == [
        (people["wanjiru"]["subject_id"], hillview.slug)]
    assert people["a"] not in str(events) and people["b"] not in str(events)  # no patient data in the event


def test_a_national_id_removed_parts_the_chart_from_the_person_it_named(db, facilities, people):
    """Decided: with no national ID left, the chart is not kept on the subject the removed ID linked it to
    (that ID may have been the wrong one); it gets a subject of its own, as a registration without one."""
    riverside, hillview = facilities
    otieno_subject = people["otieno"]["subject_id"]
    removed = _correct(people["desk"], hillview.slug, people["mistaken"], None)
    assert removed.status_code == 200, removed.text
    own = removed.json()["subject_id"]
    assert own not in (otieno_subject, people["wanjiru"]["subject_id"], None)
    assert removed.json()["identifiers"] == []
    assert _subject_row(db, own)["national_id"] is None
    assert _facilities(db, otieno_subject) == {riverside.slug}
    assert _facilities(db, own) == {hillview.slug}


def test_the_facility_stays_listed_while_another_of_its_charts_links_the_person(db, facilities, people):
    riverside, hillview = facilities
    otieno_subject = people["otieno"]["subject_id"]
    # Otieno's own chart at Hillview, linked to him by name of his subject (no national ID recorded there).
    _register(people["desk"], hillview.slug, _person("Otieno", "Peter", "1975-02-11", "male", None,
                                                     subject_id=otieno_subject))
    corrected = _correct(people["desk"], hillview.slug, people["mistaken"], people["b"])
    assert corrected.status_code == 200 and corrected.json()["subject_id"] == people["wanjiru"]["subject_id"]
    assert _facilities(db, otieno_subject) == {riverside.slug, hillview.slug}
    kept = [e["event"]["detail"] for e in audit.read_events(db, None, event_type="identity.subject.relink")
            if e["event"]["detail"].get("from") == otieno_subject]
    assert [e["facility_still_listed"] for e in kept] == [True]


def test_a_correction_is_not_entered_in_error_but_corrected_again_by_the_same_rule(db, facilities, people):
    """A demographics entry cannot be marked entered in error (422, nothing changes); putting the old ID
    back is a correction like any other, and links the chart to the subject that ID names."""
    hillview = facilities[1]
    desk, chart = people["desk"], people["mistaken"]
    corrected = _correct(desk, hillview.slug, chart, people["b"]).json()
    refused = desk.post(f"/api/t/{hillview.slug}/patients/{chart['id']}/entries/{corrected['version_id']}"
                        "/entered-in-error", json={"reason": "the correction was a mistake"})
    assert refused.status_code == 422 and "cannot be marked entered in error" in refused.json()["detail"]
    assert desk.get(f"/api/t/{hillview.slug}/patients/{chart['id']}").json()["subject_id"] == corrected["subject_id"]
    asked = _correct(desk, hillview.slug, corrected, people["a"])  # Otieno's: born on another day, a man
    assert asked.status_code == 409 and asked.json()["requires_national_id_confirmation"] is True, asked.text
    assert asked.json()["differs"] == ["birth date", "sex"] and asked.json()["field"] == "national_id_confirmed"
    kept = desk.get(f"/api/t/{hillview.slug}/patients/{chart['id']}").json()
    assert (kept["version_id"], kept["subject_id"]) == (corrected["version_id"], corrected["subject_id"])
    back = _correct(desk, hillview.slug, corrected, people["a"], national_id_confirmed=True)
    assert back.status_code == 200 and back.json()["subject_id"] == people["otieno"]["subject_id"]


def test_another_facility_a_guessed_id_or_an_unknown_subject_are_refused(db, facilities, people, token_client):
    riverside, hillview = facilities
    chart = people["mistaken"]
    outsider = token_client(riverside.slug, permissions=["clinical.patient.update", "clinical.patient.read"])
    across = _correct(outsider, hillview.slug, chart, people["b"])
    assert across.status_code == 403
    guessed = _correct(outsider, riverside.slug, chart, people["b"])  # Hillview's chart named at Riverside
    assert guessed.status_code == 404 and "no patient" in guessed.json()["detail"]
    ghost = uuid.uuid4()
    unknown = _correct(people["desk"], hillview.slug, chart, people["a"], subject_id=str(ghost))
    assert unknown.status_code == 422 and str(ghost) in unknown.json()["detail"]
    after = people["desk"].get(f"/api/t/{hillview.slug}/patients/{chart['id']}").json()
    assert (after["subject_id"], after["version_id"]) == (chart["subject_id"], chart["version_id"])  # nothing written
    assert _facilities(db, chart["subject_id"]) == {riverside.slug, hillview.slug}


def test_the_pages_show_the_corrected_link(db, app, facilities, people, policy, signed_in):
    """The desk corrects the ID on the registration page; the chart's page then shows the corrected ID and
    the portal account of the right person (none yet), and Otieno's own portal lists only his facility."""
    from litestar.testing import TestClient

    riverside, hillview = facilities
    with db.control() as conn:
        otieno_account = identity.create_account(
            conn, policy, kind="patient", role="patient", email=f"otieno-{uuid.uuid4().hex[:6]}@example.org",
            display_name="Peter Otieno", subject_id=uuid.UUID(people["otieno"]["subject_id"]))
        token = identity.start_session(conn, otieno_account.account_id, mfa_passed=True)
    otieno = TestClient(app=app, raise_server_exceptions=False)
    otieno.cookies.set("healthos_session", token)
    desk = signed_in("registrar", hillview.slug)
    chart_page = f"/t/{hillview.slug}/patients/{people['mistaken']['id']}"
    assert "has a patient portal account" in desk.get(chart_page).text  # Otieno's, shown on Wanjiru's chart
    # Her chart disagrees with his birth date and sex: his portal leaves it out, even before the correction.
    assert f'data-facility="{hillview.slug}"' not in otieno.get("/me").text

    form = chart_page + "/registration"
    shown = desk.get(form)
    assert f'value="{people["a"]}"' in shown.text
    corrected = desk.post(form, follow_redirects=False, data={
        "_csrf_token": csrf_token(shown.text), "family_name": "Wanjiru", "given_names": "Grace",
        "birth_date": "1990-06-03", "sex": "female", "national_id": people["b"],
        "version_id": people["mistaken"]["version_id"], "reason": "National ID typed from the wrong card"})
    assert corrected.status_code == 303, corrected.text
    page = desk.get(chart_page).text
    assert people["b"] in page and people["a"] not in page
    assert "Invite to the patient portal" in page and "has a patient portal account" not in page
    assert f'value="{people["b"]}"' in desk.get(form).text
    mine = otieno.get("/me").text
    assert f'data-facility="{riverside.slug}"' in mine and f'data-facility="{hillview.slug}"' not in mine
    assert _facilities(db, people["otieno"]["subject_id"]) == {riverside.slug}

    # Riverside's desk: Hillview's form is refused, and Hillview's chart id is no patient at Riverside.
    outsider = signed_in("registrar", riverside.slug)
    typed = {"_csrf_token": csrf_token(outsider.get(f"/t/{riverside.slug}/patients/new").text),
             "family_name": "Wanjiru", "given_names": "Grace", "birth_date": "1990-06-03", "sex": "female",
             "national_id": people["a"], "reason": "National ID typed from the wrong card"}
    assert outsider.post(form, data=typed, follow_redirects=False).status_code == 403
    guessed = f"/t/{riverside.slug}/patients/{people['mistaken']['id']}/registration"
    assert outsider.get(guessed).status_code == 404
    assert outsider.post(guessed, data=typed, follow_redirects=False).status_code == 404
    assert people["b"] in desk.get(chart_page).text  # neither changed it


def _patient_client(app, db, account_id):
    from litestar.testing import TestClient

    with db.control() as conn:
        token = identity.start_session(conn, account_id, mfa_passed=True)
    client = TestClient(app=app, raise_server_exceptions=False)
    client.cookies.set("healthos_session", token)
    return client


def _account_of(db, email: str):
    with db.control() as conn:
        return conn.execute(sa.select(identity.account.c.id).where(identity.account.c.email == email)).scalar()


def test_a_chart_linked_over_a_confirmed_differing_national_id_is_not_invited_until_corrected(
        db, app, facilities, people, signed_in):
    """The defect: the desk confirmed Otieno's ID for Wanjiru, and inviting her from that chart made her an
    account on Otieno's subject, reading his Riverside record. Now the invitation is refused with what to do,
    nothing made, the refusal on the chart's access log; once the ID is corrected she is invited, and reads her
    own charts only. Otieno's chart, which agrees with his record, is invited all along."""
    riverside, hillview = facilities
    desk = signed_in("registrar", hillview.slug)
    chart_page = f"/t/{hillview.slug}/patients/{people['mistaken']['id']}"
    email, refused = _invite_from(desk, chart_page)
    assert refused.status_code == 422, refused.text
    assert "another birth date and sex" in refused.text and "correct the national ID" in refused.text
    assert "Nobody was invited." in refused.text and "/enrol?code=" not in refused.text
    assert "Otieno" not in refused.text and "1975" not in refused.text  # nothing of the number's holder
    assert _account_of(db, email) is None
    [noted] = [e for e in audit.patient_access_log(db, hillview.slug, people["mistaken"]["id"])
               if e.detail.get("refused")]
    assert noted.detail["differs"] == ["birth date", "sex"] and noted.event_type == "record.portal_invitation.create"

    # Otieno's own chart is invited, and his portal does not show Wanjiru's Hillview chart linked to him.
    otieno_chart = f"/t/{riverside.slug}/patients/{people['otieno']['id']}"
    riverside_desk = signed_in("registrar", riverside.slug)
    peter = f"peter-{uuid.uuid4().hex[:6]}@example.org"
    invited = riverside_desk.post(otieno_chart + "/portal-invite", data={
        "email": peter, "_csrf_token": csrf_token(riverside_desk.get(otieno_chart).text)})
    assert invited.status_code == 200 and "/enrol?code=" in invited.text
    mine = _patient_client(app, db, _account_of(db, peter)).get("/me").text
    assert f'data-facility="{riverside.slug}"' in mine and f'data-facility="{hillview.slug}"' not in mine

    # The desk corrects the ID from her card: she is invited, and reads her own two charts, none of his.
    corrected = _correct(people["desk"], hillview.slug, people["mistaken"], people["b"])
    assert corrected.status_code == 200, corrected.text
    email, invited = _invite_from(desk, chart_page)
    assert invited.status_code == 200 and "/enrol?code=" in invited.text, invited.text
    mine = _patient_client(app, db, _account_of(db, email)).get("/me").text
    assert "Otieno" not in mine and "Riverside Referral" in mine and "Hillview Health Centre" in mine


def test_inviting_cannot_be_repeated_to_learn_the_holders_birth_date(db, facilities, people, signed_in):
    """Whether the invitation is refused says whether the chart agrees with the number's holder: a desk correcting
    the chart's birth date and trying again would learn the holder's, a question a time, past the national-ID
    question's limit. So it is counted as that question is: after five refusals this hour the sixth invitation is
    not looked at (429, whatever the chart says), audited, and nobody is invited."""
    hillview = facilities[1]
    desk = signed_in("registrar", hillview.slug)
    chart_page = f"/t/{hillview.slug}/patients/{people['mistaken']['id']}"
    for _ in range(identity.NATIONAL_ID_ANSWERS_PER_ASKER):
        _, refused = _invite_from(desk, chart_page)
        assert refused.status_code == 422 and "another birth date and sex" in refused.text
    email, throttled = _invite_from(desk, chart_page)
    assert throttled.status_code == 429 and "asked about too often" in throttled.text, throttled.text
    assert "birth date and sex" not in throttled.text.split("asked about too often")[1][:200]
    assert _account_of(db, email) is None
    refusals = [e.detail["refused"] for e in audit.patient_access_log(db, hillview.slug, people["mistaken"]["id"])
                if e.detail.get("refused")]
    assert sorted(refusals) == ["asked too often"] + ["national ID confirmed over a differing holder"] * 5


def test_a_desk_correcting_the_birth_date_and_sex_to_the_holders_lets_the_chart_be_invited(
        db, facilities, people, signed_in):
    """The other way to resolve it: the number was right and the registration's birth date and sex were typed
    wrong. Corrected to what the card says (the holder's), the chart agrees with its person and is invited."""
    hillview = facilities[1]
    fixed = people["desk"].put(f"/api/t/{hillview.slug}/patients/{people['mistaken']['id']}", json=_person(
        "Otieno", "Peter", "1975-02-11", "male", people["a"], reason="Birth date and sex typed wrong",
        version_id=people["mistaken"]["version_id"]))
    assert fixed.status_code == 200 and fixed.json()["subject_id"] == people["otieno"]["subject_id"], fixed.text
    email, invited = _invite_from(signed_in("registrar", hillview.slug),
                                  f"/t/{hillview.slug}/patients/{people['mistaken']['id']}")
    assert invited.status_code == 200 and "/enrol?code=" in invited.text, invited.text
    with db.control() as conn:
        made_on = conn.execute(sa.select(identity.account.c.subject_id).where(identity.account.c.email == email))
        assert str(made_on.scalar()) == people["otieno"]["subject_id"]


def test_another_facility_or_a_guessed_id_cannot_invite_from_the_chart(db, facilities, people, signed_in):
    riverside, hillview = facilities
    outsider = signed_in("registrar", riverside.slug)
    token = csrf_token(outsider.get(f"/t/{riverside.slug}/patients/new").text)
    email = f"probe-{uuid.uuid4().hex[:6]}@example.org"
    theirs = outsider.post(f"/t/{hillview.slug}/patients/{people['mistaken']['id']}/portal-invite",
                           data={"email": email, "_csrf_token": token}, follow_redirects=False)
    assert theirs.status_code == 403
    guessed = outsider.post(f"/t/{riverside.slug}/patients/{people['mistaken']['id']}/portal-invite",
                            data={"email": email, "_csrf_token": token}, follow_redirects=False)
    assert guessed.status_code == 404
    made_up = outsider.post(f"/t/{riverside.slug}/patients/{uuid.uuid4()}/portal-invite",
                            data={"email": email, "_csrf_token": token}, follow_redirects=False)
    assert made_up.status_code == 404
    assert _account_of(db, email) is None


def test_an_account_invited_before_the_mismatch_was_known_sees_its_own_chart_and_follows_it_to_its_person(
        db, app, facilities, people, policy):
    """An account made from the wrongly linked chart before the invitation was refused (an invitation already out,
    an account already enrolled) sits on Otieno's subject. It reads only the charts agreeing with the one it was
    invited from, its page and its record file alike, so not Otieno's. The ID is corrected and the chart relinked to
    her: the account, which names the chart it was invited from, follows it to her subject, so she reads her own
    charts (Riverside's and Hillview's) and the relink's audit event names the account."""
    riverside, hillview = facilities
    with db.control() as conn:
        account_id = identity.create_account(
            conn, policy, kind="patient", role="patient", email=f"grace-{uuid.uuid4().hex[:6]}@example.org",
            display_name="Grace Wanjiru", subject_id=uuid.UUID(people["otieno"]["subject_id"]),
            invited_from=(hillview.slug, uuid.UUID(people["mistaken"]["id"]))).account_id
    grace = _patient_client(app, db, account_id)
    mine = grace.get("/me").text
    assert "Otieno" not in mine and f'data-facility="{hillview.slug}"' in mine
    assert f'data-facility="{riverside.slug}"' not in mine
    assert "1 record linked to you by\n  your national ID is not shown" in mine  # and why, and what to do
    assert "Riverside" not in grace.get("/me/access").text and "Riverside" not in grace.get("/me/appointments").text
    kept = grace.get("/me/record.json")
    assert kept.status_code == 200 and "Otieno" not in kept.text and "Hillview Health Centre" in kept.text

    corrected = _correct(people["desk"], hillview.slug, people["mistaken"], people["b"])
    assert corrected.status_code == 200 and corrected.json()["subject_id"] == people["wanjiru"]["subject_id"]
    mine = grace.get("/me").text
    assert "Otieno" not in mine and "Riverside Referral" in mine and "Hillview Health Centre" in mine
    assert 'id="withheld"' not in mine
    with db.control() as conn:
        moved_to = conn.execute(sa.select(identity.account.c.subject_id).where(identity.account.c.id == account_id))
        assert str(moved_to.scalar()) == people["wanjiru"]["subject_id"]
    [relink] = [e["event"]["detail"] for e in audit.read_events(db, None, event_type="identity.subject.relink")
                if e["event"]["detail"].get("accounts_moved") == [str(account_id)]]
    assert relink["from"] == people["otieno"]["subject_id"]


def test_a_chart_registered_while_another_is_relinked_away_keeps_its_facility_listed(db, facilities, people,
                                                                                       person_factory):
    """Two desks at Hillview at once: one registers Otieno's own chart (linked to his subject by name), the
    other corrects Wanjiru's chart away from him. The registration notes Hillview for Otieno and then writes
    its chart; the relink unlists Hillview and asks whether a chart there still links him before that chart
    has committed, and finds none. The registration lists Hillview again once its chart has committed, so
    his list (and his portal) keeps it. Real threads: the registration waits, with its chart written and
    not committed, while the relink runs."""
    import threading

    from appliance.layers.clinical import service
    from appliance.layers.clinical.schemas import PatientIn
    from appliance.substrate.principal import Principal

    riverside, hillview = facilities
    otieno_subject = uuid.UUID(people["otieno"]["subject_id"])
    clerk = person_factory("registrar", hillview.slug)
    principal = Principal(account_id=clerk.account_id, kind="staff", display_name="Test registrar",
                          tenant=hillview.slug, role="registrar")
    noted, corrected, written, relinked = (threading.Event() for _ in range(4))
    registered: list[dict] = []

    def register_otieno() -> None:
        linked = service.with_subject(db, PatientIn.model_validate(
            _person("Otieno", "Peter", "1975-02-11", "male", None, subject_id=str(otieno_subject))),
            tenant=hillview.slug)
        noted.set()
        assert corrected.wait(30)
        with db.tenant(hillview.slug) as conn:
            registered.append(service.register_patient(conn, principal, linked))
            written.set()
            assert relinked.wait(30)

    desk = threading.Thread(target=register_otieno, name="registering-desk")
    desk.start()
    try:
        assert noted.wait(30)
        with db.tenant(hillview.slug) as conn:
            update = service.update_patient(
                conn, principal, uuid.UUID(people["mistaken"]["id"]),
                PatientIn.model_validate(_person("Wanjiru", "Grace", "1990-06-03", "female", people["b"])),
                reason="National ID typed from the wrong card", db=db)
        corrected.set()
        assert written.wait(30)
        service.release_unlinked_subject(db, hillview.slug, principal, update)
    finally:
        corrected.set()
        relinked.set()
        desk.join(30)
    assert registered and registered[0]["subject_id"] == otieno_subject
    assert _facilities(db, otieno_subject) == {riverside.slug, hillview.slug}


def _compared(db, subject_id: str) -> list[dict]:
    """The appliance trail's comparisons of a national ID's holder, naming that person's subject."""
    return [e["event"] for e in audit.read_events(db, None, event_type="identity.subject.national_id.compare")
            if e["event"]["detail"]["subject"] == subject_id]


def test_the_api_asks_before_linking_a_national_id_whose_holder_differs_and_tells_nothing_of_them(
        db, facilities, token_client):
    """The JSON API linked a registration to whoever held its national ID on the number alone. Now it asks, as
    the portal's desk is asked: 409 naming only which of birth date and sex differs, nothing registered, every
    answer in the appliance's audit trail naming the person compared and who asked; `national_id_confirmed`
    registers. Hillview's token reaches nothing at Riverside, and the answer shows nothing of Otieno."""
    riverside, hillview = facilities
    held, shared = "NID-" + uuid.uuid4().hex[:8], "NID-" + uuid.uuid4().hex[:8]
    at_riverside = token_client(riverside.slug, permissions=["clinical.patient.create"])
    otieno = _register(at_riverside, riverside.slug, _person("Otieno", "Peter", "1975-02-11", "male", held))
    ruth = _register(at_riverside, riverside.slug, _person("Achieng", "Ruth", "1988-09-30", "female", shared))
    desk = token_client(hillview.slug, permissions=["clinical.patient.create", "clinical.patient.search"])
    typed = _person("Wanjiru", "Grace", "1975-02-11", "female", held)  # his birth date, not his sex

    asked = desk.post(f"/api/t/{hillview.slug}/patients", json=typed)
    assert asked.status_code == 409, asked.text
    body = asked.json()
    assert body["requires_national_id_confirmation"] is True and body["differs"] == ["sex"]
    assert body["field"] == "national_id_confirmed" and "another sex" in body["detail"]
    for of_him in ("Otieno", "Peter", "male", otieno["subject_id"], otieno["id"], riverside.slug):
        assert of_him not in asked.text.replace("female", "")
    assert desk.get(f"/api/t/{hillview.slug}/patients", params={"identifier": held}).json() == []
    assert desk.post(f"/api/t/{riverside.slug}/patients", json=typed).status_code == 403  # not Hillview's to ask

    confirmed = desk.post(f"/api/t/{hillview.slug}/patients", json={**typed, "national_id_confirmed": True})
    assert confirmed.status_code == 201 and confirmed.json()["subject_id"] == otieno["subject_id"]
    assert "national_id_confirmed" not in confirmed.json()
    [question, answer] = _compared(db, otieno["subject_id"])
    for event, was_confirmed in ((question, False), (answer, True)):
        assert event["detail"] == {"tenant": hillview.slug, "subject": otieno["subject_id"], "differs": ["sex"],
                                   "confirmed": was_confirmed}
        assert event["agent"][0]["who"]["tenant"] == hillview.slug and event["agent"][0]["who"]["via"] == "token"
    assert held not in str(question)  # the number itself is not in the trail

    married = desk.post(f"/api/t/{hillview.slug}/patients",  # the same person under another name: not asked
                        json=_person("Kiprop", "Ruth", "1988-09-30", "female", shared))
    assert married.status_code == 201 and married.json()["subject_id"] == ruth["subject_id"]
    assert [e["detail"]["differs"] for e in _compared(db, ruth["subject_id"])] == [[]]


def test_a_chart_without_a_subject_is_linked_to_a_national_id_holder_who_differs_once_confirmed(
        db, facilities, people, signed_in, person_factory):
    """A chart registered before registration linked subjects (or by a generator) is linked when something
    needs its person, on its national ID. When that ID's holder was born on another day or is of another sex
    the chart stays unlinked, and the desk inviting the patient to the portal is told why."""
    from appliance.layers.clinical import service
    from appliance.layers.clinical.schemas import PatientIn
    from appliance.substrate.principal import Principal

    hillview = facilities[1]
    clerk = person_factory("registrar", hillview.slug)
    principal = Principal(account_id=clerk.account_id, kind="staff", display_name="Test registrar",
                          tenant=hillview.slug, role="registrar")
    with db.tenant(hillview.slug) as conn:  # no subject: as a chart of before subjects were matched
        legacy = service.register_patient(conn, principal, PatientIn.model_validate(
            _person("Kamau", "John", "1960-01-20", "male", people["b"])))  # Wanjiru's ID
    with pytest.raises(service.ChartLeftUnlinked, match="another birth date and sex"):
        service.subject_of(db, hillview.slug, principal, legacy["id"])

    desk = signed_in("registrar", hillview.slug)
    email, refused = _invite_from(desk, f"/t/{hillview.slug}/patients/{legacy['id']}")
    assert refused.status_code == 422 and "left unlinked from that person" in refused.text
    assert "1990" not in refused.text and "Wanjiru" not in refused.text
    with db.control() as conn:
        assert conn.execute(sa.select(identity.account.c.id).where(identity.account.c.email == email)).first() is None
    with db.tenant(hillview.slug) as conn:
        assert conn.execute(sa.text("SELECT subject_id FROM patient WHERE id = :p"),
                            {"p": legacy["id"]}).scalar() is None
    assert [e["detail"]["differs"] for e in _compared(db, people["wanjiru"]["subject_id"])] == [
        ["birth date", "sex"]] * 2

    # The desk checks the card: the number is right. The registration's correction, the ID unchanged, asks the
    # question as registration does, and once confirmed links the chart to the number's holder.
    typed = {**_person("Kamau", "John", "1960-01-20", "male", people["b"]), "reason": "national ID checked on card"}
    api = f"/api/t/{hillview.slug}/patients/{legacy['id']}"
    asked = people["desk"].put(api, json=typed)
    assert asked.status_code == 409 and asked.json()["requires_national_id_confirmation"] is True, asked.text
    linked = people["desk"].put(api, json={**typed, "national_id_confirmed": True})
    assert linked.status_code == 200 and linked.json()["subject_id"] == people["wanjiru"]["subject_id"], linked.text


def test_the_correction_page_asks_about_a_national_id_whose_holder_differs(db, facilities, people, signed_in):
    """Wanjiru's chart, corrected to her own ID, is corrected on the page back to Otieno's: the desk is asked,
    told only what differs, nothing changes; ticking that the ID is right links the chart to him."""
    hillview = facilities[1]
    corrected = _correct(people["desk"], hillview.slug, people["mistaken"], people["b"]).json()
    desk = signed_in("registrar", hillview.slug)
    form = f"/t/{hillview.slug}/patients/{people['mistaken']['id']}/registration"
    typed = {"_csrf_token": csrf_token(desk.get(form).text), "family_name": "Wanjiru", "given_names": "Grace",
             "birth_date": "1990-06-03", "sex": "female", "national_id": people["a"],
             "version_id": corrected["version_id"], "reason": "National ID typed from the wrong card"}
    asked = desk.post(form, data=typed, follow_redirects=False)
    assert asked.status_code == 409, asked.text
    assert "held by a person with another birth date and sex" in asked.text and "Nothing was corrected." in asked.text
    assert 'name="national_id_checked"' in asked.text and "1975" not in asked.text and "Otieno" not in asked.text
    kept = people["desk"].get(f"/api/t/{hillview.slug}/patients/{people['mistaken']['id']}").json()
    assert (kept["version_id"], kept["subject_id"]) == (corrected["version_id"], people["wanjiru"]["subject_id"])
    checked = desk.post(form, data={**typed, "national_id_checked": "true"}, follow_redirects=False)
    assert checked.status_code == 303, checked.text
    relinked = people["desk"].get(f"/api/t/{hillview.slug}/patients/{people['mistaken']['id']}").json()
    assert relinked["subject_id"] == people["otieno"]["subject_id"]


def test_a_registration_refused_for_a_national_id_held_here_makes_no_person_of_it(db, facilities, person_factory,
                                                                                 token_client):
    """The desk typed a chart's national ID for someone else and was refused (the ID is that chart's). The refusal
    used to come after the one-identity subject was made, so the ID then named a person with the stranger's birth
    date and sex; the chart holding it, having no subject yet (from before subjects, or the demo's), was refused
    its portal invitation as someone else's ID. Now nothing is made, and the chart links as its own person."""
    from appliance.layers.clinical import service
    from appliance.layers.clinical.schemas import PatientIn
    from appliance.substrate.principal import Principal

    hillview = facilities[1]
    clerk = person_factory("registrar", hillview.slug)
    principal = Principal(account_id=clerk.account_id, kind="staff", display_name="Test registrar",
                          tenant=hillview.slug, role="registrar")
    held = f"NID-{uuid.uuid4().hex[:10]}"
    with db.tenant(hillview.slug) as conn:  # no subject: as a chart of before subjects were matched
        legacy = service.register_patient(conn, principal, PatientIn.model_validate(
            _person("Achieng", "Mary", "1984-04-12", "female", held)))
    desk = token_client(hillview.slug, role="registrar")
    refused = desk.post(f"/api/t/{hillview.slug}/patients", json=_person("Njoroge", "Daniel", "1975-06-30", "male",
                                                                         held))
    assert refused.status_code == 409 and "already belongs to another patient of this facility" in refused.text
    with db.control() as conn:
        assert conn.execute(sa.select(identity.subject.c.id).where(identity.subject.c.national_id == held)).first() \
            is None
    _, subject_id = service.subject_of(db, hillview.slug, principal, legacy["id"])
    assert _subject_row(db, subject_id)["birth_date"].isoformat() == "1984-04-12"


def test_a_national_id_asked_about_too_often_is_refused_429_whatever_is_guessed(db, facilities, token_client):
    """A script with a registration permission probed a national ID's birth date day by day: each 409 said the
    guess was wrong. After five differing answers in an hour the caller is refused (429, a sentence saying to check
    the card or ask the records office) before anything is compared, the right birth date too; nothing is written,
    and the refusal is audited. Another national ID is still answered for that caller, and that ID for another."""
    riverside, hillview = facilities
    held, fresh = "NID-" + uuid.uuid4().hex[:8], "NID-" + uuid.uuid4().hex[:8]
    at_riverside = token_client(riverside.slug, permissions=["clinical.patient.create"])
    otieno = _register(at_riverside, riverside.slug, _person("Otieno", "Peter", "1975-02-11", "male", held))
    prober = token_client(hillview.slug, permissions=["clinical.patient.create"])
    for day in range(1, identity.NATIONAL_ID_ANSWERS_PER_ASKER + 1):
        guessed = prober.post(f"/api/t/{hillview.slug}/patients",
                              json=_person("Otieno", "Peter", f"1975-01-{day:02d}", "male", held))
        assert guessed.status_code == 409 and guessed.json()["differs"] == ["birth date"], guessed.text

    refused = prober.post(f"/api/t/{hillview.slug}/patients",
                          json=_person("Otieno", "Peter", "1975-02-11", "male", held))  # the right one
    assert refused.status_code == 429, refused.text
    assert refused.json()["detail"] == service.NATIONAL_ID_ASKED_TOO_OFTEN
    assert "check the number on the patient's id card, or ask the records office" in refused.text.lower()
    assert "differs" not in refused.json() and "1975" not in refused.text
    with db.tenant(hillview.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM patient_identifier WHERE value = :v"),
                            {"v": held}).scalar() == 0
    [refusal] = [e for e in _compared(db, otieno["subject_id"]) if "refused" in e["detail"]]
    assert refusal["detail"] == {"tenant": hillview.slug, "subject": otieno["subject_id"],
                                 "refused": "asked too often", "confirmed": False}

    assert prober.post(f"/api/t/{hillview.slug}/patients",
                       json=_person("Kiprop", "Ruth", "1988-09-30", "female", fresh)).status_code == 201
    desk = token_client(hillview.slug, permissions=["clinical.patient.create"])
    linked = desk.post(f"/api/t/{hillview.slug}/patients", json=_person("Otieno", "Peter", "1975-02-11", "male", held))
    assert linked.status_code == 201 and linked.json()["subject_id"] == otieno["subject_id"], linked.text


def test_the_registration_page_says_to_check_the_card_once_a_national_id_was_asked_about_too_often(
        db, facilities, token_client, signed_in):
    """The desk's page is refused as the API is, at the national ID field (429), with the box that says the number
    was checked on the card: a confirmed registration is not a question, and is written."""
    riverside, hillview = facilities
    held = "NID-" + uuid.uuid4().hex[:8]
    at_riverside = token_client(riverside.slug, permissions=["clinical.patient.create"])
    otieno = _register(at_riverside, riverside.slug, _person("Otieno", "Peter", "1975-02-11", "male", held))
    desk = signed_in("registrar", hillview.slug)
    typed = {"_csrf_token": csrf_token(desk.get(f"/t/{hillview.slug}/patients/new").text), "family_name": "Otieno",
             "given_names": "Peter", "sex": "male", "national_id": held, "different_person": "true"}
    for day in range(1, identity.NATIONAL_ID_ANSWERS_PER_ASKER + 1):
        asked = desk.post(f"/t/{hillview.slug}/patients", data={**typed, "birth_date": f"1975-01-{day:02d}"})
        assert asked.status_code == 409 and "held by a person with another birth date" in asked.text, asked.text
    refused = desk.post(f"/t/{hillview.slug}/patients", data={**typed, "birth_date": "1975-02-11"})
    assert refused.status_code == 429, refused.text
    assert "or ask the records office" in refused.text and 'name="national_id_checked"' in refused.text
    checked = desk.post(f"/t/{hillview.slug}/patients",
                        data={**typed, "birth_date": "1975-02-11", "national_id_checked": "true"},
                        follow_redirects=False)
    assert checked.status_code == 303, checked.text
    assert _facilities(db, otieno["subject_id"]) == {riverside.slug, hillview.slug}


def test_a_chart_recorded_as_linked_over_a_differing_answer_is_not_invited_when_it_is_the_persons_only_chart(
        db, facilities, token_client, signed_in):
    """The number's holder has no chart left to disagree with (his own was corrected to another number): only the
    record of the link (c0016) says this chart was linked over a differing answer, and the invitation is refused."""
    riverside, hillview = facilities
    number, his_own = "NID-" + uuid.uuid4().hex[:8], "NID-" + uuid.uuid4().hex[:8]
    at_riverside = token_client(riverside.slug, permissions=["clinical.patient.create", "clinical.patient.update"])
    otieno = _register(at_riverside, riverside.slug, _person("Otieno", "Peter", "1975-02-11", "male", number))
    moved = at_riverside.put(f"/api/t/{riverside.slug}/patients/{otieno['id']}", json=_person(
        "Otieno", "Peter", "1975-02-11", "male", his_own, reason="Number typed wrong",
        version_id=otieno["version_id"]))
    assert moved.status_code == 200 and moved.json()["subject_id"] != otieno["subject_id"], moved.text
    desk = token_client(hillview.slug, permissions=["clinical.patient.create"])
    grace = _register(desk, hillview.slug, _person("Wanjiru", "Grace", "1990-06-03", "female", number,
                                                   national_id_confirmed=True))
    assert grace["subject_id"] == otieno["subject_id"]
    email, refused = _invite_from(signed_in("registrar", hillview.slug), f"/t/{hillview.slug}/patients/{grace['id']}")
    assert refused.status_code == 422 and "another birth date and sex" in refused.text, refused.text
    assert _account_of(db, email) is None
