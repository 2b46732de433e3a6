"""Reading HL7 v2 messages and writing their acknowledgements: the fields the interface uses, read
with python-hl7 (escapes, repetitions, components), each problem an `HL7Error` that names the segment
and field in words a person at the sending system understands, and the ACK (original mode: MSH swapped,
MSA, and ERR when the message was not accepted).

Nothing here touches the record: `feed.py` applies what is read here.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass

import hl7

# What we answer as (MSH-3 of our ACKs, when the sender left MSH-5 empty).
APPLICATION = "HEALTHOS"
# Versions whose ADT, ORM, ORU and VXU segments read the same for the fields used here.
SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6")
# Versions whose ERR is the one field ERR-1 (the error's location and code); 2.5 moved them to ERR-2 to ERR-8.
ERR_IN_FIELD_1 = ("2.3", "2.3.1", "2.4")
SUPPORTED_EVENTS = {"ADT": ("A01", "A03", "A04", "A08"), "ORM": ("O01",), "ORU": ("R01",), "VXU": ("V04",)}

# HL7 table 0357, the codes used here.
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION_ID = "203"
UNKNOWN_KEY_IDENTIFIER = "204"
DUPLICATE_KEY_IDENTIFIER = "205"
APPLICATION_RECORD_LOCKED = "206"
APPLICATION_INTERNAL_ERROR = "207"
ERROR_NAMES = {
    "100": "Segment sequence error", REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error", TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type", UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id", UNSUPPORTED_VERSION_ID: "Unsupported version id",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier", DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    APPLICATION_RECORD_LOCKED: "Application record locked", APPLICATION_INTERNAL_ERROR: "Application internal error",
}
# Segments whose values are demographics: an error names their fields, and their values only to the sender.
PATIENT_SEGMENTS = ("PID", "NK1")


class HL7Error(Exception):
    """A message not applied. `ack` is AE (understood, not applied) or AR (rejected); `code` is from
    HL7 table 0357; `location` is (segment, sequence, field) when one field is at fault; `value` is the
    offending value, shown to the sender but never stored for a patient segment."""

    def __init__(self, ack: str, code: str, problem: str, *, location: tuple[str, int, int] | None = None,
                 value: str | None = None, label: str | None = None, private: bool = False):
        self.ack, self.code, self.problem, self.location, self.value, self.label = (
            ack, code, problem, location, value, label)
        # A problem worded by the record (it may quote a patient field's value): stored only as its code.
        self.private = private
        super().__init__(self.text())

    def text(self, *, for_storage: bool = False) -> str:
        """`PID-7 birth date 19901340 is not a date` for the sender; the stored text leaves out the
        value of a patient field."""
        patient_field = bool(self.location and self.location[0] in PATIENT_SEGMENTS)
        parts = []
        if self.location is not None:
            parts.append(f"{self.location[0]}-{self.location[2]}")
        if self.label:
            parts.append(self.label)
        if self.value is not None and not (for_storage and patient_field):
            parts.append(self.value)
        if self.private and parts:  # the record's own sentence follows the field it is about
            parts[-1] += ":"
        if for_storage and self.private and patient_field:
            parts.append(f"refused by the record ({ERROR_NAMES.get(self.code, self.code).lower()})")
        else:
            parts.append(self.problem)
        return " ".join(p for p in parts if p)


def rejected(code: str, problem: str, **where) -> HL7Error:
    return HL7Error("AR", code, problem, **where)


def not_applied(code: str, problem: str, **where) -> HL7Error:
    return HL7Error("AE", code, problem, **where)


# -- reading fields ------------------------------------------------------------------------------------


STANDARD_DELIMITERS = "|^~\\&"
# The delimiters by name: an ACK's text quoting them would show their escapes (\F\, \S\, ...), not them.
DELIMITER_ROLES = ("field separator", "component separator", "repetition separator", "escape character",
                   "subcomponent separator")
DELIMITER_NAMES = {"|": "a vertical bar", "^": "a caret", "~": "a tilde", "\\": "a backslash", "&": "an ampersand"}


def _delimiters_differ(declared: str) -> str:
    """'its component separator is '#', not a caret', for each delimiter MSH-1 and MSH-2 declare otherwise."""
    said = []
    for role, standard, found in zip(DELIMITER_ROLES, STANDARD_DELIMITERS, declared[:5].ljust(5, "\0"), strict=True):
        if found != standard:
            shown = DELIMITER_NAMES.get(found, "missing" if found == "\0" else repr(found))
            said.append(f"its {role} is {shown}, not {DELIMITER_NAMES[standard]}")
    return "; ".join(said) or f"it declares {len(declared) - 1} encoding characters, not 4"


