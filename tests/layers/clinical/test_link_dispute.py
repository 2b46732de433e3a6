"""A chart linked to a person over a differing national-ID answer the desk confirmed (c0016): the link is recorded on
the chart, a death certified there stays on it and a referral from it reaches no chart of the number's holder, until
a clinician confirms the identity from documents (audited) or the national ID is corrected. Another facility's
credentials, a guessed id and a role without the permission are refused the confirmation.

Siaya holds Otieno (male, 1975) under national ID X. At Kisumu the desk registers Wanjiru (female, 1990) under X and
says the card is right: her chart is linked to Otieno's subject."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import referral
from appliance.substrate import audit, deaths, identity
from appliance.substrate.db import Database
from tests.layers.clinical.test_death import BASE, CONFIG, certificate, death_url

GUESS = str(uuid.uuid4())


@pytest.fixture(scope="module")
def kisumu(tenant_factory):
    return tenant_factory(name="Kisumu District Hospital", **CONFIG)


@pytest.fixture(scope="module")
def siaya(tenant_factory):
    return tenant_factory(name="Siaya Health Centre", **CONFIG)


def _register(api, tenant: str, body: dict) -> dict:
    made = api.post(f"{BASE.format(tenant=tenant)}/patients", json=body)
    assert made.status_code == 201, made.text
    return made.json()


def _person(family: str, given: str, born: str, sex: str, national_id: str, **more) -> dict:
    return {"family_name": family, "given_names": given, "birth_date": born, "sex": sex,
            "identifiers": [{"system": "national_id", "value": national_id}], **more}


@pytest.fixture
def linked(token_client, kisumu, siaya) -> dict:
    number = "NID-" + uuid.uuid4().hex[:8]
    there = token_client(siaya.slug, role="clinician")
    otieno = _register(there, siaya.slug, _person("Otieno", "Peter", "1975-02-11", "male", number))
    desk = token_client(kisumu.slug, permissions=["clinical.patient.create", "clinical.patient.update",
                                                  "clinical.patient.read"])
    wanjiru = _register(desk, kisumu.slug, _person("Wanjiru", "Grace", "1990-06-03", "female", number,
                                                   national_id_confirmed=True))
    assert wanjiru["subject_id"] == otieno["subject_id"]  # the premise: joined by the confirmed number
    return {"number": number, "otieno": otieno, "wanjiru": wanjiru, "desk": desk, "there": there,
            "here": token_client(kisumu.slug, role="clinician")}


def _dispute(db: Database, tenant: str, chart: str):
    with db.control() as conn:
        return conn.execute(sa.select(identity.subject_link_dispute).where(
            identity.subject_link_dispute.c.tenant == tenant,
            identity.subject_link_dispute.c.patient_id == uuid.UUID(chart))).mappings().first()


def _confirm(api, tenant: str, chart: str, documents: str = "National ID card and birth certificate"):
    return api.post(f"{BASE.format(tenant=tenant)}/patients/{chart}/identity-confirmation",
                    json={"documents": documents})


def test_the_link_over_a_confirmed_differing_answer_is_recorded_on_its_chart(db, linked, kisumu, siaya):
    recorded = _dispute(db, kisumu.slug, linked["wanjiru"]["id"])
    assert recorded is not None and recorded["differs"] == ["birth date", "sex"]
    assert str(recorded["subject_id"]) == linked["otieno"]["subject_id"] and recorded["confirmed_by"] is not None
    assert _dispute(db, siaya.slug, linked["otieno"]["id"]) is None  # the holder's own chart: no question asked
    agreeing = _register(linked["desk"], kisumu.slug, _person("Achieng", "Mary", "1980-01-01", "female",
                                                              "NID-" + uuid.uuid4().hex[:8]))
    assert _dispute(db, kisumu.slug, agreeing["id"]) is None


def test_a_death_on_the_disputed_chart_stays_on_it_and_the_holder_is_certified_elsewhere(db, linked, kisumu, siaya):
    """The defect: Wanjiru's death at Kisumu marked Otieno deceased at Siaya (refused visits there) and refused his
    own certificate as a second one. Now Kisumu is told the death stays on its chart, Siaya sees nothing, opens his
    visit and certifies his own death; Kisumu still reads its own."""
    here, there = linked["here"], linked["there"]
    certified = here.post(death_url(kisumu.slug, linked["wanjiru"]["id"]), json=certificate())
    assert certified.status_code == 201, certified.text
    assert certified.json()["kept_to_this_chart"] == deaths.KEPT_TO_THIS_CHART
    seen_here = here.get(death_url(kisumu.slug, linked["wanjiru"]["id"])).json()
    assert seen_here["deceased"] is True and seen_here["kept_to_this_chart"] == deaths.KEPT_TO_THIS_CHART

    seen_there = there.get(death_url(siaya.slug, linked["otieno"]["id"])).json()
    assert seen_there["deceased"] is False and seen_there["certified_at_facility"] is None
    visit = there.post(f"{BASE.format(tenant=siaya.slug)}/patients/{linked['otieno']['id']}/encounters",
                       json={"encounter_class": "outpatient", "reason": "review"})
    assert visit.status_code == 201, visit.text

    his_own = there.post(death_url(siaya.slug, linked["otieno"]["id"]), json=certificate(pregnancy=None))
    assert his_own.status_code == 201 and his_own.json()["kept_to_this_chart"] is None, his_own.text
    seen_here = here.get(death_url(kisumu.slug, linked["wanjiru"]["id"])).json()
    assert seen_here["certified_at_facility"] == "Kisumu District Hospital" and seen_here["kept_to_this_chart"]


def test_the_holders_death_elsewhere_is_not_shown_on_the_disputed_chart(db, linked, kisumu, siaya, tenant_factory,
                                                                        token_client):
    """The reverse direction: Otieno certified dead at Siaya showed on Wanjiru's chart at Kisumu (asked by person), and
    she, alive, was refused a visit and her own certificate. Now her chart shows no death but its own; Siaya and a third
    facility holding Otieno's chart by the same number, not in dispute, read his; her own death is certified kept."""
    here, there = linked["here"], linked["there"]
    chart = linked["wanjiru"]["id"]
    his_own = there.post(death_url(siaya.slug, linked["otieno"]["id"]), json=certificate(pregnancy=None))
    assert his_own.status_code == 201 and his_own.json()["kept_to_this_chart"] is None, his_own.text

    seen_here = here.get(death_url(kisumu.slug, chart)).json()
    assert seen_here["deceased"] is False and seen_here["certified_at_facility"] is None
    visit = here.post(f"{BASE.format(tenant=kisumu.slug)}/patients/{chart}/encounters",
                      json={"encounter_class": "outpatient", "reason": "review"})
    assert visit.status_code == 201, visit.text
    seen_there = there.get(death_url(siaya.slug, linked["otieno"]["id"])).json()
    assert seen_there["deceased"] is True and seen_there["certified_at_facility"] == "Siaya Health Centre"
    bondo = tenant_factory(name="Bondo Sub-County Hospital", **CONFIG)
    third = token_client(bondo.slug, role="clinician")
    his_there = _register(third, bondo.slug, _person("Otieno", "Peter", "1975-02-11", "male", linked["number"]))
    assert his_there["subject_id"] == linked["otieno"]["subject_id"]
    assert third.get(death_url(bondo.slug, his_there["id"])).json()["certified_at_facility"] == "Siaya Health Centre"

    hers = here.post(death_url(kisumu.slug, chart), json=certificate())
    assert hers.status_code == 201 and hers.json()["kept_to_this_chart"] == deaths.KEPT_TO_THIS_CHART, hers.text
    assert here.get(death_url(kisumu.slug, chart)).json()["certified_at_facility"] == "Kisumu District Hospital"
    assert third.get(death_url(bondo.slug, his_there["id"])).json()["certified_at_facility"] == "Siaya Health Centre"


