"""The audit trail: encrypted, tamper-evident, verifiable by someone who does not trust us.

Every read and write of patient data, sign-in, export, key operation, merge, policy change and
break-the-glass calls `append` **in the transaction of the act**: if the append fails, the act fails.
A read made as one statement (the chart of a patient in the reader's care) seals its event first
(`seal_ahead`) and inserts it in that statement (`guarded_insert`), which gives out the data only if
the event was recorded.
An event is shaped after IHE BALP / FHIR AuditEvent (type, subtype, action, outcome, recorded, agent,
source, entity, purposeOfUse); its clear header (sequence, time, tenant, event type, key id,
pseudonymous patient reference) is bound as associated data to its AES-256-GCM body. The format is
defined in `appliance/audit_verify.py`, the regulator's verifier.

Where events live: a tenant's in its own schema (`audit_event`, written as the tenant role); the
appliance's own (tenant=None) and the archived logs of dropped tenants in `control`.

Why appends do not queue behind one another: an event takes a value from a sequence and computes
its own leaf hash; nothing about it depends on the event before. Committed events wait in
`audit_pending` until the **checkpointer** (one per log at a time, under an advisory lock) gives them
log positions in sequence order, extends the RFC 9162 Merkle tree from the right edge kept with the
last checkpoint, and signs a checkpoint (Ed25519 over log id, tree size, root and time). Sequence
order is not commit order, which is why positions are assigned after commit rather than at append:
the log's order is the order in which the checkpointer saw events committed. `start_checkpointer`
runs it in a background thread, at least every 30 s for a log with events waiting, and at once when
1,000 are waiting. The window between an append and its first checkpoint is the window in which a
database administrator could remove an event without a verifier noticing; keep it short.

`verify` replays a log against its checkpoints and names the first bad sequence number; `export`
writes an evidence package that `python -m appliance.audit_verify` checks offline; and
`patient_access_log` answers a patient's "who opened my record".

`rotate_signing_key` moves checkpoint signing to a new key: the rotation is an event of the appliance's
log naming the new key, put under a checkpoint the old key signs, in the transaction that makes the
new key current; every package carries these introductions, so a regulator who pinned the old key
follows the chain to the new one (audit_verify's docstring says what it then trusts). The appliance's
own `verify` trusts the key it signs with and those it rotated out (keys/, never the database's word).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import functools
import itertools
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa
import structlog
from psycopg.adapt import Transformer
from sqlalchemy.engine import Connection

from appliance.audit_verify import (
    KEY_INTRODUCTION,
    PACKAGE_FORMAT,
    Checkpoint,
    LogVerifier,
    Problem,
    Report,
    checkpoint_statement,
    decrypt_body,
    event_hash,
    event_header,
    format_time,
    held_checkpoints_document,
    introduced_key,
    key_id_of,
    key_introduction_type,
    problem_order,
)
from appliance.substrate import keys
from appliance.substrate.db import (
    CONTROL_SCHEMA,
    Database,
    UnknownTenant,
    control_metadata,
    driver,
    tenant_metadata,
    tenant_schema,
    validate_slug,
)
from appliance.substrate.merkle import EMPTY_ROOT, MerkleAccumulator, node_hash
from appliance.substrate.principal import Principal

log = structlog.get_logger(__name__)

# -- tables ---------------------------------------------------------------------------------------


def _event_columns() -> list[sa.Column]:
    return [
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        # Pseudonymous: an HMAC of the patient id under the tenant's data key, never the id itself.
        sa.Column("patient_ref", sa.Text),
        sa.Column("nonce", sa.LargeBinary, nullable=False),
        # Patient data, encrypted (AES-256-GCM under the data key named by key_id).
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
    ]


def _checkpoint_columns() -> list[sa.Column]:
    return [
        sa.Column("tree_size", sa.BigInteger, primary_key=True),
        sa.Column("root_hash", sa.LargeBinary, nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signing_key_id", sa.Text, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("edge", sa.LargeBinary, nullable=False),
    ]


audit_event = sa.Table("audit_event", tenant_metadata, *_event_columns(),
                       sa.Index("audit_event_recorded_idx", "recorded"),
                       sa.Index("audit_event_patient_ref_idx", "patient_ref"))
audit_pending = sa.Table("audit_pending", tenant_metadata, sa.Column("seq", sa.BigInteger, primary_key=True))
audit_position = sa.Table("audit_position", tenant_metadata,
                          sa.Column("position", sa.BigInteger, primary_key=True),
                          sa.Column("seq", sa.BigInteger, nullable=False, unique=True))
audit_checkpoint = sa.Table("audit_checkpoint", tenant_metadata, *_checkpoint_columns())

control_audit_event = sa.Table("audit_event", control_metadata,
                               sa.Column("log_id", sa.Text, primary_key=True), *_event_columns(),
                               sa.Index("audit_event_log_recorded_idx", "log_id", "recorded"))
control_audit_pending = sa.Table("audit_pending", control_metadata,
                                 sa.Column("log_id", sa.Text, primary_key=True),
                                 sa.Column("seq", sa.BigInteger, primary_key=True))
control_audit_position = sa.Table("audit_position", control_metadata,
                                  sa.Column("log_id", sa.Text, primary_key=True),
                                  sa.Column("position", sa.BigInteger, primary_key=True),
                                  sa.Column("seq", sa.BigInteger, nullable=False),
                                  sa.UniqueConstraint("log_id", "seq", name="audit_position_log_seq_key"))
control_audit_checkpoint = sa.Table("audit_checkpoint", control_metadata,
                                    sa.Column("log_id", sa.Text, primary_key=True), *_checkpoint_columns())

# -- vocabulary -----------------------------------------------------------------------------------

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
ACTIONS = frozenset("CRUDE")
# FHIR R4 AuditEvent.outcome codes.
OUTCOMES = {"success": "0", "failure": "4", "minor_failure": "4", "serious_failure": "8", "major_failure": "12"}
PURPOSE = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
BREAK_THE_GLASS = "ETREAT"

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_SUBTYPE = "urn:healthos:audit-event-type"


class AuditError(RuntimeError):
    """The event could not be recorded; the act it records must not happen either."""


class AuditIntegrityError(AuditError):
    """The stored log does not match its last signed checkpoint: it was tampered with."""


def _event_type_code(event_type: str, action: str, has_patient: bool) -> dict:
    """BALP/DICOM audit event type (AuditEvent.type) for one of our event types."""
    head = event_type.split(".", 1)[0]
    if head in ("signin", "signout", "session") or event_type.startswith("account.signin"):
        return {"system": _DCM, "code": "110114", "display": "User Authentication"}
    if event_type.endswith(".export") or head == "export":
        return {"system": _DCM, "code": "110106", "display": "Export"}
    if event_type.endswith(".import") or head == "import":
        return {"system": _DCM, "code": "110107", "display": "Import"}
    if event_type.endswith(".search"):
        return {"system": _DCM, "code": "110112", "display": "Query"}
    if has_patient:
        return {"system": _DCM, "code": "110110", "display": "Patient Record"}
    if head in ("audit", "key", "tenant", "policy", "subject", "account"):
        return {"system": _DCM, "code": "110113", "display": "Security Alert"}
    return {"system": _DCM, "code": "110100", "display": "Application Activity"}


def _audit_event(*, tenant, principal, event_type, action, outcome, recorded, patient_id, entity,
                 purpose_of_use, detail) -> dict:
    if principal is None:
        agent = {"who": {"display": "HealthOS appliance"}, "requestor": False}
    else:
        agent = {"who": {**principal.audit_agent, "name": principal.display_name}, "requestor": True}
        if principal.role:
            agent["role"] = [{"text": principal.role}]
    entities = []
    if patient_id is not None:
        entities.append({"what": {"reference": f"Patient/{patient_id}"}, "role": {"code": "1", "display": "Patient"}})
    if entity:
        entities.append(entity)
    event = {
        "resourceType": "AuditEvent",
        "type": _event_type_code(event_type, action, patient_id is not None),
        "subtype": [{"system": _SUBTYPE, "code": event_type}],
        "action": action,
        "outcome": OUTCOMES[outcome],
        "outcomeDesc": outcome,
        "recorded": recorded,
        "agent": [agent],
        "source": {"site": tenant or "appliance", "observer": {"display": "HealthOS appliance"},
                   "type": [{"code": "4", "display": "Application Server"}]},
        "entity": entities,
    }
    if purpose_of_use:
        event["purposeOfUse"] = [{"system": _ACT_REASON, "code": purpose_of_use}]
    if detail:
        event["detail"] = detail
    return event


# -- append ---------------------------------------------------------------------------------------

# A tenant event costs one statement. Its sequence number comes from a block this process takes from
# the tenant's sequence (one extra statement per `_SEQ_BLOCK` events), and the key it was sealed
# under is checked against the tenant's current key by the insert itself: a rotated key, or a tenant
# dropped and made again under the same slug, inserts nothing, and the event is sealed again under a
# fresh block and key. Sequence numbers were never commit order (see the module docstring), so blocks
# change nothing the checkpointer or the verifier relies on; numbers a process never uses are gaps,
# as a rolled-back transaction's always were. With the tenant pin sent with BEGIN (db.py), an
# audited transaction of its own is three round trips: BEGIN+pin, INSERT, COMMIT (it was five).
_SEQ_BLOCK = 64
_TENANT_CURRENT = ("SELECT (SELECT key_id FROM {s}.audit_key ORDER BY generation DESC LIMIT 1), "
                   "array(SELECT nextval('{s}.audit_event_seq') FROM generate_series(1, %(block)s))")
_TENANT_INSERT = (
    "WITH e AS (INSERT INTO {s}.audit_event (seq, recorded, event_type, key_id, patient_ref, nonce, body, "
    "leaf_hash) SELECT %(seq)s, %(recorded)s, %(event_type)s, %(key_id)s, %(patient_ref)s, %(nonce)s, %(body)s, "
    "%(leaf)s WHERE %(key_id)s = (SELECT key_id FROM {s}.audit_key ORDER BY generation DESC LIMIT 1) RETURNING seq) "
    "INSERT INTO {s}.audit_pending (seq) SELECT seq FROM e"
)


@functools.lru_cache(maxsize=1024)
def _tenant_statements(tenant: str) -> tuple[str, str]:
    """The tenant's block and insert statements, naming its schema. A pooled connection serves many
    tenants, and PostgreSQL analyses and plans an unqualified prepared statement again whenever the
    search_path differs from the one it was planned under (~0.2 ms of its CPU per append when
    consecutive transactions on a connection are of different tenants); named, each tenant's statement
    is its own prepared statement and keeps its plan. The schema comes from `tenant_schema`, which
    admits no quote."""
    schema = tenant_schema(tenant)
    return _TENANT_CURRENT.format(s=schema), _TENANT_INSERT.format(s=schema)


_CONTROL_NEXT = (
    "SELECT nextval('control.audit_event_seq'), (SELECT key_id FROM control.audit_data_key "
    "WHERE log_id = (SELECT log_id FROM control.audit_log WHERE kind = 'appliance') AND wrapped IS NOT NULL "
    "ORDER BY generation DESC LIMIT 1)"
)
_CONTROL_INSERT = (
    "WITH e AS (INSERT INTO control.audit_event (log_id, seq, recorded, event_type, key_id, patient_ref, nonce, "
    "body, leaf_hash) VALUES (%(log_id)s, %(seq)s, %(recorded)s, %(event_type)s, %(key_id)s, %(patient_ref)s, "
    "%(nonce)s, %(body)s, %(leaf)s)) INSERT INTO control.audit_pending (log_id, seq) VALUES (%(log_id)s, %(seq)s)"
)


@dataclass
class _TenantBlock:
    """This process's current key id and unused sequence numbers for one tenant's log."""

    key_id: str | None
    seqs: collections.deque


_blocks: dict[str, _TenantBlock] = {}
_blocks_lock = threading.Lock()


def _tenant_block(cursor, tenant: str, stale: _TenantBlock | None = None) -> _TenantBlock:
    """The tenant's block, taking a new one when it is used up or `stale` (its key was refused)."""
    block = _blocks.get(tenant)
    if block is not None and block is not stale and block.seqs:
        return block
    with _blocks_lock:
        block = _blocks.get(tenant)
        if block is None or block is stale or not block.seqs:
            cursor.execute(_tenant_statements(tenant)[0], {"block": _SEQ_BLOCK})
            key_id, seqs = cursor.fetchone()
            block = _blocks[tenant] = _TenantBlock(key_id, collections.deque(seqs))
        return block


