"""Tables of the HL7 v2 interface, in every tenant schema (migration t0012).

- `hl7_message`: one row per message a feed sent — when, from which sending application and facility,
  its type and control id, the acknowledgement given (AA, AE, AR) with the error code and text, and the
  ids of what it created. It is how a resent message is recognised (a control id already accepted gets
  its original ACK again) and what the facility admin's "Interfaces" page reads. Its clear columns hold no
  demographics: the error text names fields, and for patient fields never their values. The message as
  received (patient data) is `raw`, sealed under the tenant's data key `raw_key_id` (t0048, `feed.py` seals it);
  a message resent after it was applied is a row of its own pointing at that first acceptance (`duplicate_of`),
  and a replay from the Interfaces page one pointing at the message replayed (`replay_of`).
- `hl7_placer_order`: the placer order number (OBR-2) of each order a feed placed, so the laboratory's
  result (ORU) finds the order it answers. An order number is the ordering system's key, not patient data.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from appliance.substrate.db import tenant_metadata

ACK_CODES = ("AA", "AE", "AR")
# What a message's text is sealed for (keys.seal_value under the tenant's data key), bound to its row's id.
RAW_PURPOSE = "hl7.message"

hl7_message = sa.Table(
    "hl7_message",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("sending_application", sa.Text, nullable=False),
    sa.Column("sending_facility", sa.Text, nullable=False),
    sa.Column("message_type", sa.Text, nullable=False),  # type^trigger, e.g. ADT^A04
    sa.Column("control_id", sa.Text, nullable=False),  # MSH-10
    sa.Column("ack_code", sa.Text, nullable=False),
    sa.Column("error_code", sa.Text),  # HL7 table 0357
    sa.Column("error_text", sa.Text),
    sa.Column("created", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("token_id", sa.Uuid),  # the feed's API token (control.api_token), who sent it
    sa.Column("ack", sa.Text),  # the ACK sent for an accepted message, sent again on a resend
    # Patient data, encrypted: the message as received (keys.seal_value under the tenant's data key raw_key_id).
    sa.Column("raw_key_id", sa.Text),
    sa.Column("raw", sa.LargeBinary),
    sa.Column("duplicate_of", sa.Uuid, sa.ForeignKey("hl7_message.id")),  # resent after AA: the first acceptance
    sa.Column("replay_of", sa.Uuid, sa.ForeignKey("hl7_message.id")),  # a replay: the message as received
    sa.CheckConstraint("ack_code IN ('AA', 'AE', 'AR')", name="hl7_message_ack_code_known"),
    sa.CheckConstraint("(raw IS NULL) = (raw_key_id IS NULL)", name="hl7_message_raw_has_its_key"),
    sa.CheckConstraint("duplicate_of IS NULL OR (ack_code = 'AA' AND replay_of IS NULL)",
                       name="hl7_message_duplicate_is_accepted"),
)
# A control id is accepted once per sender: a resend finds the first acceptance (and is a duplicate row).
sa.Index("hl7_message_accepted_key", hl7_message.c.sending_application, hl7_message.c.sending_facility,
         hl7_message.c.control_id, unique=True,
         postgresql_where=sa.and_(hl7_message.c.ack_code == "AA", hl7_message.c.duplicate_of.is_(None)))
sa.Index("hl7_message_received_idx", hl7_message.c.received_at)
sa.Index("hl7_message_replay_of_idx", hl7_message.c.replay_of, postgresql_where=hl7_message.c.replay_of.is_not(None))

hl7_placer_order = sa.Table(
    "hl7_placer_order",
    tenant_metadata,
    sa.Column("placer_number", sa.Text, primary_key=True),  # OBR-2.1
    sa.Column("placer_namespace", sa.Text, primary_key=True),  # OBR-2.2, '' when not given
    sa.Column("service_request_id", sa.Uuid, nullable=False),  # the order's record id (root id)
    sa.Column("patient_id", sa.Uuid, nullable=False),
)
