"""The HL7 v2 message log keeps each message as it was received, sealed, and says which rows are a resend of one
already applied and which a replay (appliance/interop/hl7v2/models.py):

- `raw`, `raw_key_id`: the message's text (patient data), AES-256-GCM under a subkey of the tenant's data key
  `raw_key_id`, bound to its row; rows written before this revision have none;
- `duplicate_of`: a message resent after it was applied (AA): the row of that first acceptance, whose ACK it got;
- `replay_of`: a message not applied that the interface analyst replayed from the Interfaces page: the row of
  the message as received; the replay's own ACK code, error and (AA) ACK are on its row.

A control id is still accepted once per sender: the unique index now leaves out the duplicate rows, which
repeat the first acceptance's AA. The downgrade refuses a log holding duplicates or replays, rather than lose
what they say, and drops the sealed texts.

Revision ID: t0048
Revises: t0047
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "t0048"
down_revision = "t0047"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hl7_message", sa.Column("raw_key_id", sa.Text()))
    op.add_column("hl7_message", sa.Column("raw", sa.LargeBinary()))
    op.add_column("hl7_message", sa.Column("duplicate_of", sa.Uuid(), sa.ForeignKey("hl7_message.id")))
    op.add_column("hl7_message", sa.Column("replay_of", sa.Uuid(), sa.ForeignKey("hl7_message.id")))
    op.create_check_constraint("hl7_message_raw_has_its_key", "hl7_message", "(raw IS NULL) = (raw_key_id IS NULL)")
    op.create_check_constraint("hl7_message_duplicate_is_accepted", "hl7_message",
                               "duplicate_of IS NULL OR (ack_code = 'AA' AND replay_of IS NULL)")
    op.drop_index("hl7_message_accepted_key", "hl7_message")
    op.create_index("hl7_message_accepted_key", "hl7_message",
                    ["sending_application", "sending_facility", "control_id"], unique=True,
                    postgresql_where=sa.text("ack_code = 'AA' AND duplicate_of IS NULL"))
    op.create_index("hl7_message_replay_of_idx", "hl7_message", ["replay_of"],
                    postgresql_where=sa.text("replay_of IS NOT NULL"))


def downgrade() -> None:
    op.execute("""
        DO $refuse$ BEGIN
            IF EXISTS (SELECT 1 FROM hl7_message WHERE duplicate_of IS NOT NULL OR replay_of IS NOT NULL) THEN
                RAISE EXCEPTION 'the HL7 message log holds resends and replays, which t0047 cannot tell apart';
            END IF;
        END $refuse$
    """)
    op.drop_index("hl7_message_replay_of_idx", "hl7_message")
    op.drop_index("hl7_message_accepted_key", "hl7_message")
    op.create_index("hl7_message_accepted_key", "hl7_message",
                    ["sending_application", "sending_facility", "control_id"], unique=True,
                    postgresql_where=sa.text("ack_code = 'AA'"))
    op.drop_constraint("hl7_message_duplicate_is_accepted", "hl7_message", type_="check")
    op.drop_constraint("hl7_message_raw_has_its_key", "hl7_message", type_="check")
    op.drop_column("hl7_message", "replay_of")
    op.drop_column("hl7_message", "duplicate_of")
    op.drop_column("hl7_message", "raw")
    op.drop_column("hl7_message", "raw_key_id")