def _next_seq(cursor, tenant: str, stale: _TenantBlock | None) -> tuple[_TenantBlock, int]:
    while True:
        block = _tenant_block(cursor, tenant, stale)
        try:
            return block, block.seqs.popleft()
        except IndexError:
            stale = None  # another thread used the block up in between: take the next one


def forget_tenant_blocks(tenant: str | None = None) -> None:
    """Drop this process's sequence blocks (all, or one tenant's): after a drop or restore."""
    with _blocks_lock:
        if tenant is None:
            _blocks.clear()
        else:
            _blocks.pop(tenant, None)


def _fresh_blocks_after_fork() -> None:
    # A forked child must not number events from its parent's blocks (both would use the same numbers);
    # a new lock too, as another thread of the parent may have held the old one at the fork.
    global _blocks, _blocks_lock
    _blocks, _blocks_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_fresh_blocks_after_fork)


def _check_event(event_type: str, action: str, outcome: str, purpose_of_use: str | None) -> None:
    if not isinstance(event_type, str) or not EVENT_TYPE.fullmatch(event_type):
        raise AuditError(f"event type {event_type!r} is not of the form chart.read (lowercase, dotted)")
    if action not in ACTIONS:
        raise AuditError(f"action {action!r} is not one of C, R, U, D, E")
    if outcome not in OUTCOMES:
        raise AuditError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    if purpose_of_use is not None and not PURPOSE.fullmatch(purpose_of_use):
        raise AuditError(f"purpose of use {purpose_of_use!r} is not a v3 ActReason code such as TREAT or ETREAT")


def append(conn: Connection, *, tenant: str | None, principal: Principal | None, event_type: str, action: str,
           outcome: str = "success", patient_id=None, entity: dict | None = None,
           purpose_of_use: str | None = None, detail: dict | None = None) -> int:
    """Record one event in the caller's transaction; returns its sequence number.

    `conn` is the tenant's own transaction (`db.tenant(tenant)`) for a tenant event, a control
    transaction for an appliance event (tenant=None). Raises — never swallows — when the event cannot
    be recorded, so the act fails with it. `purpose_of_use="ETREAT"` marks break-the-glass.
    """
    _check_event(event_type, action, outcome, purpose_of_use)
    if tenant is not None:
        validate_slug(tenant)
        if conn.info.get("healthos_tenant") != tenant:
            raise AuditError(f"an event of tenant {tenant!r} must be appended in that tenant's transaction")
    # The statements go straight to the transaction's own driver cursor: SQLAlchemy's statement
    # machinery would double the append's CPU cost (bench/audit.py), and the connection and the
    # transaction are the caller's either way.
    cursor = driver(conn).cursor()
    body = _audit_event(tenant=tenant, principal=principal, event_type=event_type, action=action, outcome=outcome,
                        recorded="", patient_id=None if patient_id is None else str(patient_id), entity=entity,
                        purpose_of_use=purpose_of_use, detail=detail)
    try:
        if tenant is None:
            cursor.execute(_CONTROL_NEXT)
            seq, key_id = cursor.fetchone()
            _seal_and_insert(conn, cursor, _CONTROL_INSERT, None, seq, key_id, event_type, patient_id, body)
            return seq
        stale = None
        for _ in range(3):
            block, seq = _next_seq(cursor, tenant, stale)
            used = _seal_and_insert(conn, cursor, _tenant_statements(tenant)[1], tenant, seq, block.key_id,
                                    event_type, patient_id, body)
            if used is not None:
                block.key_id = used  # the tenant's first key, made by this very append
                return seq
            stale = block  # the key rotated since the block was taken
    except psycopg.Error as exc:
        raise AuditError(f"the audit event could not be recorded: {exc.__class__.__name__}") from exc
    raise AuditError("the audit event could not be recorded: the tenant's data key kept changing")


def _seal_and_insert(conn: Connection, cursor, statement: str, tenant: str | None, seq: int, key_id: str | None,
                     event_type: str, patient_id, event: dict) -> str | None:
    """Seal `event` as number `seq` under `key_id` and insert it; returns the key id used, or None
    when the insert refused it (no longer the tenant's current key)."""
    key = _key(conn, tenant, key_id)
    cursor.execute(statement, _seal(key, tenant, seq, event_type, patient_id, event))
    return key.key_id if cursor.rowcount == 1 else None


def _seal(key: keys.DataKey, tenant: str | None, seq: int, event_type: str, patient_id, event: dict) -> dict:
    """The row of `event` as number `seq`: its clear header's columns, a fresh nonce, the body sealed
    under `key` with the header as associated data, and the leaf hash."""
    recorded = datetime.now(UTC)
    when = format_time(recorded)
    event["recorded"] = when
    patient_ref = key.patient_ref(patient_id) if patient_id is not None else None
    header = event_header(log_id=key.log_id, tenant=tenant, seq=seq, time=when, event_type=event_type,
                          key_id=key.key_id, patient_ref=patient_ref)
    body = json.dumps(event, separators=(",", ":"), default=str).encode()
    nonce = os.urandom(12)
    sealed = key.aead.encrypt(nonce, body, header)
    return {"log_id": key.log_id, "seq": seq, "recorded": recorded, "event_type": event_type, "key_id": key.key_id,
            "patient_ref": patient_ref, "nonce": nonce, "body": sealed, "leaf": event_hash(header, nonce, sealed)}


# -- an event recorded by the caller's own statement -------------------------------------------------

# Two CTEs for the WITH list of a statement of the caller's, with the event's values as its
# parameters (named `audit_<column>`): the record's append inserts an entry, its detail and the
# event of that write in one statement, where it took three round trips.
_TENANT_INSERT_CTES = (
    "audit_inserted AS (INSERT INTO {s}.audit_event (seq, recorded, event_type, key_id, patient_ref, nonce, body, "
    "leaf_hash) SELECT %(audit_seq)s, %(audit_recorded)s, %(audit_event_type)s, %(audit_key_id)s, "
    "%(audit_patient_ref)s, %(audit_nonce)s, %(audit_body)s, %(audit_leaf)s WHERE %(audit_key_id)s = "
    "(SELECT key_id FROM {s}.audit_key ORDER BY generation DESC LIMIT 1) RETURNING seq), "
    "audit_recorded AS (INSERT INTO {s}.audit_pending (seq) SELECT seq FROM audit_inserted RETURNING seq)"
)
# The statement's condition that the event was recorded (its key was still the tenant's current one).
RECORDED_BY_STATEMENT = "EXISTS (SELECT 1 FROM audit_recorded)"


