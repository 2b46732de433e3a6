"""FHIR R4 REST facade and bulk import over the one record."""
