"""The operations pages over real HTTP: the bed board (facility and ward), the ED board and admitting
from it, bed states and discharge from the board, the command center and a KPI's detail page with its
drill-down; refusals as pages; another facility's session refused on every page."""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.layers.operations import ed
from tests.conftest import FACILITY_ZONE
from tests.layers.operations.conftest import OPERATIONS_CONFIG, new_patient
from tests.web.test_auth import csrf_token


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Operations Pages Facility", **OPERATIONS_CONFIG)


@pytest.fixture(scope="module")
def other_facility(tenant_factory):
    return tenant_factory(name="Elsewhere", **OPERATIONS_CONFIG)


@pytest.fixture
def manager(signed_in, facility):
    return signed_in("bed_manager", facility.slug)


def post_form(client, page_path: str, action: str, data: dict):
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(action, data={**data, "_csrf_token": csrf_token(page.text)}, follow_redirects=False)


def _ed_patient(db, facility, manager, **registration) -> tuple[uuid.UUID, uuid.UUID]:
    from appliance.substrate.principal import Principal

    acting = Principal(account_id=manager.person.account_id, kind="staff", display_name="Bed Manager",
                       tenant=facility.slug, role="bed_manager")
    with db.tenant(facility.slug) as conn:
        patient_id = new_patient(conn, acting, **({"family_name": "Wekesa", "given_names": "Baraka"} | registration))
        visit = ed.arrive(conn, acting, patient_id, complaint="abdominal pain")
    return patient_id, visit["id"]


def _occupied(html: str) -> int:
    return int(re.search(r'id="occupied-count">(\d+)<', html).group(1))


def test_admit_from_the_ed_changes_the_bed_board_and_occupancy(manager, db, facility):
    base = f"/t/{facility.slug}"
    before = manager.get(f"{base}/beds")
    assert before.status_code == 200 and "Bed board" in before.text
    _, encounter_id = _ed_patient(db, facility, manager)
    board = manager.get(f"{base}/ed")
    assert "WEKESA" in board.text and f"/ed/{encounter_id}/admit" in board.text
    # Not yet triaged: no acuity is chosen for the nurse (the first, resuscitation, was before), and the
    # browser will not send the form without one.
    acuity = board.text.split(f'id="acuity-{encounter_id}"')[1].split("</select>")[0]
    assert acuity.startswith(' name="acuity" required><option value="" selected>Acuity…</option>')
    form = manager.get(f"{base}/ed/{encounter_id}/admit")
    assert form.status_code == 200 and 'value="GEN-01"' in form.text
    admitted = post_form(manager, f"{base}/ed/{encounter_id}/admit", f"{base}/ed/{encounter_id}/admit",
                         {"bed_code": "GEN-01", "reason": "observation"})
    assert admitted.status_code == 303 and admitted.headers["location"] == f"{base}/beds/GEN?done=admitted"
    ward = manager.get(admitted.headers["location"])
    assert 'id="bed-GEN-01" data-state="occupied"' in ward.text and "WEKESA" in ward.text
    assert "Patient admitted" in ward.text
    assert _occupied(manager.get(f"{base}/beds").text) == _occupied(before.text) + 1
    assert "WEKESA" not in manager.get(f"{base}/ed").text
    cc = manager.get(f"{base}/command-center")
    assert cc.status_code == 200 and 'id="kpi-bed_occupancy"' in cc.text


def test_taken_bed_is_refused_on_the_form_with_nothing_written(manager, db, facility):
    base = f"/t/{facility.slug}"
    _, first = _ed_patient(db, facility, manager)
    _, second = _ed_patient(db, facility, manager)
    assert post_form(manager, f"{base}/ed/{first}/admit", f"{base}/ed/{first}/admit",
                     {"bed_code": "GEN-05"}).status_code == 303
    page = manager.get(f"{base}/ed/{second}/admit")
    refused = manager.post(f"{base}/ed/{second}/admit", follow_redirects=False,
                           data={"bed_code": "GEN-05", "_csrf_token": csrf_token(page.text)})
    assert refused.status_code == 409 and "GEN-05 is occupied" in refused.text
    assert f"/ed/{second}/admit" in manager.get(f"{base}/ed").text  # still waiting in the ED


def test_the_transfer_list_does_not_offer_a_man_the_maternity_ward(manager, db, facility):
    from appliance.layers.operations import adt
    from appliance.substrate.principal import Principal

    acting = Principal(account_id=manager.person.account_id, kind="staff", display_name="Bed Manager",
                       tenant=facility.slug, role="bed_manager")
    with db.tenant(facility.slug) as conn:
        man = new_patient(conn, acting, family_name="Muriuki", given_names="Kariuki", sex="male")
        stay = adt.admit(conn, acting, man, ward_code="GEN")
    try:
        board = manager.get(f"/t/{facility.slug}/beds/GEN").text
        form = board.split(f'action="/t/{facility.slug}/beds/patients/{man}/transfer"')[1].split("</form>")[0]
        assert re.search(r'<option value="MAT" disabled>Maternity \(\d+ free; women and newborns\)</option>', form)
        assert re.search(r'<option value="GEN">', form)  # other wards stay on offer
        # No ward is chosen for the bed manager: a click on Transfer alone moved him to the first ward listed.
        assert 'name="ward_code" required>\n            <option value="" selected>Transfer to…</option>' in form
        unsaid = post_form(manager, f"/t/{facility.slug}/beds/GEN", f"/t/{facility.slug}/beds/patients/{man}/transfer",
                           {"ward_code": ""})
        assert unsaid.status_code == 422 and "Choose the ward to move the patient to." in unsaid.text
        with db.tenant(facility.slug) as conn:
            assert adt.current_stay(conn, acting, man)["bed_code"] == stay["bed_code"]
    finally:
        with db.tenant(facility.slug) as conn:
            adt.discharge(conn, acting, man, disposition="home")
    assert stay["ward_code"] == "GEN"
    # Nor does the ED's admission page offer him its beds.
    arrived, visit = _ed_patient(db, facility, manager, family_name="Otieno", given_names="Brian", sex="male")
    try:
        form = manager.get(f"/t/{facility.slug}/ed/{visit}/admit").text
        assert 'value="GEN-' in form and 'value="MAT-' not in form
        # Posted anyway (a page left open while the list changed), the refusal is said beside the bed list.
        refused = post_form(manager, f"/t/{facility.slug}/ed/{visit}/admit", f"/t/{facility.slug}/ed/{visit}/admit",
                            {"bed_code": "MAT-01"})
        assert refused.status_code == 422 and '<a href="#bed_code">Bed: Maternity is a maternity ward' in refused.text
    finally:
        with db.tenant(facility.slug) as conn:
            ed.depart(conn, acting, arrived, visit, disposition="discharged")


