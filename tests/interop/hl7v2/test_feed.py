"""Messages over a real MLLP connection applied to the record: each type, its rows and audit events, its
ACK field by field; refusals that write nothing; resends applied once."""

from __future__ import annotations

import datetime as dt
import secrets

import sqlalchemy as sa

from appliance.interop.hl7v2.models import hl7_message
from appliance.layers.clinical import service
from appliance.substrate import audit, identity
from tests.interop.hl7v2.conftest import adt, control_id, counts, orm, oru


def _mrn() -> str:
    return "R" + secrets.token_hex(4).upper()


def _patient(db, tenant: str, identifier: str) -> dict | None:
    with db.tenant(tenant) as conn:
        row = conn.execute(sa.text(
            "SELECT p.* FROM patient p JOIN patient_identifier i ON i.patient_id = p.id WHERE i.value = :v"),
            {"v": identifier}).mappings().first()
    return dict(row) if row else None


def test_a04_registers_the_patient_and_opens_the_visit(db, facility, feed):
    identifier = _mrn()
    control = control_id()
    [ack] = feed(adt(facility.slug, "A04", identifier, control=control, national_id="NI" + identifier))
    assert ack.code == "AA", ack.text
    assert ack.field("MSA", 2) == control
    assert ack.field("MSH", 3) == "HEALTHOS" and ack.field("MSH", 4) == facility.slug
    assert ack.field("MSH", 5) == "REGSYS" and ack.field("MSH", 6) == "HOSPITAL"
    assert ack.field("MSH", 9) == "ACK" and ack.field("MSH", 9, 2) == "A04"
    assert ack.field("ERR", 3) == ""
    patient = _patient(db, facility.slug, identifier)
    assert patient["family_name"] == "Otieno" and patient["given_names"] == "Grace Akinyi"
    assert str(patient["birth_date"]) == "1990-02-14" and patient["sex"] == "female"
    assert patient["subject_id"] is not None
    with db.control() as conn:  # the patient portal finds the chart by the facilities its subject is noted at
        assert facility.slug in identity.facilities_of(conn, patient["subject_id"])[1]
    with db.tenant(facility.slug) as conn:
        systems = dict(conn.execute(sa.text("SELECT system, value FROM patient_identifier WHERE patient_id = :p"),
                                    {"p": patient["id"]}).all())
        visit = conn.execute(sa.text("SELECT encounter_class, status FROM encounter WHERE patient_id = :p"),
                             {"p": patient["id"]}).one()
    assert systems == {"regsys_mr": identifier, "national_id": "NI" + identifier}
    assert tuple(visit) == ("outpatient", "arrived")


def _last_seq(db, tenant: str) -> int:
    events = audit.read_events(db, tenant)
    return events[-1]["seq"] + 1 if events else 0


def test_every_act_is_audited_as_the_feed(db, facility, feed, feed_token):
    with db.control_autocommit() as conn:
        principal = identity.principal_for_token(conn, feed_token)
    first = _last_seq(db, facility.slug)
    identifier = _mrn()
    [ack] = feed(adt(facility.slug, "A04", identifier))
    assert ack.code == "AA", ack.text
    written = audit.read_events(db, facility.slug, first_seq=first)
    types = {e["type"] for e in written}
    assert {"record.demographics.create", "record.encounter.create", "record.patient.search"} <= types, types
    for event in written:
        who = event["event"]["agent"][0]["who"]
        assert who["account"] == str(principal.account_id) and who["via"] == "token", event
        assert who["name"] == "lab HL7 feed" and who["tenant"] == facility.slug


def test_a08_corrects_the_registration_and_keeps_what_it_does_not_send(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier, national_id="N" + identifier))[0].code == "AA"
    before = _patient(db, facility.slug, identifier)
    [ack] = feed(adt(facility.slug, "A08", identifier, family="Ochieng", given="Grace", address="", phone=""))
    assert ack.code == "AA", ack.text
    after = _patient(db, facility.slug, identifier)
    assert after["id"] == before["id"] and after["family_name"] == "Ochieng" and after["given_names"] == "Grace"
    assert after["phone"] == "+254700000001" and after["address"]["village"] == "Kisumu"
    assert after["subject_id"] == before["subject_id"]
    with db.tenant(facility.slug) as conn:
        kept = conn.execute(sa.text("SELECT count(*) FROM patient_identifier WHERE patient_id = :p"),
                            {"p": after["id"]}).scalar()
        versions = conn.execute(sa.text("SELECT count(*) FROM entry WHERE patient_id = :p AND kind = 'demographics'"),
                                {"p": after["id"]}).scalar()
    assert kept == 2 and versions == 2


