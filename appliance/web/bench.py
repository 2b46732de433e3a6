"""What a department bench's page does with its forms, shared by the laboratory's (lab.py) and imaging's
(imaging.py): an act in one transaction, refused as the worklist again with the sentence at its top and beside
the field at fault, everything typed kept (409, 422), nothing written; done, a redirect (Post/Redirect/Get) to the
worklist tab the form was sent from, with the notice of what was done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar import Response
from litestar.response import Template
from pydantic import BaseModel, ValidationError

from appliance.substrate.record import RecordError
from appliance.web import portal
from appliance.web.errors import sentence
from appliance.web.portal import Asking, see_other


@dataclass(frozen=True)
class BenchPage:
    path: str  # under /t/{tenant}: "/lab"
    states: tuple[str, ...]
    # The worklist page: (request, tenant, state, status=, refusal=, form=, values=, errors=) -> Template.
    render: Callable[..., Template]

    def tab(self, values: dict) -> str | None:
        """The state the worklist was filtered by when the form was sent (its hidden `state`): the page an act
        returns to, so a technician receiving the morning's specimens from 'Awaiting specimen' stays there
        rather than land on every open order."""
        state = values.get("state")
        return state if state in self.states else None

    def act(self, request: Asking, tenant: str, act: Callable, done: str | Callable[[Any], str], *, form: str = "",
            values: dict | None = None, field_of: Callable[[RecordError], str | None] | None = None) -> Response:
        """A form's act in one transaction; refused (409, 422), the worklist again with the sentence at its top
        and, where `field_of` names the field the refusal concerns, beside it; done, the worklist it was sent
        from, with the notice `done` names (or names from what the act returned)."""
        state = self.tab(values or {})
        try:
            with request.app.state.db.tenant(tenant) as conn:
                outcome = act(conn)
        except RecordError as exc:
            if exc.status not in {409, 422}:
                raise
            field = field_of(exc) if field_of else None
            return self.render(request, tenant, state, status=exc.status, refusal=sentence(exc.detail), form=form,
                               values=values, errors={field: sentence(exc.detail)} if field else {})
        notice = done(outcome) if callable(done) else done
        return see_other(request, f"/t/{tenant}{self.path}?done={notice}" + (f"&state={state}" if state else ""))

    def undo(self, request: Asking, tenant: str, values: dict, schema: type[BaseModel], act: Callable, done: str, *,
             form: str) -> Response:
        """A form undoing the department's act (a specimen rejected, 'performed' withdrawn), whose one field is the
        reason, validated by `schema`: refused beside it, else `act(conn, reason)` as `act` above does."""
        try:
            asked = schema.model_validate({"reason": values.get("reason") or ""})
        except ValidationError as exc:
            return self.refused_fields(request, tenant, exc, form=form, values=values)
        return self.act(request, tenant, lambda conn: act(conn, asked.reason), done, form=form, values=values)

    def refused_fields(self, request: Asking, tenant: str, exc: ValidationError, *, form: str,
                       values: dict) -> Template:
        """A form's fields refused before anything is written: the bench again, each sentence beside its field."""
        named = portal.field_errors(exc)
        return self.render(request, tenant, self.tab(values), status=422, form=form, values=values, errors=named,
                           refusal=" ".join(f"{k.capitalize()}: {v}" for k, v in named.items()))