@dataclass(frozen=True)
class StatementEvent:
    """A tenant event sealed for the caller's statement: `ctes` for its WITH list, `params` to pass.
    When the statement reports it not recorded (`RECORDED_BY_STATEMENT` false: the key rotated in
    between), the caller appends it the ordinary way, in the same transaction."""

    ctes: str
    params: dict


def seal_for_statement(conn: Connection, *, tenant: str, principal: Principal | None, event_type: str,
                       action: str, outcome: str = "success", patient_id=None, entity: dict | None = None,
                       purpose_of_use: str | None = None, detail: dict | None = None) -> StatementEvent | None:
    """Seal a tenant event to be inserted by the caller's own statement in `conn`'s transaction; None
    when the tenant has no data key yet (the ordinary `append` makes the first)."""
    _check_event(event_type, action, outcome, purpose_of_use)
    if conn.info.get("healthos_tenant") != tenant:
        raise AuditError(f"an event of tenant {tenant!r} must be appended in that tenant's transaction")
    try:
        block, seq = _next_seq(driver(conn).cursor(), tenant, None)
    except psycopg.Error as exc:
        raise AuditError(f"the audit event could not be recorded: {exc.__class__.__name__}") from exc
    if block.key_id is None:
        block.seqs.appendleft(seq)  # given back: `append` numbers the event that makes the first key
        return None
    event = _audit_event(tenant=tenant, principal=principal, event_type=event_type, action=action, outcome=outcome,
                         recorded="", patient_id=None if patient_id is None else str(patient_id), entity=entity,
                         purpose_of_use=purpose_of_use, detail=detail)
    row = _seal(_key(conn, tenant, block.key_id), tenant, seq, event_type, patient_id, event)
    return StatementEvent(_statement_ctes(tenant), {f"audit_{column}": row[column] for column in _SEALED_COLUMNS})


@functools.lru_cache(maxsize=1024)
def _statement_ctes(tenant: str) -> str:
    return _TENANT_INSERT_CTES.format(s=tenant_schema(tenant))


# -- an event sealed ahead of its statement ---------------------------------------------------------

# The columns of a tenant event, in the order `SealedEvent.values` gives them.
_SEALED_COLUMNS = ("seq", "recorded", "event_type", "key_id", "patient_ref", "nonce", "body", "leaf")


@dataclass(frozen=True)
class SealedEvent:
    """A tenant event sealed before the transaction that records it, for a transaction sent to the
    server whole (`Database.tenant_statement`): its values are SQL literals, and `guarded_insert`
    inserts it only if a condition evaluated in that same statement holds. An event not inserted is
    a gap in the numbering, as a rolled-back transaction's always was."""

    tenant: str
    seq: int
    values: str  # the literals of `_SEALED_COLUMNS`, comma-separated
    key_id: str  # the literal of its key id


def refill_ahead(db: Database, tenant: str) -> None:
    """Take this process's next block of sequence numbers for `tenant` if it is used up while the key
    is in memory, so that `seal_ahead` can go on sealing: without it every reader who found the block
    empty took the ordinary path, and with 16 threads reading in one tenant that was 15% of reads
    (scratch measurement). One of them takes the block, in a tenant transaction of its own (once per
    `_SEQ_BLOCK` reads), and the others wait for it. The connection is taken before the block lock, as
    `append` takes them: taking the lock first could wait for a connection held by an append waiting
    for the lock. Does nothing when the key is not in memory yet: the ordinary path, which
    `seal_ahead` then leaves to, fetches both."""
    block = _blocks.get(tenant)
    if block is None or block.key_id is None or block.seqs:
        return
    with db.tenant(tenant) as conn:
        _tenant_block(driver(conn).cursor(), tenant)


def seal_ahead(raw: psycopg.Connection, *, tenant: str, principal: Principal | None, event_type: str,
               action: str, outcome: str = "success", patient_id=None, entity: dict | None = None,
               purpose_of_use: str | None = None, detail: dict | None = None) -> SealedEvent | None:
    """Seal a tenant event now, without a database round trip; None when that would take one (this
    process's block of sequence numbers for the tenant is used up — `refill_ahead` first makes that
    rare — or its key is not in memory yet): the caller then takes the ordinary path, `append` in its
    transaction, which refills both."""
    _check_event(event_type, action, outcome, purpose_of_use)
    validate_slug(tenant)
    block = _blocks.get(tenant)
    key = keys.cached(block.key_id) if block is not None and block.key_id is not None else None
    if key is None:
        return None
    try:
        seq = block.seqs.popleft()
    except IndexError:
        return None
    event = _audit_event(tenant=tenant, principal=principal, event_type=event_type, action=action, outcome=outcome,
                         recorded="", patient_id=None if patient_id is None else str(patient_id), entity=entity,
                         purpose_of_use=purpose_of_use, detail=detail)
    row = _seal(key, tenant, seq, event_type, patient_id, event)
    literal = Transformer(raw).as_literal
    values = [literal(row[column]).decode() for column in _SEALED_COLUMNS]
    return SealedEvent(tenant, seq, ", ".join(values), values[_SEALED_COLUMNS.index("key_id")])


_GUARDED_INSERT = (
    "audit_inserted AS (INSERT INTO {s}.audit_event (seq, recorded, event_type, key_id, patient_ref, nonce, body, "
    "leaf_hash) SELECT {values} FROM {source} WHERE ({guard}) AND {key_id} = (SELECT key_id FROM {s}.audit_key "
    "ORDER BY generation DESC LIMIT 1) RETURNING seq), "
    "audit_recorded AS (INSERT INTO {s}.audit_pending (seq) SELECT seq FROM audit_inserted RETURNING seq)"
)
# An SQL condition, usable in the statement that holds `guarded_insert`: the event was recorded.
RECORDED = "EXISTS (SELECT 1 FROM audit_recorded)"


def refused_by_trail(exc: sa.exc.DBAPIError) -> bool:
    """Whether a statement holding `guarded_insert` failed on the trail's own tables (raise
    `AuditError` then, as `append` does)."""
    diag = getattr(exc.orig, "diag", None)
    return diag is not None and diag.table_name in ("audit_event", "audit_pending")


def guarded_insert(event: SealedEvent, *, source: str, guard: str) -> str:
    """Two CTEs for a statement's WITH list that record `event` when `guard` (a condition over the CTE
    `source`, which must yield one row) holds and the event's key is still the tenant's current one;
    `RECORDED` then holds. The statement must give out nothing of a patient's record unless
    `RECORDED` does: no audit, no data, as with `append`."""
    return _GUARDED_INSERT.format(s=tenant_schema(event.tenant), values=event.values, source=source, guard=guard,
                                  key_id=event.key_id)


def _key(conn: Connection, tenant: str | None, key_id: str | None) -> keys.DataKey:
    """The data key to encrypt with: cached, or unwrapped (or first created) on a side connection."""
    if key_id is not None:
        key = keys.cached(key_id)
        if key is not None:
            return key
    with keys.side_engine(conn.engine).begin() as side:
        if key_id is not None:
            return keys.load(side, key_id)
        key, made = keys.first_key(side, tenant)
        if made:
            _note_key_operation(side, "audit.key.create", tenant, key)
        return key


def tenant_key(conn: Connection, tenant: str, key_id: str | None = None) -> keys.DataKey:
    """The tenant's data key `key_id`, else its current one (made if it has none yet), in the tenant's own
    transaction: for patient data a room keeps sealed outside the trail (`keys.seal_value`), so that the trail's
    rotation, its keys' export to a regulator and a dropped tenant's crypto-shredding cover that data too."""
    if conn.info.get("healthos_tenant") != tenant:
        raise AuditError(f"tenant {tenant!r}'s key is taken in that tenant's transaction")
    if key_id is None:
        key_id = conn.execute(sa.select(current_key_id())).scalar()
    return _key(conn, tenant, key_id)


def current_key_id() -> sa.ScalarSelect:
    """The tenant's current data key id, as a subquery for a statement the caller sends anyway (in the tenant's
    transaction), so that finding the key to seal under takes no round trip of its own; NULL before its first."""
    return (sa.select(keys.tenant_audit_key.c.key_id).order_by(keys.tenant_audit_key.c.generation.desc()).limit(1)
            .scalar_subquery())


def _note_key_operation(conn: Connection, event_type: str, tenant: str | None, key: keys.DataKey,
                        principal: Principal | None = None) -> None:
    append(conn, tenant=None, principal=principal, event_type=event_type, action="C",
           detail={"tenant": tenant, "log": key.log_id, "key": key.key_id, "generation": key.generation})