def test_a_patient_no_ward_can_take_is_offered_no_transfer(manager, db, facility):
    """With the general ward full and the maternity ward not his, the board says there is nowhere to move
    him rather than show a Transfer button over a list of nothing but disabled wards."""
    from sqlalchemy import text

    from appliance.layers.operations import adt
    from appliance.substrate.principal import Principal

    acting = Principal(account_id=manager.person.account_id, kind="staff", display_name="Bed Manager",
                       tenant=facility.slug, role="bed_manager")
    with db.tenant(facility.slug) as conn:
        man = new_patient(conn, acting, family_name="Kiprotich", given_names="Paul", sex="male")
        bed = adt.admit(conn, acting, man, ward_code="GEN")["bed_code"]
        full = conn.execute(text("UPDATE bed SET state = 'blocked' WHERE ward_code = 'GEN' AND state = 'available' "
                                 "RETURNING code")).scalars().all()
    try:
        board = manager.get(f"/t/{facility.slug}/beds/GEN").text
        card = board.split(f'id="bed-{bed}"')[1].split("</li>")[0]
        assert "No transfer: no ward that can take this patient has a free bed." in card
        assert "/transfer" not in card and "/discharge" in card
    finally:
        with db.tenant(facility.slug) as conn:
            conn.execute(text("UPDATE bed SET state = 'available' WHERE code = ANY(:codes)"), {"codes": full})
            adt.discharge(conn, acting, man, disposition="home")


def test_discharge_and_bed_states_from_the_board(manager, db, facility):
    base = f"/t/{facility.slug}"
    patient_id, encounter_id = _ed_patient(db, facility, manager)
    post_form(manager, f"{base}/ed/{encounter_id}/admit", f"{base}/ed/{encounter_id}/admit", {"bed_code": "MAT-02"})
    board = manager.get(f"{base}/beds/MAT").text
    form = board.split(f'action="{base}/beds/patients/{patient_id}/discharge"')[1].split("</form>")[0]
    # One click must not send a patient home: the board asks first, and where they went is chosen, not assumed.
    assert 'data-confirm="Discharge ' in form and "from bed MAT-02?" in form
    assert 'name="disposition" required' in form and '<option value="" selected>' in form
    unsaid = post_form(manager, f"{base}/beds/MAT", f"{base}/beds/patients/{patient_id}/discharge",
                       {"disposition": "", "back": "ward"})
    assert unsaid.status_code == 422 and "Disposition is one of home" in unsaid.text
    # A refusal comes back on the bed board, at its top, with the board to act on: not an error page.
    assert re.search(r'id="board-refusal">Disposition is one of home[^<]*\.</p>', unsaid.text)
    assert f'action="{base}/beds/patients/{patient_id}/discharge"' in unsaid.text
    gone = post_form(manager, f"{base}/beds/MAT", f"{base}/beds/patients/{patient_id}/discharge",
                     {"disposition": "home", "back": "ward"})
    assert gone.status_code == 303 and gone.headers["location"].startswith(f"{base}/beds/MAT")
    assert 'id="bed-MAT-02" data-state="cleaning"' in manager.get(f"{base}/beds/MAT").text
    cleaned = post_form(manager, f"{base}/beds", f"{base}/beds/MAT-02/state", {"state": "available"})
    assert cleaned.status_code == 303
    assert 'id="bed-MAT-02" data-state="available"' in manager.get(f"{base}/beds").text
    wrong = post_form(manager, f"{base}/beds", f"{base}/beds/MAT-02/state", {"state": "occupied"})
    assert wrong.status_code == 422 and "occupied comes from an admission" in wrong.text
    assert 'id="board-refusal"' in wrong.text and 'id="occupied-count"' in wrong.text


def test_a_patient_is_admitted_straight_to_a_free_bed_from_the_board(manager, signed_in, db, facility):
    """Admission from a clinic or a referral: the bed board's free bed takes a patient by MRN. Refusals come
    back on the form in a sentence, with what was typed: an unknown MRN, a patient already in a bed, a
    patient waiting in the ED (admitted from there, so that visit closes), a man to the maternity ward."""
    from sqlalchemy import text

    from appliance.layers.operations import adt
    from appliance.substrate.principal import Principal

    base = f"/t/{facility.slug}"
    acting = Principal(account_id=manager.person.account_id, kind="staff", display_name="Bed Manager",
                       tenant=facility.slug, role="bed_manager")
    with db.tenant(facility.slug) as conn:
        woman = new_patient(conn, acting, family_name="Chelimo", given_names="Ruth")
        man = new_patient(conn, acting, family_name="Barasa", given_names="Tom", sex="male")
        mrn = dict(conn.execute(text("SELECT id, mrn FROM patient WHERE id IN (:w, :m)"), {"w": woman, "m": man}).all())
    in_ed, visit = _ed_patient(db, facility, manager, family_name="Wambui", given_names="Joy")
    with db.tenant(facility.slug) as conn:
        ed_mrn = conn.execute(text("SELECT mrn FROM patient WHERE id = :p"), {"p": in_ed}).scalar()
    board = manager.get(f"{base}/beds/GEN").text
    free = re.search(r'id="bed-(GEN-\d+)" data-state="available"', board).group(1)
    assert f'action="{base}/beds/{free}/admit"' in board and "Admit a patient" in board
    form = f"{base}/beds/{free}/admit"
    assert f"Admit to bed {free}" in manager.get(form).text

    unknown = post_form(manager, form, form, {"mrn": "00000000"})
    assert unknown.status_code == 422 and "No patient with that MRN at this facility" in unknown.text
    assert 'value="00000000"' in unknown.text
    waiting = post_form(manager, form, form, {"mrn": ed_mrn})
    assert waiting.status_code == 409 and "admit them from the emergency department" in waiting.text
    maternity = re.search(r'id="bed-(MAT-\d+)" data-state="available"', manager.get(f"{base}/beds/MAT").text).group(1)
    refused = post_form(manager, f"{base}/beds/{maternity}/admit", f"{base}/beds/{maternity}/admit", {"mrn": mrn[man]})
    assert refused.status_code == 422 and "is a maternity ward, for women and newborns" in refused.text

    admitted = post_form(manager, form, form, {"mrn": mrn[woman], "reason": "Referred from clinic"})
    assert admitted.status_code == 303 and admitted.headers["location"] == f"{base}/beds/GEN?done=admitted"
    ward = manager.get(admitted.headers["location"]).text
    assert f'id="bed-{free}" data-state="occupied"' in ward and "CHELIMO" in ward
    taken = manager.get(form)
    assert taken.status_code == 200 and f"Bed {free} is occupied" in taken.text and 'name="mrn"' not in taken.text
    other = re.search(r'id="bed-(GEN-\d+)" data-state="available"', ward).group(1)
    twice = post_form(manager, f"{base}/beds/{other}/admit", f"{base}/beds/{other}/admit", {"mrn": mrn[woman]})
    assert twice.status_code == 409 and f"This patient is already admitted (bed {free})" in twice.text
    with db.tenant(facility.slug) as conn:
        assert adt.current_stay(conn, acting, man) is None and adt.current_stay(conn, acting, in_ed) is None
        adt.discharge(conn, acting, woman, disposition="home")
        ed.depart(conn, acting, in_ed, visit, disposition="discharged")
    assert manager.get(f"{base}/beds/NOBED-1/admit").status_code == 404
    assert post_form(manager, form, f"{base}/beds/NOBED-1/admit", {"mrn": mrn[woman]}).status_code == 404
    assert signed_in("registrar", facility.slug).get(form).status_code == 403


