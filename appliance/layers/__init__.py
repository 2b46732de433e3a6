"""The layers of the one record: clinical, nursing, operations, financial, patient.

Importing this package loads every layer, so each one registers its tenant tables (on
`substrate.db.tenant_metadata`), its reactions and its tenant-configuration appliers. Layers never
import each other; they meet in the record.
"""

from appliance.layers import clinical, financial, nursing, operations, patient

__all__ = ["clinical", "financial", "nursing", "operations", "patient"]
