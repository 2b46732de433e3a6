"""Which elements of a resource the record keeps, and which it would not: the one check every create of
the FHIR facade makes, so that nothing a client sends is dropped without the client being told.

Each creatable type declares, next to the function that reads it (`writes`), what it keeps as a tree of
`Kept`: an element kept whole, or only the parts listed; of a repeating element at most so many items;
and where the record keeps only some values (a country as its two-letter code), which. `not_kept` walks
a resource against that tree and names every element outside it by its FHIRPath
(`Patient.maritalStatus`, `Patient.address[0].postalCode`, `Patient.birthDate.extension`). A create or a
transaction refuses them all in one 422 (`refusal`); a bulk import counts them, as it counts the
resources the record has no place for.

Elements that carry no patient data are kept by every type: `resourceType`, `id` (the record assigns its
own on create, as FHIR lets a server), `meta` and the narrative `text` (made again from what is kept).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from appliance.interop.fhir.errors import FhirError

NO_PLACE = "the record has no place for it"
INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class Kept:
    """An element the record keeps: all of it (`parts` None) or the parts listed; of a repeating element
    at most `items` of them; only the values `when` accepts, given the value and the element holding it.
    `why` is what a client is told of a value or an item the record would not keep."""

    parts: Mapping[str, Kept] | None = None
    items: int | None = None
    when: Callable[[Any, dict], bool] | None = None
    why: str = NO_PLACE


ENTIRE = Kept()
REFERENCE = Kept(parts={"reference": ENTIRE, "display": ENTIRE})  # the display names what is referred to
# Elements of every resource that carry no patient data.
EVERY_RESOURCE = {"resourceType": ENTIRE, "id": ENTIRE, "meta": ENTIRE, "text": ENTIRE}


@dataclass(frozen=True)
class NotKept:
    resource_type: str
    where: str  # the resource in the request: `Patient`, `Bundle.entry[2].resource`
    relative: str  # the element in the resource, with indexes: `address[0].postalCode`
    why: str

    @property
    def path(self) -> str:
        return f"{self.where}.{self.relative}"

    @property
    def element(self) -> str:
        """The element without indexes, to count the same element of many resources together."""
        return f"{self.resource_type}.{INDEX.sub('', self.relative)}"


def not_kept(resource: dict, kept: Mapping[str, Kept], where: str) -> list[NotKept]:
    """Every element of `resource` (found at `where`) outside what the record keeps of it."""
    return [NotKept(resource["resourceType"], where, relative, why)
            for relative, why in _walk(resource, {**EVERY_RESOURCE, **kept}, "")]


def _walk(holder: dict, kept: Mapping[str, Kept], prefix: str) -> Iterator[tuple[str, str]]:
    for name, value in holder.items():
        if name.startswith("_"):  # a primitive's extension or id, e.g. `_birthDate`
            yield f"{prefix}{name[1:]}.extension", NO_PLACE
            continue
        path = f"{prefix}{name}"
        element = kept.get(name)
        if element is None:
            yield path, NO_PLACE
        elif isinstance(value, list):
            taken = 0
            for i, item in enumerate(value):
                if (element.items is not None and taken >= element.items) or \
                        (element.when is not None and not element.when(item, holder)):
                    yield f"{path}[{i}]", element.why
                    continue
                taken += 1
                if element.parts is not None and isinstance(item, dict):
                    yield from _walk(item, element.parts, f"{path}[{i}].")
        elif element.when is not None and not element.when(value, holder):
            yield path, element.why
        elif element.parts is not None and isinstance(value, dict):
            yield from _walk(value, element.parts, f"{path}.")


def refusal(found: list[NotKept]) -> FhirError:
    """What a create answers when the record would not keep all of what it was sent: 422 naming each
    element, and nothing written."""
    issues = [{"severity": "error", "code": "not-supported", "expression": [n.path],
               "diagnostics": f"{n.path}: {n.why}, so nothing was written (send the resource without it)"}
              for n in found]
    names = ", ".join(n.path for n in found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    return FhirError(422, "not-supported", f"the record would not keep {names}; nothing was written: send the "
                                           "resource without them (the supported elements are in the "
                                           "CapabilityStatement)", issues=issues)


def describe(kept: Mapping[str, Kept]) -> str:
    """What a type keeps, for the CapabilityStatement: `identifier (system, value), address (one: line)`."""
    def one(name: str, element: Kept) -> str:
        said = ["one"] if element.items == 1 else []
        if element.parts is not None:
            said.append(", ".join(one(n, e) for n, e in element.parts.items()))
        return f"{name} ({': '.join(said)})" if said else name

    return ", ".join(one(name, element) for name, element in kept.items())