def test_the_emergency_departments_bays_offer_no_admission(manager, facility):
    """An ED bay on the bed board offered 'Admit a patient', whose form is for inpatient beds only: a 404 page.
    The bays offer none, and the board says where the department's patients and their admissions are."""
    base = f"/t/{facility.slug}"
    whole = manager.get(f"{base}/beds").text
    assert re.search(rf'action="{base}/beds/GEN-\d+/admit"', whole)
    for board in (whole, manager.get(f"{base}/beds/ED").text):
        bays = board.split('id="ward-ED"')[1].split("</section>")[0]
        assert 'id="bed-ED-01" data-state="available"' in bays and "/admit" not in bays
        assert f'<a href="{base}/ed">emergency department board</a>' in bays
    assert manager.get(f"{base}/beds/ED-01/admit").status_code == 404


def test_the_emergency_departments_page_says_who_is_there_not_0_of_0_staffed(manager, db, facility):
    """The ED's own page of the bed board said "0 of 0 staffed" with occupancy "—": its bays are trolleys and
    cubicles, never a stay's bed. It says how many are in the department now, how many of them wait for a ward's
    bed, and its bays, as the ED board counts them; the facility's board keeps counting inpatient beds only."""
    base = f"/t/{facility.slug}"
    _, encounter_id = _ed_patient(db, facility, manager, family_name="Chebet", given_names="Mercy")
    with db.tenant(facility.slug) as conn:
        there = conn.execute(sa.select(sa.func.count()).select_from(ed.ed_visit)
                             .where(ed.ed_visit.c.departed_at.is_(None))).scalar_one()
        waiting = conn.execute(sa.select(sa.func.count()).select_from(ed.ed_visit).where(
            ed.ed_visit.c.departed_at.is_(None), ed.ed_visit.c.decision == "admit")).scalar_one()
    page = manager.get(f"{base}/beds/ED").text
    assert "staffed" not in page and 'id="occupancy-now"' not in page
    assert re.search(rf'id="ed-in-department">{there}<', page) and re.search(rf'id="ed-awaiting-bed">{waiting}<', page)
    assert re.search(r'id="ed-bays">4<', page) and "no bed occupancy is counted here" in page
    whole = manager.get(f"{base}/beds").text
    assert f'id="ed-census-ED">{there} in the department now · 4 bays<' in whole
    for inpatient in (whole, manager.get(f"{base}/beds/GEN").text):
        assert re.search(r'id="occupied-count">\d+</span> <span class="unit">of [1-9]\d* staffed', inpatient)
    departed = post_form(manager, f"{base}/ed", f"{base}/ed/{encounter_id}/departure", {"disposition": "discharged"})
    assert departed.status_code == 303, departed.text
    assert re.search(rf'id="ed-in-department">{there - 1}<', manager.get(f"{base}/beds/ED").text)


def _expected_counts(html: str, scope: str) -> tuple[int, ...]:
    """A page's counts of who is expected home today, tomorrow, overdue and with no date: the bed board's tiles
    (`scope` "tiles") or a row of the command centre's table (`scope` its id, "expected-GEN")."""
    if scope == "tiles":
        return tuple(int(re.search(rf'id="expected-{name}">(\d+)<', html).group(1))
                     for name in ("today", "tomorrow", "overdue", "not-set"))
    row = html.split(f'id="{scope}">')[1].split("</tr>")[0]
    return tuple(int(n) for n in re.findall(r"<td>(\d+)</td>", row)[:4])


