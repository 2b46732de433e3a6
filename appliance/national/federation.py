"""Federation: appliances in different hospitals report to a ministry's appliance by signed aggregate
packages — a file carried across for an air-gapped site — never by rows.

A package is one month of one appliance's published figures: what `indicators.gather` counted at its
facilities, after each facility's disclosure rule, and nothing else (no slug, no patient, no row). It is
signed with the appliance's Ed25519 key (the one that signs its audit checkpoints), over a statement
with its own prefix so that a package signature can never pass for a checkpoint's. The receiving
appliance accepts a package only from an appliance whose public key an operator registered
(`healthos national peer add`), only when its age bands are the receiving appliance's own (a cell means
the same thing on both sides, and the cells add up to the total), and only when its figures obey the
receiver's disclosure threshold: a published count under the threshold, or a facility breakdown with a single
withheld cell beside a published total (which the total would reveal), is refused. A newer package
for the same appliance and month replaces the older; every export, push (sent, or not sent and why),
registration and receipt is in the appliance's audit log.

The list of indicators may differ, because a national rollout upgrades the ministry's appliance and each
hospital's weeks apart. A package from an appliance that does not yet count an indicator is received, and
that indicator is "not reported" for its facilities (no figure, never a zero: see `indicators`); one that
counts indicators this appliance does not know is received for those both know, the others kept as sent
(they too obey the disclosure rule) but not read. The receipt, the audit event and `reports` name both.
A package held from before the definitions grew reads the same way, so an upgrade loses no month.

Each facility of a package says the month it records from (`recording_since`), and a package leaves out its
facilities not recording yet in its month (`indicators.records_in`), so the ministry never sends DHIS2 zeros for a
month the facility kept its records elsewhere; a package naming one of them for a month before it is refused. A
package made before packages said it reads as it always did: its facilities recording in every month it names.

Nor does a change of age bands or a raised threshold lose a month held: a held package is read under the
age bands it was published with (the band codes its cells carry, as they are kept) and under this
appliance's threshold now, by the rule `indicators` states — a count under a raised threshold is
withheld, with the cell that would reveal it; its facility's total and totals by sex count as before;
its cells in bands still defined count there, those of bands no longer defined are kept apart, and a
band it did not have reads "published under earlier age bands" for its facility. `reports` says, for
each package, the age bands it was read under and how many of its counts the raised threshold withholds,
and names any package that cannot be read at all with the reason, for its facilities are then missing
from every figure.

An appliance may rotate its signing key (`healthos audit rotate-signing-key`); its packages then carry
the proof an audit evidence package carries (`key_introductions`: each rotation event under the checkpoint
of the key it rotated out, with its inclusion proof, and the public halves they name). A package signed by
a key not registered here is accepted when, and only when, that proof leads to its key from a key
registered here, each rotation signed by the key before it — `audit_verify.follow_introductions`, the
offline verifier's own rule — and its key was not itself rotated out, and the package is not dated before
the rotation that introduced its key. The peer's registered key is then replaced by the new one (in the
transaction that keeps the package: its earlier packages follow it), so its next package needs no proof;
the old key is no longer accepted (a key is rotated out after a suspected compromise), and the change is
an audit event (`national.peer.rekey`) that `healthos national peer list` shows. Any other key stays
refused, with the reason its proof failed.

Where a link exists the same package travels over HTTPS instead of on a stick: `push_package` posts it
to the ministry's appliance (`PACKAGES_PATH`, which hands it to the same `receive_package`), verifying
the ministry's certificate. The package's own signature is what the ministry trusts, as with a file;
TLS keeps the figures private on the way and makes sure they reach the ministry and no one else.
`send_package` is that push with its outcome audited after it is known.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance import audit_verify
from appliance.audit_verify import key_id_of
from appliance.national.indicators import (
    SEXES,
    Definitions,
    Facility,
    IndicatorError,
    Period,
    Published,
    begun_anywhere,
    gather,
    recording,
    records_in,
    withhold_published,
)
from appliance.substrate import audit, keys
from appliance.substrate.db import Database, control_metadata
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import list_tenants, register_org_units_held_elsewhere

log = structlog.get_logger(__name__)

PACKAGE_FORMAT = "healthos-national-package/1"
_SIGNED_PREFIX = b"healthos national aggregate package/1\n"
# How far ahead of this appliance's clock a package's production time may be (clocks drift apart).
CLOCK_SLACK = dt.timedelta(hours=1)
# Where an appliance receives packages over HTTPS.
PACKAGES_PATH = "/api/national/packages"
_FACILITY_FIELDS = ("org_unit", "name", "facility_type", "district", "region")

national_peer = sa.Table(
    "national_peer", control_metadata,
    sa.Column("key_id", sa.Text(), primary_key=True),
    sa.Column("name", sa.Text(), nullable=False, unique=True),
    sa.Column("public_key", sa.LargeBinary(), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("length(public_key) = 32", name="national_peer_key_is_ed25519"),
)

national_package = sa.Table(
    "national_package", control_metadata,
    sa.Column("key_id", sa.Text(), sa.ForeignKey("control.national_peer.key_id"), primary_key=True),
    sa.Column("period", sa.Text(), primary_key=True),
    sa.Column("produced_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sha256", sa.Text(), nullable=False),
    sa.Column("facilities", postgresql.JSONB(), nullable=False),
    sa.CheckConstraint("period ~ '^[0-9]{4}-[0-9]{2}$'", name="national_package_period_is_a_month"),
)


class PackageError(ValueError):
    """A package, a peer's key or a peer registration is refused; the message says why. `status` is the
    HTTP status the receiving route answers with: a malformed package (422) is not sent again as it is."""

    status = 422


class PackageNotTrusted(PackageError):
    """The package is not signed by a registered appliance's key: its signature is its only credential,
    so the sender must register (or stop altering it), not correct the figures."""

    status = 403


class PackageConflict(PackageError):
    """The package is sound but clashes with what is held: a later package of the same month, or a
    facility another appliance (or this one) already counts. Sending it again changes nothing."""

    status = 409


class NothingToSend(ValueError):
    """No facility of this appliance records in the month asked (each records from its `recording_since`, or there
    is none yet): a package of it would hold no facility, which a ministry refuses, so none is made. Not a fault:
    a new appliance's first month, pushed by its monthly timer, meets it."""


