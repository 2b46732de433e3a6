"""Fixtures of the HL7 v2 interface's tests: a facility with a laboratory catalogue and wards, a feed's
API token, a real MLLP listener on a random loopback port (its own event loop, on a thread), and a
client that sends real MLLP frames over TCP and reads the ACK field by field."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import hl7
import pytest
import sqlalchemy as sa

from appliance.interop.hl7v2 import listener
from appliance.substrate import identity
from appliance.substrate.db import Database
from tests.rows import RowCounts

CATALOGUE = [
    {"loinc": "58410-2", "name": "Full blood count", "specimen": "blood", "components": [
        {"loinc": "718-7", "name": "Haemoglobin", "unit": "g/dL", "low": 12.0, "high": 16.0},
        {"loinc": "6690-2", "name": "White cell count", "unit": "10*3/uL", "low": 4.0, "high": 11.0},
        {"loinc": "777-3", "name": "Platelets", "unit": "10*3/uL", "low": 150, "high": 400, "possible_high": 10000},
    ]},
    {"loinc": "70569-9", "name": "Malaria rapid diagnostic test", "specimen": "blood",
     "choices": ["negative", "positive"], "abnormal": ["positive"]},
    {"loinc": "2345-7", "name": "Glucose", "specimen": "serum", "unit": "mmol/L", "low": 3.9, "high": 7.8},
    {"loinc": "30799-1", "name": "CT head without contrast", "category": "imaging"},
]
WARDS = [{"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 3},
         {"code": "ED", "name": "Emergency department", "kind": "emergency", "beds": 2}]
# Everything a registration, laboratory and ADT feed does.
FEED_PERMISSIONS = [
    "clinical.patient.search", "clinical.patient.read", "clinical.patient.create", "clinical.patient.update",
    "clinical.encounter.read", "clinical.encounter.create", "clinical.encounter.update", "clinical.order.create",
    "clinical.result.create", "operations.admission.create", "operations.admission.update",
    "operations.ed.create", "operations.ed.update",
]


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="HL7 Test Hospital", catalogue=CATALOGUE, wards=WARDS)


def issue_token(db: Database, policy, tenant: str, permissions: list[str], name: str = "lab HL7 feed") -> str:
    with db.control() as conn:
        return identity.issue_machine_token(conn, policy, tenant=tenant, name=name, permissions=permissions)


@pytest.fixture(scope="module")
def feed_token(db, policy, facility) -> str:
    return issue_token(db, policy, facility.slug, FEED_PERMISSIONS)


class RunningListener:
    """A listener serving on a thread with its own event loop, stopped when the test module ends."""

    def __init__(self, db: Database, tenant: str, token: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            listener.start(db, tenant, token, "127.0.0.1", 0), self.loop).result(timeout=30)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def running(db, facility, feed_token) -> Iterator[RunningListener]:
    served = RunningListener(db, facility.slug, feed_token)
    yield served
    served.stop()


@dataclass
class Ack:
    text: str

    @property
    def message(self) -> hl7.Message:
        return hl7.parse(self.text)

    def field(self, segment: str, number: int, component: int = 1) -> str:
        found = [s for s in self.message if str(s[0]) == segment]
        if not found:
            return ""
        try:
            return str(found[0].extract_field(1, number, 1, component, 1))
        except IndexError:
            return ""

    @property
    def code(self) -> str:
        return self.field("MSA", 1)


def send(port: int, *texts: str) -> list[Ack]:
    return [Ack(a) for a in asyncio.run(listener.send("127.0.0.1", port, list(texts)))]


@pytest.fixture
def feed(running):
    """Send messages to the module's listener over one connection; their ACKs."""
    def deliver(*texts: str) -> list[Ack]:
        return send(running.port, *texts)

    return deliver


# -- messages, HL7 2.5 style ---------------------------------------------------------------------------


def control_id() -> str:
    return "MSG" + secrets.token_hex(6).upper()


def now() -> str:
    """A TS of now with its offset: one without is read in the facility's zone, as a result's time is."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S+0000")


def msh(tenant: str, kind: str, control: str, *, app: str = "REGSYS", sender: str = "HOSPITAL",
        version: str = "2.5") -> str:
    structure = {"ADT": "ADT_A01", "ORM": "ORM_O01", "ORU": "ORU_R01", "VXU": "VXU_V04"}.get(kind.split("^")[0], "")
    return f"MSH|^~\\&|{app}|{sender}|HEALTHOS|{tenant}|{now()}||{kind}^{structure}|{control}|P|{version}"


def pid(identifier: str, *, family: str = "Otieno", given: str = "Grace^Akinyi", birth: str = "19900214",
        sex: str = "F", national_id: str | None = None, address: str = "12 Lake Road^^Kisumu^Nyanza^^KE",
        phone: str = "+254700000001") -> str:
    ids = f"{identifier}^^^REGSYS^MR"
    if national_id:
        ids += f"~{national_id}^^^KEN^NI"
    return f"PID|1||{ids}||{family}^{given}||{birth}|{sex}|||{address}||{phone}"


def adt(tenant: str, event: str, identifier: str, *, patient_class: str = "O", location: str = "",
        control: str | None = None, disposition: str = "", **patient) -> str:
    return "\r".join([
        msh(tenant, f"ADT^{event}", control or control_id()),
        f"EVN|{event}|{now()}",
        pid(identifier, **patient),
        f"PV1|1|{patient_class}|{location}" + ("|" * 33 + disposition if disposition else ""),
    ]) + "\r"


def orm(tenant: str, identifier: str, code: str, *, placer: str = "", control: str | None = None,
        system: str = "LN") -> str:
    return "\r".join([
        msh(tenant, "ORM^O01", control or control_id(), app="HIS"),
        pid(identifier),
        f"ORC|NW|{placer}^HIS",
        f"OBR|1|{placer}^HIS||{code}^Test^{system}|||{now()}",
    ]) + "\r"


def oru(tenant: str, identifier: str, observations: list[str], *, placer: str = "", control: str | None = None,
        panel: str = "58410-2^Full blood count^LN") -> str:
    return "\r".join([
        msh(tenant, "ORU^R01", control or control_id(), app="LABSYS", sender="CENTRAL LAB"),
        pid(identifier),
        f"OBR|1|{placer}^HIS|F{secrets.token_hex(3)}^LABSYS|{panel}|||{now()}",
        *observations,
    ]) + "\r"


def count(db: Database, tenant: str, table: str) -> int:
    with db.tenant(tenant) as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()  # the test's own table names


def counts(db: Database, tenant: str) -> dict[str, int]:
    """The rows of every table a message could write, the facility's and the appliance's (`tests.rows`): any change
    shows here, but the message's own line on the Interfaces page (`hl7_message`), which a refusal is meant to leave."""
    with db.control_autocommit() as conn:
        return RowCounts(conn, tenant, also_exempt=("hl7_message",)).read()