def test_a08_correcting_the_national_id_relinks_the_chart_to_that_ids_person(db, facility, feed):
    """An A04 that carried another person's national ID linked the chart to that person's subject; the A08
    that corrects it links the chart to the corrected ID's subject, and the other person's is as it was."""
    identifier, other_id, right_id = _mrn(), "NO" + _mrn(), "NR" + _mrn()
    with db.control() as conn:
        other = identity.match_or_create_subject(conn, family_name="Kamau", given_names="John",
                                                 national_id=other_id).subject_id
        other_row = conn.execute(sa.select(identity.subject).where(identity.subject.c.id == other)).one()
    assert feed(adt(facility.slug, "A04", identifier, national_id=other_id))[0].code == "AA"
    assert _patient(db, facility.slug, identifier)["subject_id"] == other
    [ack] = feed(adt(facility.slug, "A08", identifier, national_id=right_id))
    assert ack.code == "AA", ack.text
    relinked = _patient(db, facility.slug, identifier)["subject_id"]
    with db.control() as conn:
        assert conn.execute(sa.select(identity.subject.c.national_id).where(
            identity.subject.c.id == relinked)).scalar() == right_id
        assert identity.facilities_of(conn, other)[1] == set() and facility.slug in identity.facilities_of(
            conn, relinked)[1]
        assert conn.execute(sa.select(identity.subject).where(identity.subject.c.id == other)).one() == other_row


def test_a_national_id_whose_holder_differs_is_not_applied_and_the_sender_is_told_only_what_differs(
        db, facility, feed):
    """An A04 linked its chart to whoever held its national ID on the number alone, and an A08 relinked one. A
    feed cannot answer the question the desk is asked when that person was born on another day or is of another
    sex: the message is AE 205 at PID-3, naming only what differs, and nothing is written; the comparison is in
    the appliance's audit trail as the feed's."""
    held, identifier, corrected = "NH" + _mrn(), _mrn(), _mrn()
    with db.control() as conn:
        holder = identity.match_or_create_subject(conn, family_name="Kamau", given_names="John", sex="male",
                                                  birth_date=dt.date(1958, 4, 2), national_id=held).subject_id
    for message in (adt(facility.slug, "A04", corrected, national_id="NC" + corrected),
                    adt(facility.slug, "A04", identifier, national_id=held),  # Grace, born 1990: not him
                    adt(facility.slug, "A08", corrected, national_id=held)):
        before = counts(db, facility.slug)
        [ack] = feed(message)
        if "NC" + corrected in message:
            assert ack.code == "AA", ack.text
            continue
        assert ack.code == "AE" and ack.field("ERR", 3) == "205", ack.text
        assert ack.field("ERR", 2) == "PID" and ack.field("ERR", 2, 3) == "3", ack.text
        assert ack.field("ERR", 8).startswith("PID-3 national ID is held by a person with another birth date and sex")
        assert "1958" not in ack.text and "Kamau" not in ack.text and str(holder) not in ack.text
        assert counts(db, facility.slug) == before
    assert _patient(db, facility.slug, identifier) is None
    kept = _patient(db, facility.slug, corrected)
    assert kept["subject_id"] != holder and str(kept["family_name"]) == "Otieno"
    compared = [e["event"]["detail"] for e in audit.read_events(db, None,
                                                                 event_type="identity.subject.national_id.compare")
                if e["event"]["detail"]["subject"] == str(holder)]
    assert compared == [{"tenant": facility.slug, "subject": str(holder), "differs": ["birth date", "sex"],
                         "confirmed": False}] * 2


def test_a_national_id_asked_about_too_often_is_not_applied_and_the_sender_is_told_why(db, facility, feed):
    """A feed's registrations are asked the national-ID question as the desk's are, and limited alike: after five
    differing answers about one person in an hour the feed's next message naming that ID is AE 206 at PID-3 saying
    to check the card or ask the records office, whatever birth date it carries; nothing is written."""
    held = "NL" + _mrn()
    with db.control() as conn:
        identity.match_or_create_subject(conn, family_name="Kamau", given_names="John", sex="male",
                                         birth_date=dt.date(1958, 4, 2), national_id=held)
    for _ in range(identity.NATIONAL_ID_ANSWERS_PER_ASKER):
        [asked] = feed(adt(facility.slug, "A04", _mrn(), national_id=held))  # Grace, born 1990: not him
        assert asked.code == "AE" and asked.field("ERR", 3) == "205", asked.text
    before = counts(db, facility.slug)
    [ack] = feed(adt(facility.slug, "A04", _mrn(), national_id=held))
    assert ack.code == "AE" and ack.field("ERR", 3) == "206", ack.text
    assert ack.field("ERR", 2) == "PID" and ack.field("ERR", 2, 3) == "3", ack.text
    assert ack.field("ERR", 8).startswith("PID-3 national ID was sent too often in the last hour"), ack.text
    assert "ask the records office" in ack.field("ERR", 8) and "1958" not in ack.text
    assert counts(db, facility.slug) == before