class PushError(RuntimeError):
    """A package sent over HTTPS did not arrive, or the receiving appliance refused it; the message says why."""


@dataclass(frozen=True)
class Peer:
    key_id: str
    name: str
    registered_at: dt.datetime


@dataclass(frozen=True)
class Report:
    """What a peer sent for one month, if anything; `not_counted`: this appliance's indicators its package
    does not count (its appliance is on an earlier version of the definitions); `earlier_bands`: the age
    bands it was published under, where they are no longer this appliance's; `withheld_by_raised_threshold`:
    how many counts it published that this appliance's threshold, raised since, withholds; `unreadable`:
    why it cannot be read at all (its facilities are then missing from every figure), else None."""

    peer: Peer
    produced_at: dt.datetime | None = None
    received_at: dt.datetime | None = None
    facilities: int = 0
    not_counted: tuple[str, ...] = ()
    earlier_bands: tuple[str, ...] = ()
    withheld_by_raised_threshold: int = 0
    unreadable: str | None = None


@dataclass(frozen=True)
class KeyChange:
    """A peer's key replaced on receipt of a package proving its rotation: `old_key` registered before,
    `new_key` from then on, `seq` the (last) rotation's event in the peer's appliance log, `at` when
    this appliance recorded the change."""

    name: str
    old_key: str
    new_key: str
    seq: int
    at: str


@dataclass(frozen=True)
class _ProvenRotation:
    """A registered peer (its row as held, locked) whose key introduced the package's, link by link."""

    peer: sa.Row
    introductions: tuple[audit_verify.KeyIntroduction, ...]  # from the registered key to the package's


@dataclass(frozen=True)
class Receipt:
    """A package received: `not_counted` names this appliance's indicators it lacks (not reported for its
    facilities), `ignored` the indicators it counts that this appliance does not know."""

    peer: str
    period: Period
    facilities: int
    replaced: bool
    not_counted: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


# -- the package --------------------------------------------------------------------------------


def _cell_key(cell: tuple[str, str]) -> str:
    return f"{cell[0]}|{cell[1]}"


def _statement(body: dict) -> bytes:
    return _SIGNED_PREFIX + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def make_package(facilities: list[Facility], period: Period, definitions: Definitions, keyring: keys.Keyring,
                 produced_at: dt.datetime | None = None, key_proof: dict | None = None) -> dict:
    """The signed package of these facilities' published figures for the month; `key_proof` (from
    `key_proof`) proves its key descends from the one the ministry registered, after a rotation."""
    body = {
        "format": PACKAGE_FORMAT,
        "period": period.value,
        "produced_at": (produced_at or dt.datetime.now(dt.UTC)).isoformat(),
        "public_key": base64.b64encode(keyring.public_key_raw()).decode(),
        "threshold": definitions.threshold,
        "indicators": [indicator.id for indicator in definitions.indicators],
        "age_bands": [band.code for band in definitions.age_bands],
        "facilities": [
            {**{name: getattr(facility, name) for name in _FACILITY_FIELDS},
             **({"recording_since": facility.recording_since.value} if facility.recording_since else {}),
             "figures": {indicator_id: {"total": figure.total,
                                        "cells": {_cell_key(cell): value for cell, value in figure.cells.items()}}
                         for indicator_id, figure in facility.figures.items()}}
            # A facility not recording yet in the month is left out: a receiver takes every facility of a
            # package as counted, and one of an earlier version would read it as figures missing.
            for facility in recording(facilities)],
        **(key_proof or {}),
    }
    return {**body, "signature": base64.b64encode(keyring.sign(_statement(body))).decode()}


