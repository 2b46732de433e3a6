"""Clinics, sessions and KPI targets from the tenant file, and the KPI policy file: validated whole,
applied to the tenant's tables, re-applied idempotently; a removed clinic is deactivated, not deleted."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from appliance.layers.operations import scheduling
from appliance.layers.operations.models import clinic, kpi_target
from appliance.substrate.kpis import KpiPolicyError, load_definitions
from appliance.substrate.tenancy import apply_config
from tests.conftest import make_tenant_config

SESSION = {"weekdays": ["mon", "wed"], "start": "08:00", "end": "10:00"}


def test_clinic_sections_are_validated():
    with pytest.raises(ValidationError, match="ends after it starts"):
        make_tenant_config(clinics=[{"code": "OPD", "name": "OPD", "sessions": [{**SESSION, "end": "07:00"}]}])
    with pytest.raises(ValidationError, match="clinic codes must be unique"):
        make_tenant_config(clinics=[{"code": "OPD", "name": "A", "sessions": [SESSION]},
                                    {"code": "OPD", "name": "B", "sessions": [SESSION]}])
    with pytest.raises(ValidationError):
        make_tenant_config(clinics=[{"code": "OPD", "name": "A", "sessions": [{**SESSION, "weekdays": ["funday"]}]}])
    with pytest.raises(ValidationError):
        make_tenant_config(kpi_targets={"Bed Occupancy!": 80})
    assert "clinics" not in make_tenant_config().model_dump()  # files without the sections keep their fingerprint


def test_clinics_and_targets_apply_and_reapply(db, tenant_factory):
    config = tenant_factory(clinics=[{"code": "OPD", "name": "Outpatients", "slot_minutes": 30, "sessions": [SESSION]},
                                     {"code": "ANC", "name": "Antenatal", "sessions": [SESSION]}],
                            kpi_targets={"bed_occupancy": 85, "lab_turnaround": 90})
    monday = dt.date.today() + dt.timedelta(days=(7 - dt.date.today().weekday()))
    with db.tenant(config.slug) as conn:
        slots = scheduling.slots(conn, "OPD", monday)
        tuesday = scheduling.slots(conn, "OPD", monday + dt.timedelta(days=1))
        targets = dict(conn.execute(sa.select(kpi_target.c.kpi_id, kpi_target.c.target)).all())
    local = [s["starts_at"].astimezone(zoneinfo.ZoneInfo("Africa/Nairobi")).strftime("%H:%M") for s in slots]
    assert local == ["08:00", "08:30", "09:00", "09:30"]
    assert tuesday == [] and targets == {"bed_occupancy": 85, "lab_turnaround": 90}
    changed = config.model_copy(update={"clinics": config.clinics[:1], "kpi_targets": {"bed_occupancy": 80}})
    apply_config(db, changed)
    with db.tenant(config.slug) as conn:
        active = dict(conn.execute(sa.select(clinic.c.code, clinic.c.active)).all())
        targets = dict(conn.execute(sa.select(kpi_target.c.kpi_id, kpi_target.c.target)).all())
        again = scheduling.slots(conn, "OPD", monday)
    assert active == {"OPD": True, "ANC": False} and targets == {"bed_occupancy": 80}
    assert [s["id"] for s in again] == [s["id"] for s in slots]  # regenerating slots changes nothing


def test_the_kpi_policy_file_is_validated(tmp_path: Path):
    repo = Path(__file__).resolve().parents[3]
    shipped = load_definitions(repo / "policies" / "kpis.toml")
    assert [d.number for d in shipped if not d.companion] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert all(d.formula and d.standard for d in shipped)
    entry = ('[[kpi]]\nid = "x"\nnumber = 1\nname = "X"\nformula = "f"\nstandard = "s"\nunit = "percent"\n'
             'better = "higher"\nwindow_days = 30\n')
    for broken, message in [(entry + entry, "appears twice"),
                            (entry.replace('"percent"', '"furlongs"'), "unknown unit"),
                            (entry.replace("window_days = 30", "window_days = 0"), "window_days"),
                            (entry.replace('name = "X"', 'nam = "X"'), "kpi\\[0\\]"), ("[[kpi]\n", "kpis.toml"),
                            (entry.replace("window_days = 30", 'window_days = "30"'), "window_days holds the wrong"),
                            ("", "no \\[\\[kpi\\]\\] is listed")]:
        path = tmp_path / "kpis.toml"
        path.write_text(broken)
        with pytest.raises(KpiPolicyError, match=message):
            load_definitions(path)