# -- the logs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Log:
    """Where one log's rows are: a live tenant schema, or `control` (the appliance's and archived logs)."""

    log_id: str
    tenant: str | None
    schema: str  # quoted
    in_control: bool
    live: bool

    def sql(self, template: str) -> str:
        """Fill a query template: `{s}` the schema; `{w}`, `{we}`, `{wp}`, `{wx}` this log's filter on
        the unaliased, e, p or x table (each ending in AND); `{jep}`, `{jxe}` the log part of a join
        between e and p, or x and e; `{lc}`, `{lv}` the log column and its value in an INSERT; `{t}`
        the event's time as the header spells it. In `control` every filter is on log_id; in a tenant
        schema the table holds one log and they are empty."""
        c = self.in_control
        return template.format(
            s=self.schema, t=_TIME_SQL,
            w="log_id = %(log)s AND " if c else "", we="e.log_id = %(log)s AND " if c else "",
            wp="p.log_id = %(log)s AND " if c else "", wx="x.log_id = %(log)s AND " if c else "",
            jep="e.log_id = p.log_id AND " if c else "", jxe="x.log_id = e.log_id AND " if c else "",
            lc="log_id, " if c else "", lv="%(log)s, " if c else "")

    @property
    def params(self) -> dict:
        return {"log": self.log_id}


def _control_log(log_id: str, tenant: str | None, live: bool) -> _Log:
    return _Log(log_id, tenant, CONTROL_SCHEMA, True, live)


def _tenant_log(log_id: str, tenant: str) -> _Log:
    return _Log(log_id, tenant, f'"{tenant_schema(tenant)}"', False, True)


def _logs_of(conn: Connection, tenant: str | None) -> list[_Log]:
    """The logs of the appliance (tenant=None) or of one tenant, oldest first; the live one last."""
    if tenant is None:
        return [_control_log(keys.appliance_log_id(conn), None, True)]
    validate_slug(tenant)
    rows = conn.execute(sa.select(keys.audit_log.c.log_id, keys.audit_log.c.closed_at)
                        .where(keys.audit_log.c.tenant == tenant, keys.audit_log.c.kind == "tenant")
                        .order_by(keys.audit_log.c.created_at)).all()
    return [_tenant_log(log_id, tenant) if closed is None else _control_log(log_id, tenant, False)
            for log_id, closed in rows]


def _log_of(conn: Connection, tenant: str | None) -> _Log | None:
    logs = _logs_of(conn, tenant)
    if logs:
        return logs[-1]
    if tenant is not None and not _tenant_active(conn, tenant):
        raise UnknownTenant(tenant)
    return None


def _tenant_active(conn: Connection, tenant: str) -> bool:
    return conn.execute(sa.text("SELECT 1 FROM control.tenant WHERE slug = :s AND status = 'active'"),
                        {"s": tenant}).first() is not None


# -- checkpoints ----------------------------------------------------------------------------------


def _accumulator(size: int, edge: bytes) -> MerkleAccumulator:
    """Resume a tree from the right edge stored with its last checkpoint."""
    accumulator = MerkleAccumulator()
    # MerkleAccumulator has no public constructor from a stored edge; its state is exactly
    # (right edge, size), which is what we stored.
    accumulator._edge = [edge[i:i + 32] for i in range(0, len(edge), 32)]
    accumulator._size = size
    return accumulator


_registered_signers: set[tuple[int, str]] = set()


def _register_signer(conn: Connection, keyring: keys.Keyring) -> None:
    marker = (id(conn.engine), keyring.signing_key_id)
    if marker in _registered_signers:
        return
    conn.exec_driver_sql("INSERT INTO control.audit_signing_key (key_id, public_key) VALUES (%(k)s, %(p)s) "
                         "ON CONFLICT (key_id) DO NOTHING",
                         {"k": keyring.signing_key_id, "p": keyring.public_key_raw()})
    _registered_signers.add(marker)


def _follow_current_signer(conn: Connection, keyring: keys.Keyring) -> None:
    """Sign with the key the database names as current (the newest of `control.audit_signing_key`):
    after a rotation by another process, this one reads the new key from keys/."""
    current = conn.execute(sa.select(keys.audit_signing_key.c.key_id)
                           .order_by(keys.audit_signing_key.c.created_at.desc()).limit(1)).scalar()
    if current is not None:
        keyring.follow_rotation(current)


def _checkpoint_log(conn: Connection, target: _Log) -> Checkpoint | None:
    """Give positions to the log's committed events and sign a checkpoint over them (conn: control)."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                 {"k": f"healthos.audit.checkpoint.{target.log_id}"})
    params = target.params
    last = conn.exec_driver_sql(target.sql(
        "SELECT tree_size, root_hash, edge, signed_at FROM {s}.audit_checkpoint WHERE {w} true "
        "ORDER BY tree_size DESC LIMIT 1"), params).first()
    size = last.tree_size if last else 0
    accumulator = _accumulator(size, last.edge) if last else MerkleAccumulator()
    if accumulator.root() != (last.root_hash if last else EMPTY_ROOT):
        raise AuditIntegrityError(f"log {target.log_id}: the stored tree state does not match its last signed "
                                  "checkpoint; run `healthos audit verify`")
    pending = sorted(conn.exec_driver_sql(target.sql(
        "DELETE FROM {s}.audit_pending WHERE {w} true RETURNING seq"), params).scalars())
    if not pending:
        return None
    hashes = dict(conn.exec_driver_sql(target.sql(
        "SELECT seq, leaf_hash FROM {s}.audit_event WHERE {w} seq = ANY(%(seqs)s)"), {**params, "seqs": pending}).all())
    seqs = [seq for seq in pending if seq in hashes]
    if len(seqs) != len(pending):
        # Queued, but the event row is gone: deleted before its first checkpoint. Not positioned;
        # `verify` names it from the sequence numbers around it.
        log.error("audit_pending_event_missing", log=target.log_id, tenant=target.tenant,
                  missing=len(pending) - len(seqs))
    if not seqs:
        return None
    positions = list(range(size, size + len(seqs)))
    conn.exec_driver_sql(target.sql(
        "INSERT INTO {s}.audit_position ({lc}position, seq) "
        "SELECT {lv}p, q FROM unnest(%(positions)s::bigint[], %(seqs)s::bigint[]) AS u(p, q)"),
        {**params, "positions": positions, "seqs": seqs})
    for seq in seqs:
        accumulator.append(hashes[seq])
    keyring = keys.keyring_for(conn.engine)
    _follow_current_signer(conn, keyring)
    _register_signer(conn, keyring)
    signed_at = datetime.now(UTC)
    if last is not None and signed_at < last.signed_at:
        signed_at = last.signed_at  # a clock stepped back must not date a checkpoint before its predecessor
    when = format_time(signed_at)
    root = accumulator.root()
    signature = keyring.sign(checkpoint_statement(target.log_id, accumulator.size, root, when))
    conn.exec_driver_sql(target.sql(
        "INSERT INTO {s}.audit_checkpoint ({lc}tree_size, root_hash, signed_at, signing_key_id, signature, edge) "
        "VALUES ({lv}%(size)s, %(root)s, %(at)s, %(key)s, %(sig)s, %(edge)s)"),
        {**params, "size": accumulator.size, "root": root, "at": signed_at, "key": keyring.signing_key_id,
         "sig": signature, "edge": b"".join(accumulator.right_edge)})
    return Checkpoint(target.log_id, accumulator.size, root, when, keyring.signing_key_id, signature)


def checkpoint(db: Database, tenant: str | None = None, *, latest: bool = False) -> Checkpoint | None:
    """Checkpoint one log now. Returns the new checkpoint, or None if nothing was waiting — or with
    `latest`, the log's latest checkpoint whether new or not."""
    with db.control() as conn:
        target = _log_of(conn, tenant)
        if target is None:
            return None
        made = _checkpoint_log(conn, target) if target.live else None
        return made or (_latest_checkpoint(conn, target) if latest else None)


def _latest_checkpoint(conn: Connection, target: _Log) -> Checkpoint | None:
    row = conn.exec_driver_sql(target.sql(
        "SELECT tree_size, root_hash, signed_at, signing_key_id, signature FROM {s}.audit_checkpoint "
        "WHERE {w} true ORDER BY tree_size DESC LIMIT 1"), target.params).first()
    return None if row is None else Checkpoint(target.log_id, row.tree_size, row.root_hash,
                                               format_time(row.signed_at), row.signing_key_id, row.signature)


@dataclass(frozen=True)
class LogState:
    """Where one live log stands, for a reader who checks it (the regulator console)."""

    log_id: str
    tenant: str | None  # None: the appliance's own log
    latest: Checkpoint | None
    checkpoints: int
    awaiting: int  # events committed and not yet under a signed checkpoint


def log_states(db: Database) -> list[LogState]:
    """The appliance's log and every live tenant log: its latest signed checkpoint, how many it has and
    how many events await the next one. Reads only: nothing is signed."""
    with db.control() as conn:
        tenants = conn.execute(sa.select(keys.audit_log.c.tenant).distinct()
                               .where(keys.audit_log.c.kind == "tenant", keys.audit_log.c.closed_at.is_(None))
                               .order_by(keys.audit_log.c.tenant)).scalars().all()
        states = []
        for target in [*_logs_of(conn, None), *(_logs_of(conn, tenant)[-1] for tenant in tenants)]:
            counted, awaiting = conn.exec_driver_sql(target.sql(
                "SELECT (SELECT count(*) FROM {s}.audit_checkpoint WHERE {w} true), "
                "(SELECT count(*) FROM {s}.audit_pending WHERE {w} true)"), {**target.params}).one()
            states.append(LogState(target.log_id, target.tenant, _latest_checkpoint(conn, target), counted, awaiting))
        return states