def export_package(db: Database, period: Period, definitions: Definitions, *, principal: Principal | None = None,
                   progress: Callable[[str], None] | None = None) -> dict:
    """This appliance's own facilities' month, signed, for the ministry's appliance; its export recorded in
    the appliance's audit log (whether it then leaves as a file or over HTTPS, which `send_package` records).
    Figures received from other appliances are never passed on."""
    facilities = gather(db, period, definitions, progress=progress)
    if not recording(facilities):
        raise NothingToSend(_nothing_recorded(facilities, period))
    package = make_package(facilities, period, definitions, keys.keyring_for(db), key_proof=key_proof(db))
    with db.control() as conn:
        audit.append(conn, tenant=None, principal=principal, event_type="national.package.export", action="E",
                     detail={"period": period.value, "facilities": len(package["facilities"])})
    return package


def _nothing_recorded(facilities: list[Facility], period: Period) -> str:
    if not facilities:
        return "this appliance has no facility yet, so there is nothing to send"
    first = min(facility.recording_since for facility in facilities if facility.recording_since is not None)
    return (f"no facility of this appliance records in {period.label} (the first records from {first.label}), "
            "so there is nothing to send for that month")


def send_package(db: Database, package: dict, address: str, *, ca_file: Path | None = None,
                 principal: Principal | None = None, timeout: float = 120) -> dict:
    """`push_package`, with what happened recorded in the appliance's audit log once it is known: the package
    sent and received (`national.package.push`), or not sent, with the reason (the same event, outcome
    failure), so the trail never reads as sent a package that did not arrive. Raises PushError as it does."""
    url = packages_url(address)
    detail = {"period": package["period"], "produced_at": package["produced_at"],
              "facilities": len(package["facilities"]), "to": url}
    try:
        receipt = push_package(package, url, ca_file=ca_file, timeout=timeout)
    except PushError as exc:
        with db.control() as conn:
            audit.append(conn, tenant=None, principal=principal, event_type="national.package.push", action="E",
                         outcome="failure", detail={**detail, "reason": str(exc)})
        raise
    with db.control() as conn:
        audit.append(conn, tenant=None, principal=principal, event_type="national.package.push", action="E",
                     detail={**detail, "replaced": bool(receipt.get("replaced"))})
    return receipt


def key_proof(db: Database) -> dict:
    """How this appliance's signing key descends from its first, as an audit evidence package proves it:
    every rotation (its event, the rotated-out key's checkpoint over it, the inclusion proof) and the
    public halves of the keys they name. Empty before any rotation, so the package is as it always was."""
    with db.control() as conn:
        # The substrate's own reading of the rotations, the one `audit.export` puts in evidence packages
        # (private there for now: audit.py is not this change's to edit).
        introductions, named = audit.key_introductions(conn)
        if not introductions:
            return {}
        halves = conn.execute(sa.select(keys.audit_signing_key.c.key_id, keys.audit_signing_key.c.public_key)
                              .where(keys.audit_signing_key.c.key_id.in_(sorted(named)))).all()
    return {"key_introductions": introductions,
            "public_keys": {key_id: base64.b64encode(raw).decode() for key_id, raw in halves}}


def packages_url(address: str) -> str:
    """Where the appliance at `address` receives packages; refused unless it is an https:// address."""
    address = address.strip()
    scheme, _, rest = address.partition("://")
    if scheme.lower() != "https" or not rest.strip("/"):
        raise PushError(f"{address!r} is not an https:// address: a package leaves only encrypted, to an "
                        "appliance whose certificate is verified (e.g. https://ministry.example)")
    address = address.rstrip("/")
    return address if address.endswith(PACKAGES_PATH) else address + PACKAGES_PATH


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would re-send (or drop) the package somewhere the operator did not name.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def push_package(package: dict, address: str, *, ca_file: Path | None = None, timeout: float = 120) -> dict:
    """Post a package to the appliance at `address` and return what it answered.

    Its certificate is verified against `ca_file` alone when given (the ministry's own CA), else
    against the system's store; a refusal or a failure to get there raises PushError naming it."""
    url = packages_url(address)
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise PushError(f"{ca_file} is not a CA certificate file ({exc})") from exc
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects())
    request = urllib.request.Request(  # noqa: S310 (packages_url let only https:// through)
        url, method="POST", data=json.dumps(package, ensure_ascii=False).encode(),
        headers={"content-type": "application/json", "accept": "application/json"})
    try:
        with opener.open(request, timeout=timeout) as response:
            answer = response.read()
    except urllib.error.HTTPError as exc:
        raise PushError(f"{url} refused the package: {_detail(exc)}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise PushError(f"{url}: its certificate could not be verified ({reason.verify_message}); give the "
                            "ministry's CA certificate with --ca-file, or check the address") from exc
        raise PushError(f"{url} could not be reached ({_failure(reason)}): check the address and the link to it") \
            from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:  # a timeout, a dropped connection
        raise PushError(f"{url} could not be reached ({_failure(exc)}): check the address and the link to it") \
            from exc
    try:
        receipt = json.loads(answer)
    except (UnicodeDecodeError, json.JSONDecodeError):
        receipt = None
    if not isinstance(receipt, dict):
        raise PushError(f"{url} answered, but not as a HealthOS appliance receiving a package does: check the address")
    return receipt


