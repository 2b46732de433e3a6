"""The operating theatre over real HTTP and the real record (appliance/layers/clinical/surgery.py): booking from the
chart against the facility's theatres and procedure list, the WHO checklist's gate on each move (422 naming the
phase missing, nothing written), the nurse's phases, the operation note and its correction, the charge on
completion (priced by the procedure's code, unpriced in words, credited when entered in error), the theatre list,
the audit, a deceased person refused, and another facility's credentials and guessed ids refused on every route."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import surgery
from appliance.substrate import audit
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone
from tests.layers.clinical.conftest import CLINICAL_CONFIG, new_patient

THEATRE_CONFIG = {
    **CLINICAL_CONFIG,
    "theatres": [{"code": "TH1", "name": "Theatre 1"}, {"code": "TH2", "name": "Theatre 2"}],
    "procedures": [{"code": "APPX", "name": "Appendicectomy"}, {"code": "ORIF", "name": "Open reduction"}],
    "fee_schedule": {
        "self_pay_price_list": "CASH", "price_lists": [{"code": "CASH", "name": "Self-pay"}],
        "items": [{"kind": "procedure", "code": "APPX", "name": "Appendicectomy", "department": "THEATRE",
                   "effective_from": "2025-01-01", "prices": {"CASH": "20000.00"}}],
    },
}
ALL = {p.key: [k for k, _ in p.items] for p in surgery.CHECKLIST}


@pytest.fixture(scope="module")
def theatre_facility(tenant_factory):
    return tenant_factory(name="Theatre Test Hospital", **THEATRE_CONFIG)


@pytest.fixture(scope="module")
def elsewhere(tenant_factory):
    return tenant_factory(name="Theatre Elsewhere", **THEATRE_CONFIG)


@pytest.fixture(scope="module")
def clients(theatre_facility, elsewhere, app, db, policy):
    """A clinician's, a nurse's and another facility's clinician's token clients, made once for the module."""
    from litestar.testing import TestClient

    from appliance.substrate import identity

    def make(tenant: str, role: str):
        with db.control() as conn:
            machine = identity.create_account(conn, policy, kind="machine", display_name=f"Theatre {role}",
                                              role="facility_admin", tenant=tenant,
                                              email=f"th-{uuid.uuid4().hex[:8]}@test.invalid")
            token = identity.issue_api_token(conn, account_id=machine.account_id, tenant=tenant, name="theatre",
                                             permissions=sorted(policy.permissions_of(role)))
        client = TestClient(app=app, raise_server_exceptions=False)
        client.headers["authorization"] = f"Bearer {token}"
        return client

    return {"surgeon": make(theatre_facility.slug, "clinician"), "nurse": make(theatre_facility.slug, "nurse"),
            "other": make(elsewhere.slug, "clinician")}


@pytest.fixture(scope="module")
def patients(db, theatre_facility) -> dict:
    registrar = Principal(account_id=uuid.uuid4(), kind="machine", display_name="Theatre desk",
                          tenant=theatre_facility.slug, role="clinician")
    with db.tenant(theatre_facility.slug) as conn:
        return {name: new_patient(conn, registrar, family_name=name.title())["id"]
                for name in ("wanjiru", "kamau")}


def _base(facility) -> str:
    return f"/api/t/{facility.slug}/surgery"


def _booking(**overrides) -> dict:
    return {"procedure": "Appendicectomy", "procedure_code": "APPX", "planned_at": "2026-11-20T09:00:00+03:00",
            "theatre": "TH1", "surgeon": "Dr Mwangi", "anaesthetist": "Dr Atieno", "urgency": "urgent",
            "anaesthesia": "general", **overrides}


def _written(db, facility) -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()


def _charges(db, facility, root: str) -> list[tuple]:
    with db.tenant(facility.slug) as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT c.status, c.item_code, c.amount, c.department FROM charge c WHERE c.source_root_id = :r "
            "ORDER BY c.amount NULLS FIRST"), {"r": root})]


def _book(clients, facility, patient, **overrides) -> dict:
    answer = clients["surgeon"].post(f"/api/t/{facility.slug}/patients/{patient}/surgery",
                                     json=_booking(**overrides))
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_booking_is_checked_against_the_facilitys_theatres_and_procedure_list_writing_nothing_refused(
        clients, db, theatre_facility, patients):
    path = f"/api/t/{theatre_facility.slug}/patients/{patients['wanjiru']}/surgery"
    before = _written(db, theatre_facility)
    for body, field in ((_booking(theatre="TH9"), "theatre"), (_booking(procedure_code="XYZ"), "procedure_code"),
                        (_booking(urgency="whenever"), "urgency"), (_booking(planned_at="2026-11-20T09:00:00"),
                                                                    "planned_at"),
                        (_booking(procedure=""), "procedure")):
        refused = clients["surgeon"].post(path, json=body)
        assert refused.status_code == 422 and field in refused.text, (field, refused.text)
    assert "TH1, TH2" in clients["surgeon"].post(path, json=_booking(theatre="TH9")).json()["detail"]
    # A mistyped year (a case a year and more away) would sit on a list nobody opens while the patient waits.
    next_year = (dt.datetime.now(dt.UTC) + dt.timedelta(days=400)).replace(microsecond=0).isoformat()
    far = clients["surgeon"].post(path, json=_booking(planned_at=next_year))
    assert far.status_code == 422 and "more than a year ahead: check the year" in far.json()["detail"], far.text
    nurse = clients["nurse"].post(path, json=_booking())
    assert nurse.status_code == 403
    assert _written(db, theatre_facility) == before
    booked = _book(clients, theatre_facility, patients["wanjiru"])
    assert (booked["status"], booked["procedure_name"], booked["theatre_name"], booked["phases_done"]) == (
        "scheduled", "Appendicectomy", "Theatre 1", 0)
    assert [p["phase"] for p in booked["checklist"]] == ["sign_in", "time_out", "sign_out"]
    assert [len(p["checks"]) for p in booked["checklist"]] == [7, 7, 5]  # the WHO checklist's nineteen checks


def test_the_checklist_gates_each_move_and_completion_charges_the_procedure(clients, db, theatre_facility, patients):
    booked = _book(clients, theatre_facility, patients["wanjiru"], planned_at="2026-11-21T08:00:00+03:00")
    case, base = booked["root_id"], _base(theatre_facility)
    before = _written(db, theatre_facility)
    early = clients["surgeon"].post(f"{base}/{case}/status", json={"to": "in_theatre"})
    assert early.status_code == 422 and "Sign In has not been recorded" in early.json()["detail"], early.text
    half = clients["nurse"].post(f"{base}/{case}/checklist/sign_in", json={"confirmed": ALL["sign_in"][:3]})
    assert half.status_code == 422 and "pulse oximeter" in half.json()["detail"], half.text
    out_of_turn = clients["nurse"].post(f"{base}/{case}/checklist/time_out", json={"confirmed": ALL["time_out"]})
    assert out_of_turn.status_code == 422 and "Sign In before the Time Out" in out_of_turn.json()["detail"]
    assert clients["nurse"].post(f"{base}/{case}/status", json={"to": "in_theatre"}).status_code == 403
    assert _written(db, theatre_facility) == before

    signed = clients["nurse"].post(f"{base}/{case}/checklist/sign_in", json={"confirmed": ALL["sign_in"]})
    assert signed.status_code == 200, signed.text
    assert signed.json()["checklist"][0]["recorded"] and signed.json()["checklist"][0]["by_name"] == "Theatre nurse"
    again = clients["nurse"].post(f"{base}/{case}/checklist/sign_in", json={"confirmed": ALL["sign_in"]})
    assert again.status_code == 409
    moved = clients["surgeon"].post(f"{base}/{case}/status", json={"to": "in_theatre"})
    assert moved.status_code == 200 and moved.json()["status"] == "in_theatre", moved.text
    assert clients["nurse"].post(f"{base}/{case}/checklist/time_out", json={"confirmed": ALL["time_out"]}
                                 ).status_code == 200
    before = _written(db, theatre_facility)
    unsigned_out = clients["surgeon"].post(f"{base}/{case}/status", json={"to": "completed"})
    assert unsigned_out.status_code == 422 and "Sign Out" in unsigned_out.json()["detail"]
    assert "Time Out" not in unsigned_out.json()["detail"]
    assert _written(db, theatre_facility) == before and _charges(db, theatre_facility, case) == []
    assert clients["nurse"].post(f"{base}/{case}/checklist/sign_out", json={"confirmed": ALL["sign_out"]}
                                 ).status_code == 200
    done = clients["surgeon"].post(f"{base}/{case}/status", json={"to": "completed"})
    assert done.status_code == 200 and done.json()["status"] == "completed" and done.json()["phases_done"] == 3
    assert _charges(db, theatre_facility, case) == [("posted", "APPX", 20000, "THEATRE")]
    assert clients["surgeon"].post(f"{base}/{case}/status", json={"to": "cancelled", "reason": "too late"}
                                   ).status_code == 409

    # Entered in error: it leaves the list and its charge is credited.
    gone = clients["surgeon"].post(f"{base}/{case}/entered-in-error", json={"reason": "booked on the wrong patient"})
    assert gone.status_code == 200, gone.text
    assert [c[:2] for c in _charges(db, theatre_facility, case)] == [("posted", "APPX"), ("posted", "APPX")]
    assert sum(c[2] for c in _charges(db, theatre_facility, case)) == 0
    assert clients["surgeon"].get(f"{base}/{case}").status_code == 404


def test_a_case_in_words_is_unpriced_and_a_cancellation_needs_its_reason(clients, db, theatre_facility, patients):
    base = _base(theatre_facility)
    words = _book(clients, theatre_facility, patients["kamau"], procedure="Drainage of empyema", procedure_code=None,
                  theatre="TH2", planned_at="2026-11-21T07:30:00+03:00")
    case = words["root_id"]
    for phase in ("sign_in", "time_out", "sign_out"):
        if phase == "time_out":
            assert clients["surgeon"].post(f"{base}/{case}/status", json={"to": "in_theatre"}).status_code == 200
        assert clients["nurse"].post(f"{base}/{case}/checklist/{phase}", json={"confirmed": ALL[phase]}
                                     ).status_code == 200
    assert clients["surgeon"].post(f"{base}/{case}/status", json={"to": "completed"}).status_code == 200
    assert _charges(db, theatre_facility, case) == [("unpriced", "Drainage of empyema", None, "THEATRE")]

    other = _book(clients, theatre_facility, patients["kamau"], planned_at="2026-11-21T12:00:00+03:00")
    before = _written(db, theatre_facility)
    no_reason = clients["surgeon"].post(f"{base}/{other['root_id']}/status", json={"to": "cancelled"})
    assert no_reason.status_code == 422 and "why" in no_reason.json()["detail"], no_reason.text
    assert _written(db, theatre_facility) == before
    cancelled = clients["surgeon"].post(f"{base}/{other['root_id']}/status",
                                        json={"to": "cancelled", "reason": "patient ate breakfast"})
    assert (cancelled.json()["status"], cancelled.json()["cancel_reason"]) == ("cancelled", "patient ate breakfast")

    listed = clients["nurse"].get(base, params={"day": "2026-11-21"})
    assert listed.status_code == 200, listed.text
    by_theatre = {t["code"]: [(c["procedure"], c["status"], c["phases_done"]) for c in t["cases"]]
                  for t in listed.json()["theatres"]}
    assert by_theatre == {"TH1": [("Appendicectomy", "cancelled", 0)],
                          "TH2": [("Drainage of empyema", "completed", 3)]}
    log = audit.patient_access_log(db, theatre_facility.slug, patients["kamau"])
    assert any(e.event_type == "record.surgery.read" for e in log)
    assert any(e.event_type == "record.surgery.create" for e in log)


def test_the_operation_note_is_signed_once_and_corrected_with_a_reason(clients, db, theatre_facility, patients):
    base = _base(theatre_facility)
    case = _book(clients, theatre_facility, patients["wanjiru"], planned_at="2026-11-22T09:00:00+03:00")["root_id"]
    note = {"procedure_performed": "Open appendicectomy", "findings": "Inflamed, non-perforated appendix",
            "blood_loss_ml": 50, "specimens": "Appendix to histology", "post_op_instructions": "Oral fluids at 6 h"}
    assert clients["surgeon"].post(f"{base}/{case}/note", json=note).status_code == 409  # not in theatre yet
    clients["nurse"].post(f"{base}/{case}/checklist/sign_in", json={"confirmed": ALL["sign_in"]})
    clients["surgeon"].post(f"{base}/{case}/status", json={"to": "in_theatre"})
    before = _written(db, theatre_facility)
    assert clients["surgeon"].post(f"{base}/{case}/note", json={**note, "blood_loss_ml": -5}).status_code == 422
    assert clients["nurse"].post(f"{base}/{case}/note", json=note).status_code == 403
    assert _written(db, theatre_facility) == before
    written = clients["surgeon"].post(f"{base}/{case}/note", json=note)
    assert written.status_code == 201, written.text
    signed = written.json()["note"]
    assert (signed["findings"], signed["blood_loss_ml"], signed["complications"]) == (note["findings"], 50, None)
    assert clients["surgeon"].post(f"{base}/{case}/note", json=note).status_code == 409
    no_reason = clients["surgeon"].put(f"{base}/{case}/note", json={**note, "version_id": signed["id"]})
    assert no_reason.status_code == 422
    fixed = clients["surgeon"].put(f"{base}/{case}/note", json={
        **note, "blood_loss_ml": 150, "version_id": signed["id"], "reason": "suction canister re-measured"})
    assert fixed.status_code == 200 and fixed.json()["note"]["blood_loss_ml"] == 150, fixed.text
    assert fixed.json()["note"]["root_id"] == signed["root_id"]
    stale = clients["surgeon"].put(f"{base}/{case}/note", json={**note, "version_id": signed["id"],
                                                                "reason": "second go"})
    assert stale.status_code == 409
    read = clients["nurse"].get(f"{base}/{case}")
    assert read.status_code == 200 and read.json()["note"]["reason"] == "suction canister re-measured"
    assert any(e.event_type == "record.operation_note.read"
               for e in audit.patient_access_log(db, theatre_facility.slug, patients["wanjiru"]))


def test_a_case_abandoned_in_theatre_takes_its_operation_note_and_one_cancelled_before_does_not(
        clients, db, theatre_facility, patients):
    """Cancelled after it went into theatre (a laparotomy closed on finding inoperable disease), the case still has
    its note: what was found and why it stopped. Cancelled on the list, before theatre, there was no operation."""
    base = _base(theatre_facility)
    note = {"procedure_performed": "Laparotomy, closed without resection", "findings": "Carcinomatosis",
            "blood_loss_ml": 100, "post_op_instructions": "Oncology review; analgesia"}
    abandoned = _book(clients, theatre_facility, patients["kamau"], planned_at="2026-11-23T09:00:00+03:00")["root_id"]
    clients["nurse"].post(f"{base}/{abandoned}/checklist/sign_in", json={"confirmed": ALL["sign_in"]})
    clients["surgeon"].post(f"{base}/{abandoned}/status", json={"to": "in_theatre"})
    stopped = clients["surgeon"].post(f"{base}/{abandoned}/status",
                                      json={"to": "cancelled", "reason": "inoperable: closed without resection"})
    assert stopped.status_code == 200 and stopped.json()["status"] == "cancelled", stopped.text
    written = clients["surgeon"].post(f"{base}/{abandoned}/note", json=note)
    assert written.status_code == 201, written.text
    assert written.json()["note"]["findings"] == "Carcinomatosis"

    never = _book(clients, theatre_facility, patients["kamau"], planned_at="2026-11-23T13:00:00+03:00")["root_id"]
    clients["surgeon"].post(f"{base}/{never}/status", json={"to": "cancelled", "reason": "theatre overran"})
    before = _written(db, theatre_facility)
    refused = clients["surgeon"].post(f"{base}/{never}/note", json=note)
    assert refused.status_code == 409 and "never went into theatre" in refused.json()["detail"], refused.text
    assert _written(db, theatre_facility) == before


def test_a_case_postponed_to_another_day_or_theatre_says_its_sign_in_again(clients, db, theatre_facility, patients):
    """Signed in on Monday, the list overran and the case moved to Wednesday: Monday's Sign In (the patient, the
    consent, the anaesthesia machine) does not take Wednesday's case into theatre. Moved an hour the same day in the
    same theatre, it stands; its history keeps what was recorded."""
    base = _base(theatre_facility)
    booked = _book(clients, theatre_facility, patients["wanjiru"], planned_at="2026-11-24T09:00:00+03:00")
    case = booked["root_id"]
    signed = clients["nurse"].post(f"{base}/{case}/checklist/sign_in", json={"confirmed": ALL["sign_in"]}).json()
    later = clients["surgeon"].put(f"{base}/{case}", json={
        **_booking(planned_at="2026-11-24T10:30:00+03:00"), "reason": "first case ran long",
        "version_id": signed["id"]})
    assert later.status_code == 200 and later.json()["phases_done"] == 1, later.text
    postponed = clients["surgeon"].put(f"{base}/{case}", json={
        **_booking(planned_at="2026-11-26T09:00:00+03:00"), "reason": "list overran: postponed",
        "version_id": later.json()["id"]})
    assert postponed.status_code == 200 and postponed.json()["phases_done"] == 0, postponed.text
    refused = clients["surgeon"].post(f"{base}/{case}/status", json={"to": "in_theatre"})
    assert refused.status_code == 422 and "Sign In has not been recorded" in refused.json()["detail"]
    elsewhere = _book(clients, theatre_facility, patients["kamau"], planned_at="2026-11-24T14:00:00+03:00")["root_id"]
    signed = clients["nurse"].post(f"{base}/{elsewhere}/checklist/sign_in", json={"confirmed": ALL["sign_in"]}).json()
    moved = clients["surgeon"].put(f"{base}/{elsewhere}", json={
        **_booking(planned_at="2026-11-24T14:00:00+03:00", theatre="TH2"), "reason": "Theatre 1 flooded",
        "version_id": signed["id"]})
    assert moved.status_code == 200 and moved.json()["phases_done"] == 0, moved.text
    with db.tenant(theatre_facility.slug) as conn:
        kept = conn.execute(sa.text("SELECT s.checklist ? 'sign_in' FROM surgery s JOIN entry e ON e.id = s.entry_id "
                                    "WHERE e.root_id = :r ORDER BY e.recorded_at, e.id"), {"r": case}).scalars().all()
    # Booked; signed in; moved an hour (Sign In kept); postponed (Sign In cleared): every version in the history.
    assert kept == [False, True, True, False]


def test_todays_list_carries_the_cases_nobody_closed_on_an_earlier_day(clients, db, theatre_facility, elsewhere,
                                                                       patients):
    """A case still scheduled, or still in theatre, from a day before is on today's list, marked unclosed, so the
    theatre nurse closes it; one cancelled (or completed) stays on its own day, whose list is as it was booked."""
    base, now = _base(theatre_facility), dt.datetime.now(dt.UTC)
    two_days_ago, yesterday = now - dt.timedelta(hours=50), now - dt.timedelta(hours=30)
    forgotten = _book(clients, theatre_facility, patients["kamau"], planned_at=two_days_ago.isoformat())["root_id"]
    left_in = _book(clients, theatre_facility, patients["wanjiru"], planned_at=yesterday.isoformat(),
                    theatre="TH2")["root_id"]
    clients["nurse"].post(f"{base}/{left_in}/checklist/sign_in", json={"confirmed": ALL["sign_in"]})
    assert clients["surgeon"].post(f"{base}/{left_in}/status", json={"to": "in_theatre"}).status_code == 200
    closed = _book(clients, theatre_facility, patients["kamau"], planned_at=yesterday.isoformat())["root_id"]
    assert clients["surgeon"].post(f"{base}/{closed}/status", json={"to": "cancelled", "reason": "no bed in ICU"}
                                   ).status_code == 200

    def listed(client, url: str, **params) -> dict:
        answer = client.get(url, params=params)
        assert answer.status_code == 200, answer.text
        return {c["root_id"]: (t["code"], c["status"], c["unclosed"]) for t in answer.json()["theatres"]
                for c in t["cases"]}

    today = listed(clients["nurse"], base)
    assert today[forgotten] == ("TH1", "scheduled", True) and today[left_in] == ("TH2", "in_theatre", True)
    assert closed not in today
    own_day = two_days_ago.astimezone(facility_timezone(db, theatre_facility.slug)).date().isoformat()
    assert listed(clients["nurse"], base, day=own_day)[forgotten] == ("TH1", "scheduled", False)
    # Another facility's credentials are refused here, and its own today holds none of these.
    assert clients["other"].get(base).status_code == 403
    assert not {forgotten, left_in} & set(listed(clients["other"], _base(elsewhere)))


def test_an_operation_is_refused_for_a_person_recorded_deceased(clients, db, theatre_facility):
    from tests.layers.clinical.test_death import certificate, death_url, register

    patient = register(clients["surgeon"], theatre_facility.slug, national_id=uuid.uuid4().hex[:10])
    certified = clients["surgeon"].post(death_url(theatre_facility.slug, patient), json=certificate())
    assert certified.status_code == 201, certified.text
    before = _written(db, theatre_facility)
    refused = clients["surgeon"].post(f"/api/t/{theatre_facility.slug}/patients/{patient}/surgery", json=_booking())
    assert refused.status_code == 422 and "an operation cannot be recorded" in refused.json()["detail"], refused.text
    assert _written(db, theatre_facility) == before


def test_another_facility_and_guessed_ids_are_refused_on_every_route(clients, theatre_facility, patients):
    case = _book(clients, theatre_facility, patients["kamau"], planned_at="2026-11-23T09:00:00+03:00")["root_id"]
    base, guessed = _base(theatre_facility), uuid.uuid4()
    routes = [("get", ""), ("get", "/checklist"), ("get", f"/{case}"),
              ("put", f"/{case}"), ("post", f"/{case}/status"), ("post", f"/{case}/checklist/sign_in"),
              ("post", f"/{case}/note"), ("put", f"/{case}/note"), ("post", f"/{case}/entered-in-error")]
    body = {**_booking(), "reason": "a reason", "version_id": str(case), "to": "cancelled", "confirmed": []}
    for method, path in routes:
        answer = getattr(clients["other"], method)(base + path, **({} if method == "get" else {"json": body}))
        assert answer.status_code == 403, (method, path, answer.text)
    chart = f"/api/t/{theatre_facility.slug}/patients/{patients['kamau']}/surgery"
    assert clients["other"].get(chart).status_code == 403
    assert clients["other"].post(chart, json=_booking()).status_code == 403
    for method, path, sent in (("get", f"/{guessed}", None), ("put", f"/{guessed}", {**_booking(), "reason": "why",
                                                                                      "version_id": str(guessed)}),
                               ("post", f"/{guessed}/status", {"to": "in_theatre"}),
                               ("post", f"/{guessed}/checklist/sign_in", {"confirmed": ALL["sign_in"]}),
                               ("post", f"/{guessed}/note", {"procedure_performed": "x", "findings": "y",
                                                             "blood_loss_ml": 0, "post_op_instructions": "z"}),
                               ("post", f"/{guessed}/entered-in-error", {"reason": "guess"}),
                               ("post", f"/{patients['kamau']}/status", {"to": "in_theatre"})):
        answer = getattr(clients["surgeon"], method)(base + path, **({"json": sent} if sent else {}))
        assert answer.status_code == 404, (method, path, answer.text)
    unknown_phase = clients["nurse"].post(f"{base}/{case}/checklist/debrief", json={"confirmed": []})
    assert unknown_phase.status_code == 404 and "sign_in" in unknown_phase.json()["detail"]
    guessed_patient = f"/api/t/{theatre_facility.slug}/patients/{guessed}/surgery"
    assert clients["surgeon"].post(guessed_patient, json=_booking()).status_code == 404


def test_t0031_matches_the_model_and_keeps_the_theatre_record_append_only(db, theatre_facility):
    """The tables t0031 made match the model, and the tenant role may append a case or a note but neither rewrite
    nor remove one."""
    from appliance.substrate.db import tenant_metadata
    from appliance.substrate.migrate import find_drift

    assert find_drift(db, [theatre_facility.slug], tenant_metadata) == []
    for statement in ("UPDATE surgery SET status = 'completed'", "DELETE FROM surgery",
                      "UPDATE operation_note SET blood_loss_ml = 0", "DELETE FROM operation_note"):
        refused = pytest.raises(sa.exc.ProgrammingError, match="permission denied")
        with refused, db.tenant(theatre_facility.slug) as conn:
            conn.execute(sa.text(statement))
