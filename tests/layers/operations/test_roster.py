"""The duty roster (appliance/layers/operations/roster.py) through its API: the rest period across midnight in the
facility's zone, patients per nurse on a ward built by hand, refusals that write nothing, the withdrawal kept and
audited, and another facility's credentials and guessed ids on every route. The pages are in
tests/web/test_roster_pages.py."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from appliance.layers.operations import adt, roster, roster_demo, roster_routes
from appliance.substrate import audit, identity
from appliance.substrate.principal import Principal
from tests.conftest import make_tenant_config
from tests.layers.operations.conftest import new_patient

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")
# Beside the default day and night shifts, a short evening one that starts ten hours after a night shift ends.
SHIFTS = [{"code": "D", "name": "Day", "start": "07:00", "end": "19:00", "patients_per_nurse": 8},
          {"code": "N", "name": "Night", "start": "19:00", "end": "07:00", "patients_per_nurse": 10},
          {"code": "T", "name": "Twilight", "start": "17:00", "end": "23:00", "patients_per_nurse": 8}]
WARDS = [{"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 10},
         {"code": "MAT", "name": "Maternity", "kind": "maternity", "beds": 2}]


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Roster Hospital", wards=WARDS, roster={"shifts": SHIFTS})


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Roster Elsewhere", wards=WARDS)


@pytest.fixture(scope="module")
def staff(facility, other_facility, person_factory):
    return {"gen_nurse": person_factory("nurse", facility.slug, ward="GEN"),
            "mat_nurse": person_factory("nurse", facility.slug, ward="MAT"),
            "float_a": person_factory("nurse", facility.slug), "float_b": person_factory("nurse", facility.slug),
            "student": person_factory("nurse", facility.slug),
            "clinician": person_factory("clinician", facility.slug),
            "registrar": person_factory("registrar", facility.slug),
            "elsewhere": person_factory("nurse", other_facility.slug)}


def api(facility) -> str:
    return f"/api/t/{facility.slug}"


def today() -> dt.date:
    return dt.datetime.now(NAIROBI).date()


def entry(person, day: dt.date, shift: str, ward: str = "GEN", role: str = "nurse") -> dict:
    return {"ward_code": ward, "shift_date": day.isoformat(), "shift_code": shift,
            "account_id": str(person.account_id), "role_on_shift": role}


def rows(db, facility, table: str = "roster_entry") -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def nurses_on(client, facility, day: dt.date, ward: str, shift: str) -> int:
    """The nurses the staffing API counts on one ward's shift of a day."""
    board = client.get(f"{api(facility)}/staffing", params={"date": day.isoformat()}).json()
    return next(r["nurses"] for r in board if (r["ward_code"], r["shift_code"]) == (ward, shift))


def test_the_rest_period_is_counted_across_midnight_in_the_facilitys_zone(facility, staff, token_client):
    manager = token_client(facility.slug, role="bed_manager")
    night = today() + dt.timedelta(days=3)
    nurse = staff["float_a"]
    answer = manager.post(f"{api(facility)}/roster", json=entry(nurse, night, "N"))
    assert answer.status_code == 201, answer.text
    # 19:00 to 07:00 the next morning, Nairobi time (UTC+3).
    assert answer.json()["starts_at"] == f"{night.isoformat()}T16:00:00Z"
    assert answer.json()["ends_at"] == f"{(night + dt.timedelta(days=1)).isoformat()}T04:00:00Z"
    morning = night + dt.timedelta(days=1)
    refused = manager.post(f"{api(facility)}/roster", json=entry(nurse, morning, "D", ward="MAT"))
    assert refused.status_code == 409 and "only 0 h of rest" in refused.json()["detail"]
    ten_hours = manager.post(f"{api(facility)}/roster", json=entry(nurse, morning, "T"))
    assert ten_hours.status_code == 409, ten_hours.text
    assert "only 10 h of rest after the night shift" in ten_hours.json()["detail"]
    assert "ends at 07:00" in ten_hours.json()["detail"] and "at least 11 h" in ten_hours.json()["detail"]
    before = manager.post(f"{api(facility)}/roster", json=entry(nurse, night, "D"))
    assert before.status_code == 409 and "before the night shift" in before.json()["detail"]
    # Twelve hours after the night ends, and the day before it: enough rest.
    assert manager.post(f"{api(facility)}/roster", json=entry(nurse, morning, "N")).status_code == 201
    assert manager.post(f"{api(facility)}/roster",
                        json=entry(nurse, night - dt.timedelta(days=1), "D")).status_code == 201


