"""Web room: the policy files the appliance refuses to start without, each with the loader that reads it.

`create_app` loads every file of `POLICY_FILES` before it serves, and `healthos check` (and `healthos up`, before
the database starts) reads the same table: a file the start depends on is one the check checks, by construction,
so hospital IT learns of a broken edit before restarting, not from a service that will not come back. Each loader
refuses a broken file with a ValueError whose sentence names the file and the item at fault; none needs the
database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.layers.clinical.family_planning_policy import load_programme as load_family_planning
from appliance.layers.clinical.hiv import load_programme as load_hiv_programme
from appliance.layers.clinical.icd10 import load_everyday_words
from appliance.layers.clinical.immunization_schedule import load_schedule
from appliance.layers.clinical.tuberculosis import load_regimens
from appliance.layers.operations.self_booking import load_rules as load_appointment_rules
from appliance.layers.patient.release import load_release_rules
from appliance.national.indicators import load_definitions as load_indicators
from appliance.national.surveillance import load_diseases
from appliance.substrate.kpis import load_definitions as load_kpis
from appliance.substrate.policy import load_policy


@dataclass(frozen=True)
class PolicyFile:
    name: str  # in the policies directory (HEALTHOS_POLICIES_DIR)
    load: Callable[[Path], object]  # raises a ValueError naming the file and the item at fault


POLICY_FILES: tuple[PolicyFile, ...] = (
    PolicyFile("access.toml", load_policy),
    PolicyFile("release.toml", load_release_rules),
    PolicyFile("appointments.toml", load_appointment_rules),
    PolicyFile("immunization.toml", load_schedule),
    PolicyFile("surveillance.toml", load_diseases),
    PolicyFile("family_planning.toml", load_family_planning),
    PolicyFile("tuberculosis.toml", load_regimens),
    PolicyFile("hiv.toml", load_hiv_programme),
    PolicyFile("icd10_words.toml", load_everyday_words),
    PolicyFile("indicators.toml", load_indicators),
    PolicyFile("kpis.toml", load_kpis),
)
