"""Response shapes of the operations layer: explicit allow-lists of what leaves the appliance."""

from pydantic import BaseModel


class WardCensus(BaseModel):
    code: str
    name: str
    kind: str
    beds: int
    available: int
    occupied: int
