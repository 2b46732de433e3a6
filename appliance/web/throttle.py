"""The sign-in and package-post throttle, counted in the database so every worker counts alike.

Litestar's rate limiter keeps its counts in the app's store, by default in the worker's memory: with one uvicorn
worker per core a client had that many times the attempts, and a restart gave them all back. `DatabaseStore` is
litestar's Store over `control.shared_value` (appliance/substrate/shared_store.py), registered as the store the
limiter names. Litestar's limiter reads a client's history from its store and writes it back, which across
workers loses the counts of posts arriving together; `SharedRateLimitMiddleware` counts each post with the
store's one upsert instead.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import DURATION_VALUES, RateLimitMiddleware
from litestar.stores.base import Store
from litestar.types import Message, Receive, Scope, Send

from appliance.substrate.db import Database
from appliance.substrate.shared_store import SharedStore

Answer = TypeVar("Answer")


async def _off_loop(call: Callable[..., Answer], *args) -> Answer:
    # The loop's own executor, as the authentication middleware's lookups: the database is not awaited.
    return await asyncio.get_running_loop().run_in_executor(None, contextvars.copy_context().run, call, *args)


class DatabaseStore(Store):
    """litestar's Store over the appliance's shared values: every worker reads and writes the same ones."""

    def __init__(self, db: Database):
        self.values = SharedStore(db)

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        await _off_loop(self.values.set, key, value, expires_in)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        return await _off_loop(self.values.get, key, renew_for)

    async def delete(self, key: str) -> None:
        await _off_loop(self.values.delete, key)

    async def delete_all(self) -> None:
        await _off_loop(self.values.delete_all)

    async def exists(self, key: str) -> bool:
        return await _off_loop(self.values.exists, key)

    async def expires_in(self, key: str) -> int | None:
        return await _off_loop(self.values.expires_in, key)

    async def hit(self, key: str, window: int) -> tuple[int, int]:
        """`SharedStore.hit`: the hits of `key` in its window, this one counted, and the seconds left of it."""
        return await _off_loop(self.values.hit, key, window)


class SharedRateLimitMiddleware(RateLimitMiddleware):
    """Litestar's limiter (same config, keys and headers), each post counted by one upsert in a DatabaseStore."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["litestar_app"]
        request = app.request_class(scope)
        if await self.should_check_request(request=request):
            store: DatabaseStore = self.config.get_store_from_app(app)
            hits, seconds_left = await store.hit(self.cache_key_from_request(request), DURATION_VALUES[self.unit])
            headers = self._headers(hits, seconds_left)
            if hits > self.max_requests:
                raise TooManyRequestsException(
                    f"too many attempts from this address; try again in {seconds_left} "
                    f"second{'' if seconds_left == 1 else 's'}",
                    headers={**headers, "Retry-After": str(seconds_left)})
            send = self._sending_headers(send, headers)
        await self.app(scope, receive, send)

    def _headers(self, hits: int, seconds_left: int) -> dict[str, str]:
        if not self.config.set_rate_limit_headers:
            return {}
        return {
            self.config.rate_limit_policy_header_key: f"{self.max_requests}; w={DURATION_VALUES[self.unit]}",
            self.config.rate_limit_limit_header_key: str(self.max_requests),
            self.config.rate_limit_remaining_header_key: str(max(self.max_requests - hits, 0)),
            self.config.rate_limit_reset_header_key: str(seconds_left),
        }

    @staticmethod
    def _sending_headers(send: Send, headers: dict[str, str]) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                written = MutableScopeHeaders(message)
                for name, value in headers.items():
                    written[name] = value
            await send(message)

        return sending