def test_a_death_kept_to_its_chart_is_not_shown_on_another_chart_of_the_facility(db, linked, kisumu, siaya):
    """Kisumu holds Otieno's own chart too (registered without the number, then found the same person and merged into
    him, no dispute): Wanjiru's death kept to her chart is not his, and he is seen alive there, as at Siaya."""
    here = linked["here"]
    his_here = _register(linked["desk"], kisumu.slug, {"family_name": "Otieno", "given_names": "Peter",
                                                       "birth_date": "1975-02-11", "sex": "male"})
    with db.control() as conn:
        identity.merge_subjects(conn, survivor_id=uuid.UUID(linked["otieno"]["subject_id"]),
                                merged_id=uuid.UUID(his_here["subject_id"]), reason="Same man, same card", by=None)
    assert _dispute(db, kisumu.slug, his_here["id"]) is None
    assert here.post(death_url(kisumu.slug, linked["wanjiru"]["id"]), json=certificate()).status_code == 201
    assert here.get(death_url(kisumu.slug, his_here["id"])).json()["deceased"] is False
    assert here.get(death_url(kisumu.slug, linked["wanjiru"]["id"])).json()["deceased"] is True


def test_a_clinician_confirming_the_identity_lets_the_death_follow_the_person(db, linked, kisumu, siaya,
                                                                             token_client):
    here, there = linked["here"], linked["there"]
    chart = linked["wanjiru"]["id"]
    assert here.post(death_url(kisumu.slug, chart), json=certificate()).status_code == 201

    # From the attacker's side and the desk's: refused, nothing confirmed.
    assert _confirm(token_client(kisumu.slug, role="registrar"), kisumu.slug, chart).status_code == 403
    assert _confirm(there, kisumu.slug, chart).status_code == 403  # another facility's credentials
    guessed = _confirm(there, siaya.slug, chart)  # Kisumu's chart id guessed at Siaya
    assert guessed.status_code == 404 and "no patient" in guessed.json()["detail"]
    assert _confirm(here, kisumu.slug, GUESS).status_code == 404
    assert _confirm(here, kisumu.slug, chart, documents="").status_code == 422
    assert _dispute(db, kisumu.slug, chart) is not None
    assert there.get(death_url(siaya.slug, linked["otieno"]["id"])).json()["deceased"] is False

    confirmed = _confirm(here, kisumu.slug, chart)
    assert confirmed.status_code == 200 and confirmed.json()["id"] == chart, confirmed.text
    assert _dispute(db, kisumu.slug, chart) is None
    seen_there = there.get(death_url(siaya.slug, linked["otieno"]["id"])).json()
    assert seen_there["deceased"] is True and seen_there["certified_at_facility"] == "Kisumu District Hospital"
    assert here.get(death_url(kisumu.slug, chart)).json()["kept_to_this_chart"] is None
    [event] = [e["event"]["detail"] for e in audit.read_events(db, None, event_type="identity.subject.link.confirm")
               if e["event"]["detail"]["chart"] == chart]
    assert event["differs"] == ["birth date", "sex"] and event["death_lifted"] is True
    [noted] = [e for e in audit.patient_access_log(db, kisumu.slug, chart)
               if e.detail.get("change") == "identity confirmed from documents"]
    assert noted.detail["documents"] == "National ID card and birth certificate"

    again = _confirm(here, kisumu.slug, chart)
    assert again.status_code == 409 and "not in dispute" in again.json()["detail"]
    # A chart linked without a question is not in dispute either.
    assert _confirm(there, siaya.slug, linked["otieno"]["id"]).status_code == 409


