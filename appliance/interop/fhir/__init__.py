"""FHIR R4 REST facade and bulk import over the one record (the interop room's FHIR part).

- `routes`: the facade's routes under /api/t/{tenant}/fhir and its CapabilityStatement, from one table;
- `store`: reads — by id, search, `$everything` — through the clinical services' statements, audited;
- `paging`: `_count` and the sealed keyset cursor of a searchset's `next`/`previous` links;
- `writes`: creates and transaction bundles, validated with the R4B models, all or nothing;
- `elements`: what of each resource a create keeps, and every element it would not, named (422);
- `bulk`: `healthos fhir import` of Synthea-shaped bundles;
- `resources`: the record's rows as FHIR resources; `errors`: every refusal as an OperationOutcome.
"""