def _segments_text(text: str) -> str:
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")


def parse(text: str) -> hl7.Message:
    """The message, or AR naming what is wrong with its shape."""
    text = _segments_text(text)
    if not text.startswith("MSH") or len(text) < 9:
        raise rejected("100", "the message does not begin with an MSH segment")
    encoding = text[3:].split(text[3], 2)[1] if text[3] in text[4:] else text[4:8]
    if text[3] + encoding != STANDARD_DELIMITERS:
        # python-hl7 would read the message by the characters declared, so a sender configured with others
        # but writing ^ and ~ has its components read as one value: say so, not that MSH-9 is unknown.
        differ = _delimiters_differ(text[3] + encoding)
        raise rejected(DATA_TYPE_ERROR, f"are not the standard ones this interface reads: {differ}; check the "
                       "sending system's encoding characters", location=("MSH", 1, 2),
                       label="field separator and encoding characters")
    try:
        message = hl7.parse(text)
    except Exception as exc:  # python-hl7 raises several types for malformed input; each is "unparseable"
        raise rejected("100", f"the message cannot be parsed ({type(exc).__name__})") from None
    for number, segment in enumerate(message, start=1):
        if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", str(segment[0])):
            raise rejected("100", f"segment {number} begins with {str(segment[0])[:8]!r}, not a segment name")
    return message


def header_of(text: str) -> hl7.Message | None:
    """The MSH segment alone of a message `parse` refused, when it reads: the ACK then still names the
    message's control id and sender, which is how the sending system matches an answer to what it sent."""
    first = _segments_text(text).split("\r", 1)[0]
    if not first.startswith("MSH|"):
        return None
    try:
        return hl7.parse(first)
    except Exception:  # an MSH python-hl7 cannot read: the ACK is then the bare one
        return None


def value(segment: hl7.Segment, field: int, component: int = 1, sub: int = 1, repetition: int = 1) -> str:
    """One value, unescaped and trimmed; '' when absent. HL7's explicit null ("") reads as absent."""
    try:
        found = segment.extract_field(1, field, repetition, component, sub)
    except IndexError:
        return ""
    found = str(found).strip()
    return "" if found == '""' else found


def repetitions(segment: hl7.Segment, field: int) -> int:
    if field >= len(segment) or not str(segment(field)):
        return 0
    return len(segment(field))


def segments(message: hl7.Message, name: str) -> list[hl7.Segment]:
    return [s for s in message if str(s[0]) == name]


def one_segment(message: hl7.Message, name: str, *, ack: str = "AE") -> hl7.Segment:
    found = segments(message, name)
    if not found:
        raise HL7Error(ack, REQUIRED_FIELD_MISSING, f"the message has no {name} segment, which a "
                       f"{message_type(message)} needs")
    return found[0]


def message_type(message: hl7.Message) -> str:
    msh = message.segment("MSH")
    return f"{value(msh, 9, 1)}^{value(msh, 9, 2)}".strip("^")


def hl7_date(text: str, *, location: tuple[str, int, int], label: str) -> tuple[dt.date, bool]:
    """A DT/TS value's date, and whether it is only a year or a month (an estimated date)."""
    digits = text[:8]
    if not re.fullmatch(r"\d{4}(\d{2}(\d{2})?)?", digits):
        raise not_applied(DATA_TYPE_ERROR, "is not a date (YYYYMMDD)", location=location, label=label, value=text)
    try:
        year, month, day = int(digits[:4]), int(digits[4:6] or 1), int(digits[6:8] or 1)
        return dt.date(year, month, day), len(digits) < 8
    except ValueError:
        raise not_applied(DATA_TYPE_ERROR, "is not a date", location=location, label=label, value=text) from None