def test_patients_per_nurse_on_a_ward_built_by_hand(db, facility, staff, token_client):
    """Yesterday: nine admitted to GEN before the day shift, one moved to maternity at 10:00, one home at 18:00. The
    day shift had 9 patients to one nurse (a student does not count): over 8, understaffed; the night 7 to one, under
    its 10; maternity's night had a patient and no nurse."""
    yesterday = today() - dt.timedelta(days=1)
    at = lambda hour: dt.datetime.combine(yesterday, dt.time(hour), tzinfo=NAIROBI)  # noqa: E731
    manager = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Bed Manager", tenant=facility.slug,
                        role="bed_manager")
    with db.tenant(facility.slug) as conn:
        patients = [new_patient(conn, manager, family_name=f"Ward{n}") for n in range(9)]
        for patient in patients:
            adt.admit(conn, manager, patient, ward_code="GEN", at=at(5))
        adt.transfer(conn, manager, patients[0], ward_code="MAT", at=at(10))
        adt.discharge(conn, manager, patients[1], disposition="home", at=at(18))
    client = token_client(facility.slug, role="bed_manager")
    for body in (entry(staff["gen_nurse"], yesterday, "D", role="in_charge"),
                 entry(staff["student"], yesterday, "D", role="student"),
                 entry(staff["float_b"], yesterday, "N")):
        assert client.post(f"{api(facility)}/roster", json=body).status_code == 201, body
    board = {(r["ward_code"], r["shift_code"]): r
             for r in client.get(f"{api(facility)}/staffing", params={"date": yesterday.isoformat()}).json()}
    day, night = board[("GEN", "D")], board[("GEN", "N")]
    assert (day["census"], day["nurses"], day["patients_per_nurse"], day["understaffed"]) == (9, 1, 9.0, True)
    assert (night["census"], night["nurses"], night["patients_per_nurse"], night["understaffed"]) == (7, 1, 7.0, False)
    assert (board[("MAT", "D")]["census"], board[("MAT", "D")]["understaffed"]) == (0, False)
    mat_night = board[("MAT", "N")]
    assert (mat_night["census"], mat_night["nurses"], mat_night["patients_per_nurse"], mat_night["understaffed"]) == \
        (1, 0, None, True)
    assert not any(r["census_now"] for r in board.values())
    with db.tenant(facility.slug) as conn:
        week = roster.week_summary(conn, staff=roster_routes.staff_of(db, facility.slug), tz=NAIROBI)
    if week["week_of"] <= yesterday:  # yesterday is this week unless today is a Monday
        assert week["understaffed"] >= 2
    assert {r["ward_code"] for r in week["now"]} == {"GEN", "MAT"}


def test_a_leavers_shifts_ahead_are_short_of_her_and_those_begun_keep_her(db, facility, person_factory,
                                                                          token_client):
    """IT disabled a nurse who had left, and the shifts she was rostered on next week still counted her: the ward
    read as nursed by two with one nurse coming, and nothing said to find cover. A shift not yet begun counts the
    working staff only, and the grid names her as no longer on the staff; a shift she worked keeps her."""
    leaver = person_factory("nurse", facility.slug, ward="MAT")
    client = token_client(facility.slug, role="bed_manager")
    worked, ahead = today() - dt.timedelta(days=2), today() + dt.timedelta(days=4)

    def nurses(day: dt.date) -> int:
        return nurses_on(client, facility, day, "MAT", "D")

    before = {day: nurses(day) for day in (worked, ahead)}
    for day in (worked, ahead):
        assert client.post(f"{api(facility)}/roster", json=entry(leaver, day, "D", ward="MAT")).status_code == 201
    assert {day: nurses(day) for day in (worked, ahead)} == {day: n + 1 for day, n in before.items()}
    with db.control() as conn:
        identity.disable_account(conn, leaver.email)
    assert {day: nurses(day) for day in (worked, ahead)} == {worked: before[worked] + 1, ahead: before[ahead]}
    listed = client.get(f"{api(facility)}/roster", params={"ward": "MAT", "from": ahead.isoformat(),
                                                            "to": ahead.isoformat()}).json()
    assert "(no longer on the staff)" in [e["name"] for e in listed if e["account_id"] == str(leaver.account_id)]


