"""Every API route at once, whatever the input: a refusal is a structured 4xx with a sentence a person reads,
never a 500, a stack trace or SQL; and a refused write leaves no row in any table.

Each route's own tests try the inputs its author thought of; this walks the OpenAPI document and sends every
route under /api/ (the FHIR facade's included) what nobody thought of: a body that is not JSON or of the wrong
shape; a plausible body with every top-level field of the wrong type (a number for text, text for a number), then
with each field in turn given what it cannot hold (5,000 characters, 30 February, a malformed UUID, a number past
any column); a malformed and an unknown id in the path, an unknown facility; wrong-typed, negative and huge query
values, and the FHIR search parameters the CapabilityStatement names given values they cannot take.

The caller holds every permission the route declares: a facility token with every facility role's permissions for
/api/t/, the patient's own session for /api/me/, the appliance role that holds the permission elsewhere. Every
failure is collected, so one run lists every broken route."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid

import pytest

from appliance.substrate.principal import Principal
from tests.conftest import facility_today
from tests.layers.clinical.conftest import CLINICAL_CONFIG
from tests.layers.financial.conftest import FINANCIAL_CONFIG
from tests.rows import RowCounts, changed
from tests.web.test_me_appointments import CLINICS, _patient

FIVE_THOUSAND = "x" * 5000
HUGE = 10**15
HUGE_DECIMAL = "1e999999"
NOT_A_DATE = "2026-02-30"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)  # a PNG's signature, which is what a document's type is read from
# What a detail must never show: our internals (a traceback, the driver's or SQLAlchemy's words, SQL, a repr).
LEAKS = re.compile(r"Traceback|psycopg|sqlalchemy|Background on this error|\bSELECT\b|\bINSERT INTO\b|"
                   r"\bUPDATE \w+ SET\b|object at 0x|UUID\('|Decimal\('|datetime\.|\{'type': ", re.IGNORECASE)
# The FHIR facade's writes take any JSON (their schema is the resource itself): a small resource of each type
# it creates, whose top-level fields are then given wrong values as the other routes' are.
FHIR_RESOURCES = {
    "Patient": {"resourceType": "Patient", "name": [{"family": "Sweep", "given": ["Ann"]}], "gender": "female",
                "birthDate": "1990-01-01"},
    "Condition": {"resourceType": "Condition", "subject": {"reference": "Patient/{patient}"},
                  "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J45"}]},
                  "onsetDateTime": "2020-01-01"},
    "AllergyIntolerance": {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/{patient}"},
                           "code": {"text": "Penicillin"}, "criticality": "high"},
    "Observation": {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/{patient}"},
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "valueQuantity": {"value": 80, "unit": "/min"}, "effectiveDateTime": "2024-01-01T10:00:00Z"},
    "Immunization": {"resourceType": "Immunization", "status": "completed", "patient": {"reference":
                                                                                      "Patient/{patient}"},
                     "vaccineCode": {"text": "BCG"}, "occurrenceDateTime": "2024-01-01"},
    "": {"resourceType": "Bundle", "type": "transaction", "entry": []},
}


@pytest.fixture(scope="module")
def hospital(tenant_factory):
    """A facility with what the routes work on: a catalogue, note templates and an order set, a fee schedule and
    its insurer, clinics patients book at, a theatre and its procedures."""
    return tenant_factory(name="Sweep Hospital", **CLINICAL_CONFIG, fee_schedule=FINANCIAL_CONFIG["fee_schedule"],
                          clinics=CLINICS, theatres=[{"code": "TH1", "name": "Theatre 1"}],
                          procedures=[{"code": "APPX", "name": "Appendicectomy"}])


def _resolve(schema: dict, components: dict) -> dict:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    for key in ("anyOf", "oneOf"):
        if key in schema:  # an optional field: the first alternative that is not null
            schema = next((s for s in schema[key] if s.get("type") != "null"), schema[key][0])
            return _resolve(schema, components)
    if isinstance(schema.get("type"), list):
        schema = {**schema, "type": next((t for t in schema["type"] if t != "null"), "null")}
    return schema


def _taken(operation_id: str, known: dict) -> dict:
    """What a few routes' bodies need beyond their schema's types to be taken (a vaccine of the schedule, a
    contact's dates), so a wrong value of each other field is judged by the service, or written, rather than
    refused first. Asked when sent: the facility's date moves on while a run lasts."""
    today = facility_today()
    return {
        "ClinicalRecordAntenatalContact": {"lmp": (today - dt.timedelta(days=84)).isoformat()},
        "ClinicalWriteNote": {"text": "Seen on the ward round."},
        "ClinicalRecordVitals": {"heart_rate_bpm": 80},
        "NursingOrderDiet": {"diet": "normal"},
        "NursingRecordFluid": {"direction": "intake", "route": "oral", "volume_ml": 200},
        "ClinicalRecordImmunization": {"vaccine": "BCG", "source": "historical"},
        "ClinicalRegisterTbTreatment": {"regimen": "2HRZE/4HR", "weight_kg": 60},
        "ClinicalRecordFamilyPlanning": {"method": "COC", "quantity": 1, "client_type": "new_acceptor"},
        "ClinicalRecordDelivery": {"gestation_weeks": 39, "blood_loss_ml": 300, "babies": [
            {"outcome": "live_birth", "sex": "female", "weight_g": 3200, "apgar_1": 8, "apgar_5": 9}]},
        "ClinicalChangeHivRegimen": {"regimen": "TDF+3TC+DTG"},
        "ClinicalRecordHivVisit": {"arv_days": 28, "next_appointment_on": (today + dt.timedelta(days=28)).isoformat()},
        "OperationsAddRosterEntry": {"shift_code": "D"},
        "ClinicalPlaceOrder": {"code": "58410-2"},
        "ClinicalRecordResult": {"code": "2345-7", "value": "5.5"},
        "ClinicalBookSurgery": {"theatre": "TH1", "procedure_code": "APPX"},
        "FinancialAddCoverage": {"payer_code": "NHIF", "member_number": "NHIF-123"},
        "PatientBookAppointment": {"slot_id": known["patient_slot_id"]},  # the desk books the other free slot
    }.get(operation_id, {})


# Text a field's pattern and length may take: a word, a code (ICD-10, LOINC, a ward), a number.
WORDS = ("sweep value", "J45", "8867-4", "GEN", "SWEEP1", "1")


def _plausible(schema: dict, components: dict, known: dict, depth: int = 0):
    """A value of the schema's type that a client might send, the sweep's own patient, encounter and ward by
    their names: enough to pass the route's schema, so the wrong value of one field at a time reaches the
    service behind it."""
    schema = _resolve(schema, components)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 3:
            return {}
        required = set(schema.get("required", []))
        return {name: known[name] if name in known else _plausible(sub, components, known, depth + 1)
                for name, sub in schema.get("properties", {}).items() if name in required}
    if kind == "array":
        return [_plausible(schema["items"], components, known, depth + 1)] if schema.get("minItems") \
            and "items" in schema else []
    if kind == "integer" or kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return max(1, int(low) + 1)
    if kind == "boolean":
        return False
    if kind == "string" and schema.get("format"):
        return {"date": facility_today().isoformat(), "date-time": dt.datetime.now(dt.UTC).isoformat(),
                "uuid": str(uuid.uuid4()), "email": "sweep@example.org", "time": "10:00:00"}.get(schema["format"], "x")
    fits = [w for w in WORDS if re.fullmatch(schema.get("pattern", ".*"), w)
            and schema.get("minLength", 0) <= len(w) <= schema.get("maxLength", 100)]
    return fits[0] if fits else WORDS[0]


def _wrong(schema: dict, components: dict) -> list:
    """Values a field cannot hold: malformed for its format, past its length, beyond its column's range."""
    schema = _resolve(schema, components)
    kind = schema.get("type")
    if "enum" in schema:
        return ["no-such-choice"]
    if kind == "string" and schema.get("format"):
        return [{"date": NOT_A_DATE, "date-time": NOT_A_DATE + "T10:00:00Z", "uuid": "not-a-uuid"}.get(
            schema["format"], FIVE_THOUSAND)]
    if kind == "string":  # unbounded text may be a decimal (money, a weight: sent as text): one past any column
        return [FIVE_THOUSAND] if "maxLength" in schema or "pattern" in schema else [FIVE_THOUSAND, HUGE_DECIMAL]
    if kind == "integer":
        return [HUGE]
    if kind == "number":
        return [HUGE, HUGE_DECIMAL]
    return ["x"]  # an object, an array or a boolean


def _query_values(schema: dict, components: dict) -> list:
    """A query parameter's wrong values: text for a number, a negative and a huge one (a page, a limit, days)."""
    kind = _resolve(schema, components).get("type")
    return ["x", -1, HUGE] if kind in ("integer", "number") else _wrong(schema, components)


# The FHIR facade's search parameters, by the type its CapabilityStatement gives each, and its paging's `_count`.
FHIR_SEARCH_VALUES = {"date": [NOT_A_DATE, "gt2026-02-30"], "reference": ["not-a-uuid", "Patient/not-a-uuid"],
                      "token": [FIVE_THOUSAND, "|"], "string": [FIVE_THOUSAND], "number": ["x"]}
FHIR_COUNTS = ["x", -1, HUGE]


def _nested_wrongs(schema: dict | None, components: dict, given, known: dict):
    """An object field (or a list of objects) with each of its own fields in turn given what it cannot hold."""
    if schema is None:
        return
    resolved = _resolve(schema, components)
    listed = resolved.get("type") == "array" and "items" in resolved
    inner = _resolve(resolved["items"], components) if listed else resolved
    if not inner.get("properties"):
        return
    base = (given[0] if listed and given else given) or _plausible(inner, components, known)
    for name, sub in inner["properties"].items():
        for wrong in _wrong(sub, components):
            value = {**base, name: wrong}
            yield name, wrong, [value] if listed else value


def _mistyped(schema: dict | None, components: dict):
    """A value of the wrong type: a number for text, text for a number, an object or a list."""
    kind = _resolve(schema, components).get("type") if schema else None
    return "x" if kind in ("integer", "number", "object", "array", "boolean") else 12345


def _operations(document: dict):
    for path, item in document["paths"].items():
        if path.startswith("/api/"):
            for method, operation in item.items():
                yield path, method.upper(), operation


def _permission(operation: dict) -> str | None:
    for requirement in operation.get("security", []):
        for permissions in requirement.values():
            return permissions[0]
    return None


def _sentence(response) -> str | None:
    """The human sentence of a refusal: a JSON `detail`, or an OperationOutcome's diagnostics."""
    body = response.json()
    if not isinstance(body, dict):
        return None
    if body.get("resourceType") == "OperationOutcome":
        return (body.get("issue") or [{}])[0].get("diagnostics")
    return body.get("detail") if isinstance(body.get("detail"), str) else None


def _problem_with(response) -> str | None:
    if response.status_code >= 500:
        return f"answered {response.status_code}: {response.text[:200]}"
    if response.status_code < 400:
        return None
    if "json" not in response.headers.get("content-type", ""):
        return f"answered {response.status_code} as {response.headers.get('content-type')}"
    try:
        detail = _sentence(response)
    except ValueError:
        return f"answered {response.status_code} with a body that is not JSON"
    if not detail or not re.search(r"[A-Za-z]{2,}", detail):
        return f"answered {response.status_code} without a sentence: {response.text[:200]}"
    if LEAKS.search(detail):
        return f"answered {response.status_code} showing internals: {detail[:200]}"
    return None


class Sweep:
    """The requests sent and what broke the rule. A write refused with a 4xx must leave the record as it was:
    the rows of every table of the facility and of the appliance are counted after each write, and before a
    write that follows a read (reads are audited), on one connection held for the sweep (`tests.rows` says which
    records of a refusal are its own and exempt)."""

    def __init__(self, counter, tenant: str, components: dict):
        self.components = components
        self.rows = RowCounts(counter, tenant)
        self.counted: dict[str, int] | None = None
        self.failures: list[str] = []
        self.requests = 0
        self.areas_seen: set[str] = set()

    def send(self, client, method: str, url: str, what: str, **kwargs):
        self.requests += 1
        write = method in WRITES
        if write and self.counted is None:
            self.counted = self.rows.read()
        response = client.request(method, url, **kwargs)
        problem = _problem_with(response)
        if write:
            before, self.counted = self.counted, self.rows.read()
            left = changed(before, self.counted)
            if problem is None and response.status_code >= 400 and left:
                problem = f"refused with {response.status_code} but left rows: {left}"
        else:
            self.counted = None
        if problem:
            self.failures.append(f"{method} {url[:140]} with {what}: {problem}")
        return response

    def operation(self, caller, path: str, method: str, operation: dict, known: dict, created: dict) -> None:
        parameters = operation.get("parameters", [])
        path_params = {p["name"]: _resolve(p["schema"], self.components) for p in parameters if p["in"] == "path"}
        values = {name: _id_for(path, name, schema, known, created) for name, schema in path_params.items()}
        url = _fill(path, values)
        body = _body(operation, path, self.components, known)
        write = method in WRITES
        extra = {"json": body} if write and body is not None else {}
        # The path: a malformed id, an unknown one, an unknown facility.
        for name, schema in path_params.items():
            if schema.get("format") == "uuid":
                self.send(caller, method, _fill(path, {**values, name: "not-a-uuid"}), f"{name} not a UUID", **extra)
                if name in known or _fill(_collection(path, name), known) in created:
                    self.send(caller, method, _fill(path, {**values, name: str(uuid.uuid4())}), f"an unknown {name}",
                              **extra)
            elif name in ("tenant", "facility") and _area(path) not in self.areas_seen:
                # Refused by the authentication middleware before any route runs: once for each area of the API.
                self.send(caller, method, _fill(path, {**values, name: "atlantis_general"}), f"an unknown {name}",
                          **extra)
        self.areas_seen.add(_area(path))
        # The query: each declared parameter wrong in turn.
        for parameter in (p for p in parameters if p["in"] == "query"):
            for wrong in _query_values(parameter["schema"], self.components):
                self.send(caller, method, url, f"?{parameter['name']}={str(wrong)[:20]}",
                          params={parameter["name"]: str(wrong)}, **extra)
        if not write:
            # The path as it stands holds an id or code nobody has: refused as unknown (a read of what exists is
            # the routes' own tests' to check).
            unknown = [name for name in path_params if name not in known and values[name] not in created.values()]
            if unknown:
                self.send(caller, method, url, f"an unknown {' and '.join(unknown)}")
            return
        form = _form_schema(operation, self.components)
        if form is not None:
            self.forms(caller, method, url, form, created)
            return
        if "requestBody" not in operation:  # an act with nothing to say but its path (draft the invoice, finalise)
            self._remember(path, url, method, self.send(caller, method, url, "no body"), created)
            return
        # The body: not JSON, the wrong shape, then a plausible one with each top-level field wrong in turn.
        self.send(caller, method, url, "a body that is not JSON", content=b"{not json",
                  headers={"content-type": "application/json"})
        for shape in ([], "x", {}):
            self.send(caller, method, url, f"the body {json.dumps(shape)}", json=shape)
        if not isinstance(body, dict):
            return
        fields = {name: schema for name, schema in _fields(operation, self.components, body).items()
                  if name != "resourceType"}
        self.send(caller, method, url, "every field of the wrong type",
                  json={**body, **{name: _mistyped(schema, self.components) for name, schema in fields.items()}})
        for field, schema in fields.items():
            for wrong in _wrong(schema, self.components) if schema else [12345, FIVE_THOUSAND, NOT_A_DATE]:
                taken = self.send(caller, method, url, f"{field}={str(wrong)[:20]}", json={**body, field: wrong})
                self._remember(path, url, method, taken, created)  # what a field could hold made the thing
            for inner, wrong, value in _nested_wrongs(schema, self.components, body.get(field), known):
                self.send(caller, method, url, f"{field}.{inner}={str(wrong)[:20]}", json={**body, field: value})
        # Last, the plausible body itself: what it makes gives the routes under it a real id to work on.
        self._remember(path, url, method, self.send(caller, method, url, "a plausible body", json=body), created)

    @staticmethod
    def _remember(path: str, url: str, method: str, made, created: dict) -> None:
        """What a POST to a collection made, by the collection's address, for the routes under it."""
        if method == "POST" and made.status_code in (200, 201) and "{" not in path.rsplit("/", 1)[1]:
            made_id = made.json().get("id") if isinstance(made.json(), dict) else None
            if made_id:
                created.setdefault(url, str(made_id))

    def forms(self, caller, method: str, url: str, schema: dict, created: dict) -> None:
        """A multipart form's route (a scanned document): JSON instead of a form, a form without its file, a file
        that is none of the types taken, then a plausible form with each field in turn given what it cannot hold."""
        self.send(caller, method, url, "JSON instead of a form", json={})
        fields = {name: sub for name, sub in schema["properties"].items()
                  if _resolve(sub, self.components).get("format") != "binary"}
        plausible = {name: _plausible(sub, self.components, {}) for name, sub in fields.items()}
        plausible.update({"category": "identity_document", "title": "National ID card",
                          "document_date": facility_today().isoformat(), "reason": "A clearer scan."})
        files = {"file": ("scan.png", PNG, "image/png")}
        self.send(caller, method, url, "a form without its file", data=plausible)
        self.send(caller, method, url, "a file of no type taken", data=plausible,
                  files={"file": ("scan.png", b"<html>not an image</html>", "image/png")})
        for name in fields:
            for wrong in (FIVE_THOUSAND, NOT_A_DATE, ""):
                self.send(caller, method, url, f"{name}={wrong[:20]!r}", data={**plausible, name: wrong}, files=files)
        made = self.send(caller, method, url, "a plausible form", data=plausible, files=files)
        if method == "POST" and made.status_code == 201:
            created.setdefault(url, made.json()["id"])

    def fhir_searches(self, caller, tenant: str, patient_id: str) -> None:
        """Each search parameter the FHIR facade says it takes, given values it cannot take, alone and beside the
        patient a search of a record needs; and `_count` no page can have."""
        statement = caller.get(f"/api/t/{tenant}/fhir/metadata").json()
        for resource in statement["rest"][0]["resource"]:
            url = f"/api/t/{tenant}/fhir/{resource['type']}"
            for parameter in resource.get("searchParam", []):
                for wrong in FHIR_SEARCH_VALUES.get(parameter["type"], ["x"]):
                    given = {parameter["name"]: str(wrong)}
                    if parameter["name"] != "patient" and resource["type"] != "Patient":
                        given["patient"] = patient_id
                    self.send(caller, "GET", url, f"?{parameter['name']}={str(wrong)[:20]}", params=given)
            for count in FHIR_COUNTS:
                self.send(caller, "GET", url, f"?_count={count}", params={"_count": str(count)})


WRITES = ("POST", "PUT", "PATCH")


def _area(path: str) -> str:
    """The part of the API a route belongs to: `/api/t/{tenant}/billing`, `/api/t/{tenant}/patients`, `/api/me`."""
    return "/".join(path.split("/")[:5])


# Collections whose members are made by posting elsewhere: an emergency visit by its arrival, a blood request on
# the patient's record.
MADE_AT = {"/api/t/{tenant}/ed/visits": "/api/t/{tenant}/ed/arrivals",
           "/api/t/{tenant}/blood/requests": "/api/t/{tenant}/patients/{patient_id}/blood/requests",
           "/api/t/{tenant}/lab/orders": "/api/t/{tenant}/patients/{patient_id}/orders",
           "/api/t/{tenant}/surgery": "/api/t/{tenant}/patients/{patient_id}/surgery",
           "/api/t/{tenant}/billing/invoices": "/api/t/{tenant}/billing/accounts/{account_id}/invoices",
           "/api/me/appointments/{facility}": "/api/me/appointments"}


# The sweep's own encounter is its admission's; an emergency visit's is the one its arrival made.
MADE_FIRST = {"encounter_id"}


def _collection(path: str, name: str) -> str:
    collection = path.split("/{" + name + "}", 1)[0]
    return MADE_AT.get(collection, collection)


def _id_for(path: str, name: str, schema: dict, known: dict, created: dict) -> str:
    """A path parameter's value: the sweep's own facility, patient or ward; an id the sweep made by posting to the
    collection it sits under (`.../allergies` for `.../allergies/{entry_id}`), or its admission's encounter; else
    an id nobody has."""
    made = created.get(_fill(_collection(path, name), known))
    if name in known and not (made and name in MADE_FIRST):
        return known[name]
    return made or (str(uuid.uuid4()) if schema.get("format") == "uuid" else "NOSUCH")


def _fill(path: str, values: dict) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), path)