def _checkpoints(conn: Connection, target: _Log) -> list[Checkpoint]:
    rows = conn.exec_driver_sql(target.sql(
        "SELECT tree_size, root_hash, signed_at, signing_key_id, signature FROM {s}.audit_checkpoint "
        "WHERE {w} true ORDER BY tree_size"), target.params)
    return [Checkpoint(target.log_id, r.tree_size, r.root_hash, format_time(r.signed_at), r.signing_key_id,
                       r.signature) for r in rows]


def held_checkpoints(db: Database, tenant: str | None = None) -> dict:
    """A log's checkpoints as the file a regulator keeps (checkpointing what is waiting first)."""
    checkpoint(db, tenant)
    with db.control() as conn:
        target = _log_of(conn, tenant)
        if target is None:
            raise AuditError(f"tenant {tenant!r} has no audit events yet")
        checkpoints = _checkpoints(conn, target)
        public = _public_keys(conn, {c.key_id for c in checkpoints})
    return held_checkpoints_document(target.log_id, target.tenant, checkpoints, public)


def _public_keys(conn: Connection, key_ids: set[str]) -> dict[str, bytes]:
    rows = conn.execute(sa.select(keys.audit_signing_key.c.key_id, keys.audit_signing_key.c.public_key)
                        .where(keys.audit_signing_key.c.key_id.in_(sorted(key_ids)))).all()
    return dict(rows)


class Checkpointer:
    """Checkpoints every log with events waiting: at once past `batch` events, else every `max_age` s."""

    def __init__(self, db: Database, *, interval: float = 5.0, max_age: float = 30.0, batch: int = 1000):
        self.db, self.interval, self.max_age, self.batch = db, interval, max_age, batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Checkpointer:
        self._thread = threading.Thread(target=self._run, name="healthos-audit-checkpointer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop, after one last pass so that nothing committed is left without a checkpoint."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._pass()
        self._pass(final=True)

    def _pass(self, final: bool = False) -> None:
        try:
            self.run_once(final=final)
        except Exception:  # the thread must outlive a bad pass (database restarting...); it says so
            log.exception("audit_checkpointer_pass_failed")

    def run_once(self, *, final: bool = True) -> int:
        """One pass; `final` checkpoints every log with anything waiting. Returns checkpoints made."""
        made = 0
        for tenant in self.due(everything=final):
            try:
                if checkpoint(self.db, tenant) is not None:
                    made += 1
            except UnknownTenant:
                continue  # dropped since the list was read
            except Exception:
                log.exception("audit_checkpoint_failed", tenant=tenant)
        return made

    def due(self, *, everything: bool = False) -> list[str | None]:
        """Logs (None: the appliance's) with events waiting for which a checkpoint is due."""
        with self.db.control() as conn:
            tenants = conn.execute(sa.text(
                "SELECT l.tenant FROM control.audit_log l JOIN control.tenant t ON t.slug = l.tenant "
                "WHERE l.kind = 'tenant' AND l.closed_at IS NULL AND t.status = 'active' ORDER BY l.tenant"
            )).scalars().all()
            rows = [(None, *conn.exec_driver_sql(
                "SELECT (SELECT count(*) FROM control.audit_pending p JOIN control.audit_log l USING (log_id) "
                "WHERE l.kind = 'appliance'), (SELECT max(signed_at) FROM control.audit_checkpoint c "
                "JOIN control.audit_log l USING (log_id) WHERE l.kind = 'appliance')").one())]
            for start in range(0, len(tenants), 200):
                chunk = tenants[start:start + 200]
                union = " UNION ALL ".join(
                    f"SELECT %(t{i})s, (SELECT count(*) FROM \"{tenant_schema(slug)}\".audit_pending), "  # noqa: S608 -- validated slugs
                    f"(SELECT max(signed_at) FROM \"{tenant_schema(slug)}\".audit_checkpoint)"
                    for i, slug in enumerate(chunk))
                rows += conn.exec_driver_sql(union, {f"t{i}": slug for i, slug in enumerate(chunk)}).all()
        now = datetime.now(UTC)
        due = []
        for tenant, waiting, last in rows:
            if not waiting:
                continue
            if everything or waiting >= self.batch or last is None or (now - last).total_seconds() >= self.max_age:
                due.append(tenant)
        return due


def start_checkpointer(db: Database, **options) -> Checkpointer:
    """Run the checkpointer in a background thread; call `.stop()` on shutdown."""
    return Checkpointer(db, **options).start()


# -- verification ---------------------------------------------------------------------------------

_TIME_SQL = "to_char(e.recorded AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def verify(db: Database, tenant: str | None = None, *, held: Sequence[Checkpoint] = (),
           decrypt: bool = False) -> Report:
    """Check one log: every event hash, every Merkle root and checkpoint signature against the local
    public key, consistency with checkpoints kept earlier (`held`), and that every committed event is
    in the log or queued for it. With `decrypt`, also authenticate every body under its data key."""
    with db.control() as conn:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        target = _log_of(conn, tenant)
        if target is None:
            return Report(log_id="-", tenant=tenant)
        return _verify_log(conn, target, held=held, decrypt=decrypt)


def verify_all(db: Database, *, decrypt: bool = False) -> list[Report]:
    """Every log of the appliance: its own, every tenant's, and the archived logs of dropped tenants."""
    with db.control() as conn:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        targets = _logs_of(conn, None)
        for (tenant,) in conn.execute(sa.select(keys.audit_log.c.tenant).distinct()
                                      .where(keys.audit_log.c.kind == "tenant").order_by(keys.audit_log.c.tenant)):
            targets += _logs_of(conn, tenant)
        return [_verify_log(conn, target, decrypt=decrypt) for target in targets]


def _trusted(conn: Connection) -> dict:
    """The key this appliance signs with and those it rotated out, as its own keys/ holds them: a key
    the database alone names (inserted there) is not trusted."""
    keyring = keys.keyring_for(conn.engine)
    with contextlib.suppress(keys.KeyUnavailable):  # keys/ not yet copied here: what it holds is still checked
        _follow_current_signer(conn, keyring)
    return {**keyring.retired_public_keys(), keyring.signing_key_id: keyring.public_key()}


def _verify_log(conn: Connection, target: _Log, *, held: Sequence[Checkpoint] = (), decrypt: bool = False) -> Report:
    verifier = LogVerifier(log_id=target.log_id, tenant=target.tenant, checkpoints=_checkpoints(conn, target),
                           trusted_keys=_trusted(conn), held=held, check_header_prefix=False)
    log_id, tenant = target.log_id, target.tenant
    extra: list[Problem] = []
    authenticator = _Authenticator(conn) if decrypt else None
    # A server-side cursor in binary format, on the transaction's own connection: bytea arrives as
    # bytes rather than hex text to decode, and no Row objects are built, which together make the
    # database path several times faster (bench/audit.py).
    cursor = conn.connection.driver_connection.cursor(name=f"healthos_verify_{os.getpid()}", binary=True)
    cursor.itersize = 10000
    # Sorting the joined rows by position spills to disk at the default work_mem; a verify is a
    # single, occasional reader, so it may use more for the length of its transaction.
    conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
    cursor.execute(target.sql(
        "SELECT p.position, p.seq, e.seq IS NOT NULL AS present, {t} AS at, e.event_type, e.key_id, "
        "e.patient_ref, e.nonce, e.body, e.leaf_hash FROM {s}.audit_position p LEFT JOIN {s}.audit_event e "
        "ON {jep} e.seq = p.seq WHERE {wp} true ORDER BY p.position"), target.params)
    batch: list[tuple] = []
    for position, seq, present, at, event_type, key_id, ref, nonce, body, leaf in cursor:
        if not present:
            batch.append((position, seq, None, None, None, None))
            continue
        header = event_header(log_id=log_id, tenant=tenant, seq=seq, time=at, event_type=event_type,
                              key_id=key_id, patient_ref=ref)
        batch.append((position, seq, header, nonce, body, leaf))
        if authenticator is not None:
            authenticator.check(key_id, header, nonce, body, seq, position, extra)
        if len(batch) >= 4096:
            verifier.events(batch)
            batch = []
    if batch:
        verifier.events(batch)
    cursor.close()
    _check_unpositioned(conn, target, verifier, extra)
    report = verifier.finish()
    if authenticator is not None:
        report.decrypted = authenticator.decrypted
    report.problems = sorted(report.problems + extra, key=problem_order)
    return report


def _check_unpositioned(conn: Connection, target: _Log, verifier: LogVerifier, extra: list[Problem]) -> None:
    """Committed events not in the log are fine while queued for a checkpoint, and tampering otherwise."""
    rows = conn.exec_driver_sql(target.sql(
        "SELECT e.seq, EXISTS (SELECT 1 FROM {s}.audit_pending x WHERE {jxe} x.seq = e.seq) "
        "FROM {s}.audit_event e WHERE {we} "
        "NOT EXISTS (SELECT 1 FROM {s}.audit_position x WHERE {jxe} x.seq = e.seq) ORDER BY e.seq"),
        target.params).all()
    for seq, queued in rows:
        if queued:
            verifier.report.pending += 1
        else:
            extra.append(Problem("unpositioned", "the event is in no checkpoint and not queued for one "
                                 "(inserted outside the appliance, or its queue entry was deleted)", seq=seq))
    orphans = conn.exec_driver_sql(target.sql(
        "SELECT x.seq FROM {s}.audit_pending x WHERE {wx} "
        "NOT EXISTS (SELECT 1 FROM {s}.audit_event e WHERE {jxe} e.seq = x.seq) ORDER BY x.seq"),
        target.params).scalars().all()
    for seq in orphans:
        extra.append(Problem("missing", "the event was deleted before its first checkpoint", seq=seq))