def test_a_nurse_moved_to_another_ward_no_longer_counts_on_the_old_wards_shifts_ahead(db, facility, person_factory,
                                                                                        token_client):
    """The facility admin moved a nurse from the general ward to maternity (her next page is maternity's, the
    general ward's patients no longer hers), and the general ward's shifts she was rostered on ahead still counted
    her. They no longer do; the one she worked there keeps her."""
    nurse = person_factory("nurse", facility.slug, ward="GEN")
    client = token_client(facility.slug, role="bed_manager")
    worked, ahead = today() - dt.timedelta(days=3), today() + dt.timedelta(days=5)

    def nurses(day: dt.date) -> int:
        return nurses_on(client, facility, day, "GEN", "N")

    for day in (worked, ahead):
        assert client.post(f"{api(facility)}/roster", json=entry(nurse, day, "N")).status_code == 201
    before = {day: nurses(day) for day in (worked, ahead)}
    with db.control() as conn:
        identity.set_ward(conn, account_id=nurse.account_id, tenant=facility.slug, role="nurse", ward="MAT")
    assert {day: nurses(day) for day in (worked, ahead)} == {worked: before[worked], ahead: before[ahead] - 1}


def test_refusals_write_nothing(db, facility, staff, token_client):
    manager = token_client(facility.slug, role="bed_manager")
    later = today() + dt.timedelta(days=10)
    before = rows(db, facility)
    refusals = {
        "a stranger": ({**entry(staff["float_b"], later, "D"), "account_id": str(uuid.uuid4())}, 422, "not a member"),
        "a registrar": (entry(staff["registrar"], later, "D"), 422, "does not work here as a nurse"),
        "a member of another facility": (entry(staff["elsewhere"], later, "D"), 422, "not a member"),
        "a nurse of another ward": (entry(staff["mat_nurse"], later, "D"), 422, "works on MAT"),
        "a clinician as a nurse": (entry(staff["clinician"], later, "D"), 422, "does not work here as a nurse"),
        "no such shift": (entry(staff["float_b"], later, "X"), 422, "not one of this facility's shifts"),
        "no such ward": (entry(staff["float_b"], later, "D", ward="NOWHERE"), 422, "not a ward"),
        "a month ago": (entry(staff["float_b"], today() - dt.timedelta(days=30), "D"), 422, "history"),
        "an unknown role": (entry(staff["float_b"], later, "D", role="matron"), 422, "role_on_shift"),
    }
    for case, (body, status, words) in refusals.items():
        answer = manager.post(f"{api(facility)}/roster", json=body)
        assert answer.status_code == status, (case, answer.text)
        assert words in answer.text, (case, answer.text)
    assert rows(db, facility) == before
    assert manager.post(f"{api(facility)}/roster", json=entry(staff["clinician"], later, "D", role="clinician")
                        ).status_code == 201
    assert manager.post(f"{api(facility)}/roster", json=entry(staff["float_b"], later, "N")).status_code == 201
    two_wards = manager.post(f"{api(facility)}/roster", json=entry(staff["float_b"], later, "N", ward="MAT"))
    assert two_wards.status_code == 409 and "one ward per shift" in two_wards.json()["detail"]
    again = manager.post(f"{api(facility)}/roster", json=entry(staff["float_b"], later, "N"))
    assert again.status_code == 409 and "already on GEN" in again.json()["detail"]
    assert rows(db, facility) == before + 2


