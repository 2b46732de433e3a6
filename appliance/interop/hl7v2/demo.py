"""The demo's HL7 v2 feed history (`healthos up --demo`), so a facility admin's Interfaces page shows
what a running feed looks like instead of an empty table.

Each demo facility's registration system (REGSYS) registers and corrects a few patients, the HIS orders a
blood count and the laboratory (LABSYS) sends results — mostly accepted (AA), with the two refusals a
real feed sends most: a test the facility's catalogue does not offer, and a result for a patient
identifier no registration ever brought (AE, nothing written). Deterministic from the seed: the same
people, identifiers, values and control ids on every machine.

The messages go through `feed.handle`, the path the MLLP listener takes, as a machine client of the
facility holding a token with a feed's permissions. Nobody ever sees that token, so once the history is
written its account is disabled (which revokes the token): the API tokens page shows the feed, revoked,
and no live credential is left that no one holds. Skipped when the facility has any message already.
"""

from __future__ import annotations

import datetime as dt
import random

import sqlalchemy as sa
import structlog

from appliance.interop.hl7v2 import feed
from appliance.interop.hl7v2.models import hl7_message
from appliance.layers.clinical.demo import FAMILY, FEMALE, MALE, VILLAGES
from appliance.substrate import identity
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_stream
from appliance.substrate.policy import AccessPolicy

log = structlog.get_logger("healthos.hl7.demo")

FEED_NAME = "Registration and laboratory feed (demo)"
FEED_PERMISSIONS = [
    "clinical.patient.search", "clinical.patient.read", "clinical.patient.create", "clinical.patient.update",
    "clinical.encounter.read", "clinical.encounter.create", "clinical.encounter.update", "clinical.order.create",
    "clinical.result.create",
]
# A ferritin (LOINC 2276-4): a test the demo facilities' catalogues do not offer, as a lab's new analyser
# sends before anyone adds it to the catalogue.
NOT_IN_CATALOGUE = "2276-4"


def _person(rng: random.Random) -> dict:
    sex = rng.choice(("F", "M"))
    born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 55))
    return {"id": f"RS{rng.randint(100000, 999999)}", "family": rng.choice(FAMILY),
            "given": rng.choice(FEMALE if sex == "F" else MALE), "sex": sex, "born": born.strftime("%Y%m%d"),
            "village": rng.choice(VILLAGES), "phone": f"+2547{rng.randint(10000000, 99999999)}"}


class _Messages:
    """HL7 2.5 messages to one facility, stamped now, with control ids drawn from the stream."""

    def __init__(self, slug: str, rng: random.Random, now: dt.datetime):
        # With its offset: a time without one is the facility's, and results are recorded at the time stamped.
        self.slug, self.rng, self.stamp = slug, rng, now.strftime("%Y%m%d%H%M%S%z")

    def _msh(self, kind: str, app: str, sender: str) -> str:
        structure = {"ADT": "ADT_A01", "ORM": "ORM_O01", "ORU": "ORU_R01"}[kind.split("^")[0]]
        control = f"{app}{self.rng.randint(10**9, 10**10 - 1)}"
        return f"MSH|^~\\&|{app}|{sender}|HEALTHOS|{self.slug}|{self.stamp}||{kind}^{structure}|{control}|P|2.5"

    @staticmethod
    def _pid(person: dict) -> str:
        return (f"PID|1||{person['id']}^^^REGSYS^MR||{person['family']}^{person['given']}||{person['born']}|"
                f"{person['sex']}|||{person['village']}^^{person['village']}^^^KE||{person['phone']}")

    def adt(self, event: str, person: dict) -> str:
        return "\r".join([self._msh(f"ADT^{event}", "REGSYS", "HOSPITAL"), f"EVN|{event}|{self.stamp}",
                          self._pid(person), "PV1|1|O"]) + "\r"

    def orm(self, person: dict, placer: str, code: str, name: str) -> str:
        return "\r".join([self._msh("ORM^O01", "HIS", "HOSPITAL"), self._pid(person), f"ORC|NW|{placer}^HIS",
                          f"OBR|1|{placer}^HIS||{code}^{name}^LN|||{self.stamp}"]) + "\r"

    def oru(self, person: dict, panel: str, observations: list[str], placer: str = "") -> str:
        filler = f"F{self.rng.randint(100000, 999999)}"
        return "\r".join([self._msh("ORU^R01", "LABSYS", "CENTRAL LAB"), self._pid(person),
                          f"OBR|1|{placer}^HIS|{filler}^LABSYS|{panel}|||{self.stamp}", *observations]) + "\r"