# What ends the patient's stay or withdraws what was made, or rewrites the registration the patient's own account
# was matched to: last, so the routes before find them in place.
ENDINGS = ("/discharge", "/transfer", "/death", "/entered-in-error", "/cancel", "/withdraw", "/withdrawal", "/decision",
           "/departure", "/patients/{patient_id}")


def _order(operation: tuple) -> tuple:
    # Shallow paths first, and a collection's POST before the routes under it, so those find what it made.
    path, method, _ = operation
    made_elsewhere = any(path.startswith(collection + "/{") for collection in MADE_AT)
    return path.endswith(ENDINGS), path.count("{"), made_elsewhere, method != "POST"


def test_no_route_answers_bad_input_with_a_500(app, client, db, policy, token_client, signed_in, hospital):
    started = time.perf_counter()
    document = client.get("/schema/openapi.json").json()
    chart, _account, patient_client = _patient(db, policy, app, hospital, _desk(hospital), "Sweep")
    facility_permissions = sorted({p for role, spec in policy.roles.items() if spec.scope == "tenant"
                                   for p in policy.permissions_of(role)})
    staff = token_client(hospital.slug, permissions=facility_permissions)
    appliance_people = {}
    admitted = staff.post(f"/api/t/{hospital.slug}/admissions", json={"patient_id": str(chart), "ward_code": "GEN"})
    assert admitted.status_code == 201, admitted.text
    encounter = admitted.json()["encounter_id"]
    ordered = staff.post(f"/api/t/{hospital.slug}/patients/{chart}/orders", json={"code": "58410-2",
                                                                                  "encounter_id": encounter})
    assert ordered.status_code == 201, ordered.text  # and its charge opens the stay's account
    [account] = staff.get(f"/api/t/{hospital.slug}/billing/accounts", params={"patient_id": str(chart)}).json()
    tomorrow = (facility_today() + dt.timedelta(days=1)).isoformat()
    free = [s["id"] for s in staff.get(f"/api/t/{hospital.slug}/clinics/GEN/slots", params={"date": tomorrow}).json()
            if s["free"]]
    known = {"tenant": hospital.slug, "facility": hospital.slug, "patient_id": str(chart), "ward_code": "GEN",
             "encounter_id": encounter, "account_id": str(account["id"]), "clinic_code": "GEN",
             "slot_id": free[0], "patient_slot_id": free[1]}
    created: dict[str, str] = {}
    operations = sorted(_operations(document), key=_order)
    with db.control_autocommit() as counter:
        sweep = Sweep(counter, hospital.slug, document["components"]["schemas"])
        for path, method, operation in operations:
            permission = _permission(operation)
            if path.startswith("/api/me"):
                caller = patient_client
            elif permission is None:
                caller = client
            elif path.startswith("/api/t/"):
                caller = staff
            else:  # the appliance's own API: a person holding an appliance role that grants it
                role = next(r for r, spec in policy.roles.items()
                            if spec.scope == "appliance" and policy.rule_granting(r, permission))
                caller = appliance_people.get(role) or appliance_people.setdefault(role, signed_in(role))
            sweep.operation(caller, path, method, operation, known, created)
        sweep.fhir_searches(staff, hospital.slug, str(chart))
    elapsed = time.perf_counter() - started
    print(f"\nswept {len(operations)} operations with {sweep.requests} requests, counting {len(sweep.rows.tables)} "
          f"tables, in {elapsed:.1f} s")
    assert not sweep.failures, f"{len(sweep.failures)} answers broke the rule:\n" + "\n".join(sweep.failures)