def hl7_time(text: str, zone: dt.tzinfo, *, location: tuple[str, int, int], label: str) -> dt.datetime:
    """A TS value to the minute at least (YYYYMMDDHHMM[SS[.S[S[S[S]]]]][+/-ZZZZ]); one without its UTC offset is
    read in `zone`, the facility's, where the sender's clock is. A day alone is refused: read as midnight it would
    put a result observed that afternoon before the order it answers."""
    found = re.fullmatch(r"(\d{12})(\d{2})?(?:\.(\d{1,4}))?(?:([+-])(\d{2})(\d{2}))?", text)
    if found is None:
        raise not_applied(DATA_TYPE_ERROR, "is not a time to the minute (YYYYMMDDHHMM[SS][+/-ZZZZ])",
                          location=location, label=label, value=text)
    minutes, seconds, fraction, sign, hours, offset_minutes = found.groups()
    try:
        local = dt.datetime.strptime(minutes + (seconds or "00"), "%Y%m%d%H%M%S").replace(
            microsecond=int((fraction or "0").ljust(6, "0")))
        if sign is None:
            return local.replace(tzinfo=zone)
        offset = dt.timedelta(hours=int(hours), minutes=int(offset_minutes))
        if int(offset_minutes) > 59 or offset > dt.timedelta(hours=14):
            raise ValueError(offset)
        return local.replace(tzinfo=dt.timezone(offset if sign == "+" else -offset))
    except ValueError:
        raise not_applied(DATA_TYPE_ERROR, "is not a time", location=location, label=label, value=text) from None


# -- acknowledgements ----------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Text inside a field: the delimiters escaped (HL7 2.10.4), line breaks flattened. Non-ASCII stays
    as it is: ACKs are sent in UTF-8."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
    return re.sub(r"[\r\n]+", " ", out.replace("~", "\\R\\"))


@dataclass(frozen=True)
class Acknowledgement:
    code: str  # AA, AE or AR
    text: str  # the HL7 message, segments separated by carriage returns
    error: HL7Error | None = None


def acknowledge(message: hl7.Message | None, code: str, tenant: str, error: HL7Error | None = None, *,
                note: str | None = None) -> Acknowledgement:
    """The ACK of `message` (None when it could not be read at all): its MSH swapped (we send as its
    receiving application and facility), MSA-1 the code and MSA-2 its control id, and, when not
    accepted, MSA-3 and an ERR segment with the location, the table 0357 code and the text; an accepted message's
    `note` (what it repeated of the record) is its MSA-3."""
    control_id = "ACK" + secrets.token_hex(8)
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    # Built field by field rather than with python-hl7's `create_ack`, which fails on the short or
    # broken MSH a rejected message may have — and a rejected message needs its ACK most.
    msh = message.segment("MSH") if message is not None else None

    def raw(field: int) -> str:  # as sent, its components intact
        return str(msh(field)) if msh is not None and field < len(msh) else ""

    trigger = value(msh, 9, 2) if msh is not None else ""
    segments_out = [
        "|".join(["MSH", "^~\\&", raw(5) or APPLICATION, raw(6) or _escape(tenant), raw(3), raw(4), now, "",
                  f"ACK^{_escape(trigger)}^ACK" if trigger else "ACK", control_id, raw(11) or "P", raw(12) or "2.5"]),
        f"MSA|{code}|{raw(10)}",
    ]
    if error is None and note:
        segments_out[1] += f"|{_escape(note)}"
    if error is not None:
        text = _escape(error.text())
        segments_out[1] += f"|{text}"
        where = "" if error.location is None else "^".join(str(p) for p in error.location)
        name = ERROR_NAMES.get(error.code, "")
        if msh is not None and value(msh, 12) in ERR_IN_FIELD_1:
            # Before 2.5 ERR has one field, ERR-1 (segment^sequence^field^code&name&table): a 2.3 or 2.4 engine
            # reads nothing from the later fields, so its analyst would see AE or AR with no cause attached.
            segments_out.append(f"ERR|{where or '^^'}^{error.code}&{name}&HL70357")
        else:
            segments_out.append(f"ERR||{where}|{error.code}^{name}^HL70357|E||||{text}")
    return Acknowledgement(code, "\r".join(segments_out) + "\r", error)