def test_a01_admits_to_a_bed_and_a03_discharges_it(db, facility, feed):
    identifier = _mrn()
    [admitted] = feed(adt(facility.slug, "A01", identifier, patient_class="I", location="GEN^^GEN-02"))
    assert admitted.code == "AA", admitted.text
    patient = _patient(db, facility.slug, identifier)
    with db.tenant(facility.slug) as conn:
        stay = conn.execute(sa.text("SELECT ward_code, bed_code, discharged_at FROM inpatient_stay "
                                    "WHERE patient_id = :p"), {"p": patient["id"]}).one()
        state = conn.execute(sa.text("SELECT state FROM bed WHERE code = :b"), {"b": stay.bed_code}).scalar()
    assert stay.ward_code == "GEN" and stay.discharged_at is None and state == "occupied"
    [discharged] = feed(adt(facility.slug, "A03", identifier, patient_class="I", disposition="01"))
    assert discharged.code == "AA", discharged.text
    with db.tenant(facility.slug) as conn:
        stay = conn.execute(sa.text("SELECT disposition, discharged_at, encounter_id FROM inpatient_stay "
                                    "WHERE patient_id = :p"), {"p": patient["id"]}).one()
        status = conn.execute(sa.text("SELECT status FROM encounter WHERE id = :e"), {"e": stay.encounter_id}).scalar()
    assert stay.disposition == "home" and stay.discharged_at is not None and status == "finished"


def test_an_emergency_visit_arrives_in_the_ed_and_a03_departs(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier, patient_class="E"))[0].code == "AA"
    patient = _patient(db, facility.slug, identifier)
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ed_visit WHERE patient_id = :p AND departed_at IS NULL"),
                            {"p": patient["id"]}).scalar() == 1
    assert feed(adt(facility.slug, "A03", identifier, patient_class="E"))[0].code == "AA"
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ed_visit WHERE patient_id = :p AND departed_at IS NULL"),
                            {"p": patient["id"]}).scalar() == 0
        assert conn.execute(sa.text("SELECT status FROM encounter WHERE patient_id = :p"),
                            {"p": patient["id"]}).scalar() == "finished"


def test_an_order_and_its_results_are_linked_by_placer_number(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"
    placer = "ORD" + secrets.token_hex(4)
    [ordered] = feed(orm(facility.slug, identifier, "58410-2", placer=placer))
    assert ordered.code == "AA", ordered.text
    [resulted] = feed(oru(facility.slug, identifier, [
        "OBX|1|NM|718-7^Haemoglobin^LN||10.2|g/dL|12.0-16.0|L|||F",
        "OBX|2|NM|6690-2^White cell count^LN||7.1|10*3/uL|4.0-11.0|N|||F",
        "NTE|1||Sample slightly haemolysed",
    ], placer=placer))
    assert resulted.code == "AA", resulted.text
    patient = _patient(db, facility.slug, identifier)
    with db.tenant(facility.slug) as conn:
        order_root = conn.execute(sa.text(
            "SELECT e.root_id FROM entry e JOIN service_request s ON s.entry_id = e.id WHERE e.patient_id = :p"),
            {"p": patient["id"]}).scalar()
        rows = conn.execute(sa.text(
            "SELECT r.code, r.value_numeric, r.unit, r.reference_low, r.reference_high, r.flag, r.note, "
            "r.service_request_id FROM result r JOIN entry e ON e.id = r.entry_id WHERE e.patient_id = :p "
            "ORDER BY r.code"), {"p": patient["id"]}).mappings().all()
    assert [(r["code"], str(r["value_numeric"]), r["unit"], r["flag"]) for r in rows] == [
        ("6690-2", "7.1", "10*3/uL", "N"), ("718-7", "10.2", "g/dL", "L")]
    assert all(r["service_request_id"] == order_root for r in rows)
    assert str(rows[1]["reference_low"]) == "12.0" and rows[1]["note"] is None
    assert rows[0]["note"] == "Sample slightly haemolysed"


def _current_results(db, tenant: str, patient_id) -> list[tuple]:
    """Each result in force: its analyte, value, flag and how many versions its record has."""
    with db.tenant(tenant) as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT r.code, r.value_numeric::text, r.flag, (SELECT count(*) FROM entry v WHERE v.root_id = e.root_id) "
            "FROM result r JOIN entry e ON e.id = r.entry_id WHERE e.patient_id = :p "
            "AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id) ORDER BY r.code"),
            {"p": patient_id}).all()]


