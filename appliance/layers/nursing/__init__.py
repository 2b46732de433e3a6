"""Nursing layer: vitals and early-warning scores, medication administration, tasks, care plans.

It owns what the nurses of a ward chart and act on: the early warning score of every set of vital signs
(NEWS2, or MEOWS in pregnancy and the puerperium; the vital signs themselves are the clinical layer's
kind), the medication administration record built from the prescriptions, tasks that other entries
create (a lab order, an admission, a rising score), care plans and the shift handover. Every write is
an entry of the one record; it meets the other layers only through the record (`reactions.py`) and by
reading their tables by SQL (`views.py`).
"""

from appliance.layers.nursing import models, reactions, service, transfusion, ward

__all__ = ["models", "reactions", "service", "transfusion", "ward"]
