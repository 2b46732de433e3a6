"""Operations layer: wards, beds, admissions and transfers, the emergency department, scheduling.

It owns where patients physically are and what capacity the facility has.
"""

from appliance.layers.operations import models, service

__all__ = ["models", "service"]