class _Authenticator:
    """Decrypts bodies under their data keys during `verify(decrypt=True)`; destroyed keys are skipped."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.keys: dict[str, keys.DataKey | None] = {}
        self.decrypted = 0

    def check(self, key_id, header, nonce, body, seq, position, extra: list[Problem]) -> None:
        if key_id not in self.keys:
            try:
                self.keys[key_id] = keys.load(self.conn, key_id)
            except keys.KeyDestroyed:
                self.keys[key_id] = None
            except keys.KeyUnavailable as exc:
                self.keys[key_id] = None
                extra.append(Problem("decrypt", str(exc), seq=seq, position=position))
        key = self.keys[key_id]
        if key is None:
            return
        try:
            key.aead.decrypt(nonce, body, header)
        except Exception:  # InvalidTag: the body is not what the appliance wrote under this header
            extra.append(Problem("decrypt", "the body does not decrypt under its data key with this header",
                                 seq=seq, position=position))
            return
        self.decrypted += 1


# -- export ---------------------------------------------------------------------------------------


class _Tree:
    """An RFC 9162 tree over leaf hashes held in memory, with every perfect subtree's root computed
    once, so that many inclusion and consistency proofs cost O(log n) each instead of O(n)."""

    def __init__(self, leaves: list[bytes]):
        self.size = len(leaves)
        self.levels = [leaves]
        while len(self.levels[-1]) > 1:
            level = self.levels[-1]
            self.levels.append([node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)])

    def root(self, start: int, end: int) -> bytes:
        size = end - start
        if size == 0:
            return EMPTY_ROOT
        if size & (size - 1) == 0 and start % size == 0:
            return self.levels[size.bit_length() - 1][start // size]
        k = 1 << ((size - 1).bit_length() - 1)
        return node_hash(self.root(start, start + k), self.root(start + k, end))

    def inclusion(self, index: int, size: int) -> list[bytes]:
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = 1 << ((end - start - 1).bit_length() - 1)
            if index < start + k:
                path.append(self.root(start + k, end))
                end = start + k
            else:
                path.append(self.root(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency(self, old: int, new: int) -> list[bytes]:
        if old in (0, new):
            return []
        return self._subproof(old, 0, new, True)

    def _subproof(self, old: int, start: int, end: int, whole: bool) -> list[bytes]:
        size = end - start
        if old == size:
            return [] if whole else [self.root(start, end)]
        k = 1 << ((size - 1).bit_length() - 1)
        if old <= k:
            return [*self._subproof(old, start, start + k, whole), self.root(start + k, end)]
        return [*self._subproof(old - k, start + k, end, False), self.root(start, start + k)]


def export(db: Database, tenant: str | None, out: Path, *, since: datetime | None = None,
           until: datetime | None = None, by: Principal | None = None) -> dict:
    """Write an evidence package for one log (see appliance/audit_verify.py); returns a summary.

    Without `since`/`until` the package holds the whole log and the verifier recomputes every root;
    with them it holds the events in that time window (widened to whole positions), each with an
    inclusion proof to the latest checkpoint, and consistency proofs between successive checkpoints.
    """
    checkpoint(db, tenant)
    with db.control() as conn:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # it appends its own event
        target = _log_of(conn, tenant)
        if target is None:
            raise AuditError(f"tenant {tenant!r} has no audit events yet")
        checkpoints = _checkpoints(conn, target)
        anchor = checkpoints[-1] if checkpoints else None
        complete = since is None and until is None
        first, last = _position_window(conn, target, since, until, anchor.size if anchor else 0)
        package: dict = {
            "format": PACKAGE_FORMAT,
            "exported_at": format_time(datetime.now(UTC)),
            "log": {"log_id": target.log_id, "tenant": target.tenant, "live": target.live},
            "range": {"complete": complete, "since": since and format_time(since),
                      "until": until and format_time(until), "first_position": first, "last_position": last,
                      "anchor_size": anchor.size if anchor else 0},
            "checkpoints": [c.to_json() for c in checkpoints],
            "consistency_proofs": [],
            "events": [],
            "data_keys": [],
        }
        introductions, chain_keys = key_introductions(conn)
        package["key_introductions"] = introductions
        package["public_keys"] = {k: _b64(v) for k, v in
                                  _public_keys(conn, {c.key_id for c in checkpoints} | chain_keys).items()}
        tree = None
        if not complete and anchor is not None:
            tree = _Tree(_leaf_hashes(conn, target, anchor.size))
            package["consistency_proofs"] = [
                {"from": a.size, "to": b.size, "proof": [h.hex() for h in tree.consistency(a.size, b.size)]}
                for a, b in itertools.pairwise(checkpoints)]
        key_ids: set[str] = set()
        for row in _event_rows(conn, target, first, last):
            if not row.present:  # the log names this event but its row is gone: say so, as verify does
                package["events"].append({"position": row.position, "seq": row.seq, "missing": True})
                continue
            package["events"].append(_package_item(target, row, tree, anchor))
            key_ids.add(row.key_id)
        if tree is not None and first <= last:
            # The events just outside the window, proven in the log like those inside: their times show the
            # window was not cut short — an export that left out the first or last event of the period would
            # have to present that event as the edge, and its time would give it away. Their bodies stay
            # sealed (no data key is sent for them alone).
            package["edges"] = [{"side": side, **_package_item(target, row, tree, anchor)}
                                for side, at in (("before", first - 1), ("after", last + 1))
                                if 0 <= at < anchor.size for row in _event_rows(conn, target, at, at) if row.present]
        if complete:
            package["unpositioned"] = _unpositioned(conn, target)
            key_ids |= {item.pop("key") for item in package["unpositioned"]}
        sealed = keys.sealed_copies(conn, sorted(key_ids))
        package["data_keys"] = [{"key": key_id, "seals": [{"regulator": s["regulator"], "sealed": _b64(s["sealed"])}
                                                          for s in seals]} for key_id, seals in sealed.items()]
        append(conn, tenant=None, principal=by, event_type="audit.export", action="E",
               detail={"tenant": target.tenant, "log": target.log_id, "events": len(package["events"]),
                       "since": package["range"]["since"], "until": package["range"]["until"]})
    # Owner-only, as a backup is: the bodies are sealed, but the headers say when what kind of act was done,
    # and to which (pseudonymous) patient.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file that was there before keeps its mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as written:
        written.write(json.dumps(package, separators=(",", ":")))
    return {"log_id": target.log_id, "tenant": target.tenant, "events": len(package["events"]),
            "checkpoints": len(checkpoints), "path": str(out)}


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def key_introductions(conn: Connection) -> tuple[list[dict], set[str]]:
    """Every rotation of the checkpoint key, as a package carries it: the event in the appliance's log,
    the first checkpoint over it (signed by the key rotated out) and its inclusion proof; and the ids of
    the keys these name, whose public halves the package must carry too."""
    target = _control_log(keys.appliance_log_id(conn), None, True)
    rows = conn.exec_driver_sql(target.sql(
        "SELECT p.position, p.seq, {t} AS at, e.event_type, e.key_id, e.patient_ref, e.nonce, e.body, e.leaf_hash "
        "FROM {s}.audit_position p JOIN {s}.audit_event e ON {jep} e.seq = p.seq "
        "WHERE {wp} starts_with(e.event_type, %(kind)s) ORDER BY p.position"),
        {**target.params, "kind": KEY_INTRODUCTION + ":"}).all()
    rows = [row for row in rows if introduced_key(row.event_type) is not None]
    if not rows:
        return [], set()
    checkpoints = _checkpoints(conn, target)
    anchors = {row.position: next((c for c in checkpoints if c.size > row.position), None) for row in rows}
    sizes = [anchor.size for anchor in anchors.values() if anchor is not None]
    tree = _Tree(_leaf_hashes(conn, target, max(sizes))) if sizes else None
    items: list[dict] = []
    named: set[str] = set()
    for row in rows:
        anchor = anchors[row.position]
        if anchor is None:
            continue  # not yet under a checkpoint: the rotation that wrote it did not complete
        items.append({**_package_item(target, row, tree, anchor), "checkpoint": anchor.to_json()})
        named |= {anchor.key_id, introduced_key(row.event_type)}
    return items, named


def _package_item(target: _Log, row, tree: _Tree | None, anchor: Checkpoint | None) -> dict:
    """One event of an evidence package: its header, sealed body and hash, and (a partial package) its
    inclusion proof to the anchor checkpoint."""
    item = {"position": row.position, "seq": row.seq,
            "header": event_header(log_id=target.log_id, tenant=target.tenant, seq=row.seq, time=row.at,
                                   event_type=row.event_type, key_id=row.key_id,
                                   patient_ref=row.patient_ref).decode("ascii"),
            "nonce": _b64(row.nonce), "body": _b64(row.body), "hash": row.leaf_hash.hex()}
    if tree is not None:
        item["proof"] = [h.hex() for h in tree.inclusion(row.position, anchor.size)]
    return item


def _position_window(conn: Connection, target: _Log, since, until, anchor_size: int) -> tuple[int, int]:
    if since is None and until is None:
        # Everything with a position, even past the last checkpoint (which only tampering produces),
        # so that the offline verifier sees what the database holds.
        last = conn.exec_driver_sql(target.sql("SELECT max(position) FROM {s}.audit_position WHERE {w} true"),
                                    target.params).scalar()
        return 0, -1 if last is None else last
    first, last = conn.exec_driver_sql(target.sql(
        "SELECT min(p.position), max(p.position) FROM {s}.audit_position p JOIN {s}.audit_event e ON {jep} "
        "e.seq = p.seq WHERE {wp} p.position < %(anchor)s AND e.recorded >= %(since)s AND e.recorded < %(until)s"),
        {**target.params, "anchor": anchor_size, "since": since or datetime.min.replace(tzinfo=UTC),
         "until": until or datetime.max.replace(tzinfo=UTC)}).one()
    if first is None:
        return 0, -1
    return first, last


def _leaf_hashes(conn: Connection, target: _Log, size: int) -> list[bytes]:
    rows = conn.exec_driver_sql(target.sql(
        "SELECT e.leaf_hash FROM {s}.audit_position p JOIN {s}.audit_event e ON {jep} e.seq = p.seq "
        "WHERE {wp} p.position < %(size)s ORDER BY p.position"), {**target.params, "size": size})
    return list(rows.scalars())


def _unpositioned(conn: Connection, target: _Log) -> list[dict]:
    """Events the log has not taken in: queued ones are waiting for a checkpoint; others were inserted
    behind the appliance's back. An export carries both, so the offline verifier sees them too."""
    rows = conn.exec_driver_sql(target.sql(
        "SELECT e.seq, {t} AS at, e.event_type, e.key_id, e.patient_ref, e.nonce, e.body, e.leaf_hash, "
        "EXISTS (SELECT 1 FROM {s}.audit_pending x WHERE {jxe} x.seq = e.seq) AS queued "
        "FROM {s}.audit_event e WHERE {we} NOT EXISTS (SELECT 1 FROM {s}.audit_position x WHERE {jxe} x.seq = e.seq) "
        "ORDER BY e.seq"), target.params)
    return [{"seq": row.seq, "queued": row.queued, "key": row.key_id,
             "header": event_header(log_id=target.log_id, tenant=target.tenant, seq=row.seq, time=row.at,
                                    event_type=row.event_type, key_id=row.key_id,
                                    patient_ref=row.patient_ref).decode("ascii"),
             "nonce": _b64(row.nonce), "body": _b64(row.body), "hash": row.leaf_hash.hex()} for row in rows]