def test_confirming_is_refused_while_the_holder_is_certified_dead_elsewhere_too(db, linked, kisumu, siaya):
    here, there = linked["here"], linked["there"]
    chart = linked["wanjiru"]["id"]
    assert here.post(death_url(kisumu.slug, chart), json=certificate()).status_code == 201
    his_own = there.post(death_url(siaya.slug, linked["otieno"]["id"]), json=certificate(pregnancy=None))
    assert his_own.status_code == 201, his_own.text
    refused = _confirm(here, kisumu.slug, chart)
    assert refused.status_code == 409 and "one of them is on the wrong person" in refused.json()["detail"]
    assert _dispute(db, kisumu.slug, chart) is not None  # nothing written


def test_the_national_id_corrected_ends_the_dispute_and_the_death_follows_the_chart(db, linked, kisumu, siaya):
    here, there = linked["here"], linked["there"]
    chart = linked["wanjiru"]["id"]
    assert here.post(death_url(kisumu.slug, chart), json=certificate()).status_code == 201
    own = "NID-" + uuid.uuid4().hex[:8]
    corrected = linked["desk"].put(f"{BASE.format(tenant=kisumu.slug)}/patients/{chart}", json=_person(
        "Wanjiru", "Grace", "1990-06-03", "female", own, reason="National ID typed from the wrong card",
        version_id=linked["wanjiru"]["version_id"]))
    assert corrected.status_code == 200, corrected.text
    her_subject = corrected.json()["subject_id"]
    assert her_subject != linked["otieno"]["subject_id"]
    assert _dispute(db, kisumu.slug, chart) is None
    with db.control() as conn:
        mark = conn.execute(sa.select(deaths.subject_death.c.subject_id, deaths.subject_death.c.confined).where(
            deaths.subject_death.c.patient_id == uuid.UUID(chart))).one()
    assert (str(mark.subject_id), mark.confined) == (her_subject, False)
    seen_here = here.get(death_url(kisumu.slug, chart)).json()
    assert seen_here["deceased"] is True and seen_here["kept_to_this_chart"] is None
    assert there.get(death_url(siaya.slug, linked["otieno"]["id"])).json()["deceased"] is False


