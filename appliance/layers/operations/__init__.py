"""Operations layer: wards, beds, admissions and transfers, the emergency department, scheduling, and
the command center's figures.

It owns where patients physically are and what capacity the facility has: the bed board (bed states
available, occupied, cleaning, blocked), ADT (`adt`) and the day an admitted patient is expected home
(`discharge_plan`), the ED's timestamps (`ed`), outpatient clinics
and appointments (`scheduling`; a patient's own cancelling, moving and booking from the portal, under its
rules, in `self_booking`), and the KPIs computed from them (`kpis`, registered in the substrate's
KPI registry; `command_center` assembles them with their definitions and targets), the outpatient
pharmacy's stock and dispensing (`pharmacy`), and patient safety incidents with the quality manager's review
(`incidents`), a quality record kept apart from the chart, and the duty roster with nurse staffing against the
census (`roster`).
"""

from appliance.layers.operations import (
    adt,
    command_center,
    deaths,
    discharge_plan,
    ed,
    incidents,
    kpis,
    models,
    pharmacy,
    reactions,
    roster,
    scheduling,
    self_booking,
    service,
)

__all__ = ["adt", "command_center", "deaths", "discharge_plan", "ed", "incidents", "kpis", "models", "pharmacy",
           "reactions", "roster", "scheduling", "self_booking", "service"]