def _failure(reason: object) -> str:
    """Why a connection failed, in words: "Connection refused", not "[Errno 111] Connection refused"."""
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _detail(refusal: urllib.error.HTTPError) -> str:
    """The receiving appliance's sentence from a refusal, else its status."""
    try:
        detail = json.loads(refusal.read()).get("detail")
    except (OSError, ValueError, AttributeError):
        detail = None
    if 300 <= refusal.code < 400:
        return f"it redirects to {refusal.headers.get('location')}; give that address"
    return str(detail) if detail else f"{refusal.code} {refusal.reason}"


# -- peers ----------------------------------------------------------------------------------------


def load_public_key(data: bytes) -> bytes:
    """An appliance's public key as `healthos audit public-key` prints it (PEM), as raw 32 bytes."""
    try:
        return keys.ed25519_public_raw(data)
    except ValueError as exc:
        raise PackageError(f"{exc}; give what `healthos audit public-key` printed on the other appliance") from exc


def register_peer(db: Database, name: str, key_data: bytes, *, principal: Principal | None = None) -> Peer:
    """Accept packages signed by this key from now on, under this name."""
    name = " ".join(name.split())
    if not name:
        raise PackageError("give the appliance a name, e.g. the hospital or region it serves")
    raw = load_public_key(key_data)
    key_id = key_id_of(raw)
    if raw == keys.keyring_for(db).public_key_raw():
        raise PackageError("that is this appliance's own key; register the key of the appliance that sends packages")
    now = dt.datetime.now(dt.UTC)
    with db.control() as conn:
        clash = conn.execute(sa.select(national_peer.c.key_id, national_peer.c.name).where(
            (national_peer.c.key_id == key_id) | (national_peer.c.name == name))).first()
        if clash is not None:
            raise PackageConflict(f"already registered: key {clash.key_id} as {clash.name!r}")
        conn.execute(national_peer.insert().values(key_id=key_id, name=name, public_key=raw, registered_at=now))
        audit.append(conn, tenant=None, principal=principal, event_type="national.peer.register", action="C",
                     detail={"key_id": key_id, "name": name})
    return Peer(key_id, name, now)


def key_changes(db: Database) -> dict[str, KeyChange]:
    """Each peer's latest key change, by its name, as the audit log recorded it."""
    changes = {}
    for event in audit.read_events(db, None, event_type="national.peer.rekey"):
        detail = (event["event"] or {}).get("detail") or {}
        if {"name", "old_key", "new_key", "seq"} <= detail.keys():
            changes[detail["name"]] = KeyChange(detail["name"], detail["old_key"], detail["new_key"], detail["seq"],
                                                event["time"])
    return changes


def peers(db: Database) -> list[Peer]:
    with db.control() as conn:
        rows = conn.execute(sa.select(national_peer.c.key_id, national_peer.c.name, national_peer.c.registered_at)
                            .order_by(national_peer.c.name)).all()
    return [Peer(*row) for row in rows]


# -- receiving ------------------------------------------------------------------------------------


def _parse(data: bytes) -> dict:
    try:
        package = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PackageError(f"the file is not a package: not JSON ({exc})") from exc
    if not isinstance(package, dict) or package.get("format") != PACKAGE_FORMAT:
        raise PackageError(f"the file is not a {PACKAGE_FORMAT} package")
    return package


def _check_signature(package: dict, public_key: bytes) -> None:
    body = {name: value for name, value in package.items() if name != "signature"}
    try:
        signature = base64.b64decode(package["signature"], validate=True)
    except (KeyError, TypeError, ValueError):
        signature = b""
    if not keys.ed25519_signature_ok(public_key, signature, _statement(body)):
        raise PackageNotTrusted("the package's signature does not verify: it was altered after it was signed, "
                           "or not signed by the registered appliance")


