"""Tables of the nursing layer, in every tenant schema: the detail tables of its entry kinds.

Like the clinical layer's, each is keyed by `entry_id` and append-only (the migration refuses the tenant
role UPDATE and DELETE): a task done, a care plan evaluated or a dose outcome corrected is a new version
of the entry, never an edit. Columns marked "patient data" hold information about a person.

The vital signs themselves stay the clinical layer's `vital_signs` kind (the migration adds the columns
NEWS2 needs: consciousness, supplemental oxygen and the SpO2 scale); a `news2` entry scores one set, or
a `meows` entry where NEWS2 is not used in pregnancy and the puerperium, a `pews` entry for a child. A `fluid`
entry is one line of the fluid balance chart (intake or output).
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from appliance.substrate import record
from appliance.substrate.db import tenant_metadata

JSONB = postgresql.JSONB


def _entry_key() -> sa.Column:
    return sa.Column("entry_id", sa.Uuid, sa.ForeignKey("entry.id"), primary_key=True)


news2 = sa.Table(
    "news2",
    tenant_metadata,
    _entry_key(),
    # patient data: the early warning score of one set of vital signs
    sa.Column("vital_signs_id", sa.Uuid, nullable=False),  # the vital_signs entry (version) scored
    sa.Column("total", sa.SmallInteger, nullable=False),
    sa.Column("scores", JSONB, nullable=False),  # {parameter: 0..3} for each parameter measured
    sa.Column("missing", JSONB, nullable=False),  # parameters not measured: the total is a lower bound
    sa.Column("spo2_scale", sa.SmallInteger, nullable=False),
    sa.Column("risk", sa.Text, nullable=False),  # low, low_medium, medium, high
    sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),  # RCP minimum monitoring frequency
    sa.Index("news2_vital_signs_idx", "vital_signs_id"),
)

meows = sa.Table(
    "meows",
    tenant_metadata,
    _entry_key(),
    # patient data: the maternity early warning triggers of one set of vital signs
    sa.Column("vital_signs_id", sa.Uuid, nullable=False),  # the vital_signs entry (version) scored
    sa.Column("triggers", JSONB, nullable=False),  # {parameter: "red" | "yellow"} for each one triggered
    sa.Column("missing", JSONB, nullable=False),  # parameters not measured
    sa.Column("risk", sa.Text, nullable=False),  # clear, yellow, triggered
    sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("meows_vital_signs_idx", "vital_signs_id"),
)

pews = sa.Table(
    "pews",
    tenant_metadata,
    _entry_key(),
    # patient data: the paediatric early warning score (Bedside PEWS) of one set of vital signs of a child
    sa.Column("vital_signs_id", sa.Uuid, nullable=False),  # the vital_signs entry (version) scored
    sa.Column("age_band", sa.Text, nullable=False),  # the chart's age band on the day the set was taken
    sa.Column("total", sa.SmallInteger, nullable=False),  # 0..26
    sa.Column("scores", JSONB, nullable=False),  # {item: 0, 1, 2 or 4} for each item measured
    sa.Column("missing", JSONB, nullable=False),  # items not measured: the total is a lower bound
    sa.Column("risk", sa.Text, nullable=False),  # low, triggered
    sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("pews_vital_signs_idx", "vital_signs_id"),
)

medication_administration = sa.Table(
    "medication_administration",
    tenant_metadata,
    _entry_key(),
    # patient data: what happened to one dose of a prescription
    sa.Column("medication_request_id", sa.Uuid, nullable=False),  # root id of the prescription
    sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),  # the dose's slot; None: as needed
    sa.Column("outcome", sa.Text, nullable=False),  # given, held, refused, missed
    sa.Column("reason", sa.Text, nullable=True),  # why held, refused or missed (or given late)
    sa.Column("administered_at", sa.DateTime(timezone=True), nullable=True),  # when given
    sa.Column("drug", sa.Text, nullable=False),
    sa.Column("dose", sa.Numeric, nullable=True),
    sa.Column("dose_unit", sa.Text, nullable=True),
    sa.Column("route", sa.Text, nullable=True),
    sa.Column("minutes_late", sa.Integer, nullable=True),  # after the slot's window; None when on time
    sa.Index("medication_administration_request_idx", "medication_request_id", "scheduled_for"),
)

nursing_task = sa.Table(
    "nursing_task",
    tenant_metadata,
    _entry_key(),
    # patient data: a task for the nurses of a ward
    sa.Column("code", sa.Text, nullable=False),  # collect_specimen, admission_assessment, observations, other
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # open, done, cancelled
    sa.Column("ward_code", sa.Text, nullable=True),
    sa.Column("source_id", sa.Uuid, nullable=True),  # root id of the entry that asked for it
    sa.Column("source_kind", sa.Text, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Index("nursing_task_source_idx", "source_id"),
    sa.Index("nursing_task_ward_idx", "ward_code", "status"),
)

care_plan = sa.Table(
    "care_plan",
    tenant_metadata,
    _entry_key(),
    # patient data: a nursing care plan
    sa.Column("problem", sa.Text, nullable=False),
    sa.Column("goal", sa.Text, nullable=False),
    sa.Column("interventions", JSONB, nullable=False),  # [text, ...] in the order they are to be done
    sa.Column("evaluation", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=False),  # active, achieved, discontinued
    sa.Column("review_due", sa.DateTime(timezone=True), nullable=True),
)

handover = sa.Table(
    "handover",
    tenant_metadata,
    _entry_key(),
    # patient data: the summary one shift handed to the next, as it was at handover
    sa.Column("ward_code", sa.Text, nullable=False),
    sa.Column("shift_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("shift_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("summary", JSONB, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Index("handover_ward_idx", "ward_code", "shift_end"),
)

# Where a volume on the fluid balance chart went in or came out (t0030 keeps a route to its direction).
INTAKE_ROUTES = ("oral", "iv", "enteral", "blood", "other")
OUTPUT_ROUTES = ("urine", "vomit", "ng_aspirate", "drain", "stool", "other")


def _listed(routes: tuple[str, ...]) -> str:
    return ", ".join(f"'{route}'" for route in routes)


fluid = sa.Table(
    "fluid",
    tenant_metadata,
    _entry_key(),
    # patient data: one line of the fluid balance chart, a volume taken in or passed out at the entry's time
    sa.Column("direction", sa.Text, nullable=False),  # intake, output
    sa.Column("route", sa.Text, nullable=False),  # INTAKE_ROUTES or OUTPUT_ROUTES, by direction
    sa.Column("volume_ml", sa.Integer, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.CheckConstraint(f"(direction = 'intake' AND route IN ({_listed(INTAKE_ROUTES)})) OR "
                       f"(direction = 'output' AND route IN ({_listed(OUTPUT_ROUTES)}))",
                       name="fluid_route_of_direction"),
    sa.CheckConstraint("volume_ml BETWEEN 1 AND 5000", name="fluid_volume_range"),
)

# What the tenant file says of nursing (`[nursing]`), one row written by every `tenant apply`: the hour the
# ward's fluid day starts. Not the record: a setting, replaced whole.
nursing_setting = sa.Table(
    "nursing_setting",
    tenant_metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),
    sa.Column("fluid_day_starts", sa.Time, nullable=False),
    # The hours of the facility's meals (t0040; the kitchen's list): None where the file was applied before them.
    sa.Column("breakfast_at", sa.Time, nullable=True),
    sa.Column("lunch_at", sa.Time, nullable=True),
    sa.Column("supper_at", sa.Time, nullable=True),
    sa.CheckConstraint("id = 1", name="nursing_setting_one_row"),
)

KINDS: dict[str, sa.Table] = {
    "news2": news2,
    "meows": meows,
    "pews": pews,
    "medication_administration": medication_administration,
    "nursing_task": nursing_task,
    "care_plan": care_plan,
    "handover": handover,
    "fluid": fluid,
}
for _kind, _table in KINDS.items():
    record.register_kind(_kind, _table)

APPEND_ONLY = [t.name for t in KINDS.values()]

# The bedside record of one unit transfused (tenant revision t0036; appliance/layers/nursing/transfusion.py): started
# after the two-person check, observed at 15 minutes, ended (or stopped by a suspected reaction), and a reaction
# noticed after it ended (t0050). Each step is a new version of the one record. The vital signs are the clinical
# layer's `vital_signs` entries, named here.
transfusion = sa.Table(
    "transfusion",
    tenant_metadata,
    _entry_key(),
    # patient data: the unit given, who checked it, how it went
    sa.Column("unit_number", sa.Text, nullable=False),
    # The second staff member of the bedside check: their account (t0042) and their name at the time; rows written
    # before t0042 have no account and the name and staff ID as typed.
    sa.Column("checked_by", sa.Text, nullable=False),
    sa.Column("checked_by_account", sa.Uuid, nullable=True),
    sa.Column("status", sa.Text, nullable=False),  # in_progress, completed, stopped
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("started_on", sa.Date, nullable=True),  # the facility's day at the start, expiry judged on it (t0042)
    sa.Column("vitals_before_id", sa.Uuid, nullable=False),
    sa.Column("vitals_15min_id", sa.Uuid, nullable=True),
    sa.Column("vitals_end_id", sa.Uuid, nullable=True),
    sa.Column("volume_ml", sa.Integer, nullable=True),
    sa.Column("reaction", sa.Text, nullable=True),  # none, febrile, allergic, haemolytic, taco, trali, other
    sa.Column("reaction_note", sa.Text, nullable=True),
    # A reaction noticed after the unit finished (t0050): when it began and its ISBT severity grade.
    sa.Column("reaction_onset_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("reaction_severity", sa.Text, nullable=True),  # non_severe, severe, life_threatening
    sa.CheckConstraint("status IN ('in_progress', 'completed', 'stopped')", name="transfusion_status"),
    sa.CheckConstraint("reaction IN ('none', 'febrile', 'allergic', 'haemolytic', 'taco', 'trali', 'other')",
                       name="transfusion_reaction"),
    sa.CheckConstraint("(status = 'in_progress') = (ended_at IS NULL)", name="transfusion_ended"),
    sa.CheckConstraint("status = 'in_progress' OR (reaction IS NOT NULL AND volume_ml IS NOT NULL)",
                       name="transfusion_end_says_how"),
    sa.CheckConstraint("status <> 'stopped' OR (reaction IS NOT NULL AND reaction <> 'none')",
                       name="transfusion_stopped_by_reaction"),
    sa.CheckConstraint("reaction IS NULL OR reaction = 'none' OR status = 'stopped' OR (status = 'completed' "
                       "AND reaction_onset_at IS NOT NULL AND reaction_severity IS NOT NULL)",
                       name="transfusion_late_reaction_says_when"),
    sa.CheckConstraint("reaction_severity IN ('non_severe', 'severe', 'life_threatening')",
                       name="transfusion_reaction_severity"),
    sa.CheckConstraint("reaction_onset_at IS NULL OR reaction_onset_at >= started_at",
                       name="transfusion_reaction_after_start"),
    sa.CheckConstraint("volume_ml BETWEEN 0 AND 1000", name="transfusion_volume_range"),
    sa.CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="transfusion_ends_after_start"),
    sa.Index("transfusion_unit_number_idx", "unit_number"),
)
record.register_kind("transfusion", transfusion)

# What an admitted patient may eat (tenant revision t0040; appliance/layers/nursing/diet.py). A patient has one order
# record: a new order is its next version, followed from its own start; a correction replaces the version before it.
DIETS = ("normal", "soft", "clear_liquid", "full_liquid", "diabetic", "renal", "low_salt", "high_energy_protein",
         "gluten_free", "halal", "vegetarian", "npo", "enteral", "f75", "f100")

diet_order = sa.Table(
    "diet_order",
    tenant_metadata,
    _entry_key(),
    # patient data: the diet ordered, its texture, from when until when
    sa.Column("diet", sa.Text, nullable=False),
    sa.Column("also", JSONB, nullable=False),  # [diet, ...] combined with it (halal and diabetic), in DIETS
    sa.Column("iddsi_level", sa.SmallInteger, nullable=True),  # IDDSI 0-7 for dysphagia; None: no texture ordered
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("corrects", sa.Boolean, nullable=False),  # replaces the version before it rather than following it
    sa.Column("note", sa.Text, nullable=True),
    sa.CheckConstraint(f"diet IN {DIETS!r}", name="diet_order_diet"),
    sa.CheckConstraint("iddsi_level BETWEEN 0 AND 7", name="diet_order_iddsi_level"),
    sa.CheckConstraint("ends_at IS NULL OR ends_at > starts_at", name="diet_order_ends_after_start"),
)
record.register_kind("diet_order", diet_order)
