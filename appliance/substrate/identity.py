"""One identity: subjects (a person, once, across every facility), accounts, memberships, sessions,
API tokens — all in `control`.

- Subjects and the master patient index: an exact national health ID links; otherwise a
  deterministic demographic key (normalised names, birth date, sex) only *proposes* candidates.
  A facility that corrects a chart's national ID relinks the chart to the corrected ID's subject and
  stops being listed for the old one (`relink_facility`); the old subject itself is not touched.
  Merging two subjects is an explicit, reversible act: the merged subject points at the survivor,
  nothing is rewritten, and an unmerge clears the pointer. Which subjects may be one person is
  found afresh by `likely_duplicates` for a person to review; a pair judged to be two people is kept
  in `subject_distinct` and not listed again. Whether a chart's birth date and sex agree with the holder of its
  national ID is answered (`compare_national_id_holder`) a few times an hour per asker and per person, never more.
  A chart linked over a differing answer the desk confirmed is recorded (`note_link_dispute`, c0016) until a
  clinician confirms the identity (`confirm_linked_identity`) or the national ID is corrected (`relink_facility`).
- Accounts are created with a one-time enrolment code (never a password); enrolment sets the
  password (Argon2id) and the TOTP secret. Sign-in failures count towards a lock; the error never
  says whether the account exists, and an unknown e-mail costs the same KDF work as a known one.
- Sessions are server-side: the browser holds a random token, the database its SHA-256. Idle and
  absolute expiry, revocation and sign-out everywhere are checks on that row.
- API tokens belong to machine accounts, are scoped to one tenant and a set of permissions, shown
  once and stored hashed.

Every act here that a regulator cares about (sign-in and its failure, merge, unmerge, relink, a disputed link
confirmed, enrolment, token issue and revocation, a review of likely duplicates and its decisions) passes through
`_audit`, the one seam the audit trail hooks into.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.substrate import audit, keys, passwords, totp
from appliance.substrate.db import control_metadata, driver
from appliance.substrate.policy import AccessPolicy, grants
from appliance.substrate.principal import AccountKind, Principal

UUID = postgresql.UUID(as_uuid=True)

subject = sa.Table(
    "subject", control_metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("national_id", sa.Text, nullable=True, doc="patient data: national health identifier"),
    sa.Column("family_name", sa.Text, nullable=False, doc="patient data"),
    sa.Column("given_names", sa.Text, nullable=False, doc="patient data"),
    sa.Column("birth_date", sa.Date, nullable=True, doc="patient data"),
    sa.Column("sex", sa.Text, nullable=True, doc="patient data"),
    sa.Column("demographic_key", sa.Text, nullable=False, doc="patient data (derived)"),
    sa.Column("merged_into", UUID, sa.ForeignKey("control.subject.id"), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("subject_national_id_key", "national_id", unique=True,
             postgresql_where=sa.text("national_id IS NOT NULL")),
    sa.Index("subject_demographic_key_idx", "demographic_key"),
    # Following merges downwards (every subject merged into a person) probes this, not the whole table (c0013).
    sa.Index("subject_merged_into_idx", "merged_into", postgresql_where=sa.text("merged_into IS NOT NULL")),
)

subject_merge = sa.Table(
    "subject_merge", control_metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("survivor_id", UUID, sa.ForeignKey("control.subject.id"), nullable=False),
    sa.Column("merged_id", UUID, sa.ForeignKey("control.subject.id"), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("merged_by", UUID, nullable=True),
    sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("undone_by", UUID, nullable=True),
    sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
)

# Pairs a person judged to be two people (c0008): the duplicate review leaves them out. Smaller id first.
subject_distinct = sa.Table(
    "subject_distinct", control_metadata,
    sa.Column("first_id", UUID, sa.ForeignKey("control.subject.id"), primary_key=True),
    sa.Column("second_id", UUID, sa.ForeignKey("control.subject.id"), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("decided_by", UUID, nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("first_id < second_id", name="subject_distinct_ordered"),
)

# Which facilities hold a chart of a subject (c0006): what the patient portal asks instead of every
# facility. Kept by `note_facility`, called wherever a chart is linked to a subject.
subject_facility = sa.Table(
    "subject_facility", control_metadata,
    sa.Column("subject_id", UUID, sa.ForeignKey("control.subject.id"), primary_key=True),
    sa.Column("tenant", sa.Text, primary_key=True),
)

# Each differing answer to the national-ID question (`compare_national_id_holder`) for an hour (c0014): what the
# limit on asking counts. Who asked about whom, never the number nor the answer (those are in the audit trail).
national_id_answer = sa.Table(
    "national_id_answer", control_metadata,
    sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()")),
    sa.Column("subject_id", UUID, sa.ForeignKey("control.subject.id"), nullable=False),
    sa.Column("account_id", UUID, nullable=False),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("national_id_answer_subject_idx", "subject_id", "answered_at"),
)

# A chart linked to a person over a differing answer to the national-ID question, the desk having confirmed the
# number (c0016): until a clinician confirms the identity from documents, or the number is corrected, a death recorded
# on that chart is kept to it (`deaths`), a referral from it reaches no chart of the person elsewhere, and nobody is
# invited to the portal from it. Keyed by the facility's chart; what differed, never the values.
subject_link_dispute = sa.Table(
    "subject_link_dispute", control_metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("patient_id", UUID, primary_key=True),
    sa.Column("subject_id", UUID, sa.ForeignKey("control.subject.id"), nullable=False),
    sa.Column("differs", postgresql.ARRAY(sa.Text), nullable=False),
    sa.Column("confirmed_by", UUID, nullable=False),
    sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

account = sa.Table(
    "account", control_metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("subject_id", UUID, sa.ForeignKey("control.subject.id"), nullable=True),
    sa.Column("appliance_role", sa.Text, nullable=True),
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("mfa_secret", sa.Text, nullable=True),
    sa.Column("mfa_required", sa.Boolean, nullable=False),
    sa.Column("last_totp_step", sa.BigInteger, nullable=True),
    sa.Column("failed_signins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("enrolment_code_hash", sa.Text, nullable=True),
    sa.Column("enrolment_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # A patient's account: the chart it was invited from, which it follows when the chart is relinked to
    # another person (`relink_facility`). Null for other accounts and those made before c0009.
    sa.Column("invited_from_tenant", sa.Text, nullable=True),
    sa.Column("invited_from_patient", UUID, nullable=True),
    sa.Index("account_email_key", sa.text("lower(email)"), unique=True),
    sa.Index("account_enrolment_code_key", "enrolment_code_hash", unique=True,
             postgresql_where=sa.text("enrolment_code_hash IS NOT NULL")),
    sa.Index("account_invited_from_idx", "invited_from_tenant", "invited_from_patient",
             postgresql_where=sa.text("invited_from_patient IS NOT NULL")),
)

membership = sa.Table(
    "membership", control_metadata,
    sa.Column("account_id", UUID, sa.ForeignKey("control.account.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tenant", sa.Text, sa.ForeignKey("control.tenant.slug", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.Text, primary_key=True),
    sa.Column("ward", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

session = sa.Table(
    "session", control_metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("account_id", UUID, sa.ForeignKey("control.account.id", ondelete="CASCADE"), nullable=False),
    sa.Column("mfa_passed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("tenant", sa.Text, nullable=True),
    sa.Column("role", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("session_account_idx", "account_id"),
)

api_token = sa.Table(
    "api_token", control_metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("account_id", UUID, sa.ForeignKey("control.account.id", ondelete="CASCADE"), nullable=False),
    sa.Column("tenant", sa.Text, sa.ForeignKey("control.tenant.slug", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("permissions", postgresql.ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)


@dataclass(frozen=True)
class IdentitySettings:
    session_idle: timedelta = timedelta(minutes=15)
    session_absolute: timedelta = timedelta(hours=12)
    max_failed_signins: int = 5
    lock_duration: timedelta = timedelta(minutes=15)
    enrolment_valid: timedelta = timedelta(hours=72)
    password_policy: passwords.PasswordPolicy = passwords.DEFAULT_POLICY


DEFAULT_SETTINGS = IdentitySettings()


class IdentityError(ValueError):
    """A refused identity operation; the message is safe to show to the person who asked."""


# The one refusal a sign-in ever shows: it never says whether the account exists or is locked.
SIGNIN_REFUSED = "the e-mail, password or code is not right, or the account is locked; try again later"


# -- the audit seam --------------------------------------------------------------------------------


def _audit(conn: Connection, *, event_type: str, action: str, principal: Principal | None = None,
           outcome: str = "success", detail: dict | None = None) -> None:
    """Appliance-level audit event in the caller's transaction: if it cannot be written, the act fails."""
    audit.append(conn, tenant=None, principal=principal, event_type=f"identity.{event_type}", action=action,
                 outcome=outcome, detail=detail or {})


# -- helpers ---------------------------------------------------------------------------------------


def _seal_totp(conn: Connection, account_id: uuid.UUID, secret: str) -> str:
    """TOTP seeds rest encrypted under the appliance key, bound to their account row: a database
    dump alone does not let anyone mint second factors."""
    return keys.keyring_for(conn.engine).seal_secret(secret, purpose="totp", bound_to=str(account_id))


def _open_totp(conn: Connection, account_id: uuid.UUID, sealed: str) -> str:
    return keys.keyring_for(conn.engine).open_secret(sealed, purpose="totp", bound_to=str(account_id))


def _now() -> datetime:
    return datetime.now(UTC)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Letters NFKD leaves whole (a stroke or a ligature is no combining mark), as a keyboard without them writes them:
# "Đặng" is typed "dang" (Vietnamese), "Søren" "soren", "Łukasz" "lukasz", "Æsa" "aesa". Two stored texts are
# folded by it, each refilled by a revision when it changed: a patient's search text (`search_text`, tenant t0044)
# and a subject's demographic key (`normalise_name`, control c0014); a change here needs a revision refilling both.
_UNDECOMPOSED_LETTERS = str.maketrans({"đ": "d", "ð": "d", "ø": "o", "ł": "l", "ħ": "h", "ı": "i", "ŧ": "t",
                                       "æ": "ae", "œ": "oe", "þ": "th"})


def normalise_name(name: str) -> str:
    """Lowercase ASCII letters only, folded as `search_text` folds them: 'Nakato-Ssemwogerere ' and 'nakato
    ssemwogerere' agree, and so do "Søren Østergaard" and "Soren Ostergaard", "Đặng" and "Dang", "Strauß" and
    "Strauss". A letter of another script has no ASCII spelling here and is left out. Frozen as it stood in
    control revision c0014, which recomputed the stored keys: a change here needs a revision recomputing them."""
    decomposed = unicodedata.normalize("NFKD", name.casefold()).translate(_UNDECOMPOSED_LETTERS)
    return "".join(ch for ch in decomposed if "a" <= ch <= "z")

# The accents NFKD takes off Latin, Greek and Cyrillic letters (Unicode's Combining Diacritical Marks). Other
# scripts' combining signs (a virama, a dakuten) make another letter, not an accented one, and are kept.
_ACCENTS = ("\u0300", "\u036f")


def search_text(text: str) -> str:
    """`text` as a name is searched: case and accents folded, whitespace single, so a desk that types "muller",
    "MULLER" or "müller" finds "Müller", "nunez" finds "Nuñez" and "dang" finds "Đặng". The stored search text of a
    name and the text searched for both pass through here (clinical `patient_search_query`); letters of other
    scripts are kept as they are. Frozen as it stood in tenant revision t0044, which refilled the stored text:
    a change here needs a revision refilling it again."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    unmarked = "".join(ch for ch in decomposed if not _ACCENTS[0] <= ch <= _ACCENTS[1])
    # Composed again, so another script's letter and its sign stay one character, as pg_trgm's words need.
    return " ".join(unicodedata.normalize("NFC", unmarked.translate(_UNDECOMPOSED_LETTERS)).split())


def demographic_key(family_name: str, given_names: str, birth_date: date | None, sex: str | None) -> str:
    given = " ".join(sorted(normalise_name(part) for part in given_names.split() if normalise_name(part)))
    born = birth_date.isoformat() if birth_date else ""
    return f"{normalise_name(family_name)}|{given}|{born}|{(sex or '')[:1].lower()}"


# -- subjects and the master patient index --------------------------------------------------------


@dataclass(frozen=True)
class SubjectMatch:
    subject_id: uuid.UUID
    how: str  # "national_id" (linked to an existing subject) or "created"
    candidates: list[uuid.UUID]  # other subjects with the same demographic key, for a person to review


# The national-ID question answers one guess at a time, so a script repeating it day by day learns the holder's birth
# date: a year of days takes ~180 questions. An honest desk is told once or twice that the holder differs, checks
# the card, and corrects the number or confirms it; five differing answers about one person in an hour are more than
# any correction needs. Every asker together (a facility admin can mint tokens, each a new asker) is allowed ten:
# a year's search then takes 36 hours for one asker, 18 for many, each question audited meanwhile, and a person
# whose desk is refused for an hour by someone else's probing is still registered once the number is confirmed.
NATIONAL_ID_QUESTION_WINDOW = timedelta(hours=1)
NATIONAL_ID_ANSWERS_PER_ASKER = 5
NATIONAL_ID_ANSWERS_PER_PERSON = 10

_ANSWERS_GIVEN = sa.text("""
SELECT count(*) FILTER (WHERE account_id = :account), count(*) FROM control.national_id_answer
WHERE subject_id = :subject AND answered_at > now() - CAST(:window AS interval)""")


def differing(one: tuple[date | None, str | None], other: tuple[date | None, str | None]) -> list[str]:
    """What two records of a person, each (birth date, sex), disagree in: "birth date", "sex", both, none. A
    birth date or sex either side does not record is no disagreement: the national-ID question's rule, and
    the patient portal's for which charts of a person it shows together (`patient.portal`)."""
    differs = []
    if one[0] is not None and other[0] is not None and one[0] != other[0]:
        differs.append("birth date")
    if {one[1], other[1]} <= {"female", "male"} and one[1] != other[1]:
        differs.append("sex")
    return differs


@dataclass(frozen=True)
class HolderComparison:
    """`compare_national_id_holder`'s answer: what differs, or that the question was not compared (`refused`)."""
    differs: list[str]
    refused: bool = False


def national_id_question_allowed(conn: Connection, holder_id: uuid.UUID, *, by: Principal) -> bool:
    """Whether `by` may be told again this hour whether a chart agrees with person `holder_id` (the survivor of
    merges): not after NATIONAL_ID_ANSWERS_PER_ASKER differing answers to them, nor NATIONAL_ID_ANSWERS_PER_PERSON
    to everyone (`note_differing_answer`). Holds the person's question lock to the end of `conn`'s transaction, so a
    burst of questions in parallel cannot all pass the count. Whatever else answers whether a chart agrees (the
    portal's invitation, `patient.portal.disputed_link`) asks this first, or it would answer without a limit."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                 {"key": f"healthos.identity.national_id_question.{holder_id}"})
    by_asker, by_everyone = conn.execute(_ANSWERS_GIVEN, {
        "account": by.account_id, "subject": holder_id, "window": NATIONAL_ID_QUESTION_WINDOW}).one()
    return by_asker < NATIONAL_ID_ANSWERS_PER_ASKER and by_everyone < NATIONAL_ID_ANSWERS_PER_PERSON


def note_differing_answer(conn: Connection, holder_id: uuid.UUID, *, by: Principal) -> None:
    """`by` was told a chart differs from person `holder_id`: counted by `national_id_question_allowed` for an hour."""
    conn.execute(sa.delete(national_id_answer).where(
        national_id_answer.c.answered_at < sa.func.now() - NATIONAL_ID_QUESTION_WINDOW))
    conn.execute(sa.insert(national_id_answer).values(subject_id=holder_id, account_id=by.account_id))


def compare_national_id_holder(conn: Connection, national_id: str, *, birth_date: date | None, sex: str | None,
                               tenant: str, by: Principal, confirmed: bool) -> HolderComparison | None:
    """What the person holding `national_id` (the survivor, when their subject was merged) differs in from a chart
    of facility `tenant` born `birth_date`, of sex `sex`: "birth date", "sex", both, none; None when nobody holds
    it. What is asked before a chart is linked to that person on the number alone: a mistyped number another
    person holds would put the chart on that person's patient portal. A birth date or sex either side does not
    record is no disagreement. Only which of the two differs is answered, never that person's values, and every
    comparison is audited (the person compared, the facility, who asked, what differed, whether the caller said
    the number was checked), so answers sought to learn someone's birth date leave a trail.

    Nor can they be sought quickly: a question not confirmed is refused (`refused`, nothing compared) once `by`
    was told NATIONAL_ID_ANSWERS_PER_ASKER times in the last hour that this person differs, or everyone together
    NATIONAL_ID_ANSWERS_PER_PERSON times; the refusal is audited. It comes before the comparison, whatever the
    guess, so it tells nothing of the person. A confirmed question is neither counted nor refused: its answer
    is not shown (the chart is registered either way). The count is kept in `conn`'s transaction with the audit
    event, as a failed sign-in's is, across every web worker and HL7 listener: commit it, then refuse."""
    found = conn.execute(sa.select(subject.c.id).where(subject.c.national_id == national_id.strip())).scalar()
    if found is None:
        return None
    holder_id = resolve_subject(conn, found)
    detail = {"tenant": tenant, "subject": str(holder_id)}
    if not confirmed and not national_id_question_allowed(conn, holder_id, by=by):
        _audit(conn, event_type="subject.national_id.compare", action="R", principal=by, outcome="failure",
               detail={**detail, "refused": "asked too often", "confirmed": confirmed})
        return HolderComparison([], refused=True)
    holder = conn.execute(sa.select(subject.c.birth_date, subject.c.sex).where(subject.c.id == holder_id)).one()
    differs = differing((holder.birth_date, holder.sex), (birth_date, sex))
    if differs and not confirmed:
        note_differing_answer(conn, holder_id, by=by)
    _audit(conn, event_type="subject.national_id.compare", action="R", principal=by,
           detail={**detail, "differs": differs, "confirmed": confirmed})
    return HolderComparison(differs)


def note_link_dispute(conn: Connection, *, tenant: str, chart_id: uuid.UUID, subject_id: uuid.UUID,
                      differs: list[str], by: Principal) -> None:
    """Chart `chart_id` of `tenant` is linked to `subject_id` although the national ID's holder differs in `differs`,
    `by` having confirmed the number (`clinical.service.link_registration`, in its control transaction)."""
    conn.execute(postgresql.insert(subject_link_dispute).values(
        tenant=tenant, patient_id=chart_id, subject_id=subject_id, differs=differs, confirmed_by=by.account_id)
        .on_conflict_do_update(index_elements=["tenant", "patient_id"], set_={
            "subject_id": subject_id, "differs": differs, "confirmed_by": by.account_id,
            "confirmed_at": sa.func.now()}))


def link_dispute(conn: Connection, tenant: str, chart_id: uuid.UUID) -> list[str] | None:
    """What chart `chart_id` of `tenant` was linked over (`note_link_dispute`): "birth date", "sex"; None when its
    link is not in dispute."""
    return conn.execute(sa.select(subject_link_dispute.c.differs).where(
        subject_link_dispute.c.tenant == tenant, subject_link_dispute.c.patient_id == chart_id)).scalar()