def test_a_clinician_sets_the_expected_discharge_date_on_the_ward_and_the_command_centre_counts_it(
        manager, signed_in, db, facility, other_facility):
    """On the ward's bed board a clinician says a patient goes home tomorrow, then today: the bed says so, with its
    history; the ward's tiles and the command centre's row for the ward count it the same, and the command centre's
    wards add up to the facility. The nurse's ward list shows it. A day before the admission comes back on the board
    as a sentence, nothing written; the bed manager sees the date but no form and is refused the post; another
    facility's clinician and a guessed patient are refused."""
    base = f"/t/{facility.slug}"
    patient_id, encounter_id = _ed_patient(db, facility, manager, family_name="Odhiambo", given_names="Peter")
    admitted = post_form(manager, f"{base}/ed/{encounter_id}/admit", f"{base}/ed/{encounter_id}/admit",
                         {"bed_code": "GEN-07", "reason": "pneumonia"})
    assert admitted.status_code == 303, admitted.text
    clinician = signed_in("clinician", facility.slug)
    ward = f"{base}/beds/GEN"
    before = _expected_counts(clinician.get(ward).text, "tiles")
    bed = clinician.get(ward).text.split('id="bed-GEN-07"')[1].split("</li>")[0]
    assert "No expected discharge date" in bed and "Set expected home" in bed
    today = dt.datetime.now(FACILITY_ZONE).date()
    action = f"{base}/beds/patients/{patient_id}/expected-discharge"
    tomorrow = post_form(clinician, ward, action, {"expected_on": str(today + dt.timedelta(days=1)), "back": "ward"})
    assert tomorrow.status_code == 303 and tomorrow.headers["location"] == f"{ward}?done=expected-discharge"
    changed = post_form(clinician, ward, action, {"expected_on": str(today), "note": "oxygen off", "back": "ward"})
    assert changed.status_code == 303, changed.text
    page = clinician.get(changed.headers["location"]).text
    bed = page.split('id="bed-GEN-07"')[1].split("</li>")[0]
    assert f"Expected home {today:%d %b %Y} <span class=\"badge\">today</span>" in bed, bed
    history = re.search(rf'href="({base}/patients/{patient_id}/entries/[0-9a-f-]+/history)">History<', bed).group(1)
    versions = clinician.get(history)
    assert versions.status_code == 200 and "History of the expected discharge" in versions.text
    assert f"{today + dt.timedelta(days=1):%d %b %Y}" in versions.text and "oxygen off" in versions.text
    tiles = _expected_counts(page, "tiles")
    assert tiles == (before[0] + 1, before[1], before[2], before[3] - 1)
    centre = manager.get(f"{base}/command-center").text
    assert _expected_counts(centre, "expected-GEN") == tiles  # the ward's page and its row agree
    wards = [_expected_counts(centre, f"expected-{code}") for code in ("GEN", "MAT")]
    assert _expected_counts(centre, "expected-facility") == tuple(map(sum, zip(*wards, strict=True)))
    assert _expected_counts(manager.get(f"{base}/beds").text, "tiles") == _expected_counts(centre,
                                                                                           "expected-facility")
    nurse = signed_in("nurse", facility.slug, ward="GEN")
    listed = nurse.get(f"{base}/ward", params={"ward_code": "GEN"}).text
    assert re.search(rf'id="expected-{patient_id}">Expected home {today:%d %b %Y} <span class="badge">today<', listed)
    assert "expected-discharge" in nurse.get(ward).text.split('id="bed-GEN-07"')[1].split("</li>")[0]
    other_wards_nurse = signed_in("nurse", facility.slug, ward="MAT")
    assert "expected-discharge" not in other_wards_nurse.get(ward).text.split('id="bed-GEN-07"')[1].split("</li>")[0]
    assert post_form(other_wards_nurse, ward, action, {"expected_on": str(today)}).status_code == 403

    with db.tenant(facility.slug) as conn:
        entries = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    yesterday = post_form(clinician, ward, action, {"expected_on": str(today - dt.timedelta(days=1)), "back": "ward"})
    assert yesterday.status_code == 422
    assert (f'id="board-refusal">The expected discharge date, {today - dt.timedelta(days=1):%d %B %Y}, is before the '
            f"admission on {today:%d %B %Y}: give the day of the admission or a later one.<") in yesterday.text
    assert post_form(clinician, ward, action, {"expected_on": "soon"}).status_code == 422
    seen_by_manager = manager.get(ward).text.split('id="bed-GEN-07"')[1].split("</li>")[0]
    assert f"Expected home {today:%d %b %Y}" in seen_by_manager and "expected-discharge" not in seen_by_manager
    assert post_form(manager, ward, action, {"expected_on": str(today)}).status_code == 403
    intruder = signed_in("clinician", other_facility.slug)
    own = intruder.get(f"/t/{other_facility.slug}/beds")
    assert intruder.post(action, data={"expected_on": str(today), "_csrf_token": csrf_token(own.text)},
                         follow_redirects=False).status_code == 403
    guessed = post_form(clinician, ward, f"{base}/beds/patients/{uuid.uuid4()}/expected-discharge",
                        {"expected_on": str(today)})
    assert guessed.status_code == 404 and "not admitted here" in guessed.text
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == entries


def test_ed_steps_and_arrival_by_mrn(signed_in, db, facility):
    base = f"/t/{facility.slug}"
    registrar = signed_in("registrar", facility.slug)
    unknown = post_form(registrar, f"{base}/ed", f"{base}/ed/arrivals", {"mrn": "9999999"})
    assert unknown.status_code == 422 and "No patient with that MRN" in unknown.text
    patient_id, encounter_id = _ed_patient(db, facility, registrar)
    with db.tenant(facility.slug) as conn:
        from sqlalchemy import text
        mrn = conn.execute(text("SELECT mrn FROM patient WHERE id = :p"), {"p": patient_id}).scalar()
    again = post_form(registrar, f"{base}/ed", f"{base}/ed/arrivals", {"mrn": mrn})
    assert again.status_code == 409 and "already in the emergency department" in again.text
    clinician = signed_in("clinician", facility.slug)
    for step, data in [("triage", {"acuity": "2"}), ("seen", {}), ("decision", {"decision": "admit"})]:
        done = post_form(clinician, f"{base}/ed", f"{base}/ed/{encounter_id}/{step}", data)
        assert done.status_code == 303, done.text
    bad = post_form(clinician, f"{base}/ed", f"{base}/ed/{encounter_id}/triage", {"acuity": "urgent"})
    assert bad.status_code == 422
    assert post_form(clinician, f"{base}/ed", f"{base}/ed/{encounter_id}/dance", {}).status_code == 422
    # One click on 'Record departure' must not record the patient as sent home: where they went is chosen.
    board = clinician.get(f"{base}/ed").text
    departure = board.split(f'action="{base}/ed/{encounter_id}/departure"')[1].split("</form>")[0]
    assert 'name="disposition" required><option value="" selected>' in departure
    unsaid = post_form(clinician, f"{base}/ed", f"{base}/ed/{encounter_id}/departure", {"disposition": ""})
    assert unsaid.status_code == 422 and f"/ed/{encounter_id}/" in clinician.get(f"{base}/ed").text
    # The refusal is said on the ED board itself, with the visit still there to act on.
    assert "This needs fixing before it can be saved" in unsaid.text and "Disposition is one of" in unsaid.text
    assert f'action="{base}/ed/{encounter_id}/departure"' in unsaid.text
    left = post_form(clinician, f"{base}/ed", f"{base}/ed/{encounter_id}/departure",
                     {"disposition": "left_against_advice"})
    assert left.status_code == 303
    # A clinician records ED steps but admits nobody to a bed (that is the bed manager's).
    assert clinician.get(f"{base}/ed/{encounter_id}/admit").status_code == 403


def test_a_departure_recorded_as_died_takes_the_clinician_to_certify_it(signed_in, db, facility, other_facility):
    """'Died' on the ED board recorded the departure alone, nothing leading to the certificate: the clinician is now
    taken to the certificate's form for that patient, and until it is signed the chart says the death is not yet
    certified, with the way to do it. Another facility's clinician is refused the departure, the visit left open."""
    base = f"/t/{facility.slug}"
    clinician = signed_in("clinician", facility.slug)
    patient_id, encounter_id = _ed_patient(db, facility, clinician)
    intruder = signed_in("clinician", other_facility.slug)
    own = intruder.get(f"/t/{other_facility.slug}/ed")
    refused = intruder.post(f"{base}/ed/{encounter_id}/departure", follow_redirects=False,
                            data={"_csrf_token": csrf_token(own.text), "disposition": "died"})
    assert refused.status_code == 403
    assert f'action="{base}/ed/{encounter_id}/departure"' in clinician.get(f"{base}/ed").text  # still there

    died = post_form(clinician, f"{base}/ed", f"{base}/ed/{encounter_id}/departure", {"disposition": "died"})
    chart = f"{base}/patients/{patient_id}"
    assert died.status_code == 303 and died.headers["location"] == f"{chart}/death/new", died.text
    assert clinician.get(died.headers["location"]).status_code == 200
    banner = clinician.get(f"{chart}/chart").text
    said = banner.split('id="death-not-certified"')[1].split("</div>")[0]
    assert "Recorded as died" in said and "emergency department" in said and "death not yet certified" in said
    assert f'href="{chart}/death/new"' in said and 'id="deceased"' not in banner

    typed = {"died_on": dt.date.today().isoformat(), "died_time": "00:00", "place": "this_facility",
             "a_code": "I21.9", "a_interval": "3 hours", "manner": "disease", "pregnancy": "not_pregnant"}
    certified = post_form(clinician, f"{chart}/death/new", f"{chart}/death", typed)
    assert certified.status_code == 303, certified.text
    banner = clinician.get(f"{chart}/chart").text
    assert 'id="deceased"' in banner and 'id="death-not-certified"' not in banner


