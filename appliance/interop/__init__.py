"""Interop room: the FHIR R4 facade (fhir/) and the HL7 v2 MLLP listener (hl7v2/) over the record."""