def test_a_corrected_or_final_result_replaces_the_one_in_force_and_keeps_it_in_its_history(db, facility, feed):
    """OBX-11 C corrects the result the laboratory sent before, and F the preliminary (P) it sent: each is that
    result's next version, back on the review list, the earlier one in its history. They were recorded beside it,
    so the chart held two haemoglobins of one specimen, the wrong one still waiting for sign-off."""
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"
    placer = "ORD" + secrets.token_hex(4)
    assert feed(orm(facility.slug, identifier, "58410-2", placer=placer))[0].code == "AA"
    patient = _patient(db, facility.slug, identifier)

    def send(*observations: str) -> None:
        [ack] = feed(oru(facility.slug, identifier, list(observations), placer=placer))
        assert ack.code == "AA", ack.text

    send("OBX|1|NM|718-7^Hb^LN||1.2|g/dL|||||F", "OBX|2|NM|6690-2^WBC^LN||7.1|10*3/uL|||||P")
    with db.tenant(facility.slug) as conn:
        first = conn.execute(sa.text("SELECT e.id FROM entry e JOIN result r ON r.entry_id = e.id "
                                     "WHERE e.patient_id = :p AND r.code = '718-7'"), {"p": patient["id"]}).scalar()
    send("OBX|1|NM|718-7^Hb^LN||12.0|g/dL|||||C", "OBX|2|NM|6690-2^WBC^LN||7.4|10*3/uL|||||F")
    assert _current_results(db, facility.slug, patient["id"]) == [("6690-2", "7.4", "N", 2), ("718-7", "12.0", "N", 2)]
    with db.tenant(facility.slug) as conn:
        corrected = conn.execute(sa.text("SELECT e.reason FROM entry e WHERE e.supersedes = :f"), {"f": first}).scalar()
    assert corrected == "corrected by the laboratory (HL7 OBX-11 C)"



def test_a_final_result_sent_again_is_a_duplicate_and_a_changed_one_is_refused(db, facility, feed):
    """An F for a result already final was recorded beside it, a second haemoglobin of one specimen on the chart and
    the review list. HL7 sends a change as C: the same F again (the sending system's resend under a new control id)
    is a duplicate, AA with nothing written and the feed's log saying so; an F with another value is refused, AE
    naming OBX-11, nothing of the message written. A correction (C) is then taken, and a result the bench entered
    is final too."""
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"
    placer = "ORD" + secrets.token_hex(4)
    assert feed(orm(facility.slug, identifier, "58410-2", placer=placer))[0].code == "AA"
    patient = _patient(db, facility.slug, identifier)
    [first] = feed(oru(facility.slug, identifier, ["OBX|1|NM|718-7^Hb^LN||12.0|g/dL|||||F",
                                                   "OBX|2|NM|6690-2^WBC^LN||7.4|10*3/uL|||||F"], placer=placer))
    assert first.code == "AA", first.text
    before = counts(db, facility.slug)

    control = control_id()
    [again] = feed(oru(facility.slug, identifier, ["OBX|1|NM|718-7^Hb^LN||12|g/dL|||||F",
                                                   "OBX|2|NM|6690-2^WBC^LN||7.40|10*3/uL|||||F"],
                       placer=placer, control=control))
    assert again.code == "AA", again.text
    assert "duplicate: OBX 1 (718-7), OBX 2 (6690-2)" in again.field("MSA", 3), again.text
    after = counts(db, facility.slug)  # the message's read of the order it names is audited, as any message's is
    assert {t: after[t] for t in ("entry", "result")} == {t: before[t] for t in ("entry", "result")}
    assert _current_results(db, facility.slug, patient["id"]) == [("6690-2", "7.4", "N", 1), ("718-7", "12.0", "N", 1)]
    with db.tenant(facility.slug) as conn:
        logged = conn.execute(sa.select(hl7_message.c.ack_code, hl7_message.c.error_code, hl7_message.c.error_text,
                                        hl7_message.c.created).where(hl7_message.c.control_id == control)).one()
    assert logged.ack_code == "AA" and logged.error_code is None and logged.created == {}
    assert logged.error_text.startswith("duplicate: OBX 1 (718-7), OBX 2 (6690-2) repeated a final result")

    before = counts(db, facility.slug)
    [changed] = feed(oru(facility.slug, identifier, ["OBX|1|NM|6690-2^WBC^LN||7.4|10*3/uL|||||F",
                                                     "OBX|2|NM|718-7^Hb^LN||11.2|g/dL|||||F"], placer=placer))
    _assert_refused(changed, "AE", "206", location="OBX-11",
                    says="the Haemoglobin result of this order is already final with another value; send a "
                         "correction (C) to change it")
    assert changed.field("ERR", 2, 2) == "2"
    assert counts(db, facility.slug) == before

    [corrected] = feed(oru(facility.slug, identifier, ["OBX|1|NM|718-7^Hb^LN||11.2|g/dL|||||C"], placer=placer))
    assert corrected.code == "AA" and corrected.field("MSA", 3) == "", corrected.text
    assert _current_results(db, facility.slug, patient["id"]) == [("6690-2", "7.4", "N", 1), ("718-7", "11.2", "L", 2)]


