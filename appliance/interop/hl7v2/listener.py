"""The MLLP listener a facility's HL7 v2 feed connects to, and the small client hospital IT tests a feed
with (`healthos hl7 listen` and `healthos hl7 send`).

Framing is python-hl7's asyncio MLLP streams. Each connection is served one message at a time, in
order — a feed waits for each ACK before sending the next, and order matters (an ORU after its ORM) —
while connections are served concurrently. The database work of a message runs on the event loop's
thread pool, so a slow message never stalls another connection's reads.

The listener refuses to start unless its token is live and of this facility; `feed.handle` checks the
token again for every message. Loopback by default: a feed on another machine reaches it through the
hospital's own tunnel or firewall rule, chosen by its IT.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

import structlog
from hl7.mllp import InvalidBlockError, open_hl7_connection, start_hl7_server

from appliance.interop.hl7v2 import feed, immunization, messages
from appliance.interop.hl7v2.messages import HL7Error
from appliance.layers.clinical.immunization_schedule import ScheduleError
from appliance.substrate.db import Database

log = structlog.get_logger("healthos.hl7")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2575
# The largest message accepted (a long ORU with many OBX fits in far less); larger is answered AR.
MESSAGE_LIMIT = 1024 * 1024


class ListenerRefused(Exception):
    """The listener will not start: the reason, for the operator."""


def check_feed(db: Database, tenant: str, token: str) -> None:
    """Refuse to start for a facility that does not exist, a token that is not this facility's live one, or an
    immunization schedule (policies/immunization.toml) a VXU could not be recorded against."""
    if not db.tenant_exists(tenant):
        raise ListenerRefused(f"no facility {tenant!r} on this appliance")
    try:
        feed.feed_principal(db, tenant, token)
    except HL7Error as refused:
        raise ListenerRefused(refused.problem) from None
    try:
        immunization.schedule()
    except ScheduleError as broken:
        raise ListenerRefused(f"the immunization schedule cannot be used: {broken}") from None


def _decode(block: bytes) -> str:
    # UTF-8 is what feeds of this decade send; an ISO 8859-1 feed (MSH-18 8859/1) still reads.
    try:
        return block.decode("utf-8")
    except UnicodeDecodeError:
        return block.decode("latin-1")


async def start(db: Database, tenant: str, token: str, host: str = DEFAULT_HOST,
                port: int = DEFAULT_PORT) -> asyncio.Server:
    """A started MLLP server for facility `tenant`'s feed; `server.close()` stops it."""
    check_feed(db, tenant, token)
    loop = asyncio.get_running_loop()

    async def serve_connection(reader, writer) -> None:
        peer = writer.get_extra_info("peername")
        log.info("hl7.connection.open", tenant=tenant, peer=str(peer))
        try:
            while True:
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError:
                    break  # the feed closed the connection
                except (InvalidBlockError, ValueError) as bad:
                    # Not an MLLP frame, or too large: answered, and the connection carries on.
                    problem = ("the message is larger than this interface accepts"
                               if isinstance(bad, ValueError) else "the frame does not begin with MLLP's <VT>")
                    error = messages.rejected("100", problem)
                    writer.writeblock(messages.acknowledge(None, "AR", tenant, error).text.encode())
                    await writer.drain()
                    continue
                ack = await loop.run_in_executor(None, contextvars.copy_context().run, feed.handle, db, tenant,
                                                 token, _decode(block))
                writer.writeblock(ack.text.encode("utf-8"))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            log.info("hl7.connection.closed", tenant=tenant, peer=str(peer))
            writer.close()

    server = await start_hl7_server(serve_connection, host, port, limit=MESSAGE_LIMIT)
    log.info("hl7.listening", tenant=tenant, host=host, port=server.sockets[0].getsockname()[1])
    return server


async def serve(db: Database, tenant: str, token: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                on_ready: Callable[[int], None] | None = None) -> None:
    """Run the listener until cancelled."""
    server = await start(db, tenant, token, host, port)
    if on_ready is not None:
        on_ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


async def send(host: str, port: int, texts: list[str], *, timeout: float = 30.0) -> list[str]:
    """Send messages over one connection, each after the previous one's ACK; the ACKs."""
    reader, writer = await asyncio.wait_for(open_hl7_connection(host, port, limit=MESSAGE_LIMIT), timeout)
    acks = []
    try:
        for text in texts:
            writer.writeblock(text.replace("\r\n", "\r").replace("\n", "\r").encode("utf-8"))
            await writer.drain()
            acks.append(_decode(await asyncio.wait_for(reader.readblock(), timeout)))
    finally:
        writer.close()
    return acks


def split_messages(text: str) -> list[str]:
    """The messages of a file: each begins at a line starting `MSH|`; line ends become carriage returns."""
    found: list[list[str]] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.startswith("MSH"):
            found.append([])
        if line.strip() and found:
            found[-1].append(line)
    return ["\r".join(lines) + "\r" for lines in found]
