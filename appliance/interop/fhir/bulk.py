"""Bulk import of FHIR bundles into a facility's record: Synthea-shaped transaction or collection
bundles, one per patient, as Synthea writes them (`output/fhir/*.json`).

Each bundle is one tenant transaction through the same path as a transaction posted to the facade
(`writes.plan_bundle`, `writes.apply`): all of it, or — refused with the reason — none of it. Vital
signs sent one Observation per measurement are kept as the record keeps them, one set per visit and
time (`writes.sets_of_vital_signs`).
Resources the record cannot hold (claims, procedures, a condition coded only in SNOMED CT, a BMI) or
that the facade does not create (immunizations: read and searched only) are counted as skipped, by
type and reason, not errors; so is each element an imported resource is taken in without
(`Patient.maritalStatus`), by element, which a create through the facade would refuse. The acts
are attributed to a machine principal the operator names (`import_principal`), given an account row
that can never sign in, as the demo generators' authors are, so every entry and audit event says who
imported it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from appliance.interop.fhir import writes
from appliance.interop.fhir.errors import FhirError, of_record_error
from appliance.substrate import identity
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError

IMPORT_NAMESPACE = uuid.UUID("5b0f3f4e-6d0a-4f43-9a53-3c1c7f1f0a11")


def import_principal(db: Database, tenant: str, name: str) -> Principal:
    """The principal an import acts as at `tenant`: the same for the same name, named in the record's
    pages and audit trail as "FHIR import (name)"."""
    principal = Principal(account_id=uuid.uuid5(IMPORT_NAMESPACE, f"{tenant}:{name}"), kind="machine",
                          display_name=f"FHIR import ({name})", tenant=tenant, role="clinician")
    email = f"fhir-import-{principal.account_id.hex[:12]}@{tenant.replace('_', '-')}.import"
    with db.control() as conn:
        identity.name_machine_author(conn, principal, email=email)
    return principal


@dataclass
class ImportSummary:
    bundles: int = 0
    imported_bundles: int = 0
    imported: Counter = field(default_factory=Counter)  # resource type -> how many written
    skipped: Counter = field(default_factory=Counter)  # "Type: why" -> how many
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


def bundle_files(path: Path) -> list[Path]:
    """A file, or every `*.json` under a directory, in name order."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*.json") if p.is_file())
    return [path]


def import_bundle(db: Database, tenant: str, principal: Principal, bundle: Any) -> tuple[Counter, Counter]:
    """One bundle, all or nothing: what was written (by type) and what was skipped (by reason)."""
    planned = writes.plan_bundle(bundle, strict=False)
    to_write = writes.sets_of_vital_signs(planned.writes)
    with db.tenant(tenant) as conn:
        writes.link_subjects(db, tenant, principal, to_write, conn)
        written = writes.apply(conn, principal, to_write, skipped_urls=planned.skipped_urls)
    imported: Counter = Counter()
    for write, resource in zip(to_write, written, strict=True):
        imported[resource["resourceType"]] += write.sources  # counted as the sender wrote them
    return imported, planned.skipped


def _why(exc: Exception) -> str:
    if isinstance(exc, FhirError):
        where = f" ({', '.join(exc.expression)})" if exc.expression else ""
        return exc.diagnostics + where
    if isinstance(exc, RecordError):
        return _why(of_record_error(exc))
    if isinstance(exc, sa.exc.IntegrityError):
        return "another write got there first (a duplicate identifier?)"
    return str(exc)


def import_path(db: Database, tenant: str, principal: Principal, path: Path,
                progress: Callable[[Path], None] | None = None) -> ImportSummary:
    """Every bundle under `path`, each in its own transaction; a refused bundle does not stop the rest."""
    summary = ImportSummary()
    for file in bundle_files(path):
        summary.bundles += 1
        try:
            bundle = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            summary.refused.append((file.name, f"not a readable JSON file: {exc}"))
            if progress is not None:
                progress(file)
            continue
        try:
            imported, skipped = import_bundle(db, tenant, principal, bundle)
        except (FhirError, RecordError, sa.exc.IntegrityError) as exc:
            summary.refused.append((file.name, _why(exc)))
        else:
            summary.imported_bundles += 1
            summary.imported.update(imported)
            summary.skipped.update(skipped)
        if progress is not None:
            progress(file)
    return summary