def test_a_withdrawal_is_appended_kept_and_audited(db, facility, staff, token_client):
    manager = token_client(facility.slug, role="bed_manager")
    day = today() + dt.timedelta(days=20)
    added = manager.post(f"{api(facility)}/roster", json=entry(staff["float_a"], day, "D")).json()
    withdrawal = f"{api(facility)}/roster/{added['id']}/withdrawal"
    assert manager.post(withdrawal, json={"reason": ""}).status_code == 422
    assert rows(db, facility, "roster_withdrawal") == 0
    assert manager.post(withdrawal, json={"reason": "Sick leave"}).status_code == 201
    assert manager.post(withdrawal, json={"reason": "Twice"}).status_code == 409
    assert manager.post(f"{api(facility)}/roster/{uuid.uuid4()}/withdrawal",
                        json={"reason": "Guessed"}).status_code == 404
    week = {"ward": "GEN", "from": day.isoformat(), "to": day.isoformat()}
    assert added["id"] not in {r["id"] for r in manager.get(f"{api(facility)}/roster", params=week).json()}
    kept = {r["id"]: r for r in manager.get(f"{api(facility)}/roster", params={**week, "withdrawn": "true"}).json()}
    assert kept[added["id"]]["withdrawn"] and kept[added["id"]]["withdrawal_reason"] == "Sick leave"
    assert kept[added["id"]]["name"] == "Test nurse"
    # Off the shift, the person is free for it again.
    assert manager.post(f"{api(facility)}/roster", json=entry(staff["float_a"], day, "D")).status_code == 201
    # The tenant role may not rewrite the roster's history.
    with db.tenant(facility.slug) as conn, pytest.raises(sa.exc.ProgrammingError):
        conn.execute(sa.text("DELETE FROM roster_withdrawal"))
    for event_type in ("operations.roster.add", "operations.roster.withdraw"):
        sealed = [e for e in audit.read_events(db, facility.slug, event_type=event_type)
                  if added["id"] in str(e["event"])]
        assert sealed, event_type
    assert manager.get(f"{api(facility)}/roster", params={"ward": "NOWHERE"}).status_code == 404
    assert manager.get(f"{api(facility)}/roster", params={"from": "2026-01-01", "to": "2026-12-31"}).status_code == 422


def test_another_facilitys_credentials_are_refused_on_every_route(db, facility, other_facility, staff, token_client):
    own = token_client(facility.slug, role="bed_manager")
    added = own.post(f"{api(facility)}/roster", json=entry(staff["gen_nurse"], today() + dt.timedelta(days=30), "D"))
    assert added.status_code == 201
    intruder = token_client(other_facility.slug, role="bed_manager")
    before = rows(db, facility)
    assert intruder.get(f"{api(facility)}/roster").status_code == 403
    assert intruder.get(f"{api(facility)}/staffing").status_code == 403
    assert intruder.post(f"{api(facility)}/roster", json=entry(staff["float_b"], today() + dt.timedelta(days=30),
                                                                "D")).status_code == 403
    assert intruder.post(f"{api(facility)}/roster/{added.json()['id']}/withdrawal",
                         json={"reason": "Mine now"}).status_code == 403
    # Its own facility knows no such entry.
    assert intruder.post(f"{api(other_facility)}/roster/{added.json()['id']}/withdrawal",
                         json={"reason": "Mine now"}).status_code == 404
    # Reading is every role's; writing is not.
    registrar = token_client(facility.slug, role="registrar")
    assert registrar.get(f"{api(facility)}/roster").status_code == 200
    assert registrar.post(f"{api(facility)}/roster", json=entry(staff["float_b"], today() + dt.timedelta(days=31),
                                                                 "D")).status_code == 403
    assert rows(db, facility) == before


