"""The operator's console, `/appliance`: what hospital IT checks before anything else — whether every
schema is at head (else the appliance answers /ready with 503), whether last night's backup was made
and there is room for the next, the facilities with their staff and live API tokens, the accounts that
need someone (locked, awaiting enrolment, left with no role by a dropped facility), whether each
audit log's events are being sealed under signed checkpoints (the checkpointer signs at least once a
minute), and each HL7 v2 feed heard from this week: when it last sent, when a message of it was last
applied, and whether it has gone quiet or is failing.

The console reads only, and nothing on it is patient data. What changes the appliance stays in
`healthos` and the Ansible playbooks, where it is scripted and repeatable; the page names the command
for each thing it shows.

One page here holds patient data: `/appliance/duplicates`, the master patient index's review of likely
duplicate people (one person registered twice, at one facility or two), for whoever holds
`identity.subject.*` (policy ACC-019: the operator, who keeps the appliance-wide identity). Each pair
shows what a person needs to judge it — names, birth date, sex, national IDs, the facilities holding a
chart — and nothing from the charts. The reviewer merges the pair (choosing who is kept, with a reason),
records that they are two people (the pair is not listed again) or undoes a recent merge. Every view
and decision is in the appliance's audit log; `GET /api/subjects/duplicates` is the same list as JSON
and `healthos subject duplicates` the same from the command line.
"""
from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from typing import Annotated

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.params import Body, FromPath, FromQuery, QueryParameter
from litestar.response import Redirect, Template
from pydantic import BaseModel

from appliance import __version__
from appliance.interop.hl7v2 import history as hl7_history
from appliance.substrate import audit, identity, standing
from appliance.substrate import backup as backups
from appliance.substrate.migrate import CONTROL_SCHEMA, head, schema_revision, tenants_behind_head
from appliance.substrate.problems import invalid_request_detail
from appliance.substrate.tenancy import list_tenants
from appliance.web.errors import problem, sentence

# Account states a person cannot get past alone: IT unlocks, re-sends the enrolment link, gives a role or disables.
NEEDS_SOMEONE = frozenset({"locked", "awaiting enrolment", identity.NO_ROLE})


@get("/appliance", operation_id="ApplianceConsole", tags=["appliance"], opt={"permission": "appliance.status.read"},
     sync_to_thread=True, include_in_schema=False)