def _desk(tenant) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Sweep desk", tenant=tenant.slug,
                     role="registrar")


def _form_schema(operation: dict, components: dict) -> dict | None:
    content = (operation.get("requestBody") or {}).get("content", {})
    return _resolve(content["multipart/form-data"]["schema"], components) if "multipart/form-data" in content \
        else None


def _request_schema(operation: dict) -> dict | None:
    content = (operation.get("requestBody") or {}).get("content", {})
    return content["application/json"].get("schema") if "application/json" in content else None


def _body(operation: dict, path: str, components: dict, known: dict) -> dict | None:
    if "/fhir" in path:
        resource = FHIR_RESOURCES.get(path.rsplit("/fhir", 1)[1].lstrip("/"))
        return json.loads(json.dumps(resource).replace("{patient}", known["patient_id"])) if resource else None
    schema = _request_schema(operation)
    if not schema:
        return None
    body = _plausible(schema, components, known)
    return {**body, **_taken(operation["operationId"], known)} if isinstance(body, dict) else body


def _fields(operation: dict, components: dict, body: dict) -> dict:
    """Each top-level field of the route's request schema (or of the FHIR resource sent), with its schema."""
    schema = _request_schema(operation)
    if schema:
        resolved = _resolve(schema, components)
        if resolved.get("properties"):
            return resolved["properties"]
    return {name: None for name in body}