def test_a_referral_from_the_disputed_chart_reaches_no_chart_of_the_holder(db, linked, kisumu, siaya):
    here, there = linked["here"], linked["there"]
    sent = here.post(f"{BASE.format(tenant=kisumu.slug)}/patients/{linked['wanjiru']['id']}/referrals", json={
        "to_tenant": siaya.slug, "urgency": "urgent", "reason": "Blood pressure uncontrolled",
        "summary": "BP 182/110 on two drugs."})
    assert sent.status_code == 201 and sent.json()["kept_apart"] == referral.KEPT_APART_SENT, sent.text
    accepted = there.post(f"{BASE.format(tenant=siaya.slug)}/referrals/{sent.json()['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["registered"] is True and body["patient_id"] != linked["otieno"]["id"]
    assert body["kept_apart"] == referral.KEPT_APART_RECEIVED
    registered = there.get(f"{BASE.format(tenant=siaya.slug)}/patients/{body['patient_id']}").json()
    assert registered["identifiers"] == [] and registered["subject_id"] != linked["otieno"]["subject_id"]
    assert there.get(f"{BASE.format(tenant=siaya.slug)}/patients/{linked['otieno']['id']}/referrals").json() == []
    # Another facility's credentials cannot accept it for Siaya, nor read it.
    assert here.post(f"{BASE.format(tenant=siaya.slug)}/referrals/{sent.json()['id']}/accept").status_code == 403

    # A referral from a chart not in dispute still lands on the chart the receiver holds.
    plain = here.post(f"{BASE.format(tenant=kisumu.slug)}/patients", json=_person(
        "Otieno", "Peter", "1975-02-11", "male", "NID-" + uuid.uuid4().hex[:8]))
    held = there.post(f"{BASE.format(tenant=siaya.slug)}/patients", json={
        **_person("Otieno", "Peter", "1975-02-11", "male", plain.json()["identifiers"][0]["value"])})
    again = here.post(f"{BASE.format(tenant=kisumu.slug)}/patients/{plain.json()['id']}/referrals", json={
        "to_tenant": siaya.slug, "urgency": "routine", "reason": "Review", "summary": "Review."})
    assert again.status_code == 201 and again.json()["kept_apart"] is None
    onto = there.post(f"{BASE.format(tenant=siaya.slug)}/referrals/{again.json()['id']}/accept").json()
    assert (onto["registered"], onto["patient_id"], onto["kept_apart"]) == (False, held.json()["id"], None)