def console(request: Request, state: State) -> Template:
    db = state.db
    now = dt.datetime.now(dt.UTC)
    tenants = list_tenants(db)
    behind = set(tenants_behind_head(db, [t["slug"] for t in tenants if t["status"] == "active"]))
    with db.control() as conn:
        control_at = schema_revision(conn, CONTROL_SCHEMA)
        counts = identity.facility_counts(conn)
        accounts = identity.list_accounts(conn)
        last_backup = backups.last_success(conn)
        attempts = backups.recent_runs(conn, 10)
        database_bytes = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
    failed_since = standing.failed_since(last_backup, attempts)
    volumes = []
    if db.cluster is not None:  # PostgreSQL's own disk is known only when the appliance runs it
        volumes.append(standing.volume("PostgreSQL's data", db.cluster.pgdata))
    if last_backup is not None:
        volumes.append(standing.volume("Backups", last_backup.directory))
    volumes = [volume for volume in volumes if volume is not None]
    people = [a for a in accounts if a["kind"] != "machine"]
    names = {t["slug"]: t["name"] for t in tenants}
    logs = []
    for log in audit.log_states(db):
        logs.append({"name": names.get(log.tenant, log.tenant) if log.tenant else "The appliance", "state": log,
                     "age": standing.checkpoint_age(log, now), "late": standing.checkpoint_late(log, now)})
    feeds = hl7_history.feeds_heard(db, [t for t in tenants if t["status"] == "active" and t["slug"] not in behind],
                                    now)
    return Template("appliance.html", context={
        "principal": request.user, "version": __version__, "control_at": control_at, "control_head": head("control"),
        "tenant_head": head("tenant"), "tenants": tenants, "behind": behind, "counts": counts,
        "states": Counter(a["state"] for a in people), "attention": [a for a in people if a["state"] in NEEDS_SOMEONE],
        "logs": logs, "late_logs": sum(log["late"] for log in logs), "minutes": standing.ago,
        "last_backup": last_backup, "backup_age": None if last_backup is None else now - last_backup.finished_at,
        "backup_late": standing.backup_late(last_backup, now),
        "backup_late_hours": int(standing.BACKUP_LATE.total_seconds() // 3600), "failed_since": failed_since,
        "attempts": attempts[:5], "volumes": volumes, "now": now, "database_bytes": database_bytes,
        "size": standing.size,
        "feeds": feeds, "troubled_feeds": sum(f["quiet"] or f["state"].failing for f in feeds),
        "feed_quiet_hours": int(hl7_history.FEED_QUIET.total_seconds() // 3600),
        "feed_failing_run": hl7_history.FEED_FAILING_RUN,
        "altered_logs": [names.get(log, "The appliance" if log == "appliance" else log)
                         for log in standing.verification_failing(standing.last_verification(state.settings))],
    })


# -- the master patient index's review of likely duplicates ----------------------------------------

PAIRS_SHOWN = 25
MERGES_SHOWN = 20
API_PAIRS_MAX = 200
REASON_MAX = 500
DONE = {
    "merged": "Merged: their records now belong to the person kept. If that was wrong, undo it under 'Recent merges'.",
    "dismissed": "Recorded as two people: the pair is not listed again.",
    "unmerged": "Merge undone: they are two people again, and the pair is back in the list unless judged otherwise.",
}


class PairForm(BaseModel):
    # Strings, not UUIDs: a mistyped or guessed id is answered with a sentence, not a validation dump.
    first: str = ""
    second: str = ""
    survivor: str = ""  # a merge: which of the two is kept
    reason: str = ""
    offset: str = "0"


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


def _offset(text: str) -> int:
    return int(text) if text.isdigit() and int(text) < 10**9 else 0


def _review_page(request: Request, state: State, *, offset: int, status: int = 200, refusal: str | None = None,
                 done: str = "", values: PairForm | None = None, typed_in: str = "") -> Template:
    with state.db.control() as conn:
        review = identity.likely_duplicates(conn, by=request.user, limit=PAIRS_SHOWN, offset=offset)
        merges = identity.live_merges(conn, by=request.user, limit=MERGES_SHOWN)
    return Template("appliance_duplicates.html", status_code=status, context={
        "principal": request.user, "review": review, "merges": merges, "offset": offset, "shown": PAIRS_SHOWN,
        "says": identity.SIGNAL_SAYS, "refusal": sentence(refusal) if refusal else None,
        "notice": DONE.get(done), "values": values, "typed_in": typed_in, "reason_max": REASON_MAX,
    })


@get("/appliance/duplicates", operation_id="IdentityDuplicateReview", tags=["identity"],
     opt={"permission": "identity.subject.read"}, sync_to_thread=True, include_in_schema=False)
def duplicates_page(request: Request, state: State, offset: FromQuery[str] = "0",
                    done: FromQuery[str] = "") -> Template:
    """Likely duplicate people, strongest signal first, a page at a time, with recent merges to undo."""
    return _review_page(request, state, offset=_offset(offset), done=done)


def _decided(request: Request, state: State, data: PairForm, decide, form: str) -> Response:
    """Run one decision on a pair; a refusal comes back on the page, above the list, with what was typed
    kept in the pair's `form` (merge or dismiss) when the pair is still listed."""
    offset = _offset(data.offset)
    first, second = _uuid(data.first), _uuid(data.second)
    try:
        if first is None or second is None:
            raise identity.UnknownPair("no such pair of people: choose one from the list of likely duplicates")
        if len(data.reason.strip()) > REASON_MAX:
            raise identity.IdentityError(f"the reason is longer than {REASON_MAX} characters; shorten it")
        with state.db.control() as conn:
            done = decide(conn, first, second)
    except identity.IdentityError as refused:
        return _review_page(request, state, offset=offset, status=getattr(refused, "status", 422),
                            refusal=str(refused), values=data, typed_in=form)
    return Redirect(f"/appliance/duplicates?done={done}&offset={offset}", status_code=303)


@post("/appliance/duplicates/merge", operation_id="IdentityMergeDuplicate", tags=["identity"],
      opt={"permission": "identity.subject.merge"}, sync_to_thread=True, include_in_schema=False)
def merge_pair(request: Request, state: State,
               data: Annotated[PairForm, Body(media_type=RequestEncodingType.URL_ENCODED)]) -> Response:
    """Merge a listed pair: the one not chosen comes to resolve to the one kept (identity.merge_subjects,
    audited)."""
    def decide(conn, first: uuid.UUID, second: uuid.UUID) -> str:
        survivor = _uuid(data.survivor)
        if survivor not in (first, second):
            raise identity.IdentityError("choose which of the two to keep: the other's records will belong to them")
        merged = second if survivor == first else first
        identity.merge_duplicate(conn, survivor_id=survivor, merged_id=merged, reason=data.reason, by=request.user)
        return "merged"

    return _decided(request, state, data, decide, "merge")


@post("/appliance/duplicates/dismiss", operation_id="IdentityDismissDuplicate", tags=["identity"],
      opt={"permission": "identity.subject.dismiss"}, sync_to_thread=True, include_in_schema=False)
def dismiss_pair(request: Request, state: State,
                 data: Annotated[PairForm, Body(media_type=RequestEncodingType.URL_ENCODED)]) -> Response:
    """Record that a listed pair is two people, with why: it is not listed again (audited)."""
    def decide(conn, first: uuid.UUID, second: uuid.UUID) -> str:
        identity.dismiss_duplicate(conn, one=first, other=second, reason=data.reason, by=request.user)
        return "dismissed"

    return _decided(request, state, data, decide, "dismiss")


@post("/appliance/duplicates/merges/{merge_id:uuid}/undo", operation_id="IdentityUndoMerge", tags=["identity"],
      opt={"permission": "identity.subject.merge"}, sync_to_thread=True, include_in_schema=False)
def undo_merge(request: Request, state: State, merge_id: FromPath[uuid.UUID]) -> Response:
    """Undo a merge (identity.unmerge_subjects, audited): the merged subject is its own person again."""
    try:
        with state.db.control() as conn:
            identity.unmerge_subjects(conn, merge_id=merge_id, by=request.user)
    except identity.IdentityError as refused:
        return _review_page(request, state, offset=0, status=404,
                            refusal=f"{refused}: it may have been undone already; the merges still in force are "
                                    "listed under 'Recent merges'")
    return Redirect("/appliance/duplicates?done=unmerged", status_code=303)


class SubjectOut(BaseModel):
    """One person of a pair: what a reviewer judges by, nothing from any chart."""
    id: str
    family_name: str
    given_names: str
    birth_date: dt.date | None
    sex: str | None
    national_id: str | None
    facilities: list[str]


class DuplicatePairOut(BaseModel):
    first: SubjectOut
    second: SubjectOut
    signals: list[str]
    shares: list[str]  # each signal as a person reads it


class DuplicatesOut(BaseModel):
    total: int
    offset: int
    limit: int
    pairs: list[DuplicatePairOut]


def _subject_out(card: identity.SubjectCard) -> SubjectOut:
    return SubjectOut(id=str(card.id), family_name=card.family_name, given_names=card.given_names,
                      birth_date=card.birth_date, sex=card.sex, national_id=card.national_id,
                      facilities=card.facilities)


def _invalid_query(_: Request, exc: ValidationException) -> Response:
    errors = exc.extra if isinstance(exc.extra, list) else []
    detail = invalid_request_detail(errors, exc.detail)
    return problem(422, detail, errors=errors)


@get("/api/subjects/duplicates", operation_id="IdentityListDuplicateSubjects", tags=["identity"],
     opt={"permission": "identity.subject.read"}, sync_to_thread=True,
     exception_handlers={ValidationException: _invalid_query},
     summary="Likely duplicate people in the master patient index",
     description="Pairs of subjects (not merged, not judged to be two people) that look like one person "
                 "registered twice, strongest signal first: `national_id` (the same ID written differently), "
                 "`demographics` (the same names, birth date and sex), `names_reordered` (the same name words "
                 "in another order, with the same birth date and sex). Each person with their names, birth "
                 "date, sex, national ID and the facilities holding a chart. Recorded in the appliance's "
                 "audit log as a read of every person listed. Decisions are taken on the page "
                 "`/appliance/duplicates` or with `healthos subject merge|dismiss|unmerge`.")
def list_duplicates(request: Request, state: State,
                    limit: Annotated[int, QueryParameter(ge=1, le=API_PAIRS_MAX, description="pairs to return")] = 50,
                    offset: Annotated[int, QueryParameter(ge=0, description="pairs to skip")] = 0) -> DuplicatesOut:
    with state.db.control() as conn:
        review = identity.likely_duplicates(conn, by=request.user, limit=limit, offset=offset)
    return DuplicatesOut(total=review.total, offset=offset, limit=limit, pairs=[
        DuplicatePairOut(first=_subject_out(pair.first), second=_subject_out(pair.second), signals=pair.signals,
                         shares=[identity.SIGNAL_SAYS[code] for code in pair.signals])
        for pair in review.pairs])


ROUTES = [console, duplicates_page, merge_pair, dismiss_pair, undo_merge, list_duplicates]