def test_a_text_result_is_recorded_with_its_choice(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"
    [ack] = feed(oru(facility.slug, identifier, ["OBX|1|ST|70569-9^Malaria RDT^LN||Positive||||||F"],
                     panel="70569-9^Malaria RDT^LN"))
    assert ack.code == "AA", ack.text
    patient = _patient(db, facility.slug, identifier)
    with db.tenant(facility.slug) as conn:
        row = conn.execute(sa.text("SELECT r.value_text, r.flag FROM result r JOIN entry e ON e.id = r.entry_id "
                                   "WHERE e.patient_id = :p"), {"p": patient["id"]}).one()
    assert tuple(row) == ("positive", "A")


def test_a_resent_message_gets_its_first_ack_and_changes_nothing(db, facility, feed):
    identifier = _mrn()
    control = control_id()
    message = adt(facility.slug, "A04", identifier, control=control)
    [first] = feed(message)
    assert first.code == "AA"
    before = counts(db, facility.slug)
    [again, third] = feed(message, message)
    assert again.text == first.text and third.text == first.text
    assert counts(db, facility.slug) == before
    # Each resend is a row of its own pointing at the first acceptance, so the analyst sees it came again.
    with db.tenant(facility.slug) as conn:
        rows = conn.execute(sa.select(hl7_message.c.id, hl7_message.c.duplicate_of, hl7_message.c.ack_code).where(
            hl7_message.c.control_id == control).order_by(hl7_message.c.received_at)).all()
    assert [(row.ack_code, row.duplicate_of) for row in rows] == [("AA", None), ("AA", rows[0].id), ("AA", rows[0].id)]


def test_a_second_a04_finds_the_patient_by_identifier(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"
    with db.tenant(facility.slug) as conn:
        patients = conn.execute(sa.text("SELECT count(DISTINCT patient_id), count(*) FROM patient_identifier i "
                                         "JOIN encounter e USING (patient_id) WHERE i.value = :v"),
                                {"v": identifier}).one()
    assert tuple(patients) == (1, 2)


def test_escapes_repetitions_components_and_a_non_ascii_name_survive(db, facility, feed):
    identifier = _mrn()
    [ack] = feed(adt(facility.slug, "A04", identifier, family="Nj\\T\\oroge-Müller", given="José^Ñandú",
                     national_id="NX" + identifier, address="Plot 4\\S\\B^Block C^Nyeri^Central^^KE"))
    assert ack.code == "AA", ack.text
    patient = _patient(db, facility.slug, identifier)
    assert patient["family_name"] == "Nj&oroge-Müller" and patient["given_names"] == "José Ñandú"
    assert patient["address"] == {"line": "Plot 4^B Block C", "village": "Nyeri", "region": "Central",
                                  "country": "KE"}
    assert _patient(db, facility.slug, "NX" + identifier)["id"] == patient["id"]


def _assert_refused(ack, code: str, error: str, *, location: str | None = None, says: str = "") -> None:
    assert ack.code == code, ack.text
    assert ack.field("ERR", 3) == error, ack.text
    assert ack.field("ERR", 3, 3) == "HL70357"
    assert ack.field("ERR", 4) == "E"
    if location:
        segment, field = location.split("-")
        assert ack.field("ERR", 2) == segment and ack.field("ERR", 2, 3) == field, ack.text
    assert says in ack.field("ERR", 8), ack.text
    assert "Traceback" not in ack.text


def test_refusals_name_the_field_and_write_nothing(db, facility, feed):
    known = _mrn()
    assert feed(adt(facility.slug, "A04", known))[0].code == "AA"
    cases = [
        (adt(facility.slug, "A04", _mrn(), birth="19901340"), "AE", "102", "PID-7",
         "PID-7 birth date 19901340 is not a date"),
        (adt(facility.slug, "A04", _mrn(), family=""), "AE", "101", "PID-5", "PID-5 patient name has no family name"),
        (adt(facility.slug, "A04", _mrn(), sex="X"), "AE", "103", "PID-8", "PID-8 sex X"),
        (adt(facility.slug, "A04", _mrn(), patient_class="P"), "AE", "103", "PV1-2", "patient class P"),
        (adt(facility.slug, "A04", _mrn(), birth="20991231"), "AE", "102", "PID-7", "future"),
        (adt(facility.slug, "A08", _mrn()), "AE", "204", "PID-3", "match no patient"),
        (adt(facility.slug, "A03", _mrn()), "AE", "204", "PID-3", "match no patient"),
        (adt(facility.slug, "A01", _mrn(), patient_class="I", location="NOWARD"), "AE", "103", "PV1-3", ""),
        (orm(facility.slug, _mrn(), "58410-2"), "AE", "204", "PID-3", "register the patient first"),
        (orm(facility.slug, known, "99999-9"), "AE", "103", "OBR-4", "99999-9 is not in this facility's catalogue"),
        (orm(facility.slug, known, "CBC", system="L"), "AE", "103", "OBR-4", "LOINC"),
        (oru(facility.slug, known, ["OBX|1|NM|718-7^Hb^LN||ten|g/dL||||F"]), "AE", "102", "OBX-5",
         "OBX-5 observation value ten is not a number"),
        (oru(facility.slug, known, ["OBX|1|NM|718-7^Hb^LN||10.1|mg/L||||F"]), "AE", "102", "OBX-6", "g/dL"),
        # A count per microlitre where the unit is 10*3/uL: past what any specimen gives, not a high result.
        (oru(facility.slug, known, ["OBX|1|NM|777-3^Platelets^LN||45000|10*3/uL||||F"]), "AE", "102", "OBX-5",
         "Platelets of 45000 is not possible in 10*3/uL, the unit it is reported in here: no specimen gives more "
         "than 10000 10*3/uL"),
        (oru(facility.slug, known, ["OBX|1|NM|718-7^Hb^LN||10.1|g/dL||||F", "OBX|2|NM|GLU^Glucose^L||5|mmol/L||||F"]),
         "AE", "103", "OBX-3", "OBX-3 observation identifier GLU is coded in L"),
        (oru(facility.slug, known, ["OBX|1|NM|718-7^Hb^LN||10.1|g/dL||||F"], placer="NOPE"), "AE", "204",
         "OBR-2", "placer order number NOPE"),
        (oru(facility.slug, known, ["OBX|1|NM|1234-5^Mystery^LN||1|||||F"]), "AE", "103", "OBX-3", "1234-5"),
        (adt(facility.slug, "A04", _mrn()).replace("|P|2.5", "|P|2.2"), "AR", "203", "MSH-12", "version 2.2"),
        (adt(facility.slug, "A04", _mrn()).replace("|P|2.5", "|T|2.5"), "AR", "202", "MSH-11", "processing id T"),
        (adt(facility.slug, "A04", _mrn()).replace(f"|HEALTHOS|{facility.slug}|", "|HEALTHOS|elsewhere|"),
         "AR", "103", "MSH-6", "receiving facility elsewhere is not this facility"),
        (adt(facility.slug, "A05", _mrn()), "AR", "201", "MSH-9", "trigger event A05"),
        (adt(facility.slug, "A04", _mrn()).replace("ADT^A04", "SIU^S12"), "AR", "200", "MSH-9", "message type SIU"),
    ]
    for message, code, error, location, says in cases:
        before = counts(db, facility.slug)
        [ack] = feed(message)
        _assert_refused(ack, code, error, location=location, says=says)
        assert counts(db, facility.slug) == before, message


def test_an_unreadable_message_is_rejected(facility, feed):
    [ack] = feed("this is not HL7\r")
    _assert_refused(ack, "AR", "100", says="MSH")
    without_control_id = adt(facility.slug, "A04", _mrn(), control="DROPME").replace("|DROPME|", "||")
    [ack] = feed(without_control_id)
    _assert_refused(ack, "AR", "101", location="MSH-10", says="control id")
    assert ack.field("MSA", 2) == ""


def test_refusals_are_remembered_without_demographics(db, facility, feed):
    control = control_id()
    [ack] = feed(adt(facility.slug, "A04", _mrn(), birth="19901340", control=control))
    assert ack.code == "AE"
    with db.tenant(facility.slug) as conn:
        row = conn.execute(sa.select(hl7_message).where(hl7_message.c.control_id == control)).mappings().one()
    assert (row["ack_code"], row["error_code"], row["message_type"]) == ("AE", "102", "ADT^A04")
    assert row["error_text"] == "PID-7 birth date is not a date" and row["ack"] is None
    assert row["sending_application"] == "REGSYS" and row["sending_facility"] == "HOSPITAL"
    # Refused, so not a key: the corrected message under the same control id is applied.
    [ack] = feed(adt(facility.slug, "A04", _mrn(), control=control))
    assert ack.code == "AA"


def test_one_message_delivered_on_four_connections_at_once_is_applied_once(db, facility, running):
    import asyncio

    from appliance.interop.hl7v2 import listener

    message = adt(facility.slug, "A04", _mrn())
    before = counts(db, facility.slug)

    async def at_once() -> list[list[str]]:
        return await asyncio.gather(*(listener.send("127.0.0.1", running.port, [message]) for _ in range(4)))

    acks = [a[0] for a in asyncio.run(at_once())]
    assert len(set(acks)) == 1 and "MSA|AA|" in acks[0]
    after = counts(db, facility.slug)
    assert after["patient"] == before["patient"] + 1 and after["encounter"] == before["encounter"] + 1


def test_an_inpatient_a01_without_a_ward_opens_an_admission_awaiting_a_bed(db, facility, feed):
    identifier = _mrn()
    [ack] = feed(adt(facility.slug, "A01", identifier, patient_class="I"))
    assert ack.code == "AA", ack.text
    patient = _patient(db, facility.slug, identifier)
    with db.tenant(facility.slug) as conn:
        visit = conn.execute(sa.text("SELECT encounter_class, status FROM encounter WHERE patient_id = :p"),
                             {"p": patient["id"]}).one()
        stays = conn.execute(sa.text("SELECT count(*) FROM inpatient_stay WHERE patient_id = :p"),
                             {"p": patient["id"]}).scalar()
    assert tuple(visit) == ("inpatient", "in_progress") and stays == 0
    # The A03 finishes it.
    assert feed(adt(facility.slug, "A03", identifier, patient_class="I"))[0].code == "AA"
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT status FROM encounter WHERE patient_id = :p"),
                            {"p": patient["id"]}).scalar() == "finished"


def test_an_a01_for_a_patient_in_the_ed_admits_from_it(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier, patient_class="E"))[0].code == "AA"
    [ack] = feed(adt(facility.slug, "A01", identifier, patient_class="I", location="GEN"))
    assert ack.code == "AA", ack.text
    patient = _patient(db, facility.slug, identifier)
    with db.tenant(facility.slug) as conn:
        stay = conn.execute(sa.text("SELECT source, discharged_at FROM inpatient_stay WHERE patient_id = :p"),
                            {"p": patient["id"]}).one()
        departed = conn.execute(sa.text("SELECT departed_at FROM ed_visit WHERE patient_id = :p"),
                                {"p": patient["id"]}).scalar()
    assert stay.source == "emergency" and stay.discharged_at is None and departed is not None
    assert feed(adt(facility.slug, "A03", identifier, patient_class="I"))[0].code == "AA"