def feed_history(slug: str, rng: random.Random, now: dt.datetime) -> list[str]:
    """The messages a facility's feeds sent, in order: eight applied, two not (AE)."""
    make = _Messages(slug, rng, now)
    first, second, third, nobody = (_person(rng) for _ in range(4))
    placer = f"HIS{rng.randint(100000, 999999)}"
    moved = {**second, "phone": f"+2547{rng.randint(10000000, 99999999)}"}
    haemoglobin, white_cells, platelets = rng.uniform(8.5, 15.5), rng.uniform(3.5, 13.0), rng.randint(120, 420)
    glucose = rng.uniform(4.0, 11.5)
    return [
        make.adt("A04", first),
        make.adt("A04", second),
        make.orm(first, placer, "58410-2", "Full blood count"),
        make.oru(first, "58410-2^Full blood count^LN", [
            f"OBX|1|NM|718-7^Haemoglobin^LN||{haemoglobin:.1f}|g/dL||||F",
            f"OBX|2|NM|6690-2^White cell count^LN||{white_cells:.1f}|10*3/uL||||F",
            f"OBX|3|NM|777-3^Platelets^LN||{platelets}|10*3/uL||||F"], placer=placer),
        make.oru(second, "70569-9^Malaria RDT^LN",
                 [f"OBX|1|ST|70569-9^Malaria RDT^LN||{rng.choice(('Negative', 'Negative', 'Positive'))}||||||F"]),
        make.oru(first, f"{NOT_IN_CATALOGUE}^Ferritin^LN",
                 [f"OBX|1|NM|{NOT_IN_CATALOGUE}^Ferritin^LN||{rng.randint(8, 300)}|ug/L||||F"]),
        make.adt("A08", moved),
        make.adt("A04", third),
        make.oru(nobody, "2345-7^Glucose^LN", [f"OBX|1|NM|2345-7^Glucose^LN||{glucose:.1f}|mmol/L||||F"]),
        make.oru(third, "2345-7^Glucose^LN", [f"OBX|1|NM|2345-7^Glucose^LN||{glucose:.1f}|mmol/L||||F"]),
    ]


def generate_feed_demo(db: Database, policy: AccessPolicy, slug: str, seed: int = 2026) -> dict[str, int]:
    """Apply facility `slug`'s demo feed history; the messages by ACK code, or {} if it has messages."""
    with db.tenant(slug) as conn:
        if conn.execute(sa.select(hl7_message.c.id).limit(1)).first() is not None:
            return {}
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
    with db.control() as conn:
        token = identity.issue_machine_token(conn, policy, tenant=slug, name=FEED_NAME, permissions=FEED_PERMISSIONS)
        account_id = identity.principal_for_token(conn, token).account_id
        email = conn.execute(sa.select(identity.account.c.email).where(identity.account.c.id == account_id)).scalar()
    acks: dict[str, int] = {}
    try:
        for text in feed_history(slug, demo_stream("hl7", seed, slug), now.astimezone(dt.UTC)):
            code = feed.handle(db, slug, token, text).code
            acks[code] = acks.get(code, 0) + 1
    finally:
        with db.control() as conn:
            identity.disable_account(conn, email)
    log.info("hl7.demo.written", tenant=slug, **acks)
    return acks
