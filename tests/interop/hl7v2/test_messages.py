"""Reading fields and writing ACKs, property-tested: any text escaped as HL7 reads back the same through
python-hl7 (delimiters, the escape character, non-ASCII), repetitions and components come apart where
they should, and an ACK's ERR text — whatever the problem says — stays one field of one segment."""

from __future__ import annotations

import hl7
from hypothesis import given
from hypothesis import strategies as st

from appliance.interop.hl7v2 import messages

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda t: t.strip() == t and t != '""')


def _segment(text: str) -> hl7.Segment:
    return messages.parse(f"MSH|^~\\&|A|B|C|D|20260101||ADT^A04|1|P|2.5\r{text}\r").segment("PID")


@given(family=TEXT, given_name=TEXT)
def test_escaped_text_reads_back_the_same(family: str, given_name: str):
    pid = _segment(f"PID|1||1^^^X^MR||{messages._escape(family)}^{messages._escape(given_name)}")
    assert messages.value(pid, 5, 1) == family
    assert messages.value(pid, 5, 2) == given_name


@given(values=st.lists(st.from_regex(r"[A-Z0-9]{1,10}", fullmatch=True), min_size=1, max_size=5))
def test_repetitions_and_components_come_apart(values: list[str]):
    pid = _segment("PID|1||" + "~".join(f"{v}^^^AUTH{i}^MR" for i, v in enumerate(values)))
    assert messages.repetitions(pid, 3) == len(values)
    for i, v in enumerate(values, start=1):
        assert messages.value(pid, 3, 1, repetition=i) == v
        assert messages.value(pid, 3, 4, repetition=i) == f"AUTH{i - 1}"
    assert messages.value(pid, 9) == "" and messages.value(pid, 3, 7) == ""


@given(problem=TEXT)
def test_an_ack_carries_any_problem_as_one_field(problem: str):
    message = messages.parse("MSH|^~\\&|LAB|HOSP|HEALTHOS|fac|20260101||ORU^R01|C1|P|2.5\rPID|1\r")
    error = messages.not_applied("102", problem, location=("OBX", 2, 5), label="observation value")
    ack = hl7.parse(messages.acknowledge(message, "AE", "fac", error).text)
    assert [str(s[0]) for s in ack] == ["MSH", "MSA", "ERR"]
    err = ack.segment("ERR")
    assert messages.value(err, 8) == f"OBX-5 observation value {problem}".strip()
    assert messages.value(err, 3) == "102" and messages.value(ack.segment("MSA"), 2) == "C1"


def test_a_patient_fields_value_is_shown_to_the_sender_but_never_stored():
    error = messages.not_applied("102", "is not a date", location=("PID", 1, 7), label="birth date", value="19901340")
    assert error.text() == "PID-7 birth date 19901340 is not a date"
    assert error.text(for_storage=True) == "PID-7 birth date is not a date"
    refused = messages.not_applied("205", "identifier national_id 123 already belongs to another patient",
                                   location=("PID", 1, 3), label="patient identifiers", private=True)
    assert "123" in refused.text() and "123" not in refused.text(for_storage=True)


def test_unreadable_input_is_rejected_naming_why():
    for text in ("", "PID|1", "MSH", "MSH|^~\\&|A\rpid lower|x"):
        try:
            messages.parse(text)
        except messages.HL7Error as error:
            assert error.ack == "AR" and error.code == "100"
        else:
            raise AssertionError(f"{text!r} was read")


def test_encoding_characters_other_than_the_standard_are_refused_at_msh_2():
    # A sender declaring # as its component separator while writing ^ would have ADT^A04 read as one value.
    cases = {
        "MSH|#~\\&|A|B|C|D|20260101||ADT^A04|1|P|2.5": "its component separator is '#', not a caret",
        "MSH^~\\&|A|B|C|D|20260101||ADT^A04|1|P|2.5": "its field separator is a caret, not a vertical bar",
        "MSH|^~\\|A|B|C|D|20260101||ADT^A04|1|P|2.5": "its subcomponent separator is missing, not an ampersand",
        "MSH|^~\\&#|A|B|C|D|20260101||ADT^A04|1|P|2.5": "it declares 5 encoding characters, not 4",
    }
    for header, says in cases.items():
        try:
            messages.parse(header + "\rPID|1\r")
        except messages.HL7Error as error:
            assert (error.ack, error.code, error.location) == ("AR", "102", ("MSH", 1, 2)), header
            assert says in error.text(), error.text()
            # Named in words: the ACK's text would show a quoted delimiter as its escape sequence.
            ack = messages.acknowledge(messages.header_of(header), error.ack, "fac", error).text
            assert says.replace("'", "") in ack.replace("'", "") and "\\S\\" not in ack.split("MSA|")[1]
        else:
            raise AssertionError(f"{header!r} was read")


def test_a_broken_segments_ack_still_names_the_messages_control_id():
    text = "MSH|^~\\&|LAB|HOSP|HEALTHOS|fac|20260101||ORU^R01|C7|P|2.5\rev n|x\r"
    try:
        messages.parse(text)
    except messages.HL7Error as error:
        assert "segment 2 begins with 'ev n'" in error.text()
        ack = hl7.parse(messages.acknowledge(messages.header_of(text), error.ack, "fac", error).text)
    assert messages.value(ack.segment("MSA"), 2) == "C7"
    assert messages.value(ack.segment("MSH"), 5) == "LAB" and messages.value(ack.segment("MSH"), 9, 2) == "R01"
    assert messages.header_of("this is not HL7") is None


def test_a_2_3_or_2_4_ack_carries_the_error_in_err_1():
    error = messages.not_applied("102", "is not a number", location=("OBX", 2, 5), label="observation value")
    for version, in_field_1 in (("2.3", True), ("2.3.1", True), ("2.4", True), ("2.5", False), ("2.6", False)):
        message = messages.parse(f"MSH|^~\\&|LAB|HOSP|HEALTHOS|fac|20260101||ORU^R01|C1|P|{version}\rPID|1\r")
        ack = hl7.parse(messages.acknowledge(message, "AE", "fac", error).text)
        err = ack.segment("ERR")
        assert messages.value(ack.segment("MSA"), 3) == "OBX-5 observation value is not a number"
        if in_field_1:
            assert [messages.value(err, 1, c) for c in (1, 2, 3)] == ["OBX", "2", "5"], version
            assert [messages.value(err, 1, 4, s) for s in (1, 3)] == ["102", "HL70357"]
            assert len(err) == 2, version  # ERR-1 alone
        else:
            assert messages.value(err, 1) == "" and messages.value(err, 3) == "102", version
