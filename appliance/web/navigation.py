"""The portal's navigation by layer: each layer's web module adds its pages (`NAV`), and a person sees
those their role may open. Apart from the portal so that the error pages, which every module uses, can
send a person back to a page of their own facility they may open."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.substrate.principal import Principal


@dataclass(frozen=True)
class NavItem:
    layer: str
    key: str
    label: str
    path: str  # under /t/{tenant}
    permission: str
    # False: offered in the navigation, never where "my facility" lands (a form everyone has, such as reporting an
    # incident, is nobody's first page).
    lands: bool = True
    # A role's worklist, where the work of the day waits: someone who may open one lands on it rather than on a page
    # listed before it (a nurse on her ward, not on patient search); among worklists, the navigation's order (a
    # clinician, who may read the ward's too, lands on today's patients).
    worklist: bool = False
    # A count shown beside the label to those who may open it (work waiting): badge(db, tenant); 0 shows nothing.
    badge: Callable[[Any, str], int] | None = None


NAV: list[NavItem] = [
    # First, so it is where a clinician lands after signing in (`landing`).
    NavItem("Clinical", "today", "Today's patients", "/today", "clinical.worklist.read", worklist=True),
    NavItem("Clinical", "patients", "Find a patient", "/patients", "clinical.patient.search"),
    NavItem("Clinical", "register", "Register a patient", "/patients/new", "clinical.patient.create"),
]


def navigation(principal: Principal, tenant: str, db: Any = None) -> list[dict]:
    """The pages this person may open, by layer; with the database, each item's badge where it has one."""
    layers: dict[str, list[dict]] = {}
    for item in NAV:
        if principal.can(item.permission):
            layers.setdefault(item.layer, []).append(
                {"key": item.key, "label": item.label, "href": f"/t/{tenant}{item.path}",
                 "badge": item.badge(db, tenant) if item.badge is not None and db is not None else 0})
    return [{"layer": layer, "items": items} for layer, items in layers.items()]


def landing(principal: Principal | None, tenant: str | None = None) -> str:
    """Where "my facility" takes this person: the first worklist of the navigation their role may open, else its
    first page they may open (a facility admin has no patient search), else the home page."""
    tenant = tenant or getattr(principal, "tenant", None)
    if principal is None or not tenant:
        return "/"
    opened = [item for item in NAV if item.lands and principal.can(item.permission)]
    first = next((item for item in opened if item.worklist), opened[0] if opened else None)
    return f"/t/{tenant}{first.path}" if first else "/"
