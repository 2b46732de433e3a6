"""What the FHIR facade refuses, and every refusal as an OperationOutcome: severity, FHIR issue type,
a sentence a person can act on, and the element at fault (`expression`) where there is one."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from appliance.substrate.record import RecordError

ISSUE_DETAILS = "urn:healthos:issue"
# The FHIR issue type for each HTTP status the record and its layers answer with.
ISSUE_TYPES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
               409: "conflict", 412: "conflict", 415: "not-supported", 422: "processing", 429: "throttled",
               500: "exception"}


class FhirError(Exception):
    """A refusal with its status, FHIR issue type and the element at fault."""

    def __init__(self, status: int, code: str, diagnostics: str, *, expression: str | list[str] | None = None,
                 issues: list[dict] | None = None, details: str | None = None):
        super().__init__(diagnostics)
        self.details = details
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = [expression] if isinstance(expression, str) else expression
        self.issues = issues


def outcome(status: int, diagnostics: str, *, code: str | None = None, expression: list[str] | None = None,
            issues: list[dict] | None = None, details: str | None = None) -> dict:
    if issues is None:
        issue: dict[str, Any] = {"severity": "error" if status < 500 else "fatal",
                                 "code": code or ISSUE_TYPES.get(status, "processing"), "diagnostics": diagnostics}
        if details:  # a refusal a client acts on by program, named in the record's own code system
            issue["details"] = {"coding": [{"system": ISSUE_DETAILS, "code": details}]}
        if expression:
            issue["expression"] = expression
        issues = [issue]
    return {"resourceType": "OperationOutcome", "issue": issues}


def of_fhir_error(exc: FhirError) -> dict:
    return outcome(exc.status, exc.diagnostics, code=exc.code, expression=exc.expression, issues=exc.issues,
                   details=exc.details)


def of_record_error(exc: RecordError, resource_type: str | None = None, where: str | None = None) -> FhirError:
    """A refusal of the record or a clinical service, naming the FHIR element behind its field;
    `where` is the resource's own path (`Condition`, `Bundle.entry[2].resource`)."""
    field = exc.extra.get("field")
    expression = None
    if field and resource_type:
        expression = f"{where or resource_type}.{FIELDS.get((resource_type, field), field)}"
    details = "break-glass-required" if exc.extra.get("break_glass_required") else None
    return FhirError(exc.status, ISSUE_TYPES.get(exc.status, "processing"), exc.detail, expression=expression,
                     details=details)


def of_validation(exc: ValidationError, resource_type: str, where: str) -> FhirError:
    """A resource that is not valid FHIR R4B: each error named by its element's path under `where`."""
    issues = []
    for error in exc.errors()[:20]:
        path = element_path(error["loc"])
        issues.append({"severity": "error", "code": "structure" if error["type"] != "value_error" else "value",
                       "diagnostics": f"{path or resource_type}: {error['msg']}",
                       "expression": [f"{where}{'.' + path if path else ''}"]})
    first = issues[0]["diagnostics"] if issues else str(exc)
    return FhirError(400, "structure", f"invalid {resource_type}: {first}", issues=issues or None)


def element_path(loc: tuple) -> str:
    """pydantic's error location as a FHIRPath: ("entry", 0, "resource", "birthDate") is
    `entry[0].resource.birthDate`."""
    path = ""
    for part in loc:
        if part == "__root__":
            continue
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    return path


# The record's field names as the FHIR elements that carry them, for `expression`.
FIELDS = {
    ("Condition", "code"): "code.coding.code",
    ("Condition", "encounter_id"): "encounter",
    ("Condition", "resolved_date"): "abatementDateTime",
    ("AllergyIntolerance", "encounter_id"): "encounter",
    ("Observation", "encounter_id"): "encounter",
    ("Immunization", "encounter_id"): "encounter",
    ("Immunization", "vaccine"): "vaccineCode",
    ("Immunization", "dose_number"): "protocolApplied[0].doseNumberPositiveInt",
    ("Immunization", "given_on"): "occurrenceDateTime",
    ("Patient", "identifiers"): "identifier",
    ("Patient", "subject_id"): "link",
}
