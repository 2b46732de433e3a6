"""HL7 v2 interface of the interop room: a facility's legacy feeds (registration, laboratory, vaccination) applied
to the one record over MLLP, each message acknowledged AA, AE or AR.

- `listener`: the MLLP server (`healthos hl7 listen`) and test client (`healthos hl7 send`);
- `feed`: one message — the feed's token, the header, resends, one transaction, the ACK, the log row with the
  message sealed; and the analyst's replay of one not applied;
- `messages`: reading fields (python-hl7), the errors that name them, building ACKs;
- `act`, `patients`, `visits` (ADT), `laboratory` (ORM, ORU), `immunization` (VXU): what each message does to
  the record, through the clinical and operations services;
- `models`, `history`: the message log (tenant revisions t0012, t0048) and what the admin's Interfaces page reads.
- `demo`: the feed history `healthos up --demo` gives each demo facility.
"""