def _figure(figure: object, cells: list[tuple[str, str]], where: str, *, bands_are: str) -> Published:
    """A package's figure as it was sent, its cells exactly `cells` (`bands_are` says whose) and its
    values counts or withheld."""
    if not isinstance(figure, dict) or not isinstance(figure.get("cells"), dict):
        raise PackageError(f"{where}: no figures")
    keys_wanted = {_cell_key(cell) for cell in cells}
    if set(figure["cells"]) != keys_wanted:
        raise PackageError(f"{where}: its cells are not {bands_are}")
    values = {cell: figure["cells"][_cell_key(cell)] for cell in cells}
    total = figure.get("total")
    for value in (total, *values.values()):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise PackageError(f"{where}: {value!r} is not a count")
    return Published(total, values)


def _published(figure: object, definitions: Definitions, where: str) -> Published:
    """A figure of a package being received: this appliance's cells, obeying its disclosure rule."""
    threshold = definitions.threshold
    published = _figure(figure, definitions.cells, where, bands_are="this appliance's sexes and age bands")
    total, values = published.total, published.cells
    for value in (total, *values.values()):
        if value is not None and 0 < value < threshold:
            raise PackageError(f"{where}: publishes a count of {value}, under this appliance's disclosure "
                               f"threshold of {threshold}")
    if total is not None and sum(value is None for value in values.values()) == 1:
        raise PackageError(f"{where}: withholds a single cell beside its total, which reveals it")
    return published


def _counted(package: dict) -> list[str]:
    """The indicators a package says it counts."""
    counted = package.get("indicators")
    if not isinstance(counted, list) or not all(isinstance(i, str) and i for i in counted) or \
            len(set(counted)) != len(counted):
        raise PackageError(f"the package's indicators {counted!r} are not a list of distinct indicator ids")
    return counted


def _held_figure(figure: object, definitions: Definitions, where: str) -> Published:
    """A figure of a held package, read under the age bands it was published with (its cells' band codes)
    and this appliance's threshold now (see the module docstring)."""
    cell_keys = figure.get("cells") if isinstance(figure, dict) else None
    if not isinstance(cell_keys, dict) or not cell_keys:
        raise PackageError(f"{where}: no figures")
    order = {band.code: n for n, band in enumerate(definitions.age_bands)}
    bands = sorted({key.partition("|")[2] for key in cell_keys},
                   key=lambda band: (band not in order, order.get(band, 0), band))
    cells = [(sex, band) for sex, _ in SEXES for band in bands]
    sent = _figure(figure, cells, where, bands_are="sexes by age bands")
    return withhold_published(sent, definitions.threshold).under(definitions)


def _facilities(items: object, counted: list[str], definitions: Definitions, source: str,
                read: Callable[[object, Definitions, str], Published] = _published) -> list[Facility]:
    """The facilities of a package that counts the indicators `counted`, each figure read by `read`: as
    received, checked against this appliance's cells and disclosure rule; as held, by `_held_figure`.
    Each facility's figures hold the indicators both appliances count; one this appliance counts and the
    package does not is left out (not reported), one the package counts and this appliance does not know
    is read (so checked) but not kept."""
    known = {indicator.id for indicator in definitions.indicators}
    facilities = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not all(isinstance(item.get(name), str) and item[name]
                                                 for name in _FACILITY_FIELDS):
            raise PackageError(f"a facility of the package lacks one of {', '.join(_FACILITY_FIELDS)}")
        facility = Facility(item["org_unit"], item["name"], item["facility_type"], item["district"], item["region"],
                            org_unit=item["org_unit"], source=source, recording_since=_recording_since(item))
        figures = item.get("figures") or {}
        if not isinstance(figures, dict):
            raise PackageError(f"{item['name']}: no figures")
        for indicator_id in counted:
            figure = read(figures.get(indicator_id), definitions, f"{item['name']}, {indicator_id}")
            if indicator_id in known:
                facility.figures[indicator_id] = figure
        facilities.append(facility)
    return facilities


def _recording_since(item: dict) -> Period | None:
    """The month a package's facility records from, None where the package does not say (made before packages
    carried it: read as recording, as it then was)."""
    since = item.get("recording_since")
    if since is None:
        return None
    if isinstance(since, str):
        with contextlib.suppress(IndicatorError):
            return Period.parse(since)
    raise PackageError(f"{item['name']}: its recording_since {since!r} is not a month written YYYY-MM")


def _not_counted(counted: list[str], definitions: Definitions) -> tuple[str, ...]:
    """This appliance's indicators a package does not count: not reported for its facilities."""
    return tuple(indicator.id for indicator in definitions.indicators if indicator.id not in counted)