class IdentityNotInDispute(IdentityError):
    status = 409


class DeathElsewhere(IdentityError):
    status = 409


def confirm_linked_identity(conn: Connection, *, tenant: str, chart_id: uuid.UUID, by: Principal) -> None:
    """A clinician of `tenant` has checked from documents (the ID card, a birth certificate) that the patient of
    chart `chart_id` is the person its national ID links it to: the dispute is over, and a death kept to the chart
    is the person's at every facility. Refused (409) for a chart not in dispute, and while the person is recorded
    deceased by another facility's certificate (one of the two is on the wrong person). Audited
    (identity.subject.link.confirm) with the chart, the person and what had differed; the documents named are
    noted on the chart's own access log by the caller, as patient data is."""
    held = conn.execute(sa.delete(subject_link_dispute).where(
        subject_link_dispute.c.tenant == tenant, subject_link_dispute.c.patient_id == chart_id)
        .returning(subject_link_dispute.c.subject_id, subject_link_dispute.c.differs)).first()
    if held is None:
        raise IdentityNotInDispute("this chart's link to its person is not in dispute: there is nothing to confirm")
    kept = sa.text("UPDATE control.subject_death SET confined = false WHERE tenant = :tenant AND patient_id = :chart "
                   "AND confined AND withdrawn_at IS NULL")
    try:
        with conn.begin_nested():
            lifted = conn.execute(kept, {"tenant": tenant, "chart": chart_id}).rowcount
    except sa.exc.IntegrityError as exc:
        if "subject_death_live_key" not in str(exc.orig):
            raise
        raise DeathElsewhere(
            "the person this chart is linked to is recorded deceased by another facility's certificate, and this "
            "chart has a death certificate too: one of them is on the wrong person. Mark the wrong one entered in "
            "error, then confirm the identity") from None
    _audit(conn, event_type="subject.link.confirm", action="U", principal=by,
           detail={"tenant": tenant, "chart": str(chart_id), "subject": str(held.subject_id),
                   "differs": list(held.differs), "death_lifted": bool(lifted)})


def resolve_subject(conn: Connection, subject_id: uuid.UUID) -> uuid.UUID:
    """Follow merges to the surviving subject."""
    seen = set()
    current = subject_id
    while current not in seen:
        seen.add(current)
        nxt = conn.execute(sa.select(subject.c.merged_into).where(subject.c.id == current)).scalar()
        if nxt is None:
            return current
        current = nxt
    raise IdentityError("subject merges form a cycle")


def subject_ids_resolving_to(conn: Connection, subject_id: uuid.UUID) -> list[uuid.UUID]:
    """The subject and every subject merged into it (directly or through others)."""
    rows = conn.execute(sa.text(
        "WITH RECURSIVE tree(id) AS (SELECT CAST(:id AS uuid) UNION "
        "SELECT s.id FROM control.subject s JOIN tree t ON s.merged_into = t.id) SELECT id FROM tree"
    ), {"id": subject_id}).scalars()
    return list(rows)


def subject_has_account(conn: Connection, subject_id: uuid.UUID) -> bool:
    """Whether a patient account already signs in as this person (merges followed)."""
    subjects = subject_ids_resolving_to(conn, resolve_subject(conn, subject_id))
    return conn.execute(sa.select(account.c.id).where(account.c.kind == "patient",
                                                      account.c.subject_id.in_(subjects))).first() is not None


def note_facility(conn: Connection, subject_id: uuid.UUID, tenant: str) -> bool:
    """Record that this facility holds (or is about to register) a chart of this subject; whether it was not
    listed before."""
    return conn.execute(postgresql.insert(subject_facility).values(subject_id=subject_id, tenant=tenant)
                        .on_conflict_do_nothing().returning(subject_facility.c.tenant)).first() is not None


def forget_refused_registration(conn: Connection, subject_id: uuid.UUID, tenant: str, *, made: bool,
                                noted: bool, disputed_chart: uuid.UUID | None = None) -> None:
    """Undo what a registration at `tenant` wrote to the index ahead of its chart, once the chart was refused: the
    facility's listing for the subject if the registration `noted` it, and the subject if the registration `made`
    it and nothing else has come to name it since. A registration of the same national ID that found the subject
    meanwhile listed its own facility for it, which keeps it (the key that listing takes on the subject's row makes
    the delete wait for it, then find it); one at this same facility lists it again once its chart has committed
    (`db.after_commit`). A new chart linked over a differing answer (`disputed_chart`) was never written: the record
    of its link goes with it."""
    if disputed_chart is not None:
        conn.execute(sa.delete(subject_link_dispute).where(subject_link_dispute.c.tenant == tenant,
                                                           subject_link_dispute.c.patient_id == disputed_chart))
    if noted:
        conn.execute(sa.delete(subject_facility).where(subject_facility.c.subject_id == subject_id,
                                                       subject_facility.c.tenant == tenant))
    if made:
        with contextlib.suppress(sa.exc.IntegrityError), conn.begin_nested():
            conn.execute(sa.delete(subject).where(subject.c.id == subject_id))


def relink_facility(conn: Connection, *, tenant: str, chart_id: uuid.UUID, from_subject: uuid.UUID,
                    to_subject: uuid.UUID, holds_chart: Callable[[uuid.UUID], bool], by: Principal | None) -> bool:
    """Facility `tenant` has relinked its chart `chart_id` from one subject to another (its national ID was
    corrected, and the chart follows the corrected ID to its person): the facility is no longer listed as
    holding a chart of `from_subject`, unless another of its charts still links to it, which `holds_chart`
    answers (from the facility's own transaction). A portal account invited from that chart follows it to
    `to_subject`: it was made for the person of the chart, and left on `from_subject` its holder would read
    the other person's record (and that person could not be invited). Audited with both subjects, the
    facility and the accounts moved; returns whether the facility is still listed. Called once the
    correction has committed: listing a facility with no chart of a subject is harmless (the portal asks
    and finds none); leaving one out is not.

    The row goes first and the question comes after, in this transaction: a registration at the facility
    noting `from_subject` meanwhile (`note_facility`) waits for this transaction and then notes it again,
    and a chart committed before the question is seen by it. Not seen: a chart whose registration noted the
    subject before the row went and commits only after the question, within those milliseconds; that
    registration lists the facility again once its chart has committed (`db.after_commit`)."""
    conn.execute(sa.delete(subject_facility).where(subject_facility.c.subject_id == from_subject,
                                                   subject_facility.c.tenant == tenant))
    # The link in dispute was to `from_subject`; a correction linking over another differing answer wrote its own.
    disputed = conn.execute(sa.delete(subject_link_dispute).where(
        subject_link_dispute.c.tenant == tenant, subject_link_dispute.c.patient_id == chart_id,
        subject_link_dispute.c.subject_id == from_subject)).rowcount
    # A death kept to the chart was its own patient's: it follows the chart to them, kept still if that link is in
    # dispute too, and stays kept where they are recorded deceased already.
    conn.execute(sa.text("""
        UPDATE control.subject_death d SET subject_id = :to,
               confined = EXISTS (SELECT 1 FROM control.subject_link_dispute l
                                  WHERE l.tenant = d.tenant AND l.patient_id = d.patient_id)
        WHERE d.tenant = :tenant AND d.patient_id = :chart AND d.confined AND d.withdrawn_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM control.subject_death o
                          WHERE o.subject_id = :to AND o.withdrawn_at IS NULL AND NOT o.confined)"""),
        {"to": to_subject, "tenant": tenant, "chart": chart_id})
    still_listed = holds_chart(from_subject)
    if still_listed:
        note_facility(conn, from_subject, tenant)
    moved = conn.execute(
        sa.update(account).where(account.c.invited_from_tenant == tenant, account.c.invited_from_patient == chart_id,
                                 account.c.subject_id.is_distinct_from(to_subject))
        .values(subject_id=to_subject).returning(account.c.id)).scalars().all()
    _audit(conn, event_type="subject.relink", action="U", principal=by,
           detail={"tenant": tenant, "from": str(from_subject), "to": str(to_subject),
                   "facility_still_listed": still_listed, "accounts_moved": sorted(str(a) for a in moved),
                   "dispute_ended": bool(disputed)})
    return still_listed


def facilities_of(conn: Connection, subject_id: uuid.UUID) -> tuple[list[uuid.UUID], set[str]]:
    """The subjects that are this person (merges followed) and the facilities holding a chart of any."""
    subjects = subject_ids_resolving_to(conn, resolve_subject(conn, subject_id))
    tenants = conn.execute(sa.select(subject_facility.c.tenant).distinct()
                           .where(subject_facility.c.subject_id.in_(subjects))).scalars()
    return subjects, set(tenants)


def subject_exists(conn: Connection, subject_id: uuid.UUID) -> bool:
    return conn.execute(sa.select(subject.c.id).where(subject.c.id == subject_id)).first() is not None


# One statement (a round trip and one plan) for what registration asks of the index: the subject with
# this national ID, else a new subject and the look-alikes a person should review. A registration of the
# same new national ID at another facility at the same moment conflicts on the unique index and inserts
# nothing; the subject it made is then read back, instead of failing the registration.
_MATCH_OR_CREATE = """
WITH found AS (SELECT id, merged_into FROM control.subject WHERE national_id = %(national_id)s),
made AS (
    INSERT INTO control.subject (id, national_id, family_name, given_names, birth_date, sex, demographic_key)
    SELECT %(id)s, %(national_id)s, %(family_name)s, %(given_names)s, %(birth_date)s, %(sex)s, %(key)s
    WHERE NOT EXISTS (SELECT 1 FROM found)
    ON CONFLICT (national_id) WHERE national_id IS NOT NULL DO NOTHING
    RETURNING id)
SELECT (SELECT id FROM found), (SELECT merged_into FROM found), (SELECT id FROM made),
       CASE WHEN EXISTS (SELECT 1 FROM found) THEN '{}'::uuid[] ELSE ARRAY(
           SELECT id FROM control.subject WHERE demographic_key = %(key)s AND merged_into IS NULL) END
"""


