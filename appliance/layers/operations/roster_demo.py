"""A demo duty roster (operations layer, roster.py) at the demo hospitals: six ward nurses on each inpatient ward,
rostered for this week and the next on a rota that keeps the rest rule (two days, two nights, two off: the night's
end at 07:00 is never followed by that day's day shift), two nurses a shift, the first of the day shift in charge.
Tonight's night shift on the ward with the most patients has nurses off sick and no cover, so it is understaffed
against the census now: the staffing view and the command center show one.

The nurses are demo members of staff, each limited to her ward (identity.create_account), never enrolled: they
have no password and cannot sign in, and the facility admin's Staff page lists them as awaiting enrolment. Everything
is written through the service (`roster.add`, `roster.withdraw`) as the bed manager's would be, audited. Written once:
nothing where the facility has any roster entry. Health centres (no ward shifts to staff) have none.
"""

from __future__ import annotations

import datetime as dt
import math

import sqlalchemy as sa

from appliance.layers.operations import roster
from appliance.layers.operations.demo import DEMO_NAMESPACE
from appliance.layers.operations.models import roster_entry
from appliance.layers.operations.roster_schemas import RosterEntryIn
from appliance.substrate import identity
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_author
from appliance.substrate.policy import AccessPolicy
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import applied_config, facility_timezone

HOSPITALS = ("district_hospital", "referral_hospital")
NURSES_PER_WARD = 6
# Nurse i works ROTA[(day + i) % 6] on a day: two days, two nights, two off. Day then night leaves 24 h, night then
# night 12 h, and a night is followed by two days off: at least the 11 h the default rest rule asks.
ROTA = ("D", "D", "N", "N", None, None)
NAMES = ("Achieng Otieno", "Wanjiku Kamau", "Njeri Mwangi", "Akinyi Ouma", "Chebet Kiprop", "Nafula Wekesa",
         "Atieno Odhiambo", "Mumbua Musyoka", "Kerubo Nyamweya", "Jepchirchir Rotich", "Wairimu Njoroge",
         "Awino Okoth", "Halima Abdi", "Zawadi Mrisho", "Nasimiyu Barasa", "Moraa Ondieki", "Wambui Gitau",
         "Adhiambo Onyango", "Jemutai Cheruiyot", "Makena Muriuki", "Auma Ochieng", "Nyambura Kariuki",
         "Kemunto Omwenga", "Naliaka Simiyu", "Rehema Juma", "Saumu Hamisi", "Imani Mutua", "Faith Wafula",
         "Grace Anyango", "Mercy Chepkoech")


def demo_principal(slug: str) -> Principal:
    return demo_author(DEMO_NAMESPACE, slug, "duty roster", "bed_manager")


def _ward_nurses(db: Database, policy: AccessPolicy, slug: str, wards: list[str]) -> dict[str, list]:
    """Six demo nurses per ward (created once, by e-mail), each limited to her ward."""
    domain = slug.replace("_", "-")
    made: dict[str, list] = {}
    with db.control() as conn:
        for w, ward_code in enumerate(wards):
            made[ward_code] = []
            for n in range(NURSES_PER_WARD):
                email = f"nurse.{ward_code.lower()}{n + 1}@{domain}.demo"
                found = identity.account_by_email(conn, email)
                if found is None:
                    name = f"Nurse {NAMES[(w * NURSES_PER_WARD + n) % len(NAMES)]}"
                    found_id = identity.create_account(conn, policy, kind="staff", email=email, display_name=name,
                                                       role="nurse", tenant=slug, ward=ward_code).account_id
                else:
                    found_id = found.id
                made[ward_code].append(found_id)
    return made


def generate_roster_demo(db: Database, policy: AccessPolicy, slugs: list[str],
                         as_of: dt.datetime | None = None) -> dict[str, int]:
    """Each demo hospital's roster for this week and the next (see the module docstring): {slug: entries}."""
    written: dict[str, int] = {}
    for slug in slugs:
        if applied_config(db, slug).facility_type not in HOSPITALS:
            continue
        tz = facility_timezone(db, slug)
        with db.tenant(slug) as conn:
            if conn.execute(sa.select(roster_entry.c.id).limit(1)).first() is not None:
                continue
            wards = [w["code"] for w in roster.wards(conn) if w["kind"] in roster.INPATIENT_WARD_KINDS]
            codes = {s["code"] for s in roster.shifts(conn)}
        if not wards or not {"D", "N"} <= codes:
            continue
        nurses = _ward_nurses(db, policy, slug, wards)
        with db.control() as conn:
            staff = roster.staff_directory(identity.staff_of(conn, slug))
        writer = demo_principal(slug)
        with db.tenant(slug) as conn:
            now = as_of or conn.execute(sa.select(sa.func.now())).scalar_one()
            today = now.astimezone(tz).date()
            monday = today - dt.timedelta(days=today.weekday())
            # Days of this week further back than the correction window are history: a demo applied on a Sunday under a
            # short window starts from the first day still open.
            first = max(monday, today - dt.timedelta(days=roster.settings(conn)["correction_days"]))
            tonight: dict[str, list] = {}
            count = 0
            for ward_code in wards:
                for offset in range(14):
                    day = monday + dt.timedelta(days=offset)
                    if day < first:
                        continue
                    on = [(i, ROTA[(offset + i) % len(ROTA)]) for i in range(NURSES_PER_WARD)]
                    for shift in ("D", "N"):
                        for place, (i, _) in enumerate(item for item in on if item[1] == shift):
                            role = "in_charge" if shift == "D" and place == 0 else "nurse"
                            added = roster.add(conn, writer, RosterEntryIn(
                                ward_code=ward_code, shift_date=day, shift_code=shift, account_id=nurses[ward_code][i],
                                role_on_shift=role), staff=staff, tz=tz, now=now)
                            count += 1
                            if day == today and shift == "N":
                                tonight.setdefault(ward_code, []).append(added["id"])
            _short_tonight(conn, writer, tonight, staff=staff, tz=tz, now=now)
        written[slug] = count
    return written


def _short_tonight(conn, writer: Principal, tonight: dict[str, list], *, staff: roster.StaffDirectory, tz,
                   now: dt.datetime) -> None:
    """Off sick with no cover on tonight's night shift of the busiest ward: as many taken off as it takes for the
    census now to be more than the rest can nurse (all of them on a ward of few patients)."""
    today = now.astimezone(tz).date()
    nights = {row["ward_code"]: row
              for row in roster.staffing(conn, staff=staff, first=today, last=today, tz=tz, now=now)
              if row["shift_code"] == "N"}
    busiest = max(tonight, key=lambda ward_code: (nights[ward_code]["census"], ward_code), default=None)
    if busiest is None or nights[busiest]["census"] == 0:
        return
    row = nights[busiest]
    keep = max(0, math.ceil(row["census"] / row["threshold"]) - 1)
    for entry_id in tonight[busiest][keep:]:
        roster.withdraw(conn, writer, entry_id, "Off sick; no cover found", tz=tz, now=now)
