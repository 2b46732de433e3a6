"""Clinical layer: patients, encounters, problems, allergies, medications, orders, results, notes.

It owns the chart: who the patient is, what is wrong, what they react to, what was ordered and found,
and what clinicians wrote. Every write is an entry in the one record (`substrate.record`), and every
read and write of patient data passes the record's audit seam (`record.note_access`).
"""

from appliance.layers.clinical import (
    blood,
    catalogue,
    chart,
    death,
    delivery,
    models,
    reactions,
    referral,
    service,
    surgery,
)

__all__ = ["blood", "catalogue", "chart", "death", "delivery", "models", "reactions", "referral", "service",
           "surgery"]