def test_a_discharge_as_died_from_the_bed_board_says_the_death_is_not_yet_certified(manager, signed_in, db, facility):
    """The bed manager, who certifies no death, is back on the board told that it is not yet certified and where
    that is done; the chart says so to the clinician, who certifies it from there."""
    base = f"/t/{facility.slug}"
    patient_id, encounter_id = _ed_patient(db, facility, manager)
    admitted = post_form(manager, f"{base}/ed/{encounter_id}/admit", f"{base}/ed/{encounter_id}/admit",
                         {"ward_code": "GEN"})
    assert admitted.status_code == 303, admitted.text
    gone = post_form(manager, f"{base}/beds", f"{base}/beds/patients/{patient_id}/discharge", {"disposition": "died"})
    assert gone.status_code == 303 and gone.headers["location"] == f"{base}/beds?done=departed-died", gone.text
    assert "The death is not yet certified" in manager.get(gone.headers["location"]).text
    clinician = signed_in("clinician", facility.slug)
    said = clinician.get(f"{base}/patients/{patient_id}/chart").text.split('id="death-not-certified"')[1]
    assert "ward GEN" in said.split("</div>")[0] and "Certify the death" in said.split("</div>")[0]


def test_a_departure_recorded_as_died_by_mistake_is_corrected_with_its_history(signed_in, db, facility,
                                                                              other_facility):
    """'Died' clicked on the wrong row left the chart saying 'death not yet certified' and the patient on the deaths
    to certify for ever. The certificate's form now starts from the departure's time of death, its banner without a
    link to itself, and a clinician corrects the departure with a reason; the history keeps both versions. Another
    facility's clinician and a guessed visit are refused; once the death is certified, the certificate is withdrawn
    first (409), nothing written."""
    base = f"/t/{facility.slug}"
    clinician = signed_in("clinician", facility.slug)
    patient_id, encounter_id = _ed_patient(db, facility, clinician)
    chart = f"{base}/patients/{patient_id}"
    assert post_form(clinician, f"{base}/ed", f"{base}/ed/{encounter_id}/departure",
                     {"disposition": "died"}).status_code == 303
    with db.tenant(facility.slug) as conn:
        departed = conn.execute(sa.text("SELECT departed_at FROM ed_visit WHERE id = :id"),
                                {"id": encounter_id}).scalar_one().astimezone(FACILITY_ZONE)
    form = clinician.get(f"{chart}/death/new").text
    assert f'value="{departed:%Y-%m-%d}"' in form and f'value="{departed:%H:%M}"' in form
    assert '<option value="this_facility" selected>' in form
    said = form.split('id="death-not-certified"')[1].split("</div>")[0]
    assert "death not yet certified" in said and "/death/new" not in said  # no link to the page it is on
    assert 'id="departure-correction-form"' in form and 'value="discharged"' in form and 'value="admitted"' not in form

    correction = f"{chart}/death/departure-correction"
    intruder = signed_in("clinician", other_facility.slug)
    own = intruder.get(f"/t/{other_facility.slug}/ed")
    refused = intruder.post(correction, follow_redirects=False, data={
        "_csrf_token": csrf_token(own.text), "encounter_id": str(encounter_id), "disposition": "discharged",
        "departure_reason": "not theirs"})
    assert refused.status_code == 403
    guessed = post_form(clinician, f"{chart}/death/new", correction, {
        "encounter_id": str(uuid.uuid4()), "disposition": "discharged", "departure_reason": "wrong row clicked"})
    assert guessed.status_code == 404
    unexplained = post_form(clinician, f"{chart}/death/new", correction,
                            {"encounter_id": str(encounter_id), "disposition": "discharged"})
    assert unexplained.status_code == 422 and 'id="departure_reason-error"' in unexplained.text
    assert "not a death" in unexplained.text and 'value="discharged" selected' in unexplained.text
    assert "death not yet certified" in clinician.get(f"{chart}/chart").text  # nothing written

    typed = {"died_on": f"{departed:%Y-%m-%d}", "died_time": f"{departed:%H:%M}", "place": "this_facility",
             "a_code": "I21.9", "manner": "disease", "pregnancy": "not_pregnant"}
    assert post_form(clinician, f"{chart}/death/new", f"{chart}/death", typed).status_code == 303
    certified = post_form(clinician, f"{chart}/death", correction, {
        "encounter_id": str(encounter_id), "disposition": "discharged", "departure_reason": "wrong row clicked"})
    assert certified.status_code == 409 and "marked entered in error first" in certified.text
    assert post_form(clinician, f"{chart}/death", f"{chart}/death/entered-in-error",
                     {"reason": "certified on the wrong patient"}).status_code == 303

    corrected = post_form(clinician, f"{chart}/death/new", correction, {
        "encounter_id": str(encounter_id), "disposition": "discharged", "departure_reason": "wrong row clicked"})
    assert corrected.status_code == 303, corrected.text
    assert "/history?done=departure-corrected" in corrected.headers["location"]
    history = clinician.get(corrected.headers["location"])
    assert history.status_code == 200 and "wrong row clicked" in history.text and "Departure corrected" in history.text
    banner = clinician.get(f"{chart}/chart").text
    assert 'id="death-not-certified"' not in banner and 'id="deceased"' not in banner
    assert str(patient_id) not in clinician.get(f"{base}/deaths/to-certify").text
    again = post_form(clinician, f"{chart}/death/new", correction, {
        "encounter_id": str(encounter_id), "disposition": "transferred", "departure_reason": "twice"})
    assert again.status_code == 404  # corrected already: no departure recorded as died