def receive_package(db: Database, data: bytes, definitions: Definitions, *,
                    principal: Principal | None = None, via: str = "file") -> Receipt:
    """Verify a package and keep its figures; refused (PackageError, nothing kept) unless every check
    in the module docstring passes. `via` says how it came (a file, or HTTPS from an address), for the
    audit log."""
    package = _parse(data)
    try:
        raw = base64.b64decode(package["public_key"], validate=True)
        period = Period.parse(package["period"])
        produced_at = dt.datetime.fromisoformat(package["produced_at"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PackageError(f"the package's header is incomplete or malformed ({exc})") from exc
    if produced_at.tzinfo is None:
        raise PackageError("the package's production time has no time zone")
    now = dt.datetime.now(dt.UTC)
    if produced_at > now + CLOCK_SLACK:
        # A package dated ahead would also block every later, genuine one (only a later one replaces it).
        raise PackageError(f"the package says it was produced at {produced_at.isoformat()}, in the future: "
                           "check the sending appliance's clock")
    if period > begun_anywhere(now):  # the sender counts its month on its own clock, which may be ahead of ours
        raise PackageError(f"the package is for {period.label}, which has not begun")
    threshold = package.get("threshold")
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise PackageError(f"the package's disclosure threshold {threshold!r} is not a whole number")
    with db.control() as conn:
        peer = _peer_by_key(conn, key_id_of(raw))
        rotation, unproven = None, None
        if peer is None and "key_introductions" in package:
            rotation, unproven = _proven_rotation(conn, package, raw, produced_at)
            # None either way: a concurrent receipt may have recorded this key meanwhile.
            peer = rotation.peer if rotation is not None else _peer_by_key(conn, key_id_of(raw))
        if rotation is None and (peer is None or peer.public_key != raw):
            # Logged for the operator (a hospital not yet registered, or someone probing the endpoint).
            log.warning("national.package.unregistered_key", key_id=key_id_of(raw), via=via)
            raise PackageNotTrusted(f"the package was signed by key {key_id_of(raw)}, which is not registered here"
                                    + (f", and {unproven}" if unproven else "")
                                    + "; register the sending appliance first: healthos national peer add")
        _check_signature(package, raw)
        if rotation is not None:
            peer = _record_rotation(conn, rotation, raw, principal=principal, via=via)
        if threshold < definitions.threshold:
            raise PackageError(f"the package was published with a disclosure threshold of {threshold}, "
                               f"under this appliance's {definitions.threshold}")
        if package.get("age_bands") != [band.code for band in definitions.age_bands]:
            raise PackageError("the package's age bands are not this appliance's, so its cells would not add up "
                               "to this appliance's: both must use the same age bands in policies/indicators.toml")
        counted = _counted(package)
        known = {indicator.id for indicator in definitions.indicators}
        ignored = tuple(indicator_id for indicator_id in counted if indicator_id not in known)
        if len(ignored) == len(counted):
            raise PackageError(f"the package counts none of this appliance's indicators (it counts "
                               f"{', '.join(counted) or 'none'}): check policies/indicators.toml on both")
        not_counted = _not_counted(counted, definitions)
        facilities = _facilities(package.get("facilities"), counted, definitions, peer.name)
        if not facilities:
            raise PackageError(f"the package holds no facility, so nothing of {period.label} to receive: an appliance "
                               "whose facilities did not record yet in a month has nothing to send for it")
        if early := [f for f in facilities if not records_in(f.recording_since, period)]:
            raise PackageError(f"the package sends figures for {period.label} of "
                               + ", ".join(f"{f.name}, which records from {f.recording_since.label}" for f in early)
                               + ": a month before a facility recorded is left out, never sent, so that DHIS2 keeps "
                               "what the system it recorded in then sent")
        _refuse_clashes(db, conn, key_id_of(raw), period, facilities)
        held = conn.execute(sa.select(national_package.c.produced_at).where(
            (national_package.c.key_id == key_id_of(raw)) & (national_package.c.period == period.value))
            .with_for_update()).scalar()
        if held is not None and held >= produced_at:
            raise PackageConflict(f"{peer.name}'s package for {period.label} produced at {held.isoformat()} is already "
                               "here; a package replaces it only if produced later")
        row = {"produced_at": produced_at, "received_at": now,
               "sha256": hashlib.sha256(data).hexdigest(), "facilities": package["facilities"]}
        statement = postgresql.insert(national_package).values(key_id=key_id_of(raw), period=period.value, **row)
        conn.execute(statement.on_conflict_do_update(index_elements=["key_id", "period"], set_=row))
        audit.append(conn, tenant=None, principal=principal, event_type="national.package.receive", action="C",
                     detail={"key_id": key_id_of(raw), "peer": peer.name, "period": period.value,
                             "facilities": len(facilities), "sha256": row["sha256"], "replaced": held is not None,
                             "via": via, "not_counted": list(not_counted), "ignored": list(ignored)})
    return Receipt(peer.name, period, len(facilities), held is not None, not_counted, ignored)


def _peer_by_key(conn: Connection, key_id: str) -> sa.Row | None:
    return conn.execute(sa.select(national_peer).where(national_peer.c.key_id == key_id)).first()


def _proven_rotation(conn: Connection, package: dict, raw: bytes,
                     produced_at: dt.datetime) -> tuple[_ProvenRotation | None, str | None]:
    """The registered peer whose key introduced the package's key `raw`, by the rotations the package
    carries (the offline verifier's rule); else None and why not, in words that follow "which is not
    registered here, and". The peer's row is locked, so two packages proving the same rotation record it
    once."""
    key_id = key_id_of(raw)
    introductions, offered = package.get("key_introductions"), package.get("public_keys")
    if not isinstance(introductions, list) or not isinstance(offered, dict):
        return None, "its proof of a key rotation is malformed (key_introductions, public_keys)"
    signers = sorted({item["checkpoint"].get("key") for item in introductions if isinstance(item, dict)
                      and isinstance(item.get("checkpoint"), dict) and isinstance(item["checkpoint"].get("key"), str)})
    candidates = conn.execute(sa.select(national_peer).where(national_peer.c.key_id.in_(signers))
                              .order_by(national_peer.c.key_id).with_for_update()).all()
    if not candidates:
        return None, (f"the key rotations it carries are signed by key {', '.join(signers) or 'none'}, which no "
                      "registered appliance holds")
    problems: list[str] = []
    for candidate in candidates:
        pinned = audit_verify.load_public_key(candidate.public_key.hex().encode())
        chain = audit_verify.follow_introductions(package, {candidate.key_id: pinned})
        if key_id not in chain.keys:
            problems += [problem.message for problem in chain.problems]
            continue
        if offered.get(key_id) != base64.b64encode(raw).decode():
            return None, f"the public half its proof gives for key {key_id} is not the key that signed it"
        successor = next((i.key_id for i in chain.introduced if i.by == key_id), None)
        if successor is not None:
            return None, (f"its key was rotated out: its own rotation to key {successor} is in the proof, so a "
                          "package it signs now is not the sending appliance's")
        path = _path_to(chain.introduced, candidate.key_id, key_id)
        introduced_at = dt.datetime.fromisoformat(path[-1].time.replace("Z", "+00:00"))
        if produced_at < introduced_at:
            return None, (f"the package is dated {produced_at.isoformat()}, before the rotation that introduced "
                          f"its key ({path[-1].time})")
        return _ProvenRotation(candidate, path), None
    registered = " or ".join(f"{candidate.name}'s key" for candidate in candidates)
    return None, (f"its proof of a key rotation does not lead to it from {registered}: "
                  + ("; ".join(problems) if problems else f"no rotation it carries introduces key {key_id}"))


def _path_to(introduced: list[audit_verify.KeyIntroduction], start: str,
             key_id: str) -> tuple[audit_verify.KeyIntroduction, ...]:
    """The rotations from `start` to `key_id`, in order (each introduced by the key before it)."""
    by_key = {introduction.key_id: introduction for introduction in introduced}
    path = [by_key[key_id]]
    while path[0].by != start:
        path.insert(0, by_key[path[0].by])
    return tuple(path)


def _record_rotation(conn: Connection, rotation: _ProvenRotation, raw: bytes, *, principal: Principal | None,
                     via: str) -> sa.Row:
    """Replace the peer's registered key by the new one it proved, its packages following it; audited."""
    old, new, name = rotation.peer.key_id, key_id_of(raw), rotation.peer.name
    # The name is unique and the packages refer to the key: free the name, register the new key under it,
    # move the packages, then drop the old key's row — one transaction, so no reader sees the steps.
    conn.execute(national_peer.update().where(national_peer.c.key_id == old).values(name=f"{name} [{old}]"))
    conn.execute(national_peer.insert().values(key_id=new, name=name, public_key=raw,
                                               registered_at=rotation.peer.registered_at))
    conn.execute(national_package.update().where(national_package.c.key_id == old).values(key_id=new))
    conn.execute(national_peer.delete().where(national_peer.c.key_id == old))
    audit.append(conn, tenant=None, principal=principal, event_type="national.peer.rekey", action="U",
                 detail={"name": name, "old_key": old, "new_key": new, "via": via,
                         "keys": [old, *(introduction.key_id for introduction in rotation.introductions)],
                         "seq": rotation.introductions[-1].seq})
    log.info("national.peer.rekeyed", peer=name, old_key=old, new_key=new, via=via)
    return _peer_by_key(conn, new)


def _refuse_clashes(db: Database, conn: Connection, key_id: str, period: Period,
                    facilities: list[Facility]) -> None:
    """A facility is counted once: its organisation unit must be neither one of this appliance's
    facilities nor one another appliance reported for the same month."""

    here = {tenant["dhis2_org_unit"] or tenant["slug"]: tenant["name"] for tenant in list_tenants(db)}
    others = conn.execute(sa.select(national_peer.c.name, national_package.c.facilities)
                          .join(national_peer, national_peer.c.key_id == national_package.c.key_id)
                          .where((national_package.c.period == period.value) & (national_package.c.key_id != key_id)))
    elsewhere = {item["org_unit"]: name for name, items in others for item in items}
    for facility in facilities:
        if facility.org_unit in here:
            raise PackageConflict(f"{facility.name} ({facility.org_unit}) is a facility of this appliance; "
                               "a facility is counted by one appliance only")
        if facility.org_unit in elsewhere:
            raise PackageConflict(f"{facility.name} ({facility.org_unit}) was already reported for {period.label} "
                               f"by {elsewhere[facility.org_unit]}")


# Each facility once per appliance, at the latest month it reported it; only the two fields are read out of the
# packages, which hold every figure of every month (megabytes at a ministry), on every tenant applied.
_RECEIVED_ORG_UNITS = sa.text("""
    SELECT DISTINCT ON (facility->>'org_unit', peer.name) facility->>'org_unit', peer.name, package.period,
           facility->>'name'
    FROM control.national_package package JOIN control.national_peer peer USING (key_id),
         jsonb_array_elements(package.facilities) facility
    ORDER BY facility->>'org_unit', peer.name, package.period DESC""")


@register_org_units_held_elsewhere
def _received_org_units(conn: Connection) -> Iterator[tuple[str, str, str]]:
    """The reverse of `_refuse_clashes`' first rule: a facility of this appliance may not be given the organisation
    unit of one another appliance counts, in any month it reported (the national figures of that month would hold
    both)."""
    for org_unit, peer, period, name in conn.execute(_RECEIVED_ORG_UNITS):
        yield org_unit, f"counted by {peer}, last for {Period.parse(period).label}", name


def _held(items: object, definitions: Definitions, source: str) -> list[Facility]:
    """A held package's facilities, read as the module docstring says."""
    return _facilities(items, _held_counts(items), definitions, source, read=_held_figure)


def received_facilities(db: Database, period: Period, definitions: Definitions) -> list[Facility]:
    """The facilities other appliances reported for the month, as their packages published them, read
    under this appliance's threshold now."""
    with db.control() as conn:
        rows = conn.execute(sa.select(national_peer.c.name, national_package.c.facilities)
                            .join(national_peer, national_peer.c.key_id == national_package.c.key_id)
                            .where(national_package.c.period == period.value).order_by(national_peer.c.name)).all()
    facilities = []
    for name, items in rows:
        try:
            facilities += _held(items, definitions, name)
        except PackageError as exc:  # checked on receipt, so a damaged row; `reports` names it on the page
            log.warning("national.package.unreadable", peer=name, period=period.value, reason=str(exc))
    return facilities


def _held_counts(items: object) -> list[str]:
    """The indicators a held package counts: those its facilities carry figures for. The stored row keeps
    the facilities as sent, not the package's list, and every facility of a package counts the same."""
    return list(dict.fromkeys(indicator_id for item in (items if isinstance(items, list) else ())
                              if isinstance(item, dict) for indicator_id in (item.get("figures") or {})))


def reports(db: Database, period: Period, definitions: Definitions) -> list[Report]:
    """Every registered appliance and what it sent for the month, which of this appliance's indicators
    its package does not count, and how its package reads here now: a ministry's reporting completeness."""
    with db.control() as conn:
        rows = conn.execute(
            sa.select(national_peer.c.key_id, national_peer.c.name, national_peer.c.registered_at,
                      national_package.c.produced_at, national_package.c.received_at, national_package.c.facilities)
            .outerjoin(national_package, (national_package.c.key_id == national_peer.c.key_id)
                       & (national_package.c.period == period.value))
            .order_by(national_peer.c.name)).all()
    return [_report(Peer(*row[:3]), *(None if t is None else t.astimezone(dt.UTC) for t in row[3:5]), row[5],
                    definitions) for row in rows]


def _report(peer: Peer, produced_at: dt.datetime | None, received_at: dt.datetime | None, items: object,
            definitions: Definitions) -> Report:
    if items is None:
        return Report(peer)
    held = Report(peer, produced_at, received_at, len(items) if isinstance(items, list) else 0,
                  _not_counted(_held_counts(items), definitions))
    try:
        figures = [figure for facility in _held(items, definitions, peer.name) for figure in facility.figures.values()]
    except PackageError as exc:
        return replace(held, unreadable=str(exc))
    bands = next((figure.bands for figure in figures if figure.under_earlier_bands), ())
    return replace(held, earlier_bands=bands, withheld_by_raised_threshold=sum(
        figure.withheld_by_raised_threshold for figure in figures))


def national_facilities(db: Database, period: Period, definitions: Definitions, *,
                        progress: Callable[[str], None] | None = None) -> list[Facility]:
    """Everything the ministry sees for a month: this appliance's facilities, counted now, and those
    other appliances reported."""
    return gather(db, period, definitions, progress=progress) + received_facilities(db, period, definitions)
