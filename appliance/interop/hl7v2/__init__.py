"""HL7 v2: MLLP listener, ADT/ORU/ORM parsers, AA/AE/AR acknowledgements."""