def test_the_ed_board_says_the_complaint_and_how_long_a_bed_has_been_awaited(signed_in, db, facility):
    """Triage reads the presenting complaint, which the board did not show; and a patient the ED decided to admit
    waits for a bed from that decision (ED boarding time's start), not from arrival, the board's only clock."""
    from sqlalchemy import text

    base = f"/t/{facility.slug}"
    nurse = signed_in("nurse", facility.slug)
    _, encounter_id = _ed_patient(db, facility, nurse, family_name="Kiprono", given_names="Amos")
    with db.tenant(facility.slug) as conn:  # arrived 3 h 10 min ago, the decision to admit 45 min ago
        conn.execute(text("UPDATE ed_visit SET arrived_at = now() - interval '190 minutes', acuity = 3, "
                          "decision = 'admit', decided_at = now() - interval '45 minutes' WHERE id = :v"),
                     {"v": encounter_id})
    board = nurse.get(f"{base}/ed").text
    assert f'id="complaint-{encounter_id}">abdominal pain</span>' in board and "Walk-in" in board
    assert re.search(rf'id="in-department-{encounter_id}">3 h 1\d min<', board)
    assert re.search(rf'id="waiting-for-bed-{encounter_id}">waiting for a bed 4\d min<', board)
    visits = nurse.get(f"/api/t/{facility.slug}/ed/visits").json()
    assert {"complaint": "abdominal pain", "arrival_mode": "walk_in"}.items() <= next(
        v for v in visits if v["id"] == str(encounter_id)).items()
    left = post_form(nurse, f"{base}/ed", f"{base}/ed/{encounter_id}/departure", {"disposition": "discharged"})
    assert left.status_code == 303 and f"complaint-{encounter_id}" not in nurse.get(f"{base}/ed").text


def test_the_bed_board_lists_the_eds_admissions_waiting_for_a_bed(manager, signed_in, db, facility):
    """The bed manager lands on the bed board, which did not say that anyone in the ED was waiting for one of its
    beds: the ED's patients decided for admission are listed there, longest since the decision first, each read on
    the patient's access log, with the way to admit them; the patient not decided for admission is not."""
    from sqlalchemy import text

    from appliance.substrate import record

    base = f"/t/{facility.slug}"
    waiting_long, long_visit = _ed_patient(db, facility, manager, family_name="Ruto", given_names="Peter")
    waiting_short, short_visit = _ed_patient(db, facility, manager, family_name="Atieno", given_names="Mary")
    _, undecided = _ed_patient(db, facility, manager, family_name="Mwangi", given_names="James")
    with db.tenant(facility.slug) as conn:
        conn.execute(text("UPDATE ed_visit SET decision = 'admit', decided_at = now() - make_interval(mins => :m) "
                          "WHERE id = :v"), [{"v": long_visit, "m": 95}, {"v": short_visit, "m": 20}])
    seen: list = []
    hook = lambda conn, principal, action, patient_id, kind, ids: seen.append((action, patient_id, kind))  # noqa: E731
    record.register_access_hook(hook)
    try:
        board = manager.get(f"{base}/beds").text
    finally:
        record.unregister_access_hook(hook)
    waiting = board.split('id="awaiting-beds"')[1].split("</section>")[0]
    assert waiting.index("RUTO") < waiting.index("ATIENO") and "MWANGI" not in waiting
    assert re.search(rf'id="awaiting-for-{long_visit}">waiting for a bed 1 h 3\d min<', waiting)
    assert f'href="{base}/ed/{short_visit}/admit">Admit to a bed</a>' in waiting and "abdominal pain" in waiting
    assert {("read", waiting_long, "ed_arrival"), ("read", waiting_short, "ed_arrival")} <= set(seen)
    assert 'id="awaiting-beds"' not in manager.get(f"{base}/beds/GEN").text
    # a nurse reads who waits, and is not offered the admission, which is the bed manager's
    nurse_board = signed_in("nurse", facility.slug).get(f"{base}/beds").text
    assert f'id="awaiting-{long_visit}"' in nurse_board and f"/ed/{long_visit}/admit" not in nurse_board
    admitted = post_form(manager, f"{base}/ed/{long_visit}/admit", f"{base}/ed/{long_visit}/admit",
                         {"bed_code": "", "ward_code": "GEN"})
    assert admitted.status_code == 303
    assert f'id="awaiting-{long_visit}"' not in manager.get(f"{base}/beds").text
    for visit in (short_visit, undecided):
        post_form(manager, f"{base}/ed", f"{base}/ed/{visit}/departure", {"disposition": "discharged"})
    post_form(manager, f"{base}/beds", f"{base}/beds/patients/{waiting_long}/discharge", {"disposition": "home"})
    assert 'id="awaiting-beds"' not in manager.get(f"{base}/beds").text


def test_a_patient_in_a_bed_is_refused_an_ed_arrival_by_the_mrn_typed(signed_in, db, facility):
    from sqlalchemy import text

    from appliance.layers.operations import adt
    from appliance.substrate.principal import Principal

    base = f"/t/{facility.slug}"
    registrar = signed_in("registrar", facility.slug)
    acting = Principal(account_id=registrar.person.account_id, kind="staff", display_name="Registrar",
                       tenant=facility.slug, role="bed_manager")
    with db.tenant(facility.slug) as conn:
        patient_id = new_patient(conn, acting, family_name="Kamau", given_names="Grace")
        stay = adt.admit(conn, acting, patient_id, ward_code="GEN")
        mrn = conn.execute(text("SELECT mrn FROM patient WHERE id = :p"), {"p": patient_id}).scalar()
    refused = post_form(registrar, f"{base}/ed", f"{base}/ed/arrivals", {"mrn": mrn, "complaint": "fall"})
    assert refused.status_code == 409 and f'<a href="#mrn">MRN: This patient is admitted, in bed {stay["bed_code"]}' \
        in refused.text
    assert 'value="fall"' in refused.text and "KAMAU" not in refused.text.split('id="visits-title"')[1]
    with db.tenant(facility.slug) as conn:
        adt.discharge(conn, acting, patient_id, disposition="home")


def test_kpi_detail_page_with_trend_companions_and_drill_down(manager, signed_in, facility):
    base = f"/t/{facility.slug}"
    detail = manager.get(f"{base}/command-center/bed_occupancy")
    assert detail.status_code == 200
    assert "<svg" in detail.text and "Companion figures" in detail.text and "Bed turnover" in detail.text
    assert 'id="drill-entries"' in detail.text and "WHO Service Availability" in detail.text
    # The column behind the number says what each entry measures and in what: it read 'Measure', over 2.4 (days in
    # bed) here, 148.0 (minutes) on ED length of stay and 1.0 (left unseen, yes) on left without being seen.
    assert '<th scope="col">Days in bed so far</th>' in detail.text
    ed_stay = manager.get(f"{base}/command-center/ed_length_of_stay").text
    assert '<th scope="col">Minutes from arrival to departure</th>' in ed_stay
    from appliance.substrate import kpis
    from tests.layers.operations.conftest import REPO

    assert all(d.measure for d in kpis.load_definitions(REPO / "policies" / "kpis.toml") if not d.unavailable)
    nurse = signed_in("nurse", facility.slug)
    seen_by_nurse = nurse.get(f"{base}/command-center/bed_occupancy")
    assert seen_by_nurse.status_code == 200 and "Entries behind the number" not in seen_by_nurse.text
    assert manager.get(f"{base}/command-center/no_such_kpi").status_code == 404
    assert manager.get(f"{base}/command-center/lab_turnaround", params={"day": "soon"}).status_code == 422
    eight = manager.get(f"{base}/command-center/same_day_charge_capture")
    assert eight.status_code == 200


