"""The one record: the `entry` spine every layer writes to and reads from.

Every act in a facility is an entry — who (author), when (occurred/recorded), for which patient and
encounter, of what kind, in what state — plus one row in the typed detail table its layer registered
for that kind (`register_kind`). `append` is the only way an entry is written: in the caller's
transaction it inserts the entry and its detail, notes the write on the audit seam, and runs the
reactions other layers registered for the kind (`register_reaction`), so a charge, a nursing task or a
bed move exists the moment the clinical act does, or not at all. Before it writes a new record of a kind, it
asks the guards registered for that kind (`register_guard`), any of which may refuse it with nothing written
(a visit opened for a person recorded deceased). An entry filed under an encounter must be filed under one of its
own patient's: the layer that keeps encounters registers the check (`register_encounter_check`), asked once per
encounter and patient in a transaction, so a service that forgot to check cannot file one patient's act under
another's visit (whose summary, bill and discharge would then carry it).

Entries are never changed. A correction is a new entry that `supersedes` the old one (both stay
readable; the current version of a record is the one nobody supersedes); "entered in error" is a new
entry with that status superseding the mistaken one, and no detail. The tenant role is refused UPDATE
and DELETE on `entry` by the migration, so PostgreSQL enforces this even against a buggy layer.
The first entry of a chain names the record: every version carries its `root_id`, which is what other
entries point at when they mean "that order" rather than "that version of that order".

`note_access` is the audit seam: every read and write of patient data goes through it, and it calls
the hooks registered with `register_access_hook` (the audit trail registers one).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.substrate import audit
from appliance.substrate.db import Database, after_rollback, driver, tenant_metadata
from appliance.substrate.principal import Principal

EntryStatus = Literal["final", "amended", "entered_in_error"]

entry = sa.Table(
    "entry",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    # The record this entry is a version of: its own id for a first version, else the first version's.
    sa.Column("root_id", sa.Uuid, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=True),  # patient data: whose record
    sa.Column("encounter_id", sa.Uuid, nullable=True),
    sa.Column("author_id", sa.Uuid, nullable=False),  # the account that performed or recorded the act
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("supersedes", sa.Uuid, sa.ForeignKey("entry.id"), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),  # patient data: why a version was amended or retracted
    sa.Index("entry_patient_kind_idx", "patient_id", "kind", "occurred_at"),
    sa.Index("entry_encounter_idx", "encounter_id"),
    sa.Index("entry_root_idx", "root_id"),
    # One successor per version: two concurrent corrections of the same version cannot both land.
    sa.Index("entry_supersedes_key", "supersedes", unique=True, postgresql_where=sa.text("supersedes IS NOT NULL")),
)


# Statements built once, values passed at execution: a statement rebuilt with `.values()` for each entry
# cost SQLAlchemy ~0.1–0.2 ms of cache-key work per insert, several times per clinical act.
_INSERT_ENTRY = entry.insert().returning(entry.c.occurred_at, entry.c.recorded_at)
_INSERT_ENTRY_NOW = entry.insert().values(occurred_at=sa.func.now()).returning(entry.c.occurred_at,
                                                                               entry.c.recorded_at)
_DIALECT = postgresql.psycopg.dialect()


@functools.cache
def _driver_insert(target: sa.Table | sa.Insert, columns: tuple[str, ...]) -> tuple[str, frozenset[str]]:
    """The insert into a table (or a prebuilt insert statement) of these columns, compiled once for the
    driver, and which of the columns are JSON. An append inserts an entry and its detail on every
    clinical act (and its reactions' acts): SQLAlchemy's statement and result machinery cost ~0.1–0.15 ms
    per insert on top of the driver's. Cached by table or statement object: pass module-level ones."""
    statement = target.insert() if isinstance(target, sa.Table) else target
    table = statement.table
    json_columns = frozenset(name for name in columns if isinstance(table.c[name].type, sa.JSON))
    return str(statement.compile(dialect=_DIALECT, column_keys=list(columns))), json_columns


@functools.cache
def _driver_insertable(table: sa.Table) -> bool:
    """Whether the table's inserts need nothing of SQLAlchemy beyond the SQL: no Python-side defaults
    and no custom types, whose processing only SQLAlchemy would do."""
    return all(column.default is None and column.onupdate is None and not isinstance(column.type, sa.TypeDecorator)
               for column in table.c)


def _insert_on_driver(conn: Connection, target: sa.Table | sa.Insert, values: Mapping[str, Any]):
    """Insert `values` (into a table, or by a prebuilt insert) on the transaction's driver; a refused
    insert raises the error SQLAlchemy would have raised (routes map IntegrityError to a 409/422)."""
    sql, json_columns = _driver_insert(target, tuple(values))
    params = {name: Jsonb(value) if name in json_columns and value is not None else value
              for name, value in values.items()}
    try:
        return driver(conn).execute(sql, params)
    except psycopg.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, params, exc, psycopg.Error) from exc