def _event_rows(conn: Connection, target: _Log, first: int, last: int) -> Iterator:
    return conn.exec_driver_sql(target.sql(
        "SELECT p.position, p.seq, e.seq IS NOT NULL AS present, {t} AS at, e.event_type, e.key_id, e.patient_ref, "
        "e.nonce, e.body, e.leaf_hash FROM {s}.audit_position p LEFT JOIN {s}.audit_event e ON {jep} e.seq = p.seq "
        "WHERE {wp} p.position BETWEEN %(first)s AND %(last)s ORDER BY p.position"),
        {**target.params, "first": first, "last": last},
        execution_options={"stream_results": True, "max_row_buffer": 5000})


# -- reading events back --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessEntry:
    """One line of a patient's access log: who, when, what kind of access, where, and whether it was
    break-the-glass. Holds patient data: show it to that patient (and the regulator), log it nowhere."""

    seq: int
    recorded: datetime
    event_type: str
    action: str
    outcome: str
    who: dict
    facility: dict
    break_the_glass: bool
    purpose_of_use: str | None = None
    reason: str | None = None
    detail: dict = field(default_factory=dict)


def patient_access_log(db: Database, tenant: str, patient_id) -> list[AccessEntry]:
    """Every event about one patient in one tenant's live log, oldest first, decrypted."""
    with db.control() as conn:
        target = _log_of(conn, tenant)
        if target is None or not target.live:
            return []
        data_keys = [k for k in keys.log_keys(conn, target.log_id) if isinstance(k, keys.DataKey)]
        name = conn.execute(sa.text("SELECT name FROM control.tenant WHERE slug = :s"), {"s": tenant}).scalar()
    refs = {key.patient_ref(patient_id): key for key in data_keys}
    if not refs:
        return []
    with db.tenant(tenant) as conn:
        rows = conn.exec_driver_sql(
            f"SELECT e.seq, e.recorded, {_TIME_SQL} AS at, e.event_type, e.key_id, e.patient_ref, e.nonce, "  # noqa: S608 -- constants only
            "e.body FROM audit_event e WHERE e.patient_ref = ANY(%(refs)s) ORDER BY e.recorded, e.seq",
            {"refs": list(refs)}).all()
    entries = []
    for row in rows:
        key = refs[row.patient_ref]
        if key.key_id != row.key_id:
            continue  # a reference under another key that happens to collide: not this patient
        header = event_header(log_id=target.log_id, tenant=tenant, seq=row.seq, time=row.at,
                              event_type=row.event_type, key_id=row.key_id, patient_ref=row.patient_ref)
        event = decrypt_body(key.material, header, row.nonce, row.body)
        entries.append(_access_entry(row.seq, row.recorded, row.event_type, event, tenant, name))
    return entries


def _access_entry(seq: int, recorded: datetime, event_type: str, event: dict, tenant: str, name: str | None):
    agent = (event.get("agent") or [{}])[0]
    who = agent.get("who") or {}
    purposes = [p.get("code") for p in event.get("purposeOfUse") or []]
    purpose = purposes[0] if purposes else None
    detail = event.get("detail") or {}
    return AccessEntry(
        seq=seq, recorded=recorded, event_type=event_type, action=event.get("action", ""),
        outcome=event.get("outcomeDesc", ""),
        who={"name": who.get("name") or who.get("display"), "role": who.get("role"), "kind": who.get("kind"),
             "account": who.get("account")},
        facility={"tenant": tenant, "name": name}, break_the_glass=BREAK_THE_GLASS in purposes,
        purpose_of_use=purpose, reason=detail.get("reason") if isinstance(detail, dict) else None,
        detail=detail if isinstance(detail, dict) else {})


def read_events(db: Database, tenant: str | None, *, first_seq: int = 0, event_type: str | None = None,
                since: datetime | None = None) -> list[dict]:
    """Decrypted events of a log from `first_seq` on (of one type, recorded since a time, when asked:
    both are in the clear header, so only those bodies are decrypted), for operators' tools, the
    regulator's review and tests; bodies whose key was destroyed come back with `"event": None`."""
    with db.control() as conn:
        target = _log_of(conn, tenant)
        if target is None:
            return []
        rows = conn.exec_driver_sql(target.sql(
            "SELECT e.seq, e.recorded, {t} AS at, e.event_type, e.key_id, e.patient_ref, e.nonce, e.body "
            "FROM {s}.audit_event e WHERE {we} e.seq >= %(first)s "
            "AND (%(type)s::text IS NULL OR e.event_type = %(type)s) "
            "AND (%(since)s::timestamptz IS NULL OR e.recorded >= %(since)s) ORDER BY e.seq"),
            {**target.params, "first": first_seq, "type": event_type, "since": since}).all()
        found: dict[str, keys.DataKey | None] = {}
        events = []
        for row in rows:
            if row.key_id not in found:
                try:
                    found[row.key_id] = keys.load(conn, row.key_id)
                except keys.KeyDestroyed:
                    found[row.key_id] = None
            key = found[row.key_id]
            header = event_header(log_id=target.log_id, tenant=target.tenant, seq=row.seq, time=row.at,
                                  event_type=row.event_type, key_id=row.key_id, patient_ref=row.patient_ref)
            body = decrypt_body(key.material, header, row.nonce, row.body) if key is not None else None
            events.append({"seq": row.seq, "time": row.at, "recorded": row.recorded, "type": row.event_type,
                           "key": row.key_id, "patient_ref": row.patient_ref, "event": body})
    return events


BREAK_THE_GLASS_EVENT = "record.chart.break_glass"


def break_the_glass_accesses(db: Database, since: datetime) -> list[AccessEntry]:
    """Every chart opened by break-the-glass at any live facility since `since`, newest first: who,
    where, the reason they gave, and the patient only as the log's keyed reference (no name). For the
    regulator's review; the caller records that it was read."""
    with db.control() as conn:
        facilities = conn.execute(sa.text("SELECT slug, name FROM control.tenant WHERE status = 'active' "
                                          "ORDER BY slug")).all()
    entries = []
    for slug, name in facilities:
        for item in read_events(db, slug, event_type=BREAK_THE_GLASS_EVENT, since=since):
            if item["event"] is None:
                continue
            entry = _access_entry(item["seq"], item["recorded"], item["type"], item["event"], slug, name)
            entries.append(replace(entry, detail={**entry.detail, "patient_ref": item["patient_ref"]}))
    return sorted(entries, key=lambda e: e.recorded, reverse=True)


# -- key operations -------------------------------------------------------------------------------


