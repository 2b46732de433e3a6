"""Paging of the FHIR facade's searchsets: `_count`, and the `_cursor` its `next`/`previous` links carry.

A page is a keyset over the search's total order (the row after the last one shown), never an
OFFSET: a record added between two pages does not shift the rows a later page starts from, so a
client following `next` sees each match once. The cursor is sealed with the appliance key (AES-GCM,
through the keyring's `seal_secret`) and bound to the facility and to the search it was made for:
a cursor edited by hand, pasted onto another search, or used at another facility does not open, and
is refused naming `_cursor`. Each page is a search of its own — its access decided and audited as
the first page's was — so a cursor carries a position, never a permission.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

from appliance.interop.fhir.errors import FhirError
from appliance.substrate.keys import Keyring, KeyUnavailable

DEFAULT_COUNT = 50
MAX_COUNT = 500
COUNT, CURSOR = "_count", "_cursor"
PAGING_PARAMETERS = (COUNT, CURSOR)
_PURPOSE = "fhir page cursor"


@dataclass(frozen=True)
class Page:
    """Which page a search answers: how many, and after (or, going back, before) which row's key."""

    count: int = DEFAULT_COUNT
    key: tuple | None = None  # the sort key of the row the page starts after; None: the first page
    backwards: bool = False  # a `previous` link: the rows before `key`, shown in the search's order


@dataclass
class Paged:
    """One page of a search: its resources, the number of matches in all, and the sort keys a `next`
    and a `previous` link start from (None where there is no such page)."""

    resources: list[dict]
    total: int
    next_key: tuple | None = None
    previous_key: tuple | None = None


def split(query: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The search's own parameters, and the paging ones (each given once at most)."""
    search: list[tuple[str, str]] = []
    paging: dict[str, str] = {}
    for name, value in query:
        if name in PAGING_PARAMETERS:
            if name in paging:
                raise FhirError(400, "invalid", f"give {name} once", expression=name)
            paging[name] = value.strip()
        else:
            search.append((name, value))
    return search, paging


def count_of(value: str | None) -> int:
    if value is None:
        return DEFAULT_COUNT
    try:
        count = int(value)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_COUNT:
        raise FhirError(400, "invalid", f"_count={value!r} is not a page size this facade serves: give a whole "
                                        f"number from 0 (the total alone) to {MAX_COUNT}", expression=COUNT)
    return count


def _binding(tenant: str, path: str, search: Sequence[tuple[str, str]]) -> str:
    """What a cursor is bound to: the facility, the address and the search, in a canonical order."""
    return json.dumps([tenant, path, sorted((n, v.strip()) for n, v in search)], separators=(",", ":"))


def _encode(value: Any) -> list:
    if isinstance(value, dt.datetime):
        return ["t", value.isoformat()]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    if isinstance(value, float | int | str) or value is None:
        return ["v", value]
    raise TypeError(f"a {type(value).__name__} cannot be a page's sort key")


def _decode(tagged: list) -> Any:
    tag, value = tagged
    if tag == "t":
        return dt.datetime.fromisoformat(value)
    if tag == "u":
        return uuid.UUID(value)
    if tag == "v":
        return value
    raise ValueError(tag)


def seal(keyring: Keyring, tenant: str, path: str, search: Sequence[tuple[str, str]], key: tuple,
         *, backwards: bool = False) -> str:
    plain = json.dumps({"k": [_encode(v) for v in key], "b": backwards}, separators=(",", ":"))
    return keyring.seal_secret(plain, purpose=_PURPOSE, bound_to=_binding(tenant, path, search))


def page_of(keyring: Keyring, tenant: str, path: str, search: Sequence[tuple[str, str]],
            paging: dict[str, str]) -> Page:
    """The page a request asks for, from its `_count` and `_cursor`; 400 naming the one at fault."""
    count = count_of(paging.get(COUNT))
    cursor = paging.get(CURSOR)
    if cursor is None:
        return Page(count)
    try:
        _canonical(cursor)
        plain = json.loads(keyring.open_secret(cursor, purpose=_PURPOSE, bound_to=_binding(tenant, path, search)))
        return Page(count, tuple(_decode(v) for v in plain["k"]), bool(plain["b"]))
    except (KeyUnavailable, ValueError, TypeError, KeyError, binascii.Error):
        raise FhirError(400, "invalid", "_cursor is not a page of this search at this facility (it was altered, "
                                        "or made for another search or facility): follow the links of the "
                                        "search's own Bundle, or start the search again", expression=CURSOR) from None


def _canonical(cursor: str) -> None:
    """Only the exact text a link carried: base64 decoding is lenient (it drops what follows the
    padding), and a cursor that differs from the one made is refused, not read as if equal."""
    text = cursor.partition(":")[2]
    if base64.urlsafe_b64encode(base64.b64decode(text, altchars=b"-_", validate=True)).decode() != text:
        raise ValueError("not the cursor's own text")


def links(keyring: Keyring, tenant: str, base: str, path: str, search: Sequence[tuple[str, str]], page: Page,
          paged: Paged, *, count_in_links: bool = True) -> list[dict]:
    """The Bundle's links: self, first, and next and previous where there is such a page (each with
    the page's `_count`, unless the client named none and the page size is the operation's own)."""
    def url(key: tuple | None = None, backwards: bool = False) -> str:
        query = [*search, *([(COUNT, str(page.count))] if count_in_links else [])]
        if key is not None:
            query.append((CURSOR, seal(keyring, tenant, path, search, key, backwards=backwards)))
        return f"{base}{path}?{urlencode(query)}" if query else f"{base}{path}"

    found = [{"relation": "self", "url": url(page.key, page.backwards)}, {"relation": "first", "url": url()}]
    if paged.previous_key is not None:
        found.append({"relation": "previous", "url": url(paged.previous_key, backwards=True)})
    if paged.next_key is not None:
        found.append({"relation": "next", "url": url(paged.next_key)})
    return found


def beyond(order: Sequence[sa.UnaryExpression], key: tuple, *, backwards: bool = False) -> sa.ColumnElement[bool]:
    """SQL condition: the row comes after `key` in `order` (before it, `backwards`). Expanded into
    (a > x) or (a = x and b > y)..., since the columns may sort in different directions."""
    alternatives = []
    for i, term in enumerate(order):
        column, descending = term.element, term.modifier is sa.sql.operators.desc_op
        later = column < key[i] if descending != backwards else column > key[i]
        alternatives.append(sa.and_(*(order[j].element == key[j] for j in range(i)), later))
    return sa.or_(*alternatives)


def reversed_order(order: Sequence[sa.UnaryExpression]) -> list[sa.UnaryExpression]:
    return [t.element.asc() if t.modifier is sa.sql.operators.desc_op else t.element.desc() for t in order]