def test_my_shifts_are_her_own_in_facility_time_and_bounded(facility, other_facility, staff, token_client, signed_in):
    """GET /roster/mine, a nurse's phone asking for her shifts: hers only, another nurse on the same day left out;
    another facility's token refused; days and from out of bounds a 422 in words."""
    manager = token_client(facility.slug, role="bed_manager")
    her = signed_in("nurse", facility.slug)
    day = today() + dt.timedelta(days=40)
    mine = manager.post(f"{api(facility)}/roster", json=entry(her.person, day, "N"))
    theirs = manager.post(f"{api(facility)}/roster", json=entry(staff["float_b"], day, "D", ward="MAT"))
    assert mine.status_code == theirs.status_code == 201, (mine.text, theirs.text)
    answer = her.get(f"{api(facility)}/roster/mine", params={"from": day.isoformat(), "days": 1})
    assert answer.status_code == 200, answer.text
    assert [(r["id"], r["shift_date"], r["starts_at"]) for r in answer.json()] == [
        (mine.json()["id"], day.isoformat(), f"{day.isoformat()}T16:00:00Z")]  # 19:00 Nairobi
    assert her.get(f"{api(facility)}/roster/mine").json() == []  # from yesterday, 14 days: not that far ahead
    intruder = token_client(other_facility.slug, role="nurse")
    assert intruder.get(f"{api(facility)}/roster/mine").status_code == 403
    assert her.get(f"{api(other_facility)}/roster/mine").status_code == 403
    for params, field, words in (({"days": 0}, "days", "from 1 to 62"), ({"days": 63}, "days", "from 1 to 62"),
                                 ({"from": (today() + dt.timedelta(days=400)).isoformat()}, "from", "within 366 days"),
                                 ({"days": "many"}, None, "days"), ({"from": "next week"}, None, "from")):
        refused = her.get(f"{api(facility)}/roster/mine", params=params)
        assert refused.status_code == 422, (params, refused.text)
        assert words in refused.json()["detail"] and refused.json().get("field") == field, refused.json()


def test_the_demo_rosters_two_weeks_and_leaves_one_night_understaffed(db, other_facility, policy):
    manager = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Bed Manager", tenant=other_facility.slug,
                        role="bed_manager")
    # Admitted a day ago: a night shift already begun counts the census at its start (19:00), so patients admitted
    # just now would be no one's tonight between 19:00 and midnight Nairobi time, when CI often runs.
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with db.tenant(other_facility.slug) as conn:
        for n in range(3):
            adt.admit(conn, manager, new_patient(conn, manager, family_name=f"Demo{n}"), ward_code="GEN",
                      at=yesterday)
    written = roster_demo.generate_roster_demo(db, policy, [other_facility.slug])
    now = dt.datetime.now(dt.UTC)
    monday = today() - dt.timedelta(days=today().weekday())
    # Two wards, fourteen days, two nurses on each day and night shift (none dropped: the window is 7 days).
    assert written == {other_facility.slug: 2 * 14 * 4}
    staff = roster_routes.staff_of(db, other_facility.slug)
    with db.tenant(other_facility.slug) as conn:
        tonight = {row["ward_code"]: row
                   for row in roster.staffing(conn, staff=staff, first=today(), last=today(), tz=NAIROBI)
                   if row["shift_code"] == "N"}
        fortnight = roster.staffing(conn, staff=staff, first=monday, last=monday + dt.timedelta(days=13), tz=NAIROBI,
                                    now=now)
        withdrawn = conn.execute(sa.text("SELECT count(*) FROM roster_withdrawal")).scalar_one()
    # Three patients on GEN, its night nurses off sick: no nurse for them. Every other shift has its two.
    assert (tonight["GEN"]["census"], tonight["GEN"]["nurses"], tonight["GEN"]["understaffed"]) == (3, 0, True)
    assert withdrawn == 2
    assert [(r["ward_code"], r["date"]) for r in fortnight if r["understaffed"]] == [("GEN", today())]
    assert roster_demo.generate_roster_demo(db, policy, [other_facility.slug]) == {}


def test_the_tenant_files_roster_section_is_checked():
    defaults = make_tenant_config(roster={})
    assert [(s.code, s.patients_per_nurse) for s in defaults.roster.shifts] == [("D", 8), ("N", 10)]
    assert defaults.roster.min_rest_hours == 11
    short = {"code": "X", "name": "Short", "start": "07:00", "end": "09:00", "patients_per_nurse": 8}
    with pytest.raises(ValidationError, match="a shift lasts 4 to 16 hours"):
        make_tenant_config(roster={"shifts": [short]})
    with pytest.raises(ValidationError, match="shift codes must be unique"):
        make_tenant_config(roster={"shifts": [SHIFTS[0], SHIFTS[0]]})