def rotate_key(db: Database, tenant: str | None = None, *, principal: Principal | None = None) -> keys.DataKey:
    """A new data key for the log: new events use it at once (every process), old ones keep theirs."""
    with db.control() as conn:
        if tenant is not None and not _tenant_active(conn, tenant):
            raise UnknownTenant(tenant)
        key = keys.create_key(conn, tenant)
        append(conn, tenant=None, principal=principal, event_type="audit.key.rotate", action="C",
               detail={"tenant": tenant, "log": key.log_id, "key": key.key_id, "generation": key.generation})
    return key


@dataclass(frozen=True)
class SigningKeyRotation:
    old_key: str
    new_key: str
    seq: int  # the rotation event, in the appliance's log
    checkpoint_size: int  # the appliance log's checkpoint over it, signed by the old key
    finished_interrupted: bool = False  # recorded by an earlier run that stopped before the key was in place


_SIGNING_KEY_ROTATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('healthos.audit.signing_key.rotate'))"


def rotate_signing_key(db: Database, *, principal: Principal | None = None) -> SigningKeyRotation:
    """Move checkpoint signing to a new key. In one control transaction: the rotation event, naming the
    new key, is appended to the appliance's log and checkpointed with the old key, and the new key is
    made current; then the new key takes the old one's place in keys/ (the old public half is kept).
    The appliance log's checkpoint lock keeps any other signer out between the two.

    A rotation that stopped between the two (its transaction committed, the new key still the next one in
    keys/) is finished by the next call, which then rotates no further: the operator who runs the command
    again after a crash asked for one rotation, not two."""
    keyring = keys.keyring_for(db)
    with db.control() as conn:
        conn.execute(sa.text(_SIGNING_KEY_ROTATION_LOCK))
        rotation = _interrupted_rotation(conn, keyring) or _record_signing_key_rotation(conn, keyring, principal)
    keyring.promote_next_signing_key()
    log.info("audit_signing_key_rotated", old_key=rotation.old_key, new_key=rotation.new_key,
             finished_interrupted=rotation.finished_interrupted)
    return rotation


def _record_signing_key_rotation(conn: Connection, keyring: keys.Keyring,
                                 principal: Principal | None) -> SigningKeyRotation:
    """The committed half of a rotation (caller's transaction, under the rotation lock): the event, the
    old key's checkpoint over it, and the new key made current in the database."""
    _follow_current_signer(conn, keyring)
    old_key = keyring.signing_key_id
    new_raw = keyring.next_signing_key_raw()
    new_key = key_id_of(new_raw)
    seq = append(conn, tenant=None, principal=principal, event_type=key_introduction_type(new_key), action="C",
                 detail={"old_key": old_key, "new_key": new_key, "public_key": new_raw.hex()})
    signed = _checkpoint_log(conn, _control_log(keys.appliance_log_id(conn), None, True))
    if signed is None or signed.key_id != old_key:
        raise AuditError("the rotation could not be signed by the key it rotates out; nothing was changed")
    # clock_timestamp, not now(): the old key may have been registered by this very transaction.
    conn.execute(sa.insert(keys.audit_signing_key).values(key_id=new_key, public_key=new_raw,
                                                          created_at=sa.func.clock_timestamp()))
    return SigningKeyRotation(old_key, new_key, seq, signed.size)


def _interrupted_rotation(conn: Connection, keyring: keys.Keyring) -> SigningKeyRotation | None:
    """The rotation the database records as done while this node's keys/ still holds its key as the next
    one (the run stopped after its commit), as it was recorded; None when there is none to finish."""
    newest = conn.execute(sa.select(keys.audit_signing_key.c.key_id)
                          .order_by(keys.audit_signing_key.c.created_at.desc()).limit(2)).scalars().all()
    if len(newest) < 2 or keyring.pending_signing_key_id() != newest[0]:
        return None
    current, previous = newest
    target = _control_log(keys.appliance_log_id(conn), None, True)
    recorded = conn.exec_driver_sql(target.sql(
        "SELECT e.seq, (SELECT min(c.tree_size) FROM {s}.audit_checkpoint c WHERE c.log_id = p.log_id "
        "AND c.tree_size > p.position) AS checkpoint_size FROM {s}.audit_event e "
        "JOIN {s}.audit_position p ON {jep} p.seq = e.seq WHERE {we} e.event_type = %(type)s "
        "ORDER BY e.seq DESC LIMIT 1"), {**target.params, "type": key_introduction_type(current)}).first()
    if recorded is None or recorded.checkpoint_size is None:
        return None  # made current without its signed introduction: not a rotation this code would finish
    return SigningKeyRotation(previous, current, recorded.seq, recorded.checkpoint_size, finished_interrupted=True)


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    public_key: bytes
    since: datetime  # registered: it signs from then
    until: datetime | None  # its successor's registration; None for the current key

    @property
    def pem(self) -> bytes:
        return keys.ed25519_public_pem(self.public_key)


def signing_keys(db: Database) -> list[SigningKey]:
    """Every checkpoint key this appliance signed with, oldest first, each with its period."""
    with db.control() as conn:
        rows = conn.execute(sa.select(keys.audit_signing_key.c.key_id, keys.audit_signing_key.c.public_key,
                                      keys.audit_signing_key.c.created_at)
                            .order_by(keys.audit_signing_key.c.created_at)).all()
    return [SigningKey(row.key_id, row.public_key, row.created_at, following.created_at if following else None)
            for row, following in itertools.zip_longest(rows, rows[1:])]


def register_regulator(db: Database, public_key: bytes, label: str, *,
                       principal: Principal | None = None) -> tuple[str, int]:
    """Register a regulator's X25519 public key and seal every live data key to it."""
    public = keys.load_regulator_public_key(public_key)
    regulator_id = keys.regulator_key_id(public)
    with db.control() as conn:
        # The event first: on a new appliance it makes the appliance log's first key (on a side
        # connection, before this transaction takes the regulators' lock), which is then sealed too.
        append(conn, tenant=None, principal=principal, event_type="audit.regulator_key.register", action="C",
               detail={"regulator_key": regulator_id, "label": label})
        regulator_id, sealed = keys.register_regulator(conn, public, label)
    return regulator_id, sealed


def retire_tenant(conn: Connection, slug: str) -> None:
    """Part of dropping a tenant (tenancy.drop_tenant, in its transaction, before the schema goes):
    checkpoint what is waiting, move the log into `control` where it stays verifiable, and destroy the
    tenant's data keys, so its audit bodies can no longer be read by anyone (crypto-shredding)."""
    schema = tenant_schema(slug)
    forget_tenant_blocks(slug)
    logs = _logs_of(conn, slug)
    live = logs[-1] if logs and logs[-1].live else None
    archived = 0
    if live is not None and conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f'"{schema}".audit_event'}).scalar():
        # Wait for appends in flight and keep new ones out, so the archive is the whole log.
        conn.exec_driver_sql(f'LOCK TABLE "{schema}".audit_event IN SHARE MODE')
        try:
            with conn.begin_nested():
                _checkpoint_log(conn, live)
        except AuditIntegrityError:
            # A tampered log is archived as it stands, what is waiting still queued: the evidence of
            # the tampering is kept, and the tenant can still be dropped.
            log.error("audit_log_archived_unsigned", log=live.log_id, tenant=slug)
        params = {"log": live.log_id}
        conn.exec_driver_sql(f'INSERT INTO control.audit_pending (log_id, seq) '  # noqa: S608 -- validated slug
                             f'SELECT %(log)s, seq FROM "{schema}".audit_pending', params)
        archived = conn.exec_driver_sql(
            f"INSERT INTO control.audit_event (log_id, seq, recorded, event_type, key_id, patient_ref, nonce, body, "  # noqa: S608 -- validated slug
            f'leaf_hash) SELECT %(log)s, seq, recorded, event_type, key_id, patient_ref, nonce, body, leaf_hash '
            f'FROM "{schema}".audit_event', params).rowcount
        conn.exec_driver_sql(f'INSERT INTO control.audit_position (log_id, position, seq) '  # noqa: S608
                             f'SELECT %(log)s, position, seq FROM "{schema}".audit_position', params)
        conn.exec_driver_sql(
            f"INSERT INTO control.audit_checkpoint (log_id, tree_size, root_hash, signed_at, signing_key_id, "  # noqa: S608
            f'signature, edge) SELECT %(log)s, tree_size, root_hash, signed_at, signing_key_id, signature, edge '
            f'FROM "{schema}".audit_checkpoint', params)
    destroyed: list[str] = []
    for entry in logs:
        destroyed += keys.destroy_log_keys(conn, entry.log_id)
    if live is not None:
        conn.execute(sa.update(keys.audit_log).where(keys.audit_log.c.log_id == live.log_id)
                     .values(closed_at=sa.func.now()))
    append(conn, tenant=None, principal=None, event_type="tenant.drop", action="D",
           detail={"tenant": slug, "log": live.log_id if live else None, "events_archived": archived,
                   "data_keys_destroyed": destroyed})


# -- helpers --------------------------------------------------------------------------------------


@contextlib.contextmanager
def running_checkpointer(db: Database, **options) -> Iterator[Checkpointer]:
    """The checkpointer for the length of a `with` block (tests, jobs)."""
    checkpointer = start_checkpointer(db, **options)
    try:
        yield checkpointer
    finally:
        checkpointer.stop()