def test_an_a08_that_leaves_sex_empty_keeps_it(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier, sex="M"))[0].code == "AA"
    assert feed(adt(facility.slug, "A08", identifier, sex="", family="Kiprono"))[0].code == "AA"
    patient = _patient(db, facility.slug, identifier)
    assert patient["sex"] == "male" and patient["family_name"] == "Kiprono"


def test_the_err_location_names_which_obx_was_refused_and_nothing_of_the_others_is_kept(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"
    before = counts(db, facility.slug)
    [ack] = feed(oru(facility.slug, identifier, ["OBX|1|NM|718-7^Hb^LN||10.1|g/dL||||F",
                                                 "OBX|2|NM|6690-2^WBC^LN||many|10*3/uL||||F"]))
    assert ack.code == "AE" and ack.field("ERR", 2) == "OBX" and ack.field("ERR", 2, 2) == "2", ack.text
    assert ack.field("ERR", 2, 3) == "5" and "OBX-5 observation value many is not a number" in ack.field("ERR", 8)
    assert counts(db, facility.slug) == before  # the first OBX's result went with the rest


def _reads(db, tenant: str, first: int, event_type: str) -> list[dict]:
    """The access events of one type since `first`: whose record (the patient entity) and which ids."""
    found = []
    for event in audit.read_events(db, tenant, first_seq=first, event_type=event_type):
        entities = event["event"]["entity"]
        found.append({"patient": next(e["what"]["reference"] for e in entities if "what" in e),
                      "ids": next(e["ids"] for e in entities if "ids" in e)})
    return found


def test_finding_the_ed_visit_an_a01_admits_from_is_audited_naming_the_patient(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier, patient_class="E"))[0].code == "AA"
    patient = _patient(db, facility.slug, identifier)
    with db.tenant(facility.slug) as conn:
        visit = conn.execute(sa.text("SELECT id FROM ed_visit WHERE patient_id = :p"), {"p": patient["id"]}).scalar()
    first = _last_seq(db, facility.slug)
    assert feed(adt(facility.slug, "A01", identifier, patient_class="I", location="GEN"))[0].code == "AA"
    assert _reads(db, facility.slug, first, "record.ed_arrival.read") == [
        {"patient": f"Patient/{patient['id']}", "ids": [str(visit)]}]