def _named_without_guess(path: str) -> str:
    """A test's name without its random guessed id: every pytest-xdist worker collects the module, and their
    names must agree."""
    return re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "{guess}", path)


PAGES = ["/beds", "/beds/GEN", "/ed", "/command-center", "/command-center/bed_occupancy",
         f"/ed/{uuid.uuid4()}/admit", "/beds/GEN-02/admit"]


@pytest.mark.parametrize("path", PAGES, ids=_named_without_guess)
def test_another_facilitys_session_is_refused_every_page(signed_in, facility, other_facility, path):
    intruder = signed_in("bed_manager", other_facility.slug)
    answer = intruder.get(f"/t/{facility.slug}{path}")
    assert answer.status_code == 403 and "not working in this facility" in answer.text


@pytest.mark.parametrize("action", ["/beds/GEN-02/state", "/beds/GEN-02/admit",
                                    f"/beds/patients/{uuid.uuid4()}/discharge",
                                    f"/beds/patients/{uuid.uuid4()}/transfer",
                                    f"/beds/patients/{uuid.uuid4()}/expected-discharge", "/ed/arrivals",
                                    f"/ed/{uuid.uuid4()}/seen", f"/ed/{uuid.uuid4()}/admit"],
                         ids=_named_without_guess)
def test_another_facilitys_session_cannot_post(signed_in, facility, other_facility, action):
    intruder = signed_in("clinician" if action.endswith("/expected-discharge") else "bed_manager", other_facility.slug)
    own = intruder.get(f"/t/{other_facility.slug}/beds")
    answer = intruder.post(f"/t/{facility.slug}{action}", data={"_csrf_token": csrf_token(own.text),
                                                                "state": "blocked"}, follow_redirects=False)
    assert answer.status_code == 403


@pytest.mark.parametrize("path", [f"/ed/{uuid.uuid4()}/admit", "/beds/NOWARD"], ids=_named_without_guess)
def test_guessed_ids_find_nothing(manager, facility, path):
    answer = manager.get(f"/t/{facility.slug}{path}")
    assert answer.status_code == 404


def test_guessed_ids_on_forms_find_nothing(manager, facility):
    base = f"/t/{facility.slug}"
    for action, disposition in [(f"/beds/patients/{uuid.uuid4()}/discharge", "home"),
                                (f"/beds/patients/{uuid.uuid4()}/discharge", "died"),
                                (f"/ed/{uuid.uuid4()}/seen", "home"), (f"/ed/{uuid.uuid4()}/departure", "died")]:
        answer = post_form(manager, f"{base}/beds", f"{base}{action}", {"disposition": disposition})
        assert answer.status_code == 404, action
    unchosen = post_form(manager, f"{base}/beds", f"{base}/beds/patients/{uuid.uuid4()}/transfer", {"ward_code": ""})
    assert unchosen.status_code == 404


def test_clinic_day_book_check_in_and_a_slot_taken_twice(signed_in, db, facility):
    base = f"/t/{facility.slug}"
    registrar = signed_in("registrar", facility.slug)
    patient_id, _ = _ed_patient(db, facility, registrar)
    with db.tenant(facility.slug) as conn:
        from sqlalchemy import text
        mrn = conn.execute(text("SELECT mrn FROM patient WHERE id = :p"), {"p": patient_id}).scalar()
    assert registrar.get(f"{base}/clinics", follow_redirects=False).headers["location"] == f"{base}/clinics/MOPC"
    day = (dt.date.today() + dt.timedelta(days=6)).isoformat()
    page = registrar.get(f"{base}/clinics/MOPC", params={"date": day})
    assert page.status_code == 200 and page.text.count('name="slot_id"') == 8
    slot_id = re.search(r'name="slot_id" value="([0-9a-f-]+)"', page.text).group(1)
    action = f"{base}/clinics/MOPC/appointments"
    booked = post_form(registrar, f"{base}/clinics/MOPC?date={day}", action,
                       {"slot_id": slot_id, "date": day, "mrn": mrn})
    assert booked.status_code == 303 and "done=booked" in booked.headers["location"]
    listed = registrar.get(booked.headers["location"])
    assert "WEKESA" in listed.text and "Appointment booked" in listed.text
    # Cancelling frees the slot for someone else and cannot be undone: one stray click does not do it.
    cancel = listed.text.split("/cancelled\"")[1].split(">")[0]
    assert re.search(r"data-confirm=\"Cancel WEKESA, Baraka(&#39;|')s appointment at \d\d:\d\d\? The slot", cancel)
    twice = post_form(registrar, f"{base}/clinics/MOPC?date={day}", action, {"slot_id": slot_id, "date": day,
                                                                             "mrn": mrn})
    assert twice.status_code == 409 and "already booked" in twice.text
    unknown = post_form(registrar, f"{base}/clinics/MOPC?date={day}", action, {"slot_id": "x", "date": day,
                                                                               "mrn": mrn})
    assert unknown.status_code == 422
    other_slot = re.findall(r'name="slot_id" value="([0-9a-f-]+)"', page.text)[3]
    mistyped = post_form(registrar, f"{base}/clinics/MOPC?date={day}", action,
                         {"slot_id": other_slot, "date": day, "mrn": "99999999"})
    # What was typed stays in the slot it was typed in, and the summary names the field as people do.
    assert mistyped.status_code == 422 and f'href="#mrn-{other_slot}">MRN: No patient with that MRN' in mistyped.text
    assert re.search(rf'id="mrn-{other_slot}"[^>]*value="99999999" aria-invalid="true"', mistyped.text)
    appointment = re.search(r'/appointments/([0-9a-f-]+)/checked_in', listed.text).group(1)
    checked = post_form(registrar, booked.headers["location"], f"{base}/appointments/{appointment}/checked_in", {})
    assert checked.status_code == 303
    after = registrar.get(checked.headers["location"]).text
    assert "checked in" in after and f'href="{base}/patients/{patient_id}">waiting</a>' in after
    visit_page = registrar.get(f"{base}/patients/{patient_id}")
    assert visit_page.status_code == 200 and "<td>Medical outpatient clinic appointment</td>" in visit_page.text
    from appliance.layers.clinical import service as clinical
    from appliance.substrate.principal import Principal

    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Clinic Clinician",
                          tenant=facility.slug, role="clinician")
    with db.tenant(facility.slug) as conn:  # the clinician sees the patient, then closes the visit
        visit = conn.execute(text("SELECT encounter_id FROM appointment WHERE id = :a"), {"a": appointment}).scalar()
        for status in ("in_progress", "finished"):
            clinical.transition_encounter(conn, clinician, patient_id, visit, status)
    seen = registrar.get(checked.headers["location"]).text
    assert f'href="{base}/patients/{patient_id}">seen</a>' in seen and ">waiting</a>" not in seen
    assert registrar.get(f"{base}/clinics/NOPE").status_code == 404
    assert registrar.get(f"{base}/clinics/MOPC", params={"date": "someday"}).status_code == 422
    early = post_form(registrar, booked.headers["location"], f"{base}/appointments/{appointment}/no_show", {})
    assert early.status_code == 409
    # Said on the clinic's day the appointment is on, not on an error page away from it.
    assert "This needs fixing before it can be saved" in early.text and "Medical outpatient clinic · " in early.text
    assert "cannot become no show" in early.text and 'name="slot_id"' in early.text


