"""The facility's clinical configuration inside its schema: orderable tests (LOINC), note templates and
order sets, synchronised from `tenants/<slug>.toml` when the tenant is applied, and the validation of
a note against its template.

Items dropped from the file are deactivated, never deleted: orders and notes already point at them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.clinical.errors import Invalid, NotFound
from appliance.layers.clinical.models import note_template, order_set, orderable
from appliance.substrate.db import driver
from appliance.substrate.tenancy import register_config_applier
from appliance.substrate.tenant_config import (
    NoteTemplateConfig,
    OrderableConfig,
    OrderSetConfig,
    TemplateField,
    TenantConfig,
)


def sync_codes(conn: Connection, table: sa.Table, rows: list[dict]) -> None:
    """Bring a table of codes from the tenant file in line with it: rows written, those dropped deactivated."""
    if rows:
        statement = postgresql.insert(table).values(rows)
        updates = {c.name: statement.excluded[c.name] for c in table.c if c.name != "code"}
        conn.execute(statement.on_conflict_do_update(index_elements=[table.c.code], set_=updates))
    codes = [row["code"] for row in rows] or [""]
    conn.execute(sa.update(table).where(table.c.code.not_in(codes), table.c.active).values(active=False))


@register_config_applier
def sync_clinical_configuration(conn: Connection, config: TenantConfig) -> None:
    sync_codes(conn, orderable, [
        {"code": item.loinc, "name": item.name, "category": item.category,
         "definition": item.model_dump(mode="json"), "active": True}
        for item in config.catalogue
    ])
    sync_codes(conn, note_template, [
        {"code": t.code, "name": t.name, "specialty": t.specialty, "definition": t.model_dump(mode="json"),
         "active": True}
        for t in config.note_templates
    ])
    sync_codes(conn, order_set, [
        {"code": o.code, "name": o.name, "definition": o.model_dump(mode="json"), "active": True}
        for o in config.order_sets
    ])


# -- lookups -----------------------------------------------------------------------------------------


# The active definition of the test named by the bind parameter `code` (a scalar, for one statement to
# ask it with other things).
DEFINITION_OF_CODE = (sa.select(orderable.c.definition)
                      .where(orderable.c.code == sa.bindparam("code"), orderable.c.active).scalar_subquery())


def get_orderable(conn: Connection, code: str) -> OrderableConfig:
    return orderable_of(code, conn.execute(sa.select(DEFINITION_OF_CODE), {"code": code}).scalar())


def orderable_of(code: str, definition: dict | None) -> OrderableConfig:
    """The test `code` from its stored definition (DEFINITION_OF_CODE); a 422 naming it if there is none."""
    if definition is None:
        raise Invalid(f"test {code} is not in this facility's catalogue", field="code", code=code)
    return OrderableConfig.model_validate(definition)


def get_orderables(conn: Connection, codes: list[str]) -> dict[str, OrderableConfig]:
    rows = conn.execute(
        sa.select(orderable.c.code, orderable.c.definition).where(orderable.c.code.in_(codes), orderable.c.active)
    ).all()
    return {code: OrderableConfig.model_validate(definition) for code, definition in rows}


# The candidates for an analyte, in one round trip: the ordered test (when there is one), the test of
# that code, and a test holding it as a component. An ORU asks once per OBX; asked as up to three
# SQLAlchemy statements it cost 0.2-0.9 ms a result (a component sent without its order, the most),
# nearly all round trips and statement machinery: reading a definition is ~15 µs. One statement on the
# driver costs ~0.15 ms whichever the case. Nothing is kept between calls, so a facility file applied
# again, by this process or another, is in the next answer without anything to invalidate.
_ANALYTE_CANDIDATES = (
    "SELECT (SELECT definition FROM orderable WHERE code = %(ordered)s AND active),"
    " (SELECT definition FROM orderable WHERE code = %(code)s AND active),"
    # Of two panels holding the component (a full blood count and a haemogram both hold haemoglobin), the
    # same one every time: the first by code, so a result line is never read against one panel, then another.
    " (SELECT definition FROM orderable WHERE active AND definition -> 'components' @> %(component)s"
    " ORDER BY code LIMIT 1)")


def find_analyte(conn: Connection, code: str, ordered: str | None) -> tuple[str, Any]:
    """Name and definition (unit, range, choices) of the analyte `code`: a catalogue test itself, or a
    component of the test that was ordered, or of any test in the catalogue."""
    ordered_test, own, panel = driver(conn).execute(
        _ANALYTE_CANDIDATES, {"ordered": ordered, "code": code, "component": Jsonb([{"loinc": code}])}).fetchone()
    if ordered is not None:
        test = orderable_of(ordered, ordered_test)
        if test.loinc == code:
            return test.name, test
        for component in test.components:
            if component.loinc == code:
                return component.name, component
    if own is not None:
        test = OrderableConfig.model_validate(own)
        return test.name, test
    if panel is not None:
        component = next(c for c in OrderableConfig.model_validate(panel).components if c.loinc == code)
        return component.name, component
    raise Invalid(f"analyte {code} is not in this facility's catalogue", field="code", code=code)


def get_template(conn: Connection, code: str) -> NoteTemplateConfig:
    definition = conn.execute(
        sa.select(note_template.c.definition).where(note_template.c.code == code, note_template.c.active)
    ).scalar()
    if definition is None:
        raise Invalid(f"note template {code} is not configured at this facility", field="template_code",
                      template_code=code)
    return NoteTemplateConfig.model_validate(definition)


def get_order_set(conn: Connection, code: str) -> OrderSetConfig:
    definition = conn.execute(
        sa.select(order_set.c.definition).where(order_set.c.code == code, order_set.c.active)
    ).scalar()
    if definition is None:
        raise NotFound(f"order set {code} is not configured at this facility", order_set=code)
    return OrderSetConfig.model_validate(definition)


def list_catalogue(conn: Connection) -> list[dict]:
    return [dict(r) for r in conn.execute(
        sa.select(orderable.c.code, orderable.c.name, orderable.c.category, orderable.c.definition)
        .where(orderable.c.active).order_by(orderable.c.category, orderable.c.name)
    ).mappings()]


def list_templates(conn: Connection) -> list[dict]:
    return [dict(r) for r in conn.execute(
        sa.select(note_template.c.code, note_template.c.name, note_template.c.specialty, note_template.c.definition)
        .where(note_template.c.active).order_by(note_template.c.specialty, note_template.c.name)
    ).mappings()]


def list_order_sets(conn: Connection) -> list[dict]:
    return [dict(r) for r in conn.execute(
        sa.select(order_set.c.code, order_set.c.name, order_set.c.definition)
        .where(order_set.c.active).order_by(order_set.c.name)
    ).mappings()]


# -- templates ---------------------------------------------------------------------------------------


def validate_note_fields(template: NoteTemplateConfig, values: dict[str, Any]) -> dict[str, Any]:
    """The values of a note, checked and normalised against its template. The first problem raises
    Invalid naming the field, so the form can point at it (`note_field_problems` gives them all)."""
    known = {f.key: f for f in template.fields}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise Invalid(f"template {template.code} has no field {unknown[0]!r}", field=f"fields.{unknown[0]}")
    clean, problems = _checked(template, values)
    if problems:
        raise problems[0]
    return clean


def note_field_problems(template: NoteTemplateConfig, values: dict[str, Any]) -> list[Invalid]:
    """Every field of the template that `values` leave missing or get wrong, in the template's order: a
    form says them all at once rather than one per attempt."""
    return _checked(template, values)[1]


def _checked(template: NoteTemplateConfig, values: dict[str, Any]) -> tuple[dict[str, Any], list[Invalid]]:
    clean: dict[str, Any] = {}
    problems: list[Invalid] = []
    for spec in template.fields:
        value = values.get(spec.key)
        if isinstance(value, str):  # a required text of spaces alone was taken as given, and stored empty
            value = value.strip()
        if value is None or value == "" or value == []:
            if spec.required:
                problems.append(Invalid(f"field {spec.key!r} ({spec.label}) is required by the {template.name} "
                                        f"template ({template.code})", field=f"fields.{spec.key}"))
            continue
        try:
            clean[spec.key] = _coerce(spec, value)
        except Invalid as problem:
            problems.append(problem)
    return clean, problems


def _coerce(spec: TemplateField, value: Any) -> Any:
    def bad(expected: str) -> Invalid:
        return Invalid(f"field {spec.key!r} ({spec.label}) expects {expected}, got {value!r}",
                       field=f"fields.{spec.key}")

    if spec.type == "text":
        if not isinstance(value, str):
            raise bad("text")
        if len(value) > 5000:
            raise bad("at most 5000 characters")
        return value.strip()
    if spec.type in {"number", "integer"}:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad("a number" + (f" in {spec.unit}" if spec.unit else ""))
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise bad("a number" + (f" in {spec.unit}" if spec.unit else "")) from None
        if not number.is_finite():
            raise bad("a finite number")
        if spec.type == "integer" and number != number.to_integral_value():
            raise bad("a whole number")
        too_low = spec.min is not None and number < Decimal(str(spec.min))
        too_high = spec.max is not None and number > Decimal(str(spec.max))
        if too_low or too_high:
            raise bad(f"a value between {spec.min} and {spec.max}" + (f" {spec.unit}" if spec.unit else ""))
        return int(number) if spec.type == "integer" else float(number)
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if spec.type == "date":
        try:
            return dt.date.fromisoformat(value).isoformat()
        except (TypeError, ValueError):
            raise bad("a date (YYYY-MM-DD)") from None
    if spec.type == "choice":
        if value not in spec.choices:
            raise bad(f"one of {spec.choices}")
        return value
    # multichoice
    if not isinstance(value, list) or any(v not in spec.choices for v in value):
        raise bad(f"a list of values from {spec.choices}")
    return list(dict.fromkeys(value))