def match_or_create_subject(
    conn: Connection, *, family_name: str, given_names: str, birth_date: date | None = None,
    sex: str | None = None, national_id: str | None = None,
) -> SubjectMatch:
    national_id = (national_id or "").strip() or None
    found, merged_into, made, candidates = conn.exec_driver_sql(_MATCH_OR_CREATE, {
        "id": uuid.uuid4(), "national_id": national_id, "family_name": family_name.strip(),
        "given_names": given_names.strip(), "birth_date": birth_date, "sex": sex,
        "key": demographic_key(family_name, given_names, birth_date, sex)}).one()
    if made is not None:
        return SubjectMatch(made, "created", list(candidates))
    if found is None:  # made by a concurrent registration since this statement's snapshot
        found, merged_into = conn.execute(sa.select(subject.c.id, subject.c.merged_into)
                                          .where(subject.c.national_id == national_id)).one()
    return SubjectMatch(found if merged_into is None else resolve_subject(conn, found), "national_id", [])


def merge_subjects(conn: Connection, *, survivor_id: uuid.UUID, merged_id: uuid.UUID, reason: str,
                   by: Principal | None) -> uuid.UUID:
    if not reason.strip():
        raise IdentityError("a merge needs a stated reason")
    survivor_id = resolve_subject(conn, survivor_id)
    if resolve_subject(conn, merged_id) == survivor_id:
        raise IdentityError("these subjects are already the same person")
    if conn.execute(sa.select(subject.c.merged_into).where(subject.c.id == merged_id)).scalar() is not None:
        raise IdentityError("the subject to merge is already merged into another; unmerge it first")
    merge_id = uuid.uuid4()
    conn.execute(sa.update(subject).where(subject.c.id == merged_id).values(merged_into=survivor_id))
    conn.execute(sa.insert(subject_merge).values(
        id=merge_id, survivor_id=survivor_id, merged_id=merged_id, reason=reason.strip(),
        merged_by=by.account_id if by else None,
    ))
    _audit(conn, event_type="subject.merge", action="U", principal=by,
           detail={"merge": str(merge_id), "survivor": str(survivor_id), "merged": str(merged_id)})
    return merge_id


def unmerge_subjects(conn: Connection, *, merge_id: uuid.UUID, by: Principal | None) -> None:
    row = conn.execute(sa.select(subject_merge).where(subject_merge.c.id == merge_id)).first()
    if row is None or row.undone_at is not None:
        raise IdentityError("no such merge to undo")
    conn.execute(sa.update(subject).where(subject.c.id == row.merged_id).values(merged_into=None))
    conn.execute(sa.update(subject_merge).where(subject_merge.c.id == merge_id).values(
        undone_at=_now(), undone_by=by.account_id if by else None))
    _audit(conn, event_type="subject.unmerge", action="U", principal=by,
           detail={"merge": str(merge_id), "survivor": str(row.survivor_id), "merged": str(row.merged_id)})


# -- reviewing likely duplicates -------------------------------------------------------------------
#
# Registration links by national ID only; two charts of one person under no ID, or under an ID typed two
# ways, make two subjects, and registration's `candidates` are gone when it returns. The review finds such
# pairs afresh among the subjects not merged, by signals a person can check on the page, strongest first.
# Phone numbers are not among them: they are in each facility's charts, not here, and asking every
# facility would read charts for a list that names no patient of theirs.


@dataclass(frozen=True)
class DuplicateSignal:
    code: str
    says: str  # what the pair shares, as a reviewer reads it
    key: str  # SQL over a subject aliased {t}: both subjects of a pair have the same
    where: str  # SQL over {t}: only subjects whose key means something
    pair: str = "TRUE"  # SQL over the pair (a, b): what the signal adds to its stronger ones


# The demographic key is "family|given words sorted|birth date|sex", each name already normalised.
_BOTH_NAMES = "split_part({t}.demographic_key, '|', 1) <> '' AND split_part({t}.demographic_key, '|', 2) <> ''"

DUPLICATE_SIGNALS = (
    # The unique index holds the ID as typed: "CM 1234-5678" and "cm12345678" are two subjects.
    DuplicateSignal("national_id", "the same national ID, written differently",
                    "upper(regexp_replace({t}.national_id, '[^[:alnum:]]', '', 'g'))",
                    "{t}.national_id IS NOT NULL AND regexp_replace({t}.national_id, '[^[:alnum:]]', '', 'g') <> ''"),
    # What registration proposes (`match_or_create_subject`'s candidates). A name with no Latin letter
    # normalises to nothing; those keys are not names.
    DuplicateSignal("demographics", "the same names, birth date and sex", "{t}.demographic_key", _BOTH_NAMES),
    # A family name entered as a given name ("Nakato Sarah" / "Sarah Nakato"): the name words sorted
    # together. Only with a birth date, which the names alone are too common to stand without.
    DuplicateSignal(
        "names_reordered", "the same name words in another order, birth date and sex",
        "array_to_string(ARRAY(SELECT w FROM unnest(string_to_array(split_part({t}.demographic_key, '|', 1) "
        "|| ' ' || split_part({t}.demographic_key, '|', 2), ' ')) AS w WHERE w <> '' ORDER BY w), ' ') "
        "|| '|' || split_part({t}.demographic_key, '|', 3) || '|' || split_part({t}.demographic_key, '|', 4)",
        "{t}.birth_date IS NOT NULL AND " + _BOTH_NAMES, "a.dkey <> b.dkey"),
)
SIGNAL_SAYS = {signal.code: signal.says for signal in DUPLICATE_SIGNALS}
# A key more subjects than this share is a placeholder ("Unknown Baby", a ward's default birth date), not
# one person registered that many times; its pairs (n² of them) would bury the real ones.
CROWDED_KEY = 10

_SIGNAL_PAIRS = """
WITH keyed AS (
    SELECT s.id, s.demographic_key AS dkey, {key_s} AS k FROM control.subject s
    WHERE s.merged_into IS NULL AND {where_s}
      AND (CAST(%(within)s AS uuid[]) IS NULL
           OR {key_s} IN (SELECT {key_p} FROM control.subject p WHERE p.id = ANY(%(within)s)))),
shared AS (SELECT id, dkey, k, count(*) OVER (PARTITION BY k) AS n FROM keyed)
SELECT a.id, b.id FROM shared a JOIN shared b ON b.k = a.k AND a.id < b.id
WHERE a.n BETWEEN 2 AND %(crowd)s AND ({pair})
  AND (CAST(%(within)s AS uuid[]) IS NULL OR (a.id = ANY(%(within)s) AND b.id = ANY(%(within)s)))
  AND NOT EXISTS (SELECT 1 FROM control.subject_distinct d WHERE d.first_id = a.id AND d.second_id = b.id)
"""


def _signal_statement(signal: DuplicateSignal) -> str:
    return _SIGNAL_PAIRS.format(key_s=signal.key.format(t="s"), key_p=signal.key.format(t="p"),
                                where_s=signal.where.format(t="s"), pair=signal.pair)