def test_finding_orders_by_placer_number_is_audited_once_per_message_naming_the_patient(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"
    placers = ["ORD" + secrets.token_hex(4), "ORD" + secrets.token_hex(4)]
    for placer in placers:
        assert feed(orm(facility.slug, identifier, "58410-2", placer=placer))[0].code == "AA"
    patient = _patient(db, facility.slug, identifier)
    with db.tenant(facility.slug) as conn:
        orders = dict(conn.execute(sa.text("SELECT placer_number, service_request_id FROM hl7_placer_order "
                                           "WHERE patient_id = :p"), {"p": patient["id"]}).all())
    # Two OBRs, each naming its order, three OBX: one access event for the message.
    message = oru(facility.slug, identifier, ["OBX|1|NM|718-7^Hb^LN||10.2|g/dL||||F",
                                              "OBX|2|NM|6690-2^WBC^LN||7.1|10*3/uL||||F"], placer=placers[0])
    message += f"OBR|2|{placers[1]}^HIS||58410-2^Full blood count^LN\rOBX|3|NM|718-7^Hb^LN||11.0|g/dL||||F\r"
    first = _last_seq(db, facility.slug)
    assert feed(message)[0].code == "AA"
    assert _reads(db, facility.slug, first, "record.service_request.read") == [
        {"patient": f"Patient/{patient['id']}", "ids": [str(orders[p]) for p in placers]}]


def test_a_radiology_report_for_an_imaging_order_is_kept_whole_and_a_lab_note_still_cut_at_2000(db, facility, feed):
    identifier = _mrn()
    assert feed(adt(facility.slug, "A04", identifier))[0].code == "AA"
    ct, blood = "CT" + secrets.token_hex(4), "ORD" + secrets.token_hex(4)
    assert feed(orm(facility.slug, identifier, "30799-1", placer=ct))[0].code == "AA"
    assert feed(orm(facility.slug, identifier, "58410-2", placer=blood))[0].code == "AA"
    impression = "Acute subdural haematoma with midline shift. " * 100  # 4,500 characters
    findings = [f"Paragraph {n:02d} of the findings. " + "x" * 1470 for n in range(12)]  # 12 x 1,500
    # Flagged AA, critically abnormal: a critical finding, kept so (a critical result), not read as A.
    [ack] = feed(oru(facility.slug, identifier, [f"OBX|1|TX|30799-1^CT head^LN||{impression}|||AA|||F",
                                                 *(f"NTE|{n}||{text}" for n, text in enumerate(findings, 1))],
                     placer=ct, panel="30799-1^CT head without contrast^LN"))
    assert ack.code == "AA", ack.text
    [ack] = feed(oru(facility.slug, identifier, ["OBX|1|NM|718-7^Hb^LN||10.2|g/dL||||F", "NTE|1||" + "y" * 2500],
                     placer=blood))
    assert ack.code == "AA", ack.text
    patient = _patient(db, facility.slug, identifier)
    with db.tenant(facility.slug) as conn:
        rows = {r.code: r for r in conn.execute(sa.text(
            "SELECT r.code, r.value_text, r.note, r.flag FROM result r JOIN entry e ON e.id = r.entry_id "
            "WHERE e.patient_id = :p"), {"p": patient["id"]})}
    assert rows["30799-1"].value_text == impression.strip() and rows["30799-1"].flag in service.CRITICAL_FLAGS
    assert rows["30799-1"].note == "; ".join(findings) and len(rows["30799-1"].note) > 18_000
    assert rows["718-7"].note == "y" * 2000


def test_a_broken_segment_is_answered_and_remembered_under_the_messages_control_id(db, facility, feed):
    control = control_id()
    broken = adt(facility.slug, "A04", _mrn(), control=control).replace("\rEVN|", "\rev n|")
    before = counts(db, facility.slug)
    [ack] = feed(broken)
    _assert_refused(ack, "AR", "100", says="segment 2 begins with 'ev n'")
    assert ack.field("MSA", 2) == control and ack.field("MSH", 5) == "REGSYS"
    assert counts(db, facility.slug) == before
    with db.tenant(facility.slug) as conn:
        row = conn.execute(sa.select(hl7_message).where(hl7_message.c.control_id == control)).mappings().one()
    assert (row["sending_application"], row["message_type"], row["ack_code"]) == ("REGSYS", "ADT^A04", "AR")
