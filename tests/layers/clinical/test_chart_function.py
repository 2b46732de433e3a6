"""The chart summary's SQL lives twice: composed from the response models in chart.py, and frozen
in the tenant migration that installs `chart_summary(uuid)`. They must say the same thing."""

from __future__ import annotations

import re
import uuid

import pytest
import sqlalchemy as sa

from appliance.layers.clinical.chart import summary_function_body


def _normalised(sql: str) -> str:
    """Whitespace is not significant, including next to parentheses."""
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", " ".join(sql.split())))


def test_the_installed_chart_function_is_the_query_chart_py_composes(db, facility):
    with db.tenant(facility.slug) as conn:
        installed = conn.execute(sa.text(
            "SELECT p.prosrc FROM pg_proc p WHERE p.proname = 'chart_summary' "
            "AND p.pronamespace = current_schema()::regnamespace"
        )).scalar_one()
    expected = f"BEGIN RETURN ({_normalised(summary_function_body())}); END"
    assert _normalised(installed) == expected, (
        "the chart summary's shape changed (chart.py or a response model in schemas.py) but the function "
        "in the tenant schemas did not: add a tenant migration that replaces chart_summary(uuid) with "
        "chart.summary_function_body()"
    )


def test_another_tenants_role_cannot_call_this_tenants_chart_function(db, facility, tenant_factory):
    other = tenant_factory()
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(other.slug) as conn:
        conn.execute(sa.text(f"SELECT t_{facility.slug}.chart_summary(:id)"), {"id": uuid.uuid4()})
