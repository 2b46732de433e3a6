"""Tables of the clinical layer, in every tenant schema.

Three sorts of table live here:

- **projections** that change as the record does — `patient`, `patient_identifier`, `encounter` — kept
  in step with the entries in the same transaction, so search and status reads are one indexed lookup;
- **detail tables** of entry kinds, one row per entry, keyed by `entry_id` and never updated or deleted
  (the migration refuses the tenant role UPDATE and DELETE on them): a correction is a new entry;
- **catalogues** synchronised from the tenant file — orderable tests, note templates, order sets.

Every id of a patient-data row is a random UUID: a guessable serial id invites probing.
Columns marked "patient data" hold information about a person.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from appliance.substrate import record
from appliance.substrate.db import tenant_metadata

JSONB = postgresql.JSONB


def _entry_key() -> sa.Column:
    return sa.Column("entry_id", sa.Uuid, sa.ForeignKey("entry.id"), primary_key=True)


# -- projections -------------------------------------------------------------------------------------

patient = sa.Table(
    "patient",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    # The one-identity person (control.subject) behind this chart; no FK: control is another schema.
    sa.Column("subject_id", sa.Uuid, nullable=True),
    sa.Column("mrn", sa.Text, nullable=False),  # the facility's medical record number
    # patient data: demographics as of the current `demographics` entry
    sa.Column("family_name", sa.Text, nullable=False),
    sa.Column("given_names", sa.Text, nullable=False),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("birth_date_estimated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("sex", sa.Text, nullable=False),
    sa.Column("phone", sa.Text, nullable=True),
    sa.Column("address", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("contacts", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("next_of_kin", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    # "given family" case- and accent-folded (identity.search_text), what the trigram index searches; and each part
    # folded alike, which FHIR's family= and given= narrow by (t0044)
    sa.Column("name_search", sa.Text, nullable=False),
    sa.Column("given_search", sa.Text, nullable=False),
    sa.Column("family_search", sa.Text, nullable=False),
    # The demographics entry in force (no FK: the row is written first so reactions to the entry see it).
    sa.Column("demographics_entry_id", sa.Uuid, nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("mrn", name="patient_mrn_key"),
    sa.Index("patient_name_trgm_idx", "name_search", postgresql_using="gin",
             postgresql_ops={"name_search": "public.gin_trgm_ops"}),
    sa.Index("patient_birth_date_idx", "birth_date"),
    sa.Index("patient_subject_idx", "subject_id"),
)

patient_identifier = sa.Table(
    "patient_identifier",
    tenant_metadata,
    sa.Column("system", sa.Text, primary_key=True),  # national_id, nhif, passport, birth_certificate...
    sa.Column("value", sa.Text, primary_key=True),  # patient data
    sa.Column("patient_id", sa.Uuid, sa.ForeignKey("patient.id"), nullable=False),
    sa.Index("patient_identifier_patient_idx", "patient_id"),
    sa.Index("patient_identifier_value_idx", "value"),
)

encounter = sa.Table(
    "encounter",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    # The entry that opened the encounter; the encounter row is that entry's detail.
    sa.Column("entry_id", sa.Uuid, sa.ForeignKey("entry.id"), nullable=False),
    sa.Column("patient_id", sa.Uuid, sa.ForeignKey("patient.id"), nullable=False),
    sa.Column("encounter_class", sa.Text, nullable=False),  # outpatient, emergency, inpatient
    sa.Column("status", sa.Text, nullable=False),  # planned, arrived, in_progress, finished, cancelled
    sa.Column("reason", sa.Text, nullable=True),  # patient data
    sa.Column("ward_code", sa.Text, nullable=True),
    sa.Column("planned_for", sa.DateTime(timezone=True), nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("entry_id", name="encounter_entry_id_key"),
    sa.Index("encounter_patient_idx", "patient_id", "started_at"),
    sa.Index("encounter_open_idx", "status",
             postgresql_where=sa.text("status IN ('planned', 'arrived', 'in_progress')")),
    # Today's patients lists those finished today beside the open ones (worklist.todays_encounters, every
    # clinician's landing page): without it, each load scanned every encounter the facility ever had.
    sa.Index("encounter_finished_idx", "ended_at", postgresql_where=sa.text("status = 'finished'")),
)

# The chart summary kept between changes (tenant migration t0009): triggers on entry, encounter,
# patient and patient_identifier bump the patient's version; a kept document serves while current.
chart_version = sa.Table(
    "chart_version",
    tenant_metadata,
    sa.Column("patient_id", sa.Uuid, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

chart_document = sa.Table(
    "chart_document",
    tenant_metadata,
    sa.Column("patient_id", sa.Uuid, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("document", sa.Text, nullable=False),  # patient data: the summary as served
)

# -- detail tables of entry kinds (append-only) ------------------------------------------------------

demographics = sa.Table(
    "demographics",
    tenant_metadata,
    _entry_key(),
    # patient data: one version of a patient's registration
    sa.Column("family_name", sa.Text, nullable=False),
    sa.Column("given_names", sa.Text, nullable=False),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("birth_date_estimated", sa.Boolean, nullable=False),
    sa.Column("sex", sa.Text, nullable=False),
    sa.Column("phone", sa.Text, nullable=True),
    sa.Column("address", JSONB, nullable=False),
    sa.Column("identifiers", JSONB, nullable=False),
    sa.Column("contacts", JSONB, nullable=False),
    sa.Column("next_of_kin", JSONB, nullable=False),
)

encounter_status_change = sa.Table(
    "encounter_status_change",
    tenant_metadata,
    _entry_key(),
    sa.Column("encounter_id", sa.Uuid, sa.ForeignKey("encounter.id"), nullable=False),
    sa.Column("from_status", sa.Text, nullable=False),
    sa.Column("to_status", sa.Text, nullable=False),
)

condition = sa.Table(
    "condition",
    tenant_metadata,
    _entry_key(),
    # patient data: a problem or diagnosis
    sa.Column("code", sa.Text, nullable=False),  # ICD-10, validated against the WHO list
    sa.Column("display", sa.Text, nullable=False),
    sa.Column("clinical_status", sa.Text, nullable=False),  # active, resolved, inactive
    sa.Column("verification", sa.Text, nullable=False),  # confirmed, provisional, differential
    sa.Column("onset_date", sa.Date, nullable=True),
    sa.Column("resolved_date", sa.Date, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
)

allergy = sa.Table(
    "allergy",
    tenant_metadata,
    _entry_key(),
    # patient data: an allergy or intolerance
    sa.Column("substance", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),  # medication, food, environment, other
    sa.Column("reaction", sa.Text, nullable=True),
    sa.Column("severity", sa.Text, nullable=True),  # mild, moderate, severe
    sa.Column("criticality", sa.Text, nullable=False),  # low, high, unable_to_assess
    sa.Column("clinical_status", sa.Text, nullable=False),  # active, inactive, resolved
    sa.Column("note", sa.Text, nullable=True),
)

medication_request = sa.Table(
    "medication_request",
    tenant_metadata,
    _entry_key(),
    # patient data: a prescription
    sa.Column("drug", sa.Text, nullable=False),
    sa.Column("dose", sa.Numeric, nullable=False),
    sa.Column("dose_unit", sa.Text, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("frequency", sa.Text, nullable=False),
    sa.Column("duration_days", sa.Integer, nullable=True),
    sa.Column("status", sa.Text, nullable=False),  # active, completed, stopped
    sa.Column("instructions", sa.Text, nullable=True),
    sa.Column("allergy_override_reason", sa.Text, nullable=True),
    sa.Column("order_set", sa.Text, nullable=True),
)

# On admission, what the admitting clinician decided for one medicine the patient came in on (tenant
# revision t0019; appliance/layers/clinical/reconciliation.py). The entry is on the stay's inpatient encounter.
medication_reconciliation = sa.Table(
    "medication_reconciliation",
    tenant_metadata,
    _entry_key(),
    # patient data: a medicines reconciliation decision
    sa.Column("medication_request_id", sa.Uuid, nullable=False),  # root id of the prescription came in on
    sa.Column("decision", sa.Text, nullable=False),  # continue, stop, hold
    sa.Column("continued_as", sa.Uuid, nullable=True),  # root id of the stay's prescription that continues it
    sa.Column("reason", sa.Text, nullable=True),  # why stopped or held; a note on a continuation
    sa.CheckConstraint("decision IN ('continue', 'stop', 'hold')", name="medication_reconciliation_decision"),
    sa.CheckConstraint("(decision = 'continue') = (continued_as IS NOT NULL)",
                       name="medication_reconciliation_continued_as"),
    sa.Index("medication_reconciliation_request_idx", "medication_request_id"),
)

allergy_alert = sa.Table(
    "allergy_alert",
    tenant_metadata,
    _entry_key(),
    # patient data: a drug–allergy check that fired, and what the prescriber did about it
    sa.Column("drug", sa.Text, nullable=False),
    sa.Column("matches", JSONB, nullable=False),  # [{allergy_id, substance, why}]
    sa.Column("outcome", sa.Text, nullable=False),  # blocked, overridden
    sa.Column("override_reason", sa.Text, nullable=True),
)

service_request = sa.Table(
    "service_request",
    tenant_metadata,
    _entry_key(),
    # patient data: a lab or imaging order
    sa.Column("category", sa.Text, nullable=False),  # lab, imaging
    sa.Column("code", sa.Text, nullable=False),  # LOINC, from the tenant's catalogue
    sa.Column("display", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),  # routine, urgent, stat
    sa.Column("status", sa.Text, nullable=False),  # active, revoked
    sa.Column("clinical_info", sa.Text, nullable=True),
    sa.Column("order_set", sa.Text, nullable=True),
)

result = sa.Table(
    "result",
    tenant_metadata,
    _entry_key(),
    # patient data: one analyte's result
    sa.Column("service_request_id", sa.Uuid, nullable=True),  # root id of the order it answers
    sa.Column("code", sa.Text, nullable=False),  # LOINC
    sa.Column("display", sa.Text, nullable=False),
    sa.Column("value_numeric", sa.Numeric, nullable=True),
    sa.Column("value_text", sa.Text, nullable=True),
    sa.Column("unit", sa.Text, nullable=True),
    sa.Column("reference_low", sa.Numeric, nullable=True),
    sa.Column("reference_high", sa.Numeric, nullable=True),
    sa.Column("flag", sa.Text, nullable=True),  # N, L, H, LL, HH, A, AA
    sa.Column("note", sa.Text, nullable=True),
    sa.Index("result_service_request_idx", "service_request_id"),
)

result_signoff = sa.Table(
    "result_signoff",
    tenant_metadata,
    _entry_key(),
    sa.Column("result_id", sa.Uuid, nullable=False),  # root id of the result reviewed; the author signs
    sa.Column("comment", sa.Text, nullable=True),  # patient data
    sa.Index("result_signoff_result_idx", "result_id"),
)

result_disclosure = sa.Table(
    "result_disclosure",
    tenant_metadata,
    _entry_key(),
    # The version of a reviewed result that the author gave the patient in person (a result the release
    # rules keep off the patient portal until then). Once per version while in force (the service
    # serialises two clinicians recording it at once); marked entered in error, it may be recorded again.
    sa.Column("result_id", sa.Uuid, nullable=False),
    sa.Column("note", sa.Text, nullable=True),  # patient data: what was said, the counselling given
    sa.Index("result_disclosure_result_idx", "result_id"),
)

specimen_receipt = sa.Table(
    "specimen_receipt",
    tenant_metadata,
    _entry_key(),
    # The department that answers an order has it in hand (the entry's author and time: who, when): kind
    # `specimen_receipt`, the laboratory received a lab order's specimen; kind `imaging_performed`, the
    # radiographer performed an imaging order's study (imaging.py; the same shape, so no table of its own).
    sa.Column("service_request_id", sa.Uuid, nullable=False),  # root id of the order
    # patient data: the specimen's state (haemolysed, clotted); the study's views taken, contrast given
    sa.Column("note", sa.Text, nullable=True),
    sa.Index("specimen_receipt_service_request_idx", "service_request_id"),
)

# One dose of a vaccine (tenant revision t0026; appliance/layers/clinical/immunization.py): given here, recorded
# from the patient's card or another facility, or due and not given. The entry's time is the day of the dose.
immunization = sa.Table(
    "immunization",
    tenant_metadata,
    _entry_key(),
    # patient data: a vaccination
    sa.Column("vaccine", sa.Text, nullable=False),  # a vaccine code of policies/immunization.toml
    sa.Column("dose_number", sa.SmallInteger, nullable=True),  # place in the series; None: campaign or extra dose
    sa.Column("status", sa.Text, nullable=False),  # completed, not_done
    sa.Column("not_done_reason", sa.Text, nullable=True),  # refused, contraindicated, out_of_stock...
    sa.Column("lot_number", sa.Text, nullable=True),
    sa.Column("expiry_date", sa.Date, nullable=True),  # of the lot
    sa.Column("site", sa.Text, nullable=True),  # left_thigh, right_upper_arm...
    sa.Column("route", sa.Text, nullable=True),  # intramuscular, subcutaneous, intradermal, oral
    sa.Column("source", sa.Text, nullable=False),  # administered (here), historical (card, another facility)
    sa.Column("note", sa.Text, nullable=True),
    sa.CheckConstraint("status IN ('completed', 'not_done')", name="immunization_status"),
    sa.CheckConstraint("(status = 'not_done') = (not_done_reason IS NOT NULL)", name="immunization_not_done_reason"),
    sa.CheckConstraint("source IN ('administered', 'historical')", name="immunization_source"),
    sa.CheckConstraint("dose_number >= 1", name="immunization_dose_number_positive"),
    sa.Index("immunization_vaccine_dose_idx", "vaccine", "dose_number"),
)

vital_signs = sa.Table(
    "vital_signs",
    tenant_metadata,
    _entry_key(),
    # patient data: one set of vital signs
    sa.Column("systolic_mmhg", sa.Integer, nullable=True),
    sa.Column("diastolic_mmhg", sa.Integer, nullable=True),
    sa.Column("heart_rate_bpm", sa.Integer, nullable=True),
    sa.Column("respiratory_rate", sa.Integer, nullable=True),
    sa.Column("temperature_c", sa.Numeric(4, 1), nullable=True),
    sa.Column("spo2_percent", sa.Integer, nullable=True),
    # Kilograms to the gram since t0051 (a newborn's daily gain is tens of grams): appliance/substrate/body_weight.py.
    sa.Column("weight_kg", sa.Numeric(6, 3), nullable=True),
    sa.Column("height_cm", sa.Numeric(4, 1), nullable=True),
    # Added by the nursing layer's revision (t0005) for NEWS2: ACVPU, air or oxygen, and the SpO2
    # scale in use (2 on a prescribed hypercapnic target of 88–92 %).
    sa.Column("consciousness", sa.Text, nullable=True),
    sa.Column("supplemental_oxygen", sa.Boolean, nullable=True),
    sa.Column("oxygen_l_min", sa.Numeric(4, 1), nullable=True),
    sa.Column("spo2_scale", sa.SmallInteger, nullable=True),
    # Added by t0021 for acute malnutrition screening of children (clinical/growth.py): mid-upper-arm
    # circumference in whole millimetres, as the tape reads, and bilateral pitting oedema (True present,
    # False looked for and absent, NULL not examined).
    sa.Column("muac_mm", sa.Integer, nullable=True),
    sa.Column("oedema", sa.Boolean, nullable=True),
    # Added by t0024: the WHO grade of bilateral pitting oedema found (1 + both feet, 2 ++ feet and lower legs,
    # hands or lower arms, 3 +++ generalised including the face); NULL where none was found or it was not graded.
    sa.Column("oedema_grade", sa.SmallInteger, nullable=True),
    sa.CheckConstraint("oedema_grade BETWEEN 1 AND 3", name="vital_signs_oedema_grade_range"),
    sa.CheckConstraint("oedema_grade IS NULL OR oedema IS TRUE", name="vital_signs_oedema_grade_is_present"),
)

note = sa.Table(
    "note",
    tenant_metadata,
    _entry_key(),
    # patient data: a clinical note, free text and/or a template's structured fields
    sa.Column("template_code", sa.Text, nullable=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("fields", JSONB, nullable=False),
    sa.Column("text", sa.Text, nullable=True),
)

# A death certificate (tenant revision t0027; appliance/layers/clinical/death.py): the WHO international form of
# medical certificate of cause of death, its author the certifier. One in force per patient.
death = sa.Table(
    "death",
    tenant_metadata,
    _entry_key(),
    # patient data: when and where the person died, and of what, as certified
    sa.Column("died_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("place", sa.Text, nullable=False),  # this_facility, home, other, en_route
    sa.Column("place_other", sa.Text, nullable=True),  # where, for `other`
    # Part 1, lines a (the immediate cause) to d, each {line, code, display, interval}: the sequence the
    # certifier wrote, each condition due to the one on the line below.
    sa.Column("part1", JSONB, nullable=False),
    sa.Column("part2", JSONB, nullable=False),  # other significant conditions: [{code, display, interval}]
    # The condition on the lowest used line of Part 1: the underlying cause as certified (not as coded by
    # ICD mortality rules, which may select another).
    sa.Column("underlying_code", sa.Text, nullable=False),
    sa.Column("underlying_display", sa.Text, nullable=False),
    sa.Column("manner", sa.Text, nullable=False),
    sa.Column("pregnancy", sa.Text, nullable=True),  # for a woman: pregnant, or within 42 days of a pregnancy...
    sa.CheckConstraint("place IN ('this_facility', 'home', 'other', 'en_route')", name="death_place"),
    sa.CheckConstraint("manner IN ('disease', 'accident', 'intentional_self_harm', 'assault', 'legal_intervention', "
                       "'war', 'pending_investigation', 'could_not_be_determined')", name="death_manner"),
    sa.CheckConstraint("pregnancy IN ('not_pregnant', 'pregnant', 'within_42_days', '43_days_to_1_year', 'unknown')",
                       name="death_pregnancy"),
)

# A patient referred to another facility of the appliance (tenant revision t0028; appliance/layers/clinical/
# referral.py): this facility's record of the act. What the receiving facility answers is the exchange's
# (`control.referral`, c0011, through appliance/substrate/referrals.py), named by `referral_id`.
referral = sa.Table(
    "referral",
    tenant_metadata,
    _entry_key(),
    sa.Column("referral_id", sa.Uuid, nullable=False, unique=True),  # the exchange's row
    sa.Column("to_tenant", sa.Text, nullable=False),
    sa.Column("to_facility", sa.Text, nullable=False),  # its name when referred
    sa.Column("clinic", sa.Text, nullable=True),  # a clinic code of that facility's tenant file, or any
    sa.Column("urgency", sa.Text, nullable=False),  # routine, urgent, emergency
    sa.Column("reason", sa.Text, nullable=False),  # patient data: why the patient is referred
    sa.Column("summary", sa.Text, nullable=False),  # patient data: the letter's clinical summary
    # patient data: the chart's items sent with the letter, copied at sending: {problems, allergies,
    # medications, results}, each a list of what the receiving facility reads
    sa.Column("items", JSONB, nullable=False),
    sa.CheckConstraint("urgency IN ('routine', 'urgent', 'emergency')", name="referral_urgency"),
)

# A birth on the mother's record (tenant revision t0029; appliance/layers/clinical/delivery.py): the delivery and
# each baby born. A live-born baby is registered as a patient in the delivery's transaction; `babies` names its
# chart, which is how the baby's chart finds its mother.
delivery = sa.Table(
    "delivery",
    tenant_metadata,
    _entry_key(),
    # patient data: the birth, as the midwife or clinician recorded it
    sa.Column("born_at", sa.DateTime(timezone=True), nullable=False),  # the (first) baby's time of birth
    sa.Column("gestation_weeks", sa.SmallInteger, nullable=False),  # gestational age at birth: completed weeks
    sa.Column("gestation_days", sa.SmallInteger, nullable=False),  # and days
    sa.Column("mode", sa.Text, nullable=False),  # spontaneous_vaginal, assisted_vaginal, caesarean, breech_vaginal
    # patient data: each baby, in birth order: {number, outcome, sex, weight_g, apgar_1, apgar_5, resuscitation,
    # patient_id (a live birth's chart, else null), weight_entry_id (the chart's birth weight, else null)}
    sa.Column("babies", JSONB, nullable=False),
    sa.Column("blood_loss_ml", sa.Integer, nullable=False),  # the mother's estimated blood loss
    sa.Column("uterotonic", sa.Text, nullable=False),  # given in the third stage: oxytocin, ..., or none
    sa.CheckConstraint("mode IN ('spontaneous_vaginal', 'assisted_vaginal', 'caesarean', 'breech_vaginal')",
                       name="delivery_mode"),
    sa.CheckConstraint("gestation_weeks BETWEEN 22 AND 44 AND gestation_days BETWEEN 0 AND 6",
                       name="delivery_gestation_range"),
    sa.CheckConstraint("blood_loss_ml >= 0", name="delivery_blood_loss_positive"),
    sa.CheckConstraint("uterotonic IN ('oxytocin', 'carbetocin', 'misoprostol', 'ergometrine', 'none')",
                       name="delivery_uterotonic"),
    sa.CheckConstraint("jsonb_typeof(babies) = 'array' AND jsonb_array_length(babies) BETWEEN 1 AND 4",
                       name="delivery_babies"),
    sa.Index("delivery_babies_idx", "babies", postgresql_using="gin", postgresql_ops={"babies": "jsonb_path_ops"}),
)

# One antenatal care contact on the woman's record (tenant revision t0033; appliance/layers/clinical/antenatal.py):
# the pregnancy's dating, the examination, the tests, what was given, and the flags the contact raised.
antenatal = sa.Table(
    "antenatal",
    tenant_metadata,
    _entry_key(),
    sa.Column("pregnancy_id", sa.Uuid, nullable=False),  # the record id of the pregnancy's first contact
    # patient data: the pregnancy's dating as given at this contact, and the due date it gives
    sa.Column("lmp", sa.Date, nullable=True),  # first day of the last menstrual period
    sa.Column("ultrasound_on", sa.Date, nullable=True),  # the day of the dating scan
    sa.Column("ultrasound_weeks", sa.SmallInteger, nullable=True),  # the gestational age it measured: weeks
    sa.Column("ultrasound_days", sa.SmallInteger, nullable=True),  # and days
    sa.Column("edd", sa.Date, nullable=False),  # estimated due date (the pregnancy's, as dated so far)
    sa.Column("dated_by", sa.Text, nullable=False),  # lmp or ultrasound
    sa.Column("gestation_days", sa.SmallInteger, nullable=False),  # gestational age at the contact, days
    # patient data: history, examination and tests
    sa.Column("gravida", sa.SmallInteger, nullable=True),
    sa.Column("para", sa.SmallInteger, nullable=True),
    sa.Column("systolic_mmhg", sa.SmallInteger, nullable=True),
    sa.Column("diastolic_mmhg", sa.SmallInteger, nullable=True),
    sa.Column("weight_kg", sa.Numeric(5, 1), nullable=True),
    sa.Column("fundal_height_cm", sa.SmallInteger, nullable=True),
    sa.Column("fetal_heart_rate", sa.SmallInteger, nullable=True),
    sa.Column("fetal_movements", sa.Text, nullable=True),  # present, reduced, absent
    sa.Column("presentation", sa.Text, nullable=True),  # cephalic, breech, transverse
    sa.Column("urine_protein", sa.Text, nullable=True),  # dipstick: negative, trace, 1+, 2+, 3+
    sa.Column("haemoglobin_g_dl", sa.Numeric(3, 1), nullable=True),
    sa.Column("syphilis_test", sa.Text, nullable=False),  # not_done, negative, positive
    sa.Column("syphilis_treated", sa.Boolean, nullable=False),
    sa.Column("hiv_test", sa.Text, nullable=False),  # not_done, negative, positive, known_positive
    # patient data: what was given
    sa.Column("td_dose", sa.SmallInteger, nullable=True),  # tetanus-diphtheria dose number given
    sa.Column("iptp_dose", sa.SmallInteger, nullable=True),  # IPTp-SP dose number given
    sa.Column("iron_folic_acid", sa.Boolean, nullable=False),
    sa.Column("danger_signs", JSONB, nullable=False),  # patient data: the danger signs found, codes of DANGER_SIGNS
    sa.Column("next_visit_on", sa.Date, nullable=True),
    sa.Column("note", sa.Text, nullable=True),  # patient data
    sa.Column("flags", JSONB, nullable=False),  # what the contact raised when recorded, codes of FLAGS
    sa.CheckConstraint("dated_by IN ('lmp', 'ultrasound')", name="antenatal_dated_by"),
    sa.CheckConstraint("gestation_days BETWEEN 0 AND 315", name="antenatal_gestation_range"),
    sa.CheckConstraint("syphilis_test IN ('not_done', 'negative', 'positive')", name="antenatal_syphilis_test"),
    sa.CheckConstraint("hiv_test IN ('not_done', 'negative', 'positive', 'known_positive')", name="antenatal_hiv_test"),
    sa.CheckConstraint("urine_protein IN ('negative', 'trace', '1+', '2+', '3+')", name="antenatal_urine_protein"),
    sa.CheckConstraint("jsonb_typeof(danger_signs) = 'array' AND jsonb_typeof(flags) = 'array'",
                       name="antenatal_lists"),
    sa.Index("antenatal_pregnancy_idx", "pregnancy_id"),
)

# -- catalogues from the tenant file -----------------------------------------------------------------

orderable = sa.Table(
    "orderable",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),  # LOINC
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("definition", JSONB, nullable=False),  # the catalogue item as written in the tenant file
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

note_template = sa.Table(
    "note_template",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("specialty", sa.Text, nullable=False),
    sa.Column("definition", JSONB, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

order_set = sa.Table(
    "order_set",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("definition", JSONB, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

# The kinds this layer writes, and where each keeps its detail.
KINDS: dict[str, sa.Table | None] = {
    "demographics": demographics,
    "encounter": encounter,
    "encounter_status": encounter_status_change,
    "condition": condition,
    "allergy": allergy,
    "medication_request": medication_request,
    "allergy_alert": allergy_alert,
    "medication_reconciliation": medication_reconciliation,
    "service_request": service_request,
    "result": result,
    "result_signoff": result_signoff,
    "result_disclosure": result_disclosure,
    "specimen_receipt": specimen_receipt,
    "imaging_performed": specimen_receipt,
    "immunization": immunization,
    "vital_signs": vital_signs,
    "note": note,
    "death": death,
    "referral": referral,
    "delivery": delivery,
    "antenatal": antenatal,
}
for _kind, _table in KINDS.items():
    record.register_kind(_kind, _table)

# Detail tables the tenant role may only insert into and read (the migration revokes the rest).
APPEND_ONLY = ["entry", *dict.fromkeys(t.name for t in KINDS.values() if t is not None and t is not encounter)]

# -- the operating theatre (tenant revision t0031; appliance/layers/clinical/surgery.py) ----------------------------

SURGERY_STATUSES = ("scheduled", "in_theatre", "completed", "cancelled")
SURGERY_URGENCIES = ("elective", "urgent", "emergency")
ANAESTHESIA_TYPES = ("general", "spinal", "epidural", "regional_block", "local", "sedation")

# An operation on the patient's record: booked, taken into theatre, completed or cancelled. Each change of state and
# each phase of the WHO Surgical Safety Checklist is a new version of the one record, so the case's history is who
# booked it, who signed in, timed out, signed out and closed it, and when.
surgery = sa.Table(
    "surgery",
    tenant_metadata,
    _entry_key(),
    # patient data: the operation as booked
    sa.Column("procedure", sa.Text, nullable=False),  # as the surgeon writes it
    sa.Column("procedure_code", sa.Text, nullable=True),  # the facility's procedure list (and fee item) code
    sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("theatre", sa.Text, nullable=False),  # a theatre code of the tenant file
    sa.Column("surgeon", sa.Text, nullable=False),
    sa.Column("anaesthetist", sa.Text, nullable=True),
    sa.Column("urgency", sa.Text, nullable=False),
    sa.Column("anaesthesia", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("cancel_reason", sa.Text, nullable=True),
    # each phase recorded: {"sign_in": {"items": [...], "by": account id, "by_name": ..., "at": ..., "note": ...}}
    sa.Column("checklist", JSONB, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),  # into theatre
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),  # completed
    sa.CheckConstraint(f"status IN {SURGERY_STATUSES!r}", name="surgery_status"),
    sa.CheckConstraint(f"urgency IN {SURGERY_URGENCIES!r}", name="surgery_urgency"),
    sa.CheckConstraint(f"anaesthesia IN {ANAESTHESIA_TYPES!r}", name="surgery_anaesthesia"),
    sa.CheckConstraint("status <> 'cancelled' OR cancel_reason IS NOT NULL", name="surgery_cancel_reason"),
    sa.Index("surgery_planned_at_idx", "planned_at"),
)

# The operation note, signed by its author (the entry's), one record per operation (`surgery_id`, the case's root).
operation_note = sa.Table(
    "operation_note",
    tenant_metadata,
    _entry_key(),
    sa.Column("surgery_id", sa.Uuid, nullable=False),
    # patient data: what was done and found
    sa.Column("procedure_performed", sa.Text, nullable=False),
    sa.Column("findings", sa.Text, nullable=False),
    sa.Column("complications", sa.Text, nullable=True),
    sa.Column("blood_loss_ml", sa.Integer, nullable=False),
    sa.Column("implants", sa.Text, nullable=True),
    sa.Column("specimens", sa.Text, nullable=True),
    sa.Column("post_op_instructions", sa.Text, nullable=False),
    sa.CheckConstraint("blood_loss_ml BETWEEN 0 AND 20000", name="operation_note_blood_loss_range"),
    sa.Index("operation_note_surgery_idx", "surgery_id"),
)

# The facility's theatres and its procedure list, from the tenant file (`[[theatres]]`, `[[procedures]]`).
theatre = sa.Table(
    "theatre",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

surgical_procedure = sa.Table(
    "surgical_procedure",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),  # also the fee schedule's `procedure` item code
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

record.register_kind("surgery", surgery)
record.register_kind("operation_note", operation_note)

# -- the tuberculosis treatment register (tenant revision t0034; appliance/layers/clinical/tuberculosis.py) --------

TB_OUTCOMES = ("cured", "treatment_completed", "treatment_failed", "died", "lost_to_follow_up", "not_evaluated")
TB_HISTORIES = ("new", "relapse", "after_failure", "after_loss_to_follow_up", "other_previously_treated", "unknown")

# A TB case registered on treatment here: the register's line. Its outcome, when one is assigned, is a later version
# of the same record, so the line's history is who registered the case and who assigned the outcome, and when.
tb_treatment = sa.Table(
    "tb_treatment",
    tenant_metadata,
    _entry_key(),
    sa.Column("register_number", sa.Text, nullable=False),  # "2026/0001": the year's register, in sequence
    sa.Column("register_year", sa.SmallInteger, nullable=False),
    # patient data: the case as classified at registration (WHO 2013 definitions) and its treatment
    sa.Column("started_on", sa.Date, nullable=False),
    sa.Column("site", sa.Text, nullable=False),  # pulmonary, extrapulmonary
    sa.Column("bacteriology", sa.Text, nullable=False),  # bacteriologically_confirmed, clinically_diagnosed
    sa.Column("history", sa.Text, nullable=False),  # new, relapse, after_failure, ... (TB_HISTORIES)
    sa.Column("regimen", sa.Text, nullable=False),  # a regimen code of policies/tuberculosis.toml
    sa.Column("hiv_status", sa.Text, nullable=False),  # positive, negative, unknown: at the start of treatment
    sa.Column("weight_kg", sa.Numeric(5, 1), nullable=False),  # at the start of treatment
    sa.Column("outcome", sa.Text, nullable=True),  # TB_OUTCOMES; NULL while on treatment
    sa.Column("outcome_on", sa.Date, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.CheckConstraint("site IN ('pulmonary', 'extrapulmonary')", name="tb_treatment_site"),
    sa.CheckConstraint("bacteriology IN ('bacteriologically_confirmed', 'clinically_diagnosed')",
                       name="tb_treatment_bacteriology"),
    sa.CheckConstraint(f"history IN {TB_HISTORIES!r}", name="tb_treatment_history"),
    sa.CheckConstraint("hiv_status IN ('positive', 'negative', 'unknown')", name="tb_treatment_hiv_status"),
    sa.CheckConstraint(f"outcome IN {TB_OUTCOMES!r}", name="tb_treatment_outcome"),
    sa.CheckConstraint("(outcome IS NULL) = (outcome_on IS NULL)", name="tb_treatment_outcome_on"),
    sa.CheckConstraint("weight_kg > 0 AND weight_kg < 400", name="tb_treatment_weight_range"),
    sa.Index("tb_treatment_started_on_idx", "started_on"),
)

# A monitoring examination of a TB treatment in a month of treatment (2, 5, 6... as the regimen sets them).
tb_follow_up = sa.Table(
    "tb_follow_up",
    tenant_metadata,
    _entry_key(),
    sa.Column("treatment_id", sa.Uuid, nullable=False),  # the tb_treatment record's root entry
    # patient data: the results of the month's examination
    sa.Column("month", sa.SmallInteger, nullable=False),  # month of treatment (0: at the start)
    sa.Column("examined_on", sa.Date, nullable=False),
    sa.Column("smear", sa.Text, nullable=False),  # negative, positive, not_done
    sa.Column("culture", sa.Text, nullable=False),  # negative, positive, not_done
    sa.Column("xpert", sa.Text, nullable=False),  # mtb_not_detected, mtb_detected, not_done
    sa.Column("weight_kg", sa.Numeric(5, 1), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.CheckConstraint("month BETWEEN 0 AND 24", name="tb_follow_up_month_range"),
    sa.CheckConstraint("smear IN ('negative', 'positive', 'not_done')", name="tb_follow_up_smear"),
    sa.CheckConstraint("culture IN ('negative', 'positive', 'not_done')", name="tb_follow_up_culture"),
    sa.CheckConstraint("xpert IN ('mtb_not_detected', 'mtb_detected', 'not_done')", name="tb_follow_up_xpert"),
    sa.CheckConstraint("weight_kg > 0 AND weight_kg < 400", name="tb_follow_up_weight_range"),
    sa.Index("tb_follow_up_treatment_idx", "treatment_id"),
)

# The last register number given in each year: moved on in the registration's transaction, under its row lock.
tb_register_sequence = sa.Table(
    "tb_register_sequence",
    tenant_metadata,
    sa.Column("year", sa.SmallInteger, primary_key=True),
    sa.Column("last_number", sa.Integer, nullable=False),
    sa.CheckConstraint("last_number >= 1", name="tb_register_sequence_positive"),
)

record.register_kind("tb_treatment", tb_treatment)
record.register_kind("tb_follow_up", tb_follow_up)

# -- family planning (tenant revision t0037; appliance/layers/clinical/family_planning.py) ---------------------------

FP_SERVICES = ("provided", "removal")
FP_CLIENT_TYPES = ("new_acceptor", "new_to_method", "continuing", "restart")

# One family planning visit: a method provided (in its unit: cycles, doses, a device, pieces), or an implant or IUD
# removed and why. The entry's time is the day of the visit.
family_planning = sa.Table(
    "family_planning",
    tenant_metadata,
    _entry_key(),
    # patient data: contraception, sensitive
    sa.Column("method", sa.Text, nullable=False),  # a method code of policies/family_planning.toml
    sa.Column("service", sa.Text, nullable=False),  # provided, removal
    sa.Column("quantity", sa.SmallInteger, nullable=True),  # in the method's unit; a provided visit's
    sa.Column("client_type", sa.Text, nullable=True),  # new_acceptor, new_to_method, continuing, restart
    sa.Column("removal_reason", sa.Text, nullable=True),  # a removal's
    sa.Column("counselled", sa.Boolean, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.CheckConstraint(f"service IN {FP_SERVICES!r}", name="family_planning_service"),
    sa.CheckConstraint(f"client_type IN {FP_CLIENT_TYPES!r}", name="family_planning_client_type"),
    sa.CheckConstraint("(service = 'provided') = (quantity IS NOT NULL AND client_type IS NOT NULL)",
                       name="family_planning_provided_has_quantity"),
    sa.CheckConstraint("(service = 'removal') = (removal_reason IS NOT NULL)", name="family_planning_removal_reason"),
    sa.CheckConstraint("quantity >= 1", name="family_planning_quantity_positive"),
    sa.Index("family_planning_method_idx", "method"),
)

record.register_kind("family_planning", family_planning)

# -- documents on the record (tenant revision t0038; appliance/layers/clinical/documents.py) -------------------------

DOCUMENT_CATEGORIES = ("referral_letter", "consent_form", "ecg", "outside_result", "outside_imaging",
                       "identity_document", "clinical_photograph", "other")
DOCUMENT_MEDIA_TYPES = ("application/pdf", "image/jpeg", "image/png")
DOCUMENT_MAX_BYTES = 10 * 1024 * 1024

# A file's bytes, once per facility however many versions or charts name them, keyed by their SHA-256 (hex). Patient
# data: a scan or photograph of the patient's paper or body. Stored out of line and uncompressed (t0038 says why).
document_content = sa.Table(
    "document_content",
    tenant_metadata,
    sa.Column("sha256", sa.Text, primary_key=True),
    sa.Column("sha1_base64", sa.Text, nullable=False),  # FHIR R4's Attachment.hash: SHA-1, base64
    sa.Column("media_type", sa.Text, nullable=False),  # from the file's first bytes, never the client's word
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="document_content_sha256_hex"),
    sa.CheckConstraint(f"media_type IN {DOCUMENT_MEDIA_TYPES!r}", name="document_content_media_type"),
    sa.CheckConstraint(f"size = octet_length(content) AND size BETWEEN 1 AND {DOCUMENT_MAX_BYTES}",
                       name="document_content_size"),
)

# One document on the chart: what it is, its title and the day written on it, and which bytes. The entry's author is
# who uploaded it, its time when.
document = sa.Table(
    "document",
    tenant_metadata,
    _entry_key(),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),  # patient data: may name a condition or a clinic
    sa.Column("document_date", sa.Date, nullable=True),
    sa.Column("content_sha256", sa.Text, sa.ForeignKey("document_content.sha256"), nullable=False),
    sa.CheckConstraint(f"category IN {DOCUMENT_CATEGORIES!r}", name="document_category"),
    sa.Index("document_content_sha256_idx", "content_sha256"),
)

record.register_kind("document", document)

# -- the blood bank (tenant revision t0036; appliance/layers/clinical/blood.py) -------------------------------------

BLOOD_COMPONENTS = ("whole_blood", "red_cells", "plasma", "platelets")
BLOOD_URGENCIES = ("routine", "urgent", "emergency")

# One bag in the blood bank, as received: not patient data. What became of it is in `blood_unit_event`.
blood_unit = sa.Table(
    "blood_unit",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("unit_number", sa.Text, nullable=False, unique=True),  # the bag's label (ISBT 128 donation number)
    sa.Column("component", sa.Text, nullable=False),
    sa.Column("abo", sa.Text, nullable=False),
    sa.Column("rhd", sa.Text, nullable=False),
    sa.Column("volume_ml", sa.Integer, nullable=False),
    sa.Column("collected_on", sa.Date, nullable=False),
    sa.Column("expires_on", sa.Date, nullable=False),
    sa.Column("received_by", sa.Uuid, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(f"component IN {BLOOD_COMPONENTS!r}", name="blood_unit_component"),
    sa.CheckConstraint("abo IN ('O', 'A', 'B', 'AB')", name="blood_unit_abo"),
    sa.CheckConstraint("rhd IN ('positive', 'negative')", name="blood_unit_rhd"),
    sa.CheckConstraint("volume_ml BETWEEN 1 AND 1000", name="blood_unit_volume_range"),
    sa.CheckConstraint("expires_on >= collected_on", name="blood_unit_expires_after_collection"),
    sa.Index("blood_unit_expires_on_idx", "expires_on"),
)

# The unit's history, appended to and never rewritten: its status is its last event's (none yet: available).
blood_unit_event = sa.Table(
    "blood_unit_event",
    tenant_metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),  # the order of a unit's events
    sa.Column("unit_id", sa.Uuid, sa.ForeignKey("blood_unit.id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # reserved, released, issued, transfused, discarded
    sa.Column("patient_id", sa.Uuid, nullable=True),  # patient data: for whom it was reserved, issued, transfused
    sa.Column("request_id", sa.Uuid, nullable=True),  # the blood_request record (root id) it answers
    sa.Column("emergency", sa.Boolean, nullable=False, server_default=sa.false()),  # issued uncrossmatched
    sa.Column("reason", sa.Text, nullable=True),  # why discarded, released, or issued in an emergency
    sa.Column("entry_id", sa.Uuid, sa.ForeignKey("entry.id"), nullable=True),  # the bedside transfusion entry
    sa.Column("recorded_by", sa.Uuid, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("kind IN ('reserved', 'released', 'issued', 'transfused', 'discarded')",
                       name="blood_unit_event_kind"),
    sa.CheckConstraint("kind NOT IN ('reserved', 'issued', 'transfused') OR "
                       "(patient_id IS NOT NULL AND request_id IS NOT NULL)", name="blood_unit_event_for_whom"),
    sa.CheckConstraint("kind NOT IN ('discarded', 'released') OR reason IS NOT NULL", name="blood_unit_event_reason"),
    sa.CheckConstraint("NOT emergency OR reason IS NOT NULL", name="blood_unit_event_emergency_reason"),
    sa.CheckConstraint("kind <> 'transfused' OR entry_id IS NOT NULL", name="blood_unit_event_transfused_entry"),
    sa.Index("blood_unit_event_unit_idx", "unit_id", "seq"),
    sa.Index("blood_unit_event_request_idx", "request_id"),
)

# A clinician's request for blood for the patient: what the blood bank crossmatches and issues against.
blood_request = sa.Table(
    "blood_request",
    tenant_metadata,
    _entry_key(),
    # patient data: what is asked for and why
    sa.Column("component", sa.Text, nullable=False),
    sa.Column("units", sa.SmallInteger, nullable=False),
    sa.Column("indication", sa.Text, nullable=False),
    sa.Column("urgency", sa.Text, nullable=False),
    sa.Column("cancel_reason", sa.Text, nullable=True),  # why it was cancelled (t0042); NULL: still open
    sa.CheckConstraint(f"component IN {BLOOD_COMPONENTS!r}", name="blood_request_component"),
    sa.CheckConstraint("units BETWEEN 1 AND 10", name="blood_request_units_range"),
    sa.CheckConstraint(f"urgency IN {BLOOD_URGENCIES!r}", name="blood_request_urgency"),
)

record.register_kind("blood_request", blood_request)

# -- HIV care and treatment (tenant revision t0039; appliance/layers/clinical/hiv.py) --------------------------------

HIV_STATUSES = ("in_care", "transferred_out", "stopped", "died")
HIV_TB_SCREENING = ("no_signs", "presumptive_tb", "on_tb_treatment", "not_screened")
HIV_REGIMEN_CHANGES = ("initiation", "substitution", "switch")
HIV_ADHERENCE = ("good", "fair", "poor", "not_assessed")

# A person enrolled in HIV care here; a status change (transferred out, stopped, died) is a later version.
hiv_care = sa.Table(
    "hiv_care",
    tenant_metadata,
    _entry_key(),
    sa.Column("art_number", sa.Text, nullable=False),  # "ART-00001": the facility's, in sequence
    # patient data: the enrolment and the status in care
    sa.Column("enrolled_on", sa.Date, nullable=False),
    sa.Column("diagnosed_on", sa.Date, nullable=False),  # HIV infection confirmed
    sa.Column("who_stage", sa.SmallInteger, nullable=False),  # WHO clinical stage 1-4 at enrolment
    sa.Column("cd4_baseline", sa.Integer, nullable=True),  # cells/mm3
    sa.Column("tb_screening", sa.Text, nullable=False),  # HIV_TB_SCREENING
    sa.Column("status", sa.Text, nullable=False),  # HIV_STATUSES
    sa.Column("status_on", sa.Date, nullable=True),  # NULL while in care
    sa.Column("note", sa.Text, nullable=True),
    sa.CheckConstraint("who_stage BETWEEN 1 AND 4", name="hiv_care_who_stage"),
    sa.CheckConstraint("cd4_baseline BETWEEN 0 AND 5000", name="hiv_care_cd4_range"),
    sa.CheckConstraint(f"tb_screening IN {HIV_TB_SCREENING!r}", name="hiv_care_tb_screening"),
    sa.CheckConstraint(f"status IN {HIV_STATUSES!r}", name="hiv_care_status"),
    sa.CheckConstraint("(status = 'in_care') = (status_on IS NULL)", name="hiv_care_status_on"),
    sa.CheckConstraint("diagnosed_on <= enrolled_on", name="hiv_care_diagnosed_first"),
)

# ART started on a regimen (change "initiation") and each substitution or switch after it: the regimen history.
hiv_regimen = sa.Table(
    "hiv_regimen",
    tenant_metadata,
    _entry_key(),
    sa.Column("care_id", sa.Uuid, nullable=False),  # the hiv_care record's root entry
    # patient data: the ARVs prescribed from this day
    sa.Column("started_on", sa.Date, nullable=False),
    sa.Column("regimen", sa.Text, nullable=False),  # a regimen code of policies/hiv.toml
    sa.Column("change", sa.Text, nullable=False),  # HIV_REGIMEN_CHANGES
    sa.Column("reason", sa.Text, nullable=True),  # why a substitution or switch
    sa.CheckConstraint(f"change IN {HIV_REGIMEN_CHANGES!r}", name="hiv_regimen_change"),
    sa.CheckConstraint("change = 'initiation' OR reason IS NOT NULL", name="hiv_regimen_reason"),
    sa.Index("hiv_regimen_started_on_idx", "started_on"),
    sa.Index("hiv_regimen_care_idx", "care_id"),
)

# A clinical visit or ARV pick-up: the days of ARVs given (multi-month dispensing) and the next appointment.
hiv_visit = sa.Table(
    "hiv_visit",
    tenant_metadata,
    _entry_key(),
    sa.Column("care_id", sa.Uuid, nullable=False),
    # patient data: the visit
    sa.Column("visit_on", sa.Date, nullable=False),
    sa.Column("arv_days", sa.SmallInteger, nullable=False),
    sa.Column("adherence", sa.Text, nullable=False),  # HIV_ADHERENCE
    sa.Column("next_appointment_on", sa.Date, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.CheckConstraint("arv_days BETWEEN 0 AND 200", name="hiv_visit_arv_days"),
    sa.CheckConstraint(f"adherence IN {HIV_ADHERENCE!r}", name="hiv_visit_adherence"),
    sa.CheckConstraint("next_appointment_on > visit_on", name="hiv_visit_next_after"),
    sa.Index("hiv_visit_care_idx", "care_id"),
)

# A viral load result, by the day its sample was taken.
hiv_viral_load = sa.Table(
    "hiv_viral_load",
    tenant_metadata,
    _entry_key(),
    sa.Column("care_id", sa.Uuid, nullable=False),
    # patient data: the result
    sa.Column("sampled_on", sa.Date, nullable=False),
    sa.Column("copies_per_ml", sa.Integer, nullable=False),  # 0: target not detected
    sa.Column("note", sa.Text, nullable=True),
    # routine (on the monitoring schedule) or targeted (suspected treatment failure): MER TX_PVLS's split (t0043);
    # NULL for a result recorded before the indication was asked (not documented)
    sa.Column("indication", sa.Text, nullable=True),
    sa.CheckConstraint("copies_per_ml >= 0", name="hiv_viral_load_copies"),
    sa.CheckConstraint("indication IN ('routine', 'targeted')", name="hiv_viral_load_indication"),
    sa.Index("hiv_viral_load_care_idx", "care_id"),
)

# The last ART number given: moved on in the enrolment's transaction, under its row lock.
hiv_art_sequence = sa.Table(
    "hiv_art_sequence",
    tenant_metadata,
    sa.Column("register", sa.Text, primary_key=True),  # always "art": the facility's one ART register
    sa.Column("last_number", sa.Integer, nullable=False),
    sa.CheckConstraint("register = 'art'", name="hiv_art_sequence_one"),
    sa.CheckConstraint("last_number >= 1", name="hiv_art_sequence_positive"),
)

record.register_kind("hiv_care", hiv_care)
record.register_kind("hiv_regimen", hiv_regimen)
record.register_kind("hiv_visit", hiv_visit)
record.register_kind("hiv_viral_load", hiv_viral_load)