class RecordError(Exception):
    """A write the record refuses; `status` is the HTTP status a route should answer with."""

    status = 400

    def __init__(self, detail: str, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class EntryNotFound(RecordError, LookupError):
    status = 404


class NotCurrent(RecordError):
    """A correction or retraction aimed at a version that has already been superseded."""

    status = 409


class UnknownKind(RecordError):
    status = 500


@dataclass(frozen=True)
class Entry:
    id: uuid.UUID
    root_id: uuid.UUID
    kind: str
    patient_id: uuid.UUID | None
    encounter_id: uuid.UUID | None
    author_id: uuid.UUID
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    status: str
    supersedes: uuid.UUID | None
    reason: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewEntry:
    """One entry to append with `append_many` (the bulk path writes the same rows `append` does)."""

    kind: str
    patient_id: uuid.UUID | None
    detail: Mapping[str, Any] | None = None
    encounter_id: uuid.UUID | None = None
    occurred_at: dt.datetime | None = None
    id: uuid.UUID | None = None
    # When it was written down, for a replay of a past record (a demo year of care); None: now. A
    # reaction's entries written with it take the same time, as they would have in its transaction.
    recorded_at: dt.datetime | None = None


Reaction = Callable[[Connection, Principal, Entry], None]
# The same reaction over many entries of one kind at once, for the bulk path (`append_many`).
BatchReaction = Callable[[Connection, Principal, Sequence[Entry]], None]
# Asked before a new record of a kind is written: (conn, patient_id); raises a RecordError to refuse it.
Guard = Callable[[Connection, "uuid.UUID | None"], None]
# Asked before an entry is filed under an encounter: (conn, kind, patient_id, encounter_id); raises a RecordError
# when the encounter is not the patient's.
EncounterCheck = Callable[[Connection, str, "uuid.UUID | None", uuid.UUID], None]
AccessHook = Callable[[Connection, Principal, str, "uuid.UUID | None", str, Sequence[uuid.UUID]], None]

_detail_tables: dict[str, sa.Table | None] = {}
_reactions: dict[str, list[Reaction]] = defaultdict(list)
_batches: dict[Reaction, BatchReaction] = {}
_access_hooks: list[AccessHook] = []
_guards: dict[str, list[Guard]] = defaultdict(list)
_encounter_checks: list[EncounterCheck] = []
# conn.info key (dropped when the tenant transaction ends, db.tenant): the (encounter, patient) pairs this
# transaction has found belong together, so the check costs nothing where the service has already made it.
_ENCOUNTERS_CHECKED = "healthos_tx_encounters_checked"


def register_kind(kind: str, detail_table: sa.Table | None) -> None:
    """Declare an entry kind and the table (keyed by `entry_id`) that holds its typed detail."""
    if detail_table is not None and "entry_id" not in detail_table.c:
        raise ValueError(f"detail table {detail_table.name} of kind {kind!r} has no entry_id column")
    _detail_tables[kind] = detail_table


def register_reaction(kind: str, reaction: Reaction, *, batch: BatchReaction | None = None) -> Reaction:
    """Run `reaction(conn, principal, entry)` after every append of `kind`, in the same transaction.
    A reaction that raises undoes the act it reacted to: they commit together or not at all.
    `batch(conn, principal, entries)`, if given, does the same for all the entries of `kind` one
    `append_many` call writes, after the per-entry reactions (a reaction that writes entries itself can
    then write them in bulk too: one statement and one audit note per patient instead of one each)."""
    if reaction not in _reactions[kind]:
        _reactions[kind].append(reaction)
    if batch is not None:
        _batches[reaction] = batch
    return reaction


def register_guard(kind: str, guard: Guard) -> Guard:
    """Ask `guard(conn, patient_id)` before `append` writes a new record of `kind` (not a correction or a
    retraction of one); it refuses by raising a RecordError, before anything of the act is written by
    `append`. The bulk path (`append_many`: imports, the demo's past year) does not ask."""
    if guard not in _guards[kind]:
        _guards[kind].append(guard)
    return guard


def register_encounter_check(check: EncounterCheck) -> EncounterCheck:
    """Ask `check(conn, kind, patient_id, encounter_id)` before `append` files an entry under an encounter it has
    not yet seen belong to that patient in this transaction. The bulk path (`append_many`) does not ask."""
    if check not in _encounter_checks:
        _encounter_checks.append(check)
    return check


def encounter_checked(conn: Connection, patient_id: uuid.UUID | None, encounter_id: uuid.UUID) -> None:
    """Note that this transaction has found `encounter_id` to be `patient_id`'s (a service that checked it, or
    opened it): entries filed under it for that patient are not checked again."""
    conn.info.setdefault(_ENCOUNTERS_CHECKED, set()).add((encounter_id, patient_id))


def _require_encounter_of(conn: Connection, kind: str, patient_id: uuid.UUID | None,
                          encounter_id: uuid.UUID) -> None:
    checked = conn.info.setdefault(_ENCOUNTERS_CHECKED, set())
    if (encounter_id, patient_id) in checked:
        return
    for check in _encounter_checks:
        check(conn, kind, patient_id, encounter_id)
    checked.add((encounter_id, patient_id))


def unregister_reaction(kind: str, reaction: Reaction) -> None:
    if reaction in _reactions.get(kind, []):
        _reactions[kind].remove(reaction)


def register_access_hook(hook: AccessHook) -> AccessHook:
    """Called by `note_access` for every read and write of patient data (the audit trail's hook)."""
    if hook not in _access_hooks:
        _access_hooks.append(hook)
    return hook


def unregister_access_hook(hook: AccessHook) -> None:
    if hook in _access_hooks:
        _access_hooks.remove(hook)


_AUDIT_ACTIONS = {"read": "R", "search": "E", "create": "C", "amend": "U", "update": "U", "retract": "D",
                  "break_glass": "E"}


def note_access(
    conn: Connection,
    principal: Principal,
    action: str,
    patient_id: uuid.UUID | None,
    entity_kind: str,
    entity_ids: Iterable[uuid.UUID] = (),
    *,
    purpose_of_use: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """The audit seam. `action` is read, search, create, amend, retract or update; `entity_kind` names
    what was touched (an entry kind, `patient`, `chart`...). The event is appended to the tenant's
    audit trail in the caller's transaction, so an access that cannot be audited does not happen.
    `purpose_of_use="ETREAT"` marks a break-the-glass access."""
    tenant = conn.info.get("healthos_tenant")
    if tenant is None:
        raise RuntimeError("patient data touched outside a tenant transaction (db.tenant)")
    audit.append(conn, tenant=tenant, principal=principal,
                 **access_event(action, patient_id, entity_kind, entity_ids, purpose_of_use, detail))
    for hook in list(_access_hooks):
        hook(conn, principal, action, patient_id, entity_kind, tuple(entity_ids))


def note_read_told_by_refusal(conn: Connection, principal: Principal, patient_id: uuid.UUID, entity_kind: str,
                              entity_ids: Iterable[uuid.UUID], *, refused: str) -> None:
    """A read of the patient's record that a refusal tells the caller (the other register's record it names, its
    dates), noted as a read: in the caller's transaction, and once more in a transaction of its own after that one
    rolls back with the refusal (`db.after_rollback`), so the read is on the patient's access log although the
    refused write leaves nothing behind. `refused` names the write refused, in the event's detail."""
    ids = tuple(entity_ids)
    detail = {"told_by_refusal_of": refused}
    note_access(conn, principal, "read", patient_id, entity_kind, ids, detail=detail)
    tenant = conn.info["healthos_tenant"]

    def noted_again(db: Database) -> None:
        with db.tenant(tenant) as own:
            note_access(own, principal, "read", patient_id, entity_kind, ids, detail=detail)

    after_rollback(conn, noted_again)


def note_list_read(conn: Connection, principal: Principal, entity_kind: str, rows: Iterable[Mapping[str, Any]], *,
                   id_key: str = "id", detail: Mapping[str, Any] | None = None) -> None:
    """A list that shows several patients' records (today's encounters, results to review, the entries
    behind a figure): each patient listed gets one read event naming their rows, so the list is in each
    one's access log; rows of no patient share one event."""
    by_patient: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    for row in rows:
        by_patient.setdefault(row.get("patient_id"), []).append(row[id_key])
    for patient_id, entity_ids in by_patient.items():
        note_access(conn, principal, "read", patient_id, entity_kind, entity_ids, detail=detail)


def note_patients_found(conn: Connection, principal: Principal, patient_ids: Iterable[uuid.UUID], *,
                        detail: Mapping[str, Any] | None = None) -> None:
    """A patient search's answer on the audit seam: each patient it showed (their name, birth date and
    numbers) gets an event of their own, `record.patient.search`, so the search is in that patient's access
    log and a regulator's look at who opened their chart, which find events by patient. A search that
    found nobody is noted too, naming nobody."""
    found = list(dict.fromkeys(patient_ids))
    if not found:
        note_access(conn, principal, "search", None, "patient", (), detail=detail)
    for patient_id in found:
        note_access(conn, principal, "search", patient_id, "patient", (patient_id,), detail=detail)


def access_event(action: str, patient_id: uuid.UUID | None, entity_kind: str, entity_ids: Iterable[uuid.UUID] = (),
                 purpose_of_use: str | None = None, detail: Mapping[str, Any] | None = None) -> dict:
    """The audit event `note_access` appends, as `audit.append`'s (or `audit.seal_ahead`'s) arguments."""
    ids = [str(entity_id) for entity_id in entity_ids]
    return {"event_type": f"record.{entity_kind}.{action}", "action": _AUDIT_ACTIONS.get(action, "E"),
            "patient_id": patient_id, "entity": {"kind": entity_kind, "ids": ids[:200], "count": len(ids)},
            "purpose_of_use": purpose_of_use, "detail": dict(detail) if detail else None}


def access_hooks_registered() -> bool:
    """Whether anything besides the audit trail watches accesses: a hook runs in the access's own
    transaction, so a read made as one whole statement (`Database.tenant_statement`) cannot call it."""
    return bool(_access_hooks)


def _detail_table(kind: str) -> sa.Table | None:
    try:
        return _detail_tables[kind]
    except KeyError:
        raise UnknownKind(f"entry kind {kind!r} has not been registered by any layer") from None


def get_entry(conn: Connection, entry_id: uuid.UUID) -> Entry:
    """One version, with its detail."""
    row = conn.execute(sa.select(entry).where(entry.c.id == entry_id)).mappings().first()
    if row is None:
        raise EntryNotFound(f"no entry {entry_id}", entry_id=str(entry_id))
    return _with_detail(conn, dict(row))


def _with_detail(conn: Connection, row: dict) -> Entry:
    table = _detail_tables.get(row["kind"])
    detail: dict = {}
    if table is not None:
        found = conn.execute(sa.select(table).where(table.c.entry_id == row["id"])).mappings().first()
        if found is not None:
            detail = {k: v for k, v in found.items() if k != "entry_id"}
    return Entry(**row, detail=detail)


def is_current(conn: Connection, entry_id: uuid.UUID) -> bool:
    return conn.execute(sa.select(sa.not_(sa.exists().where(entry.c.supersedes == entry_id)))).scalar_one()


def current_clause(table: sa.FromClause = entry) -> sa.ColumnElement[bool]:
    """SQL condition: this entry is the current version of its record (nobody supersedes it)."""
    successor = entry.alias("successor")
    return sa.not_(sa.exists().where(successor.c.supersedes == table.c.id))


def append(
    conn: Connection,
    principal: Principal,
    kind: str,
    *,
    patient_id: uuid.UUID | None,
    detail: Mapping[str, Any] | None = None,
    encounter_id: uuid.UUID | None = None,
    occurred_at: dt.datetime | None = None,
    supersedes: uuid.UUID | None = None,
    status: EntryStatus | None = None,
    reason: str | None = None,
    entry_id: uuid.UUID | None = None,
    audited_as: str | None = None,
) -> Entry:
    """Append one entry and its detail, note it on the audit seam and run the kind's reactions — all
    in the caller's transaction. With `supersedes`, the new entry is the next version of that record:
    the superseded version must be the current one and of the same kind and patient. `audited_as` names
    the act on the audit seam when the kind says less than it (a discharge summary is a `note`): the
    patient's access log reads "your discharge summary", not "a note"."""
    table = _detail_table(kind)
    new_id = entry_id or uuid.uuid4()
    root_id = new_id
    if supersedes is None:
        for guard in _guards.get(kind, ()):
            guard(conn, patient_id)
    else:
        previous = conn.execute(
            sa.select(entry.c.root_id, entry.c.kind, entry.c.patient_id, entry.c.encounter_id, entry.c.status,
                      current_clause().label("current"))
            .where(entry.c.id == supersedes)
        ).mappings().first()
        if previous is None:
            raise EntryNotFound(f"no entry {supersedes} to supersede", entry_id=str(supersedes))
        if previous["kind"] != kind or previous["patient_id"] != patient_id:
            raise RecordError(f"entry {supersedes} is a {previous['kind']} of another record; "
                              f"a {kind} cannot supersede it")
        if previous["status"] == "entered_in_error" or not previous["current"]:
            raise NotCurrent(f"entry {supersedes} is not the current version of its record; "
                             "reload it and correct the current version", entry_id=str(supersedes))
        root_id = previous["root_id"]
        if encounter_id is None or encounter_id == previous["encounter_id"]:
            encounter_id = previous["encounter_id"]
        else:
            _require_encounter_of(conn, kind, patient_id, encounter_id)
        status = status or "amended"
    if supersedes is None and encounter_id is not None:
        _require_encounter_of(conn, kind, patient_id, encounter_id)
    status = status or "final"
    values = {
        "id": new_id, "root_id": root_id, "kind": kind, "patient_id": patient_id, "encounter_id": encounter_id,
        "author_id": principal.account_id, "status": status, "supersedes": supersedes, "reason": reason,
    }
    if occurred_at is not None:
        values["occurred_at"] = occurred_at
    action = {"final": "create", "amended": "amend", "entered_in_error": "retract"}.get(status, "create")
    stored_detail = dict(detail) if table is not None and detail is not None else {}
    occurred, recorded = _insert_entry(conn, principal, values, table if detail is not None else None,
                                       stored_detail, action, audited_as or kind)
    values["occurred_at"] = occurred
    appended = Entry(**values, recorded_at=recorded, detail=stored_detail)
    for reaction in list(_reactions.get(kind, ())):
        reaction(conn, principal, appended)
    return appended


def _insert_entry(conn: Connection, principal: Principal, values: dict, table: sa.Table | None, detail: dict,
                  action: str, audited_as: str) -> tuple[dt.datetime, dt.datetime]:
    """Insert the entry, its detail and the audit event of the write; returns (occurred, recorded).
    One statement when the detail table needs nothing of SQLAlchemy: every clinical act and each of its
    reactions appends, and three round trips each cost more CPU on both sides than the inserts."""
    tenant = conn.info.get("healthos_tenant")
    if tenant is None:
        raise RuntimeError("patient data touched outside a tenant transaction (db.tenant)")
    event = access_event(action, values["patient_id"], audited_as, (values["id"],))
    sealed = None
    if table is None or _driver_insertable(table):
        sealed = audit.seal_for_statement(conn, tenant=tenant, principal=principal, **event)
    if sealed is None:
        occurred, recorded = _refusing_second_correction(
            values, lambda: _insert_on_driver(conn, _INSERT_ENTRY if "occurred_at" in values else _INSERT_ENTRY_NOW,
                                              values).fetchone())
        if table is not None:
            if _driver_insertable(table):
                _insert_on_driver(conn, table, {"entry_id": values["id"], **detail})
            else:
                conn.execute(table.insert(), {"entry_id": values["id"], **detail})
        note_access(conn, principal, action, values["patient_id"], audited_as, (values["id"],))
        return occurred, recorded
    sql, json_columns = _entry_statement(tenant, tuple(values), table, tuple(detail), sealed.ctes)
    params = {f"e_{name}": value for name, value in values.items()}
    params.update((f"d_{name}", Jsonb(value) if name in json_columns and value is not None else value)
                  for name, value in detail.items())
    if table is not None:
        params["d_entry_id"] = values["id"]
    params.update(sealed.params)

    def insert() -> tuple:
        try:
            return driver(conn).execute(sql, params).fetchone()
        except psycopg.Error as exc:
            refused = sa.exc.DBAPIError.instance(sql, None, exc, psycopg.Error)
            if audit.refused_by_trail(refused):
                raise audit.AuditError(f"the audit event could not be recorded: {exc.__class__.__name__}") from exc
            raise refused from exc

    occurred, recorded, audited = _refusing_second_correction(values, insert)
    if not audited:  # the tenant's key rotated since the event was sealed: sealed again, as `append` does
        audit.append(conn, tenant=tenant, principal=principal, **event)
    for hook in list(_access_hooks):
        hook(conn, principal, action, values["patient_id"], audited_as, (values["id"],))
    return occurred, recorded


def _refusing_second_correction(values: dict, insert: Callable[[], tuple]) -> tuple:
    try:
        return insert()
    except sa.exc.IntegrityError as exc:
        if "entry_supersedes_key" in str(exc.orig):
            raise NotCurrent(f"entry {values['supersedes']} was corrected by someone else a moment ago; reload it",
                             entry_id=str(values["supersedes"])) from None
        raise


@functools.lru_cache(maxsize=4096)
def _entry_statement(tenant: str, entry_columns: tuple[str, ...], table: sa.Table | None,
                     detail_columns: tuple[str, ...], audit_ctes: str) -> tuple[str, frozenset[str]]:
    """The one statement of an append: the entry, its detail and the audit event, each a CTE, and which
    detail columns are JSON. Parameters: e_<entry column>, d_<detail column>, audit_<column>. The audit
    CTEs name the tenant's schema, so each tenant's statement is its own prepared statement, only ever
    run under that tenant's search_path and never planned again for another."""
    entry_values = {name: sa.bindparam(f"e_{name}", type_=entry.c[name].type) for name in entry_columns}
    if "occurred_at" not in entry_columns:
        entry_values["occurred_at"] = sa.func.now()
    ctes = ["entry_inserted AS ({})".format(
        entry.insert().values(entry_values).returning(entry.c.occurred_at, entry.c.recorded_at)
        .compile(dialect=_DIALECT))]
    json_columns: frozenset[str] = frozenset()
    if table is not None:
        columns = ("entry_id", *detail_columns)
        ctes.append("detail_inserted AS ({})".format(table.insert().values(
            {name: sa.bindparam(f"d_{name}", type_=table.c[name].type) for name in columns})
            .compile(dialect=_DIALECT)))
        json_columns = frozenset(name for name in detail_columns if isinstance(table.c[name].type, sa.JSON))
    ctes.append(audit_ctes)
    # Built from compiled SQLAlchemy inserts and the audit room's constant CTEs; every value is a parameter.
    return (f"WITH {', '.join(ctes)} SELECT occurred_at, recorded_at, {audit.RECORDED_BY_STATEMENT} "  # noqa: S608
            "FROM entry_inserted"), json_columns


def retract(conn: Connection, principal: Principal, entry_id: uuid.UUID, reason: str) -> Entry:
    """Mark a record "entered in error": a new entry superseding the current version, with no detail.
    Nothing is deleted; the mistaken version stays readable in the history."""
    if not reason or not reason.strip():
        raise RecordError("a reason is required to mark an entry as entered in error", field="reason")
    target = conn.execute(
        sa.select(entry.c.kind, entry.c.patient_id).where(entry.c.id == entry_id)
    ).mappings().first()
    if target is None:
        raise EntryNotFound(f"no entry {entry_id}", entry_id=str(entry_id))
    return append(conn, principal, target["kind"], patient_id=target["patient_id"], supersedes=entry_id,
                  status="entered_in_error", reason=reason.strip())


def history(conn: Connection, entry_id: uuid.UUID) -> list[Entry]:
    """Every version of the record `entry_id` belongs to, oldest first, each with its detail."""
    root = conn.execute(sa.select(entry.c.root_id).where(entry.c.id == entry_id)).scalar()
    if root is None:
        raise EntryNotFound(f"no entry {entry_id}", entry_id=str(entry_id))
    rows = conn.execute(
        sa.select(entry).where(entry.c.root_id == root).order_by(entry.c.recorded_at, entry.c.occurred_at)
    ).mappings().all()
    by_previous = {row["supersedes"]: dict(row) for row in rows}
    ordered: list[dict] = []
    cursor = by_previous.get(None)
    while cursor is not None:  # follow the chain rather than trust clocks within one transaction
        ordered.append(cursor)
        cursor = by_previous.get(cursor["id"])
    return [_with_detail(conn, row) for row in ordered]


def append_many(conn: Connection, principal: Principal, entries: Sequence[NewEntry]) -> list[Entry]:
    """The bulk path (demo data, imports): the same rows `append` writes, inserted a batch at a time.
    Reactions run per entry and the audit seam is noted once per patient and kind. First versions only
    — corrections go through `append`."""
    if not entries:
        return []
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    rows: list[dict] = []
    details: dict[str, list[dict]] = defaultdict(list)
    for new in entries:
        table = _detail_table(new.kind)
        new_id = new.id or uuid.uuid4()
        rows.append({
            "id": new_id, "root_id": new_id, "kind": new.kind, "patient_id": new.patient_id,
            "encounter_id": new.encounter_id, "author_id": principal.account_id,
            "occurred_at": new.occurred_at or now, "recorded_at": new.recorded_at or now, "status": "final",
            "supersedes": None, "reason": None,
        })
        if table is not None and new.detail is not None:
            details[new.kind].append({"entry_id": new_id, **new.detail})
    conn.execute(postgresql.insert(entry), rows)
    for kind, detail_rows in details.items():
        # An insert of many rows takes its columns from the first: a later row naming more (a ward's
        # full set of vital signs after a clinic's partial one) would lose them without a word. So
        # rows are inserted in groups naming the same columns.
        alike: dict[frozenset, list[dict]] = defaultdict(list)
        for detail_row in detail_rows:
            alike[frozenset(detail_row)].append(detail_row)
        for rows_alike in alike.values():
            conn.execute(_detail_tables[kind].insert(), rows_alike)  # type: ignore[union-attr]
    appended = [
        Entry(**row, detail={k: v for k, v in detail.items() if k != "entry_id"})
        for row, detail in zip(rows, _details_in_order(rows, details), strict=True)
    ]
    touched: dict[tuple, list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        touched[(row["patient_id"], row["kind"])].append(row["id"])
    for (patient_id, kind), ids in touched.items():
        note_access(conn, principal, "create", patient_id, kind, ids)
    batched: dict[tuple[str, Reaction], list[Entry]] = defaultdict(list)
    for item in appended:
        for reaction in list(_reactions.get(item.kind, ())):
            if reaction in _batches:
                batched[(item.kind, reaction)].append(item)
            else:
                reaction(conn, principal, item)
    for (_, reaction), items in batched.items():
        _batches[reaction](conn, principal, items)
    return appended


def _details_in_order(rows: list[dict], details: dict[str, list[dict]]) -> list[dict]:
    by_id = {detail["entry_id"]: detail for detail_rows in details.values() for detail in detail_rows}
    return [by_id.get(row["id"], {}) for row in rows]