def _ordered(one: uuid.UUID, other: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """A pair as stored and listed: the smaller id first (Python and PostgreSQL order UUIDs alike)."""
    return (one, other) if one < other else (other, one)


def _duplicate_pairs(conn: Connection, *, within: list[uuid.UUID] | None = None,
                     progress: Callable[[DuplicateSignal], None] | None = None) -> dict[tuple, list[str]]:
    """Each pair of live subjects not dismissed that shares a signal, with the signals it shares
    (strongest first); `within` keeps only pairs of those subjects. One statement per signal."""
    pairs: dict[tuple, list[str]] = {}
    for signal in DUPLICATE_SIGNALS:
        for first, second in conn.exec_driver_sql(_signal_statement(signal),
                                                  {"within": within, "crowd": CROWDED_KEY}):
            pairs.setdefault((first, second), []).append(signal.code)
        if progress is not None:
            progress(signal)
    return pairs


@dataclass(frozen=True)
class SubjectCard:
    """What a reviewer needs of one subject to judge a pair, and no more: no address, phone or chart."""
    id: uuid.UUID
    family_name: str
    given_names: str
    birth_date: date | None
    sex: str | None
    national_id: str | None
    facilities: list[str]  # names of the facilities holding a chart of this person (merges followed)
    merged_into: uuid.UUID | None


_CARDS = """
WITH RECURSIVE tree(root, id) AS (
    SELECT id, id FROM control.subject WHERE id = ANY(%(ids)s)
    UNION SELECT t.root, s.id FROM control.subject s JOIN tree t ON s.merged_into = t.id)
SELECT s.id, s.family_name, s.given_names, s.birth_date, s.sex, s.national_id, s.merged_into,
       ARRAY(SELECT DISTINCT tn.name FROM tree t JOIN control.subject_facility f ON f.subject_id = t.id
             JOIN control.tenant tn ON tn.slug = f.tenant WHERE t.root = s.id ORDER BY tn.name)
FROM control.subject s WHERE s.id = ANY(%(ids)s)
"""


def subject_cards(conn: Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, SubjectCard]:
    rows = conn.exec_driver_sql(_CARDS, {"ids": list(ids)}) if ids else []
    return {row[0]: SubjectCard(row[0], row[1], row[2], row[3], row[4], row[5], list(row[7]), row[6])
            for row in rows}


@dataclass(frozen=True)
class DuplicatePair:
    first: SubjectCard
    second: SubjectCard
    signals: list[str]  # codes of DUPLICATE_SIGNALS, strongest first


@dataclass(frozen=True)
class DuplicateReview:
    total: int  # pairs listed in all; `pairs` is the page asked for
    pairs: list[DuplicatePair]


def likely_duplicates(conn: Connection, *, by: Principal | None, limit: int = 50, offset: int = 0,
                      progress: Callable[[DuplicateSignal], None] | None = None) -> DuplicateReview:
    """The pairs of live subjects that look like one person registered twice, strongest signal first,
    `limit` of them from `offset`. Showing them is a read of every subject shown: audited here, naming
    them (identity.subject.duplicates.read)."""
    strength = {signal.code: rank for rank, signal in enumerate(DUPLICATE_SIGNALS)}
    found = _duplicate_pairs(conn, progress=progress)
    ordered = sorted(found, key=lambda pair: (strength[found[pair][0]], pair))
    page = ordered[offset:offset + limit]
    cards = subject_cards(conn, [subject_id for pair in page for subject_id in pair])
    pairs = [DuplicatePair(cards[first], cards[second], found[(first, second)]) for first, second in page]
    _audit(conn, event_type="subject.duplicates.read", action="R", principal=by,
           detail={"pairs": len(pairs), "offset": offset, "total": len(ordered),
                   "subjects": [str(subject_id) for pair in page for subject_id in pair]})
    return DuplicateReview(len(ordered), pairs)


def duplicate_signals(conn: Connection, one: uuid.UUID, other: uuid.UUID) -> list[str]:
    """The signals this pair is listed by now: none if either is unknown, merged, or the pair dismissed."""
    return _duplicate_pairs(conn, within=[one, other]).get(_ordered(one, other), [])


class UnknownPair(IdentityError):
    """A decision on a pair naming a subject there is not (a guessed or mistyped id)."""
    status = 404


class PairNotListed(IdentityError):
    """A decision on a pair the review does not list (any more): merged or dismissed meanwhile, or never alike."""
    status = 409


def _listed_pair(conn: Connection, one: uuid.UUID, other: uuid.UUID) -> list[str]:
    """The pair's signals, both subjects locked until the decision commits: two reviewers deciding on one
    pair at once (one merging each way, which would make a cycle) are taken one after the other, and the
    second finds the pair no longer listed."""
    locked = conn.execute(sa.select(subject.c.id).where(subject.c.id.in_([one, other]))
                          .order_by(subject.c.id).with_for_update()).scalars().all()
    if one == other or len(locked) != 2:
        raise UnknownPair("no such pair of people: choose one from the list of likely duplicates")
    signals = duplicate_signals(conn, one, other)
    if not signals:
        raise PairNotListed("these two are not listed as likely duplicates (any more): one may have been merged "
                            "or the pair judged to be two people meanwhile")
    return signals


def merge_duplicate(conn: Connection, *, survivor_id: uuid.UUID, merged_id: uuid.UUID, reason: str,
                    by: Principal | None) -> uuid.UUID:
    """Merge a listed pair (`merge_subjects`): the one chosen to survive keeps its id, the other points at it."""
    if not reason.strip():
        raise IdentityError("a merge needs a stated reason")
    _listed_pair(conn, survivor_id, merged_id)
    return merge_subjects(conn, survivor_id=survivor_id, merged_id=merged_id, reason=reason, by=by)


def dismiss_duplicate(conn: Connection, *, one: uuid.UUID, other: uuid.UUID, reason: str,
                      by: Principal | None) -> None:
    """Record that a listed pair is two people: it is not listed again. Audited (identity.subject.distinct)."""
    reason = reason.strip()
    if not reason:
        raise IdentityError("say why they are two people (e.g. twins, different mothers), for whoever asks later")
    if len(reason) > 500:
        raise IdentityError("the reason is longer than 500 characters; shorten it")
    signals = _listed_pair(conn, one, other)
    first, second = _ordered(one, other)
    conn.execute(sa.insert(subject_distinct).values(first_id=first, second_id=second, reason=reason,
                                                    decided_by=by.account_id if by else None))
    _audit(conn, event_type="subject.distinct", action="C", principal=by,
           detail={"first": str(first), "second": str(second), "signals": signals})


def live_merges(conn: Connection, *, by: Principal | None, limit: int = 20) -> list[dict]:
    """The latest merges not undone, newest first, with both subjects' cards: what an undo is chosen from.
    Showing them is a read of those people: audited here (identity.subject.merges.read)."""
    rows = conn.execute(sa.select(subject_merge.c.id, subject_merge.c.survivor_id, subject_merge.c.merged_id,
                                  subject_merge.c.reason, subject_merge.c.merged_at, account.c.display_name)
                        .select_from(subject_merge.outerjoin(account, account.c.id == subject_merge.c.merged_by))
                        .where(subject_merge.c.undone_at.is_(None))
                        .order_by(subject_merge.c.merged_at.desc(), subject_merge.c.id).limit(limit)).all()
    cards = subject_cards(conn, [row.survivor_id for row in rows] + [row.merged_id for row in rows])
    _audit(conn, event_type="subject.merges.read", action="R", principal=by,
           detail={"merges": [str(row.id) for row in rows],
                   "subjects": [str(subject_id) for row in rows for subject_id in (row.survivor_id, row.merged_id)]})
    return [{"id": row.id, "survivor": cards[row.survivor_id], "merged": cards[row.merged_id], "reason": row.reason,
             "merged_at": row.merged_at, "merged_by": row.display_name} for row in rows]


# -- accounts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewAccount:
    account_id: uuid.UUID
    enrolment_code: str


def checked_email(email: str) -> str:
    """The address, trimmed, or IdentityError saying it is not one."""
    email = email.strip()
    if "@" not in email or len(email) > 254:
        raise IdentityError(f"{email!r} is not an e-mail address")
    return email


def create_account(
    conn: Connection, policy: AccessPolicy, *, kind: AccountKind, email: str, display_name: str,
    role: str, tenant: str | None = None, ward: str | None = None, subject_id: uuid.UUID | None = None,
    invited_from: tuple[str, uuid.UUID] | None = None, settings: IdentitySettings | None = None,
    by: Principal | None = None,
) -> NewAccount:
    """An account with one role, and a one-time enrolment code (never a password). A patient's account
    names the chart it was invited from (facility, patient id), whose links it then follows."""
    email = checked_email(email)
    if role not in policy.roles:
        raise IdentityError(f"unknown role {role!r}; roles are: {', '.join(sorted(policy.roles))}")
    tenant_role = policy.is_tenant_role(role)
    if tenant_role and not tenant:
        raise IdentityError(f"role {role!r} works inside a facility: give --tenant")
    if not tenant_role and tenant:
        raise IdentityError(f"role {role!r} is appliance-wide: it takes no tenant")
    if conn.execute(sa.select(account.c.id).where(sa.func.lower(account.c.email) == email.lower())).first():
        raise IdentityError(f"an account for {email} already exists")
    account_id = uuid.uuid4()
    code = secrets.token_urlsafe(24)
    conn.execute(sa.insert(account).values(
        id=account_id, kind=kind, email=email, display_name=display_name.strip() or email,
        subject_id=subject_id, appliance_role=None if tenant_role else role,
        invited_from_tenant=invited_from[0] if invited_from else None,
        invited_from_patient=invited_from[1] if invited_from else None,
        mfa_required=policy.requires_mfa(role), enrolment_code_hash=token_digest(code),
        enrolment_expires_at=_now() + (settings or DEFAULT_SETTINGS).enrolment_valid,
    ))
    if tenant_role:
        add_membership(conn, policy, account_id=account_id, tenant=tenant, role=role, ward=ward)
    _audit(conn, event_type="account.create", action="C", principal=by,
           detail={"account": str(account_id), "role": role, "tenant": tenant})
    return NewAccount(account_id, code)


def name_machine_author(conn: Connection, principal: Principal, *, email: str) -> bool:
    """An account row for a machine principal that writes entries (a demo generator), so the pages that
    say who wrote an entry name it instead of showing nothing. Disabled from the start, with no
    credentials and no membership: it can never sign in. False when it already has one."""
    added = conn.execute(postgresql.insert(account).values(
        id=principal.account_id, kind="machine", email=email, display_name=principal.display_name,
        mfa_required=False, disabled_at=_now(),
    ).on_conflict_do_nothing().returning(account.c.id)).first() is not None
    if added:
        _audit(conn, event_type="account.create", action="C",
               detail={"account": str(principal.account_id), "kind": "machine", "tenant": principal.tenant})
    return added


def add_membership(conn: Connection, policy: AccessPolicy, *, account_id: uuid.UUID, tenant: str, role: str,
                   ward: str | None = None) -> None:
    """`role` at `tenant`, on `ward` for a ward-scoped role. A ward is one of the facility's tenant file: a nurse
    created on a ward mistyped ('--ward GNE') signed in to a ward no patient lies on and saw nobody's chart."""
    if not policy.is_tenant_role(role):
        raise IdentityError(f"{role!r} is not a facility role")
    facility = conn.execute(sa.text("SELECT config->'wards' AS wards FROM control.tenant "
                                    "WHERE slug = :t AND status = 'active'"), {"t": tenant}).first()
    if facility is None:
        raise IdentityError(f"no tenant named {tenant!r}")
    if ward is not None:
        if not policy.is_ward_scoped(role):
            raise IdentityError(f"a {role} is not limited to a ward: leave --ward out")
        codes = sorted(w["code"] for w in facility.wards or [])
        if ward not in codes:
            wards = f"its wards are {', '.join(codes)}" if codes else "it has no wards"
            raise IdentityError(f"{tenant} has no ward {ward!r}: {wards}")
    conn.execute(postgresql.insert(membership).values(account_id=account_id, tenant=tenant, role=role, ward=ward)
                 .on_conflict_do_nothing())


def set_ward(conn: Connection, *, account_id: uuid.UUID, tenant: str, role: str, ward: str,
             by: Principal | None = None) -> str | None:
    """Move a person's membership of `tenant` in `role` to `ward` (the caller checks the ward is one of
    the facility's); their next request works there. Returns the ward they left; IdentityError when
    they hold no such membership here. Audited as identity.membership.update."""
    left = conn.execute(sa.select(membership.c.ward).where(
        membership.c.account_id == account_id, membership.c.tenant == tenant, membership.c.role == role)).first()
    if left is None:
        raise IdentityError("nobody with that role works here")
    conn.execute(sa.update(membership).where(membership.c.account_id == account_id, membership.c.tenant == tenant,
                                             membership.c.role == role).values(ward=ward))
    _audit(conn, event_type="membership.update", action="U", principal=by,
           detail={"account": str(account_id), "tenant": tenant, "role": role, "ward": ward, "from_ward": left.ward})
    return left.ward


def account_by_email(conn: Connection, email: str):
    return conn.execute(sa.select(account).where(sa.func.lower(account.c.email) == email.strip().lower())).first()


def list_accounts(conn: Connection) -> list[dict]:
    rows = conn.execute(sa.text(
        "SELECT a.email, a.kind, a.appliance_role, a.disabled_at, a.locked_until, a.password_hash IS NULL AS pending, "
        "coalesce(array_agg(m.role || '@' || m.tenant ORDER BY m.tenant) FILTER (WHERE m.role IS NOT NULL), '{}') "
        "AS memberships FROM control.account a LEFT JOIN control.membership m ON m.account_id = a.id "
        "GROUP BY a.id ORDER BY a.email"
    )).mappings()
    accounts = []
    for row in rows:
        roles = ([row["appliance_role"]] if row["appliance_role"] else []) + list(row["memberships"])
        accounts.append({"email": row["email"], "kind": row["kind"], "roles": roles,
                         "state": _account_state(row, has_role=bool(roles))})
        if accounts[-1]["state"] == "locked":
            # When it opens again by itself: IT can tell the person to wait, or unlock it now.
            accounts[-1]["locked_until"] = row["locked_until"]
    return accounts


# The state of an account whose every role was at facilities since dropped.
NO_ROLE = "no role"


def _account_state(row, *, has_role: bool = True) -> str:
    # A person whose only facility was dropped keeps the account (its audit history names it) but can do
    # nothing with it: "no role" says so, where "awaiting enrolment" or "active" would send IT the wrong way.
    # A machine client never enrols (it has a token, never a password): without one it is not waiting for anyone.
    if row["disabled_at"]:
        return "disabled"
    if not has_role and row.get("kind") != "machine":
        return NO_ROLE
    return ("locked" if row["locked_until"] and row["locked_until"] > _now()
            else "awaiting enrolment" if row["pending"] and row.get("kind") != "machine" else "active")


def _accounts_only_at(conn: Connection, tenant: str) -> list:
    """The accounts whose every role is in facility `tenant` (no appliance-wide role, no other facility)."""
    return list(conn.execute(sa.text(
        "SELECT a.email, a.display_name, a.kind, a.disabled_at FROM control.account a "
        "WHERE a.appliance_role IS NULL "
        "AND EXISTS (SELECT 1 FROM control.membership m WHERE m.account_id = a.id AND m.tenant = :t) "
        "AND NOT EXISTS (SELECT 1 FROM control.membership m WHERE m.account_id = a.id AND m.tenant <> :t) "
        "ORDER BY lower(a.email)"), {"t": tenant}))


def accounts_only_at(conn: Connection, tenant: str) -> list[str]:
    """E-mails of the people whose every role is in facility `tenant`: what dropping it leaves with no role.
    Machine clients' accounts are not counted: dropping the facility disables them (`machine_clients_only_at`)."""
    return [row.email for row in _accounts_only_at(conn, tenant) if row.kind != "machine"]


def machine_clients_only_at(conn: Connection, tenant: str) -> list[dict]:
    """The live machine clients (API token holders) of facility `tenant` that serve no other: each account's
    e-mail and name, which is what its tokens are for ('lab HL7 feed'). Dropping the facility disables them."""
    machines = [row for row in _accounts_only_at(conn, tenant) if row.kind == "machine" and row.disabled_at is None]
    return [{"email": row.email, "name": row.display_name}
            for row in sorted(machines, key=lambda row: (row.display_name.lower(), row.email))]


def facility_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """For each facility with any: how many people work there and how many live API tokens it has."""
    rows = conn.execute(sa.text(
        "SELECT t.slug, (SELECT count(*) FROM control.membership m JOIN control.account a ON a.id = m.account_id "
        " WHERE m.tenant = t.slug AND a.kind <> 'machine') AS staff, "
        "(SELECT count(*) FROM control.api_token k WHERE k.tenant = t.slug AND k.revoked_at IS NULL) AS tokens "
        "FROM control.tenant t")).mappings()
    return {row["slug"]: {"staff": row["staff"], "tokens": row["tokens"]} for row in rows}


def staff_of(conn: Connection, tenant: str) -> list[dict]:
    """The people who work in facility `tenant`: each membership of a person's account (machine clients'
    accounts are the API tokens' business), with the account's state."""
    rows = conn.execute(sa.text(
        "SELECT a.id, a.display_name, a.email, a.disabled_at, a.locked_until, a.password_hash IS NULL AS pending, "
        "m.role, m.ward, m.created_at FROM control.membership m JOIN control.account a ON a.id = m.account_id "
        "WHERE m.tenant = :t AND a.kind <> 'machine' ORDER BY m.role, lower(a.display_name), a.email"),
        {"t": tenant}).mappings()
    staff = []
    for row in rows:
        state = _account_state(row)
        staff.append({"account_id": row["id"], "name": row["display_name"], "email": row["email"], "role": row["role"],
                      "ward": row["ward"], "since": row["created_at"], "state": state,
                      # When it opens again by itself: the person locked out is told how long to wait.
                      "locked_until": row["locked_until"] if state == "locked" else None})
    return staff


def memberships_of(conn: Connection, account_id: uuid.UUID) -> list[dict]:
    rows = conn.execute(
        sa.text("SELECT m.tenant, m.role, m.ward, t.name FROM control.membership m "
                "JOIN control.tenant t ON t.slug = m.tenant WHERE m.account_id = :a ORDER BY t.name, m.role"),
        {"a": account_id},
    ).mappings()
    return [dict(row) for row in rows]


@dataclass(frozen=True)
class PendingEnrolment:
    id: uuid.UUID
    email: str
    mfa_required: bool
    totp_secret: str  # shown once, to the person enrolling


def pending_enrolment(conn: Connection, code: str) -> PendingEnrolment:
    """The account an unexpired enrolment code belongs to, with a TOTP secret ready to show."""
    row = conn.execute(sa.select(account).where(account.c.enrolment_code_hash == token_digest(code))).first()
    if row is None or row.enrolment_expires_at < _now() or row.disabled_at is not None:
        raise IdentityError("this enrolment link is not valid or has expired; ask for a new one")
    if row.mfa_secret is None:
        secret = totp.generate_secret()
        conn.execute(sa.update(account).where(account.c.id == row.id).values(
            mfa_secret=_seal_totp(conn, row.id, secret)))
    else:
        secret = _open_totp(conn, row.id, row.mfa_secret)
    return PendingEnrolment(row.id, row.email, row.mfa_required, secret)


def complete_enrolment(conn: Connection, code: str, password: str, totp_code: str | None,
                       settings: IdentitySettings | None = None) -> uuid.UUID:
    row = pending_enrolment(conn, code)
    weakness = passwords.check_password_strength(password)
    if weakness:
        raise IdentityError(weakness)
    step = None
    if row.mfa_required or totp_code:
        step = totp.verify(row.totp_secret, totp_code or "", _now().timestamp(), None)
        if step is None:
            raise IdentityError("that authenticator code is not right; check the time on your phone and try again")
    conn.execute(sa.update(account).where(account.c.id == row.id).values(
        password_hash=passwords.hash_password(password, (settings or DEFAULT_SETTINGS).password_policy),
        last_totp_step=step, enrolment_code_hash=None, enrolment_expires_at=None,
        mfa_secret=_seal_totp(conn, row.id, row.totp_secret) if step is not None else None,
        failed_signins=0, locked_until=None,
    ))
    _audit(conn, event_type="account.enrol", action="U", detail={"account": str(row.id)})
    return row.id


def set_credentials(conn: Connection, account_id: uuid.UUID, *, password: str, mfa_secret: str | None,
                    settings: IdentitySettings | None = None) -> None:
    """Set a password and TOTP secret directly (demo accounts generated at `up --demo`)."""
    conn.execute(sa.update(account).where(account.c.id == account_id).values(
        password_hash=passwords.hash_password(password, (settings or DEFAULT_SETTINGS).password_policy),
        mfa_secret=None if mfa_secret is None else _seal_totp(conn, account_id, mfa_secret),
        enrolment_code_hash=None, enrolment_expires_at=None,
    ))


def disable_account(conn: Connection, email: str, by: Principal | None = None) -> None:
    row = account_by_email(conn, email)
    if row is None:
        raise IdentityError(f"no account for {email}")
    conn.execute(sa.update(account).where(account.c.id == row.id).values(disabled_at=_now()))
    revoke_all_sessions(conn, row.id)
    conn.execute(sa.update(api_token).where(api_token.c.account_id == row.id, api_token.c.revoked_at.is_(None))
                 .values(revoked_at=_now()))
    _audit(conn, event_type="account.disable", action="U", principal=by, detail={"account": str(row.id)})


def enable_account(conn: Connection, email: str, by: Principal | None = None) -> None:
    """Undo `disable_account`: the person signs in again with the password and authenticator they had, and
    keeps their roles and history. Their API tokens stay revoked (a disabled account's tokens may have been
    left in a script or a lost laptop): issue new ones. Refused for a machine client's account, which
    never signs in and whose only use was its tokens."""
    row = account_by_email(conn, email)
    if row is None:
        raise IdentityError(f"no account for {email}")
    if row.disabled_at is None:
        raise IdentityError(f"{email} is not disabled: there is nothing to enable")
    if row.kind == "machine":
        raise IdentityError(f"{email} is a machine client's account: it never signs in and its tokens stay "
                            "revoked; issue a new token instead (healthos account token)")
    conn.execute(sa.update(account).where(account.c.id == row.id).values(disabled_at=None))
    _audit(conn, event_type="account.enable", action="U", principal=by,
           detail={"account": str(row.id), "disabled_at": row.disabled_at.isoformat()})


def unlock_account(conn: Connection, email: str, by: Principal | None = None) -> datetime:
    """End a sign-in lock now, for a person who mistyped and cannot wait for it to end by itself: the same
    password and authenticator sign in at once, and the failures counted so far are forgotten. Returns when
    the lock would have ended. Refused for an account that is not locked (a disabled one is enabled, a
    forgotten password or a lost authenticator is `reset_mfa`'s)."""
    row = account_by_email(conn, email)
    if row is None:
        raise IdentityError(f"no account for {email}")
    if row.locked_until is None or row.locked_until <= _now():
        raise IdentityError(f"{email} is not locked: there is nothing to unlock (a person who forgot their "
                            "password or lost their authenticator is re-enrolled with healthos account reset-mfa)")
    if row.password_hash is None:
        # Reset or never enrolled: there is no password to sign in with, and enrolling clears the lock.
        raise IdentityError(f"{email} is awaiting enrolment: its enrolment link sets a password and an "
                            "authenticator, and ends the lock; there is nothing to unlock")
    conn.execute(sa.update(account).where(account.c.id == row.id).values(failed_signins=0, locked_until=None))
    _audit(conn, event_type="account.unlock", action="U", principal=by,
           detail={"account": str(row.id), "locked_until": row.locked_until.isoformat()})
    return row.locked_until


def grant_membership(conn: Connection, policy: AccessPolicy, email: str, *, tenant: str, role: str,
                     ward: str | None = None, by: Principal | None = None) -> None:
    """Give an existing person a facility role (a clinician who starts at a second facility, a nurse moving
    to a facility after hers was dropped): the same account, sign-in and history, one more membership.
    Refused, saying why, for an unknown e-mail, a disabled or machine account, a role that is not a
    facility's, a ward for a role that is not ward-scoped, or a role they already hold there. Audited as
    identity.membership.create."""
    row = account_by_email(conn, email)
    if row is None:
        raise IdentityError(f"no account for {email}: create one with healthos account create")
    if row.disabled_at is not None:
        raise IdentityError(f"{email} is disabled: enable it first (healthos account enable)")
    if row.kind != "staff":
        raise IdentityError(f"{email} is a {row.kind.replace('_', ' ')} account: facility roles are for staff")
    held = conn.execute(sa.select(membership.c.role).where(
        membership.c.account_id == row.id, membership.c.tenant == tenant, membership.c.role == role)).first()
    if held is not None:
        raise IdentityError(f"{email} is a {role} at {tenant} already")
    add_membership(conn, policy, account_id=row.id, tenant=tenant, role=role, ward=ward)
    _audit(conn, event_type="membership.create", action="C", principal=by,
           detail={"account": str(row.id), "tenant": tenant, "role": role, "ward": ward})


def revoke_membership(conn: Connection, email: str, *, tenant: str, role: str, by: Principal | None = None) -> int:
    """Take a facility role from a person (a clinician who no longer works at the second facility, a registrar
    who moved to billing): the account, its other roles and its history stay. A session open in that role there
    ends at once: a session names its facility and role, and would have gone on acting in it. Refused for an
    unknown e-mail or a role not held there. Audited as identity.membership.revoke; returns the sessions ended."""
    row = account_by_email(conn, email)
    if row is None:
        raise IdentityError(f"no account for {email}")
    removed = conn.execute(sa.delete(membership).where(
        membership.c.account_id == row.id, membership.c.tenant == tenant, membership.c.role == role)
        .returning(membership.c.ward)).first()
    if removed is None:
        raise IdentityError(f"{email} is not a {role} at {tenant}: there is nothing to revoke")
    ended = conn.execute(sa.update(session).where(
        session.c.account_id == row.id, session.c.tenant == tenant, session.c.role == role,
        session.c.revoked_at.is_(None)).values(revoked_at=_now())).rowcount
    _audit(conn, event_type="membership.revoke", action="D", principal=by,
           detail={"account": str(row.id), "tenant": tenant, "role": role, "ward": removed.ward})
    return ended


def reset_mfa(conn: Connection, email: str, settings: IdentitySettings | None = None,
              by: Principal | None = None) -> str:
    """Clear the TOTP secret and sessions; the person re-enrols with the returned one-time code. Refused for
    a disabled account (enrolment would refuse its code) and a machine client's (a password would make the
    feed a person who signs in to the portal as the facility's admin)."""
    row = account_by_email(conn, email)
    if row is None:
        raise IdentityError(f"no account for {email}")
    if row.kind == "machine":
        raise IdentityError(f"{email} is a machine client's account: it has an API token, never a password; "
                            "revoke the token and issue another instead")
    if row.disabled_at is not None:
        raise IdentityError(f"{email} is disabled: a disabled account cannot enrol again")
    code = secrets.token_urlsafe(24)
    conn.execute(sa.update(account).where(account.c.id == row.id).values(
        mfa_secret=None, last_totp_step=None, password_hash=None, enrolment_code_hash=token_digest(code),
        enrolment_expires_at=_now() + (settings or DEFAULT_SETTINGS).enrolment_valid,
    ))
    revoke_all_sessions(conn, row.id)
    _audit(conn, event_type="account.reset_mfa", action="U", principal=by, detail={"account": str(row.id)})
    return code


# -- sign-in ---------------------------------------------------------------------------------------

# Verified against when the e-mail is unknown, so both paths cost one Argon2id computation.
_DUMMY_HASH = passwords.hash_password("not-a-password-" + secrets.token_hex(8))


def _count_failure(conn: Connection, row, settings: IdentitySettings, reason: str) -> None:
    # A lock that has run out starts the count again: the person who waits it out has the same five tries,
    # not one mistyped password between them and another lock.
    lock_ran_out = row.locked_until is not None and row.locked_until <= _now()
    failures = 1 if lock_ran_out else row.failed_signins + 1
    locked_until = (_now() + settings.lock_duration if failures >= settings.max_failed_signins
                    else None if lock_ran_out else row.locked_until)
    conn.execute(sa.update(account).where(account.c.id == row.id).values(
        failed_signins=failures, locked_until=locked_until))
    _audit(conn, event_type="signin", action="E", outcome="failure",
           detail={"account": str(row.id), "reason": reason, "locked": locked_until is not None})


def check_password(conn: Connection, email: str, password: str,
                   settings: IdentitySettings | None = None) -> uuid.UUID | None:
    """First factor: the account id, or None for every kind of failure alike. A failure is counted
    and audited in `conn`'s transaction, so the caller must commit before it refuses."""
    settings = settings or DEFAULT_SETTINGS
    row = account_by_email(conn, email)
    if row is None or row.password_hash is None:
        passwords.verify_password(password, _DUMMY_HASH)
        _audit(conn, event_type="signin", action="E", outcome="failure", detail={"reason": "unknown account"})
        return None
    if row.disabled_at is not None or (row.locked_until is not None and row.locked_until > _now()):
        passwords.verify_password(password, _DUMMY_HASH)
        _audit(conn, event_type="signin", action="E", outcome="failure",
               detail={"account": str(row.id), "reason": "locked or disabled"})
        return None
    if not passwords.verify_password(password, row.password_hash):
        _count_failure(conn, row, settings, "password")
        return None
    if passwords.needs_rehash(row.password_hash, settings.password_policy):
        conn.execute(sa.update(account).where(account.c.id == row.id).values(
            password_hash=passwords.hash_password(password, settings.password_policy)))
    return row.id


def check_totp(conn: Connection, account_id: uuid.UUID, code: str,
               settings: IdentitySettings | None = None) -> bool:
    """Second factor; each code is usable once (its time step must be newer than the last used).
    Like `check_password`, a failure is recorded in `conn`'s transaction: commit, then refuse."""
    row = conn.execute(sa.select(account).where(account.c.id == account_id).with_for_update()).first()
    if row is None or row.mfa_secret is None or row.disabled_at is not None:
        return False
    if row.locked_until is not None and row.locked_until > _now():
        return False
    step = totp.verify(_open_totp(conn, row.id, row.mfa_secret), code, _now().timestamp(), row.last_totp_step)
    if step is None:
        _count_failure(conn, row, settings or DEFAULT_SETTINGS, "totp")
        return False
    conn.execute(sa.update(account).where(account.c.id == account_id).values(
        last_totp_step=step, failed_signins=0, locked_until=None))
    return True


def signin_complete(conn: Connection, account_id: uuid.UUID) -> None:
    conn.execute(sa.update(account).where(account.c.id == account_id).values(failed_signins=0, locked_until=None))
    _audit(conn, event_type="signin", action="E", detail={"account": str(account_id)})


def needs_mfa(conn: Connection, account_id: uuid.UUID) -> bool:
    row = conn.execute(
        sa.select(account.c.mfa_required, account.c.mfa_secret).where(account.c.id == account_id)).first()
    return bool(row.mfa_required or row.mfa_secret)


# -- sessions --------------------------------------------------------------------------------------


def start_session(conn: Connection, account_id: uuid.UUID, *, mfa_passed: bool,
                  settings: IdentitySettings | None = None) -> str:
    token = secrets.token_urlsafe(32)
    first = conn.execute(sa.select(membership.c.tenant, membership.c.role).where(
        membership.c.account_id == account_id).order_by(membership.c.tenant, membership.c.role)).first()
    conn.execute(sa.insert(session).values(
        id=uuid.uuid4(), token_hash=token_digest(token), account_id=account_id, mfa_passed=mfa_passed,
        tenant=first.tenant if first else None, role=first.role if first else None,
        expires_at=_now() + (settings or DEFAULT_SETTINGS).session_absolute,
    ))
    return token


def mark_mfa_passed(conn: Connection, token: str) -> None:
    conn.execute(sa.update(session).where(session.c.token_hash == token_digest(token)).values(mfa_passed=True))


@dataclass(frozen=True)
class LiveSession:
    id: uuid.UUID
    account_id: uuid.UUID
    mfa_passed: bool
    tenant: str | None
    role: str | None
    kind: str
    display_name: str
    subject_id: uuid.UUID | None
    appliance_role: str | None
    ward: str | None = None


_SESSION_LOOKUP = sa.text(
    "SELECT s.id, s.account_id, s.mfa_passed, s.tenant, s.role, s.last_seen_at, a.kind, a.display_name, "
    "a.subject_id, a.appliance_role, m.ward FROM control.session s JOIN control.account a ON a.id = s.account_id "
    "LEFT JOIN control.membership m ON m.account_id = s.account_id AND m.tenant = s.tenant AND m.role = s.role "
    "WHERE s.token_hash = :h AND s.revoked_at IS NULL AND s.expires_at > now() "
    "AND s.last_seen_at > now() - CAST(:idle AS interval) AND a.disabled_at IS NULL"
)


def load_session(conn: Connection, token: str, settings: IdentitySettings | None = None) -> LiveSession | None:
    """A live session for the token, or None (unknown, revoked, idle too long, past its absolute end)."""
    idle = (settings or DEFAULT_SETTINGS).session_idle
    row = conn.execute(_SESSION_LOOKUP, {"h": token_digest(token), "idle": idle}).first()
    if row is None:
        return None
    # Writing last_seen_at on every request would make every read a write; a minute's slack is enough.
    if row.last_seen_at < _now() - timedelta(seconds=60):
        conn.execute(sa.update(session).where(session.c.id == row.id).values(last_seen_at=sa.func.now()))
    return LiveSession(row.id, row.account_id, row.mfa_passed, row.tenant, row.role, row.kind, row.display_name,
                       row.subject_id, row.appliance_role, row.ward)


def switch_tenant(conn: Connection, session_id: uuid.UUID, account_id: uuid.UUID, tenant: str, role: str) -> None:
    held = conn.execute(sa.select(membership.c.role).where(
        membership.c.account_id == account_id, membership.c.tenant == tenant, membership.c.role == role)).first()
    if held is None:
        raise IdentityError("you hold no such role in that facility")
    conn.execute(sa.update(session).where(session.c.id == session_id).values(tenant=tenant, role=role))


def revoke_session(conn: Connection, session_id: uuid.UUID) -> None:
    conn.execute(sa.update(session).where(session.c.id == session_id, session.c.revoked_at.is_(None))
                 .values(revoked_at=_now()))


def revoke_all_sessions(conn: Connection, account_id: uuid.UUID) -> int:
    return conn.execute(sa.update(session).where(session.c.account_id == account_id, session.c.revoked_at.is_(None))
                        .values(revoked_at=_now())).rowcount


def principal_for_session(live: LiveSession, policy: AccessPolicy) -> Principal:
    role = live.role if live.tenant else live.appliance_role
    permissions = policy.permissions_of(role) if role else frozenset()
    return Principal(
        account_id=live.account_id, kind=live.kind, display_name=live.display_name, subject_id=live.subject_id,
        tenant=live.tenant, role=role, permissions=permissions, session_id=live.id,
        ward=live.ward if live.tenant else None, ward_scoped=policy.is_ward_scoped(role), care_days=policy.care_days,
    )


# -- API tokens ------------------------------------------------------------------------------------

TOKEN_PREFIX = "hos_"  # noqa: S105 -- a visible prefix so leaked tokens are recognisable, not a secret


def issue_api_token(conn: Connection, *, account_id: uuid.UUID, tenant: str, name: str,
                    permissions: list[str], by: Principal | None = None) -> str:
    """A bearer token for a machine client; the only time its value exists outside the client."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = uuid.uuid4()
    conn.execute(sa.insert(api_token).values(
        id=token_id, token_hash=token_digest(token), account_id=account_id, tenant=tenant, name=name,
        permissions=sorted(set(permissions)),
    ))
    _audit(conn, event_type="token.issue", action="C", principal=by,
           detail={"token": str(token_id), "tenant": tenant, "permissions": sorted(set(permissions))})
    return token


def issue_machine_token(conn: Connection, policy: AccessPolicy, *, tenant: str, name: str, permissions: list[str],
                        by: Principal | None = None) -> str:
    """A machine client of facility `tenant` (a laboratory feed, an integration) and its API token, which
    carries exactly `permissions`; the token's value is returned this once."""
    name = " ".join(name.split())
    if not name or len(name) > 100:
        raise IdentityError("name the token by what it is for (at most 100 characters), e.g. 'lab HL7 feed'")
    if not permissions:
        raise IdentityError("a token needs at least one permission")
    facility_wide = [p for role, spec in policy.roles.items() if spec.scope == "tenant"
                     for p in policy.permissions_of(role)]
    beyond = sorted(p for p in set(permissions) if not grants(frozenset(facility_wide), p))
    if beyond:
        raise IdentityError(f"a facility's token cannot carry {', '.join(beyond)}: no facility role holds "
                            "that; appliance, audit and national permissions belong to people's accounts")
    machine = create_account(conn, policy, kind="machine", email=f"machine-{secrets.token_hex(6)}@{tenant}.invalid",
                             display_name=name, role="facility_admin", tenant=tenant, by=by)
    return issue_api_token(conn, account_id=machine.account_id, tenant=tenant, name=name, permissions=permissions,
                           by=by)


def api_tokens_of(conn: Connection, tenant: str) -> list[dict]:
    """Facility `tenant`'s API tokens, live first, newest first (never their values: only digests are kept)."""
    rows = conn.execute(sa.select(api_token.c.id, api_token.c.name, api_token.c.permissions, api_token.c.created_at,
                                  api_token.c.revoked_at).where(api_token.c.tenant == tenant)
                        .order_by(api_token.c.revoked_at.is_not(None), api_token.c.created_at.desc())).mappings()
    return [dict(row) for row in rows]


def revoke_api_token(conn: Connection, token_id: uuid.UUID, by: Principal | None = None,
                     tenant: str | None = None) -> None:
    """Revoke a live token; with `tenant`, only one of that facility's (another's is "no such token")."""
    where = [api_token.c.id == token_id, api_token.c.revoked_at.is_(None)]
    if tenant is not None:
        where.append(api_token.c.tenant == tenant)
    done = conn.execute(sa.update(api_token).where(*where).values(revoked_at=_now())).rowcount
    if not done:
        raise IdentityError("no such live token")
    _audit(conn, event_type="token.revoke", action="U", principal=by, detail={"token": str(token_id)})


_PRINCIPAL_OF_TOKEN = (
    "SELECT t.id, t.tenant, t.permissions, a.id, a.kind, a.display_name FROM control.api_token t "  # noqa: S105
    "JOIN control.account a ON a.id = t.account_id "
    "WHERE t.token_hash = %(h)s AND t.revoked_at IS NULL AND a.disabled_at IS NULL"
)
_PRINCIPAL_OF_TOKEN_ID = _PRINCIPAL_OF_TOKEN.replace("t.token_hash = %(h)s", "t.id = %(id)s")


def principal_for_token(conn: Connection, token: str, policy: AccessPolicy | None = None) -> Principal | None:
    """The principal a live API token acts as; with the access `policy`, under its care relationship window."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = driver(conn).execute(_PRINCIPAL_OF_TOKEN, {"h": token_digest(token)}).fetchone()  # every API call
    return _token_principal(row, policy)


def principal_for_token_id(conn: Connection, token_id: uuid.UUID) -> Principal | None:
    """The principal the live API token of that id acts as, for work done again on its behalf (an HL7
    message replayed as the feed that sent it): None once the token is revoked or its account disabled."""
    return _token_principal(driver(conn).execute(_PRINCIPAL_OF_TOKEN_ID, {"id": token_id}).fetchone(), None)


def _token_principal(row, policy: AccessPolicy | None) -> Principal | None:
    if row is None:
        return None
    token_id, tenant, permissions, account_id, kind, display_name = row
    return Principal(account_id=account_id, kind=kind, display_name=display_name, tenant=tenant,
                     role="api_token", permissions=frozenset(permissions), token_id=token_id,
                     care_days=policy.care_days if policy is not None else None)
