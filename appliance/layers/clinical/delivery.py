"""Births: the clinical layer's `delivery` entry on the mother's record, and each live-born baby registered as
a patient of the facility in the delivery's own transaction.

A delivery says when the (first) baby was born, the gestational age at birth in completed weeks and days, the
mode (spontaneous vaginal, assisted vaginal by vacuum or forceps, caesarean section, breech vaginal), and per
baby, in birth order: the outcome, sex, birth weight, the Apgar scores at 1 and 5 minutes of a live-born baby,
and the resuscitation given; and for the mother, the estimated blood loss and the uterotonic given in the third
stage. The definitions it reads a birth by are the WHO's (ICD-10, Volume 2, "Standards and reporting
requirements related to fetal, perinatal, neonatal and infant mortality"):

- Live birth: the complete expulsion or extraction from the mother of a product of conception, irrespective of
  the duration of the pregnancy, which after separation breathes or shows any other evidence of life (beating of
  the heart, pulsation of the umbilical cord, definite movement of voluntary muscles), whether or not the cord
  has been cut or the placenta is attached; each product of such a birth is live-born
  (https://www.alpfmedical.info/neonatal-mortality/definitions-and-rates-statistics-for-international-comparison.html).
- Stillbirth (fetal death): death before complete expulsion or extraction, shown by no breathing or other evidence
  of life after separation (same source). A late fetal death, what WHO compares between countries, is one of at
  least 28 completed weeks or 1000 g (https://www.biomedcentral.com/1471-2393/9/S1/S2/table/T1). "Fresh" (died in
  labour, skin intact) and "macerated" (died before labour) are the clinician's reading of the baby, which
  programmes report apart because they point at different care (intrapartum against antenatal). A delivery is
  recorded from 22 completed weeks, where the perinatal period begins; a loss before is not a birth.
- Low birth weight: a birth weight under 2500 g, whatever the gestational age; preterm: born alive before 37
  completed weeks (https://test-cms.who.int/teams/maternal-newborn-child-adolescent-health-and-ageing/
  newborn-health/preterm-and-low-birth-weight).
- Postpartum haemorrhage: a blood loss of 500 ml or more within 24 hours after birth
  (https://www.who.int/teams/sexual-and-reproductive-health-and-research-(srh)/areas-of-work/
  maternal-and-perinatal-health/postpartum-haemorrhage-definition).

A stillborn baby is recorded on the delivery only: it has no chart and no one-identity subject, and the death
certificate (`death.py`) is not for it; that certificate is for a person who was born alive.

Each live-born baby is registered as registration does it (`service.with_subject` for the one-identity person,
before the facility's transaction, then `service.register_patient` in it): named "Baby of <mother's family
name>" until named (a registration correction names it), born on the day of the birth on the facility's
calendar, the mother its next of kin, her phone and address its own; and the birth weight is the baby's first
vital signs. The delivery names each baby's chart, which is how the mother's chart links to the babies and the
baby's chart to its mother (`born_to`). If the mother is on a stay (an open inpatient encounter) the birth was in
(begun by the time of birth, or in the baby's first week: born on the way or at home), the delivery belongs to it unless
another of her encounters is named; a birth weeks before a stay for something else is on her record alone.

A correction is the delivery's next version. It may correct the time within the day, the gestation, the mode,
the blood loss, the uterotonic, each baby's weight (the baby's birth weight is corrected with it), Apgar scores
and resuscitation, and a stillbirth fresh or macerated. It may not change what made the babies' charts: how many
babies were born, which were born alive, a live-born baby's sex or the day of birth (those are the baby's
registration: correct that). Refused with a sentence, nothing written.

A delivery recorded on the wrong woman (or recorded twice) is marked entered in error with a reason
(`enter_in_error`), kept in its history. Its live-born babies are real babies and keep their charts, with whatever
care is on them; but they are no longer born to her (`born_to` reads deliveries in force), their encounters alongside
hers are ended so they neither follow her nor give her carers their charts, and the newborn checks leave her ward's
list. The babies' registrations still give her name and her as next of kin until corrected. Recorded again on the
right mother's record naming each baby's chart (`BabyIn.patient_id`), a baby is linked, not registered twice: born to
her, beside her on her ward, its birth weight corrected if she gives another.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import service
from appliance.layers.clinical.death import PREGNANCY_AGES
from appliance.layers.clinical.errors import Invalid, NotFound
from appliance.layers.clinical.models import delivery, encounter, patient
from appliance.layers.clinical.schemas import DeliveryIn, EncounterIn, PatientIn, VitalSignsIn
from appliance.substrate import age, record
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry, current_clause, entry, note_access
from appliance.substrate.tenancy import facility_day

MODES = {"spontaneous_vaginal": "Spontaneous vaginal", "assisted_vaginal": "Assisted vaginal (vacuum or forceps)",
         "caesarean": "Caesarean section", "breech_vaginal": "Breech vaginal"}
OUTCOMES = {"live_birth": "Live birth", "fresh_stillbirth": "Fresh stillbirth",
            "macerated_stillbirth": "Macerated stillbirth"}
RESUSCITATIONS = {"none": "None", "stimulation": "Drying and stimulation", "bag_and_mask": "Bag and mask ventilation",
                  "advanced": "Advanced (intubation or chest compressions)"}
UTEROTONICS = {"oxytocin": "Oxytocin", "carbetocin": "Carbetocin", "misoprostol": "Misoprostol",
               "ergometrine": "Ergometrine", "none": "None given"}
SEXES = {"female": "Female", "male": "Male", "unknown": "Cannot be told"}

LOW_BIRTH_WEIGHT_BELOW_G = 2500  # WHO: low birth weight is under 2500 g
PRETERM_BELOW_WEEKS = 37  # WHO: preterm is born before 37 completed weeks
HAEMORRHAGE_FROM_ML = 500  # WHO: postpartum haemorrhage is 500 ml or more in the first 24 hours
# The youngest a mother is recorded at (the age from which the death certificate asks about a pregnancy): below it
# the chart is the wrong one, most likely the baby's own.
MOTHER_FROM_YEARS = PREGNANCY_AGES[0]
GESTATION_WEEKS = (22, 44)  # from where the perinatal period begins to a post-term pregnancy's end
BIRTHS_APART = dt.timedelta(weeks=GESTATION_WEEKS[0])  # a second birth is a new pregnancy of at least 22 weeks
# What a baby can weigh at birth: under 300 g or over 6500 g is a slip (kilograms typed, a digit too many).
WEIGHT_G = (300, 6500)
BLOOD_LOSS_MAX_ML = 5000  # beyond what an estimate of a survivable loss reads
_CLOCK_SKEW = dt.timedelta(minutes=10)  # a clock a little ahead of the server's is not a birth in the future
# A mother who gave birth on the way or at home and is admitted in the baby's first week (WHO's early neonatal period,
# days 0-6), or whose admission was written after the birth, brings the baby to the stay; a stay begun later was for
# something else (malaria three weeks on), and her baby is no newborn of that ward's.
ARRIVED_AFTER_BIRTH = dt.timedelta(days=7)
_LIVE = "live_birth"
OPEN = ("arrived", "in_progress")
BORN_HERE = "Born here, with the mother"  # the reason of a newborn's encounter alongside its mother's


def _refuse_babies(data: DeliveryIn) -> None:
    for n, baby in enumerate(data.babies):
        at = f"babies.{n}"
        which = f"baby {n + 1}" if len(data.babies) > 1 else "the baby"
        if not WEIGHT_G[0] <= baby.weight_g <= WEIGHT_G[1]:
            raise Invalid(f"a birth weight of {baby.weight_g} g for {which} is outside what a baby weighs at birth "
                          f"({WEIGHT_G[0]}-{WEIGHT_G[1]} g): give it in grams", field=f"{at}.weight_g")
        for minute, score in ((1, baby.apgar_1), (5, baby.apgar_5)):
            if baby.outcome != _LIVE and score is not None:
                raise Invalid(f"{which} was stillborn: a stillborn baby has no Apgar score (leave it empty)",
                              field=f"{at}.apgar_{minute}")
            if baby.outcome == _LIVE and score is None:
                raise Invalid(f"give the Apgar score at {minute} minute{'s' if minute > 1 else ''} of {which}, "
                              "born alive", field=f"{at}.apgar_{minute}")
            if score is not None and not 0 <= score <= 10:
                raise Invalid(f"an Apgar score is from 0 to 10, not {score}", field=f"{at}.apgar_{minute}")


def check(conn: Connection, patient_id: uuid.UUID, data: DeliveryIn, *, correcting: uuid.UUID | None = None) -> dict:
    """The mother as the delivery and her babies' registrations need her, once the delivery is found sound: a
    refusal names the field, before anything (a baby's one-identity person included) is written. Also
    `born_on`, the day of birth on the facility's calendar, each baby's date of birth. `correcting`: the delivery
    a correction is of, which is no other birth of hers. Deliveries of one mother are checked one after the other
    (the lock is held to the end of the transaction)."""
    mother = conn.execute(
        sa.select(patient.c.sex, patient.c.birth_date, patient.c.family_name, patient.c.given_names,
                  patient.c.phone, patient.c.address, sa.func.now().label("now"),
                  facility_day(sa.literal(data.born_at, sa.DateTime(timezone=True))).label("born_on"))
        .where(patient.c.id == patient_id)).mappings().first()
    if mother is None:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))
    service.require_chart(conn, patient_id, data.encounter_id)
    if mother["sex"] == "male":
        raise Invalid("this record is a man's: a delivery is recorded on the mother's record", field="patient_id")
    service.one_writer_at_a_time(conn, "delivery", patient_id)
    _refuse_a_second_birth(conn, patient_id, data.born_at, correcting)
    if data.born_at > mother["now"] + _CLOCK_SKEW:
        raise Invalid("the time of birth is in the future", field="born_at")
    if mother["born_on"] <= mother["birth_date"]:
        raise Invalid("the time of birth is before the mother's own date of birth", field="born_at")
    if age.years_on(mother["birth_date"], mother["born_on"]) < MOTHER_FROM_YEARS:
        raise Invalid(f"this patient was {age.years_on(mother['birth_date'], mother['born_on'])} years old at that "
                      "time: a delivery is recorded on the mother's record", field="patient_id")
    if not GESTATION_WEEKS[0] <= data.gestation_weeks <= GESTATION_WEEKS[1]:
        raise Invalid(f"a gestational age of {data.gestation_weeks} weeks is not a birth recorded here: from "
                      f"{GESTATION_WEEKS[0]} to {GESTATION_WEEKS[1]} completed weeks (a loss before 22 weeks is a "
                      "miscarriage, not a delivery)", field="gestation_weeks")
    if not 0 <= data.gestation_days <= 6:
        raise Invalid("the days of gestation are 0 to 6, past the completed weeks", field="gestation_days")
    if not 0 <= data.blood_loss_ml <= BLOOD_LOSS_MAX_ML:
        raise Invalid(f"a blood loss of {data.blood_loss_ml} ml is outside what is recorded (0-{BLOOD_LOSS_MAX_ML} "
                      "ml): give the estimate in millilitres", field="blood_loss_ml")
    _refuse_babies(data)
    for n, baby in enumerate(data.babies):
        if baby.patient_id is not None:
            _refuse_linking(conn, n, baby, mother["born_on"])
    return dict(mother)


def _refuse_a_second_birth(conn: Connection, patient_id: uuid.UUID, born_at: dt.datetime,
                           correcting: uuid.UUID | None) -> None:
    """Refuse a delivery within BIRTHS_APART of another in force on her record: no woman gives birth twice in that
    span, so it is the same birth recorded again (two midwives on one night, a form sent twice), which would register
    each baby a second time."""
    other = conn.execute(
        sa.select(entry.c.root_id, facility_day(delivery.c.born_at).label("born_on"))
        .select_from(entry.join(delivery, delivery.c.entry_id == entry.c.id))
        .where(entry.c.patient_id == patient_id, entry.c.kind == "delivery", current_clause(),
               entry.c.status != "entered_in_error", delivery.c.born_at > born_at - BIRTHS_APART,
               delivery.c.born_at < born_at + BIRTHS_APART,
               *([entry.c.root_id != correcting] if correcting is not None else []))
        .limit(1)).first()
    if other is not None:
        raise Invalid(f"a delivery is already recorded for her, a birth on {other.born_on.isoformat()}, "
                      f"and two births are at least {GESTATION_WEEKS[0]} weeks apart: this is the same birth. Every "
                      "baby of one birth is on its one delivery; to add one left out, mark that delivery entered in "
                      "error and record it again with every baby, naming the charts already made", field="born_at")


def _unlinked(conn: Connection, baby_id: uuid.UUID) -> dict | None:
    """The baby as the last delivery naming its chart recorded it, if every delivery naming it is entered in error
    (a chart left born to no one); None if a delivery in force names it or none ever did."""
    named = conn.execute(
        sa.select(entry.c.root_id, delivery.c.babies)
        .select_from(entry.join(delivery, delivery.c.entry_id == entry.c.id))
        .where(delivery.c.babies.contains([{"patient_id": str(baby_id)}])).order_by(entry.c.recorded_at.desc())).all()
    if not named:
        return None
    in_force = conn.execute(sa.select(entry.c.id).where(
        entry.c.root_id.in_({row.root_id for row in named}), current_clause(),
        entry.c.status != "entered_in_error").limit(1)).first()
    if in_force is not None:
        return None
    return next(b for b in named[0].babies if b["patient_id"] == str(baby_id))


def unlinked_charts(conn: Connection, principal: Principal, born_since: dt.date) -> list[dict]:
    """The babies' charts born since `born_since` that a delivery entered in error left born to no one, to be
    named when the delivery is recorded on the right mother (the form's choice); each listed chart's read noted."""
    withdrawn = entry.alias("withdrawn")
    named = conn.execute(
        sa.select(delivery.c.babies).select_from(entry.join(delivery, delivery.c.entry_id == entry.c.id))
        .where(facility_day(delivery.c.born_at) >= born_since, sa.exists().where(
            withdrawn.c.root_id == entry.c.root_id, withdrawn.c.status == "entered_in_error"))).scalars()
    candidates = {uuid.UUID(b["patient_id"]) for babies in named for b in babies if b["patient_id"]}
    charts = [baby_id for baby_id in sorted(candidates) if _unlinked(conn, baby_id) is not None]
    if not charts:
        return []
    rows = conn.execute(sa.select(patient.c.id, patient.c.mrn, patient.c.given_names, patient.c.family_name,
                                  patient.c.sex, patient.c.birth_date).where(patient.c.id.in_(charts))
                        .order_by(patient.c.birth_date.desc(), patient.c.mrn)).mappings().all()
    for row in rows:
        note_access(conn, principal, "read", row["id"], "patient", [row["id"]])
    return [dict(row) for row in rows]


def _refuse_linking(conn: Connection, n: int, baby, born_on: dt.date) -> None:
    which = f"babies.{n}.patient_id"
    if baby.outcome != _LIVE:
        raise Invalid(f"baby {n + 1} is recorded stillborn: only a baby born alive has a chart", field=which)
    chart = conn.execute(sa.select(patient.c.birth_date, patient.c.sex).where(
        patient.c.id == baby.patient_id)).first()
    if chart is None:
        raise Invalid(f"no patient {baby.patient_id} at this facility for baby {n + 1}", field=which)
    if _unlinked(conn, baby.patient_id) is None:
        raise Invalid(f"the chart named for baby {n + 1} is not a baby's left born to no one by a delivery entered in "
                      "error: leave it out and the baby is registered", field=which)
    if chart.birth_date != born_on or chart.sex != baby.sex:
        raise Invalid(f"the chart named for baby {n + 1} was registered born on {chart.birth_date} and "
                      f"{SEXES.get(chart.sex, chart.sex).lower()}: correct its registration first, or the delivery",
                      field=which)


def baby_name(mother: dict, number: int, of: int) -> tuple[str, str]:
    """A newborn's (given names, family name) until named: "Baby of <family>", numbered among twins."""
    return ("Baby of" if of == 1 else f"Baby {number} of"), mother["family_name"]


def newborns(mother: dict, data: DeliveryIn) -> list[PatientIn]:
    """The registration of each live-born baby, in birth order, as the registration desk would send it."""
    kin = [{"name": f"{mother['given_names']} {mother['family_name']}", "relationship": "mother",
            "phone": mother["phone"]}]
    registrations = []
    for n, baby in enumerate(data.babies, start=1):
        if baby.outcome != _LIVE or baby.patient_id is not None:
            continue
        given, family = baby_name(mother, n, len(data.babies))
        registrations.append(PatientIn.model_validate({
            "family_name": family, "given_names": given, "birth_date": mother["born_on"], "sex": baby.sex,
            "phone": mother["phone"], "address": mother["address"] or {}, "next_of_kin": kin}))
    return registrations


def kilograms(weight_g: int) -> Decimal:
    # The chart keeps weights to the gram (t0051): the birth weight goes on it as it was weighed, 1450 g as 1.450 kg.
    return Decimal(weight_g).scaleb(-3)


def _birth_weight(conn: Connection, principal: Principal, baby_id: uuid.UUID, weight_g: int, born_at: dt.datetime,
                  supersedes: uuid.UUID | None = None, reason: str | None = None) -> uuid.UUID:
    detail = VitalSignsIn(weight_kg=kilograms(weight_g)).model_dump(exclude={"encounter_id"})
    return record.append(conn, principal, "vital_signs", patient_id=baby_id, detail=detail, occurred_at=born_at,
                         supersedes=supersedes, reason=reason).root_id


def _stay_of(conn: Connection, patient_id: uuid.UUID, born_at: dt.datetime) -> uuid.UUID | None:
    """The mother's open inpatient stay, which a delivery recorded without an encounter belongs to, if the birth
    was in it or brought to it: begun by the time of birth, or within `ARRIVED_AFTER_BIRTH` after it. A stay begun
    later (weeks on, for malaria) is not the delivery's: a baby put beside her there would be 'born here' weeks old,
    with newborn checks overdue since its birth."""
    return conn.execute(
        sa.select(encounter.c.id).where(encounter.c.patient_id == patient_id,
                                        encounter.c.encounter_class == "inpatient", encounter.c.status.in_(OPEN),
                                        encounter.c.started_at <= born_at + ARRIVED_AFTER_BIRTH)
        .order_by(encounter.c.started_at.desc()).limit(1)).scalar()


def _open_encounter(conn: Connection, encounter_id: uuid.UUID | None) -> dict | None:
    if encounter_id is None:
        return None
    row = conn.execute(sa.select(encounter.c.encounter_class, encounter.c.ward_code).where(
        encounter.c.id == encounter_id, encounter.c.status.in_(OPEN))).mappings().first()
    return dict(row) if row else None


def record_delivery(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: DeliveryIn,
                    registrations: list[PatientIn]) -> dict:
    """Record the delivery on the mother's record and register each live-born baby (`registrations`, from
    `newborns`, linked to their one-identity persons by the route), with its birth weight on its own chart; a baby
    whose chart is named (one left born to no one, `BabyIn.patient_id`) is linked instead (`_link`). Born
    during an open encounter of the mother's (her stay on the maternity ward), each baby has one of its own
    alongside hers, of its class and on its ward: the ward's nurses and the clinicians caring for her then have a
    care relationship with the baby too (clinical/access.py), and it ends when hers does
    (`babies_follow_their_mother`)."""
    mother = check(conn, patient_id, data)
    encounter_id = data.encounter_id or _stay_of(conn, patient_id, data.born_at)
    alongside = _open_encounter(conn, encounter_id)
    waiting = iter(registrations)
    babies = []
    for n, baby in enumerate(data.babies, start=1):
        shaped = {"number": n, **baby.model_dump(), "patient_id": None, "weight_entry_id": None}
        if baby.patient_id is not None:
            shaped.update(_link(conn, principal, baby, alongside, data.born_at))
        elif baby.outcome == _LIVE:
            registration = next(waiting)
            if registration.birth_date != mother["born_on"] or registration.sex != baby.sex:
                raise Invalid("the babies' registrations do not match the delivery", field="babies")
            baby_id = service.register_patient(conn, principal, registration)["id"]
            if alongside is not None:
                service.open_encounter(conn, principal, baby_id, EncounterIn(
                    encounter_class=alongside["encounter_class"], status="in_progress",
                    ward_code=alongside["ward_code"], reason=BORN_HERE))
            shaped["patient_id"] = str(baby_id)
            shaped["weight_entry_id"] = str(_birth_weight(conn, principal, baby_id, baby.weight_g, data.born_at))
        babies.append(shaped)
    appended = record.append(conn, principal, "delivery", patient_id=patient_id, encounter_id=encounter_id,
                             occurred_at=data.born_at, detail=_detail(data, babies))
    return _version(conn, patient_id, appended.id)


def _link(conn: Connection, principal: Principal, baby, alongside: dict | None, born_at: dt.datetime) -> dict:
    """A baby's chart left born to no one, linked to this delivery: beside the mother on her ward if she is on a
    stay, its birth weight the one the chart holds, corrected if this delivery gives another."""
    was = _unlinked(conn, baby.patient_id)
    if alongside is not None:
        service.open_encounter(conn, principal, baby.patient_id, EncounterIn(
            encounter_class=alongside["encounter_class"], status="in_progress", ward_code=alongside["ward_code"],
            reason=BORN_HERE))
    weight_entry_id = was["weight_entry_id"]
    if baby.weight_g != was["weight_g"] or weight_entry_id is None:
        weight_entry_id = str(_corrected_weight(conn, principal, was, baby.weight_g, born_at,
                                                "as recorded on the mother's delivery"))
    return {"patient_id": str(baby.patient_id), "weight_entry_id": weight_entry_id}


def _detail(data: DeliveryIn, babies: list[dict]) -> dict:
    return {"born_at": data.born_at, "gestation_weeks": data.gestation_weeks, "gestation_days": data.gestation_days,
            "mode": data.mode, "babies": babies, "blood_loss_ml": data.blood_loss_ml, "uterotonic": data.uterotonic}


def correct(conn: Connection, principal: Principal, patient_id: uuid.UUID, version_id: uuid.UUID, data: DeliveryIn,
            reason: str, *, delivery_id: uuid.UUID | None = None) -> dict:
    """Correct the delivery (see the module's docstring for what a correction may change): its next version, and
    a live-born baby's corrected birth weight as the next version of the weight on the baby's chart. A version
    that is not the current one is refused (409) by the record; one that is not of `delivery_id` (where the
    caller names the delivery) is not found (404)."""
    # A correction keeps the charts the delivery names: a chart is named only on recording.
    data = data.model_copy(update={"babies": [b.model_copy(update={"patient_id": None}) for b in data.babies]})
    loaded = _version(conn, patient_id, version_id)
    if delivery_id is not None and root_of(conn, patient_id, delivery_id) != loaded["root_id"]:
        raise NotFound(f"no version {version_id} of delivery {delivery_id} on this patient's record",
                       entry_id=str(version_id))
    mother = check(conn, patient_id, data, correcting=loaded["root_id"])
    before = loaded["babies"]
    if len(data.babies) != len(before):
        raise Invalid(f"{len(before)} {'baby was' if len(before) == 1 else 'babies were'} recorded: a correction "
                      "cannot change how many were born, as each live-born baby has a chart", field="babies")
    live = [b for b in before if b["outcome"] == _LIVE]
    if live and mother["born_on"] != loaded["born_on"]:
        raise Invalid("the day of birth is each baby's registered date of birth: a correction may change the time "
                      "within the day; correct the babies' registrations for another day", field="born_at")
    babies = []
    for n, (was, now) in enumerate(zip(before, data.babies, strict=True)):
        if (was["outcome"] == _LIVE) != (now.outcome == _LIVE):
            recorded = "born alive, with a chart of its own" if was["outcome"] == _LIVE else "stillborn"
            raise Invalid(f"baby {n + 1} was recorded {recorded}: a correction cannot change whether a baby was born "
                          "alive", field=f"babies.{n}.outcome")
        if was["outcome"] == _LIVE and now.sex != was["sex"]:
            raise Invalid(f"baby {n + 1}'s sex is its registration's: correct the baby's registration, not the "
                          "delivery", field=f"babies.{n}.sex")
        shaped = {"number": n + 1, **now.model_dump(), "patient_id": was["patient_id"],
                  "weight_entry_id": was["weight_entry_id"]}
        if was["patient_id"] is not None and now.weight_g != was["weight_g"]:
            shaped["weight_entry_id"] = str(_corrected_weight(conn, principal, was, now.weight_g, data.born_at, reason))
        babies.append(shaped)
    record.append(conn, principal, "delivery", patient_id=patient_id, supersedes=version_id, reason=reason,
                  occurred_at=data.born_at, encounter_id=data.encounter_id, detail=_detail(data, babies))
    return deliveries_of(conn, patient_id, root_id=loaded["root_id"])[0]


def _corrected_weight(conn: Connection, principal: Principal, baby: dict, weight_g: int, born_at: dt.datetime,
                      reason: str) -> uuid.UUID:
    """The baby's birth weight corrected on its chart: the next version of the weight the delivery wrote, or a new
    one where that was marked entered in error on the baby's chart."""
    baby_id = uuid.UUID(baby["patient_id"])
    current = conn.execute(sa.select(entry.c.id).where(
        entry.c.root_id == uuid.UUID(baby["weight_entry_id"]), entry.c.patient_id == baby_id, current_clause(),
        entry.c.status != "entered_in_error")).scalar() if baby["weight_entry_id"] else None
    return _birth_weight(conn, principal, baby_id, weight_g, born_at, supersedes=current,
                         reason=f"birth weight corrected on the delivery: {reason}" if current else None)


NEXT_STEPS = ("The babies' charts are kept, with everything on them, and are born to no one here now: record the "
              "delivery on the mother's record naming each baby's chart, which puts it beside her; correct each "
              "baby's registration, which still gives this woman's name and her as next of kin. A chart made by a "
              "delivery recorded twice is a duplicate: list it for the records office to merge.")


def enter_in_error(conn: Connection, principal: Principal, patient_id: uuid.UUID, delivery_id: uuid.UUID,
                   reason: str) -> dict:
    """Mark the delivery (by its id or any of its versions') entered in error, saying why: see the module's
    docstring for what becomes of the babies. 404 if it is not one of the patient's in force. The babies' charts
    are listed with `next_steps`, what the staff must do next."""
    service.require_patient(conn, patient_id)
    root = root_of(conn, patient_id, delivery_id)
    found = deliveries_of(conn, patient_id, root_id=root) if root is not None else []
    if not found:
        raise NotFound(f"no delivery {delivery_id} in force on this patient's record", entry_id=str(delivery_id))
    if not reason or not reason.strip():
        raise Invalid("say why the delivery is entered in error (recorded on the wrong mother, recorded twice)",
                      field="reason")
    withdrawn = record.retract(conn, principal, found[0]["id"], reason)
    babies = [uuid.UUID(b["patient_id"]) for b in found[0]["babies"] if b["patient_id"]]
    beside_her = conn.execute(sa.select(encounter.c.id, encounter.c.patient_id).where(
        encounter.c.patient_id.in_(babies), encounter.c.status.in_(OPEN), encounter.c.reason == BORN_HERE)).all()
    for row in beside_her:
        service.transition_encounter(conn, principal, row.patient_id, row.id, "finished")
    return {"id": withdrawn.id, "root_id": withdrawn.root_id, "patient_id": patient_id,
            "entry_status": withdrawn.status, "reason": withdrawn.reason, "babies": babies,
            "next_steps": NEXT_STEPS if babies else "No baby was born alive: nothing else to do."}


# -- reading ----------------------------------------------------------------------------------------------------


def _shaped(row: dict, patient_id: uuid.UUID) -> dict:
    babies = [{**b, "low_birth_weight": b["weight_g"] < LOW_BIRTH_WEIGHT_BELOW_G} for b in row["babies"]]
    return {**row, "patient_id": patient_id, "babies": babies,
            "preterm": row["gestation_weeks"] < PRETERM_BELOW_WEEKS and any(b["outcome"] == _LIVE for b in babies),
            "postpartum_haemorrhage": row["blood_loss_ml"] >= HAEMORRHAGE_FROM_ML}


_BORN_ON = facility_day(delivery.c.born_at).label("born_on")


def deliveries_of(conn: Connection, patient_id: uuid.UUID, *, root_id: uuid.UUID | None = None) -> list[dict]:
    """The mother's deliveries in force, latest first (unaudited: the caller notes the read)."""
    where = [entry.c.root_id == root_id] if root_id is not None else []
    rows = conn.execute(service.current_query(delivery, patient_id, *where).add_columns(_BORN_ON)
                        .order_by(delivery.c.born_at.desc())).mappings()
    return [_shaped(dict(row), patient_id) for row in rows]


def _version(conn: Connection, patient_id: uuid.UUID, version_id: uuid.UUID) -> dict:
    """One version of the patient's delivery, or 404."""
    row = conn.execute(
        sa.select(*service.ENTRY_COLUMNS, *(c for c in delivery.c if c.name != "entry_id"), _BORN_ON)
        .select_from(entry.join(delivery, delivery.c.entry_id == entry.c.id))
        .where(entry.c.id == version_id, entry.c.patient_id == patient_id)).mappings().first()
    if row is None:
        raise NotFound(f"no delivery {version_id} on this patient's record", entry_id=str(version_id))
    return _shaped(dict(row), patient_id)


def born_to(conn: Connection, baby_id: uuid.UUID) -> dict | None:
    """The delivery a baby of this facility was born of, and its mother (unaudited: the caller notes the read,
    on the mother's record, since it names her)."""
    row = conn.execute(
        sa.select(entry.c.root_id.label("delivery_id"), entry.c.id, entry.c.patient_id.label("mother_id"),
                  delivery.c.born_at, delivery.c.babies, delivery.c.gestation_weeks, delivery.c.gestation_days,
                  patient.c.given_names, patient.c.family_name)
        .select_from(entry.join(delivery, delivery.c.entry_id == entry.c.id)
                     .join(patient, patient.c.id == entry.c.patient_id))
        .where(delivery.c.babies.contains([{"patient_id": str(baby_id)}]), current_clause())).mappings().first()
    if row is None:
        return None
    number = next(b["number"] for b in row["babies"] if b["patient_id"] == str(baby_id))
    return {"delivery_id": row["delivery_id"], "version_id": row["id"], "mother_id": row["mother_id"],
            "mother_name": f"{row['given_names']} {row['family_name']}", "born_at": row["born_at"], "number": number,
            "gestation_weeks": row["gestation_weeks"], "gestation_days": row["gestation_days"]}


def deliveries(conn: Connection, principal: Principal, patient_id: uuid.UUID, *,
               noting_none: bool = True) -> list[dict]:
    """The mother's deliveries in force, latest first, the read noted on the audit seam (where there are any, with
    `noting_none=False`)."""
    found = deliveries_of(conn, patient_id)
    if found or noting_none:
        note_access(conn, principal, "read", patient_id, "delivery", [d["id"] for d in found])
    return found


def read(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, noting_none: bool = True) -> dict:
    """The patient's deliveries (a mother's) and the delivery they were born of (a baby's), each read noted on the
    audit seam on the record it belongs to. `noting_none=False` (the chart's summary, which asks of every chart)
    notes nothing where there is nothing: a man's access log does not read "looked at the record of a birth"."""
    service.require_chart(conn, patient_id, None)
    found = deliveries(conn, principal, patient_id, noting_none=noting_none)
    mother = born_to(conn, patient_id)
    if mother is not None:
        note_access(conn, principal, "read", mother["mother_id"], "delivery", [mother["version_id"]],
                    detail={"newborn_chart": str(patient_id)})
    return {"deliveries": found, "born_to": mother}


def withdrawn_deliveries(conn: Connection, principal: Principal, patient_id: uuid.UUID, *,
                         noting_none: bool = True) -> list[dict]:
    """The mother's deliveries marked entered in error, newest first: the version withdrawn with who withdrew it,
    when and why (`service.list_withdrawn`, which audits the read). `noting_none=False` (the chart, which asks of
    every chart) reads and notes nothing where none was withdrawn, as `read` does."""
    if not noting_none and conn.execute(sa.select(entry.c.id).where(
            entry.c.patient_id == patient_id, entry.c.kind == "delivery",
            entry.c.status == "entered_in_error").limit(1)).first() is None:
        return []
    return service.list_withdrawn(conn, principal, patient_id, delivery, "delivery")


def root_of(conn: Connection, patient_id: uuid.UUID, version_id: uuid.UUID) -> uuid.UUID | None:
    """The delivery a version of the patient's is a version of, or None."""
    return conn.execute(sa.select(entry.c.root_id).where(entry.c.id == version_id, entry.c.patient_id == patient_id,
                                                         entry.c.kind == "delivery")).scalar()


def get_delivery(conn: Connection, principal: Principal, patient_id: uuid.UUID, delivery_id: uuid.UUID) -> dict:
    """One delivery of the mother's in force (by its id or any of its versions'), audited; 404 if none."""
    service.require_patient(conn, patient_id)
    root = root_of(conn, patient_id, delivery_id)
    found = deliveries_of(conn, patient_id, root_id=root) if root is not None else []
    if not found:
        raise NotFound(f"no delivery {delivery_id} on this patient's record", entry_id=str(delivery_id))
    note_access(conn, principal, "read", patient_id, "delivery", [found[0]["id"]])
    return found[0]


# -- the babies follow their mother's stay ----------------------------------------------------------------------


def babies_follow_their_mother(conn: Connection, principal: Principal, appended: Entry) -> None:
    """The encounter a delivery belongs to ended (finished or cancelled: the mother's discharge, or by hand) or
    took a ward (her admission to a bed, a transfer): the encounters its live-born babies have alongside it
    follow. A baby kept when the mother leaves is admitted in its own right (the bed manager's admission)."""
    if appended.status == "entered_in_error":
        return
    ending = appended.kind == "encounter_status"
    if ending and appended.detail.get("to_status") not in ("finished", "cancelled"):
        return
    encounter_id = appended.detail.get("encounter_id") or appended.encounter_id
    born = [uuid.UUID(baby["patient_id"]) for babies in conn.execute(
        sa.select(delivery.c.babies).select_from(entry.join(delivery, delivery.c.entry_id == entry.c.id))
        .where(entry.c.encounter_id == encounter_id, entry.c.kind == "delivery", current_clause())).scalars()
        for baby in babies if baby["patient_id"]]
    if not born:
        return
    alongside = conn.execute(sa.select(encounter.c.id, encounter.c.patient_id).where(
        encounter.c.patient_id.in_(born), encounter.c.status.in_(OPEN), encounter.c.reason == BORN_HERE)).all()
    for row in alongside:
        if ending:
            service.transition_encounter(conn, principal, row.patient_id, row.id, "finished")
        else:
            ward = appended.detail.get("to_ward_code") or appended.detail.get("ward_code")
            conn.execute(sa.update(encounter).where(encounter.c.id == row.id).values(
                ward_code=ward, updated_at=sa.func.now()))


for _kind in ("encounter_status", "admission", "transfer"):
    record.register_reaction(_kind, babies_follow_their_mother)