def test_the_front_desk_moves_a_booked_appointment_to_another_slot(signed_in, db, facility):
    """Reschedule from the clinic's day: the appointment's slots and another day's, a free one chosen, the
    old slot free again; a taken slot refused on the same page; a checked-in appointment cannot move."""
    base = f"/t/{facility.slug}"
    registrar = signed_in("registrar", facility.slug)
    patient_id, _ = _ed_patient(db, facility, registrar, family_name="Njeri", given_names="Alice")
    with db.tenant(facility.slug) as conn:
        from sqlalchemy import text
        mrn = conn.execute(text("SELECT mrn FROM patient WHERE id = :p"), {"p": patient_id}).scalar()
    day = dt.date.today() + dt.timedelta(days=13)
    later = day + dt.timedelta(days=1)
    day_page = f"{base}/clinics/MOPC?date={day.isoformat()}"
    first, second, taken = re.findall(r'name="slot_id" value="([0-9a-f-]+)"', registrar.get(day_page).text)[:3]
    for slot_id, who in ((first, mrn), (taken, mrn)):
        booked = post_form(registrar, day_page, f"{base}/clinics/MOPC/appointments",
                           {"slot_id": slot_id, "date": day.isoformat(), "mrn": who})
        assert booked.status_code == 303, booked.text
    listed = registrar.get(day_page).text
    appointment = re.search(rf'id="slot-{first}".*?/appointments/([0-9a-f-]+)/reschedule', listed, re.S).group(1)
    form = f"{base}/appointments/{appointment}/reschedule"
    page = registrar.get(form)
    assert page.status_code == 200 and "Reschedule NJERI, Alice" in page.text
    # Its day arrows and date wrap on a phone rather than push the page sideways.
    assert 'class="inline day-nav"' in page.text
    assert "form.day-nav { flex-wrap: wrap; }" in registrar.get("/static/healthos.css").text
    assert f'id="slot-{second}"' in page.text and f'id="slot-{first}"' not in page.text  # only free slots offered
    other_day = registrar.get(form, params={"date": later.isoformat()})
    assert other_day.status_code == 200 and f"Free slots on {later:%d %b %Y}" in other_day.text
    refused = post_form(registrar, form, form, {"slot_id": taken, "date": day.isoformat()})
    assert refused.status_code == 409 and "That slot is already booked; choose another." in refused.text
    assert f'id="slot-{second}"' in refused.text  # the same page, its free slots still there to choose
    moved = post_form(registrar, form, form, {"slot_id": second, "date": day.isoformat()})
    assert moved.status_code == 303 and moved.headers["location"].endswith(f"date={day.isoformat()}&done=rescheduled")
    after = registrar.get(moved.headers["location"]).text
    assert "Appointment moved to its new time." in after
    row = lambda slot_id: after.split(f'id="slot-{slot_id}"')[1].split("</tr>")[0]  # noqa: E731
    assert "NJERI" in row(second) and "NJERI" not in row(first) and ">free<" in row(first)
    with db.tenant(facility.slug) as conn:  # the move is an entry of the record
        assert conn.execute(text("SELECT count(*) FROM entry WHERE patient_id = :p AND kind = 'appointment_status'"),
                            {"p": patient_id}).scalar() == 1
    checked = post_form(registrar, moved.headers["location"], f"{base}/appointments/{appointment}/checked_in", {})
    assert checked.status_code == 303
    late = registrar.get(form)
    assert late.status_code == 200 and "only a booked appointment can be moved" in late.text
    assert post_form(registrar, form, form, {"slot_id": first}).status_code == 409
    assert registrar.get(f"{base}/appointments/{uuid.uuid4()}/reschedule").status_code == 404


def test_a_clinic_opens_on_the_facilitys_today_not_the_servers(signed_in, tenant_factory):
    """A facility whose date differs from UTC's now (one side of the date line or the other, by the hour)
    opens its clinic on its own today."""
    zone = "Pacific/Kiritimati" if dt.datetime.now(dt.UTC).hour >= 11 else "Pacific/Pago_Pago"  # UTC+14, UTC-11
    far = tenant_factory(name="Line Islands Clinic", **{**OPERATIONS_CONFIG, "timezone": zone})
    local_today = dt.datetime.now(zoneinfo.ZoneInfo(zone)).date()
    assert local_today != dt.datetime.now(dt.UTC).date()
    page = signed_in("registrar", far.slug).get(f"/t/{far.slug}/clinics/MOPC")
    assert page.status_code == 200 and f"Medical outpatient clinic · {local_today:%d %b %Y}" in page.text


@pytest.mark.parametrize("path", ["/clinics/MOPC", "/clinics", f"/appointments/{uuid.uuid4()}/reschedule"],
                         ids=_named_without_guess)
def test_another_facilitys_session_is_refused_the_clinic_pages(signed_in, facility, other_facility, path):
    intruder = signed_in("registrar", other_facility.slug)
    assert intruder.get(f"/t/{facility.slug}{path}", follow_redirects=False).status_code == 403
    own = intruder.get(f"/t/{other_facility.slug}/ed")
    for action in ["/clinics/MOPC/appointments", f"/appointments/{uuid.uuid4()}/cancelled",
                   f"/appointments/{uuid.uuid4()}/reschedule"]:
        refused = intruder.post(f"/t/{facility.slug}{action}", data={"_csrf_token": csrf_token(own.text)},
                                follow_redirects=False)
        assert refused.status_code == 403


def test_a_guessed_appointment_finds_nothing(signed_in, facility):
    registrar = signed_in("registrar", facility.slug)
    answer = post_form(registrar, f"/t/{facility.slug}/ed", f"/t/{facility.slug}/appointments/{uuid.uuid4()}/cancelled",
                       {})
    assert answer.status_code == 404
