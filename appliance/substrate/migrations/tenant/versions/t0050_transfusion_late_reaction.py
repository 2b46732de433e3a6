"""A transfusion reaction noticed after the unit finished (nursing layer, appliance/layers/nursing/transfusion.py).

A reaction could be recorded only by stopping the transfusion (`transfusion_stopped_by_reaction`: stopped if and only
if a reaction), so one noticed after the unit had run through (TACO or TRALI within hours, a febrile reaction an hour
later, a delayed haemolytic reaction days later) had no place on the record. Now:

- `transfusion.reaction_onset_at`, `transfusion.reaction_severity`: when a reaction began and how severe it was
  (ISBT's grades: non-severe, severe, life-threatening), kept for a reaction recorded on a completed transfusion, as
  a new version of its entry superseding the completed one (the record keeps both).
- `transfusion_stopped_by_reaction` keeps the stopped case as it was (stopped only for a reaction) but no longer
  demands a stopped transfusion of every reaction; `transfusion_late_reaction_says_when` asks of a reaction on a
  completed transfusion its onset and severity, `transfusion_reaction_after_start` an onset not before the start.

Rows written before this revision are all allowed as they are: no completed transfusion held a reaction.

The downgrade refuses a schema holding a reaction recorded after a transfusion ended, rather than lose it.

Revision ID: t0050
Revises: t0049
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "t0050"
down_revision = "t0049"
branch_labels = None
depends_on = None

SEVERITIES = "('non_severe', 'severe', 'life_threatening')"


def upgrade() -> None:
    op.add_column("transfusion", sa.Column("reaction_onset_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("transfusion", sa.Column("reaction_severity", sa.Text(), nullable=True))
    op.drop_constraint("transfusion_stopped_by_reaction", "transfusion", type_="check")
    op.create_check_constraint("transfusion_stopped_by_reaction", "transfusion",
                               "status <> 'stopped' OR (reaction IS NOT NULL AND reaction <> 'none')")
    op.create_check_constraint("transfusion_late_reaction_says_when", "transfusion",
                               "reaction IS NULL OR reaction = 'none' OR status = 'stopped' OR (status = 'completed' "
                               "AND reaction_onset_at IS NOT NULL AND reaction_severity IS NOT NULL)")
    op.create_check_constraint("transfusion_reaction_severity", "transfusion", f"reaction_severity IN {SEVERITIES}")
    op.create_check_constraint("transfusion_reaction_after_start", "transfusion",
                               "reaction_onset_at IS NULL OR reaction_onset_at >= started_at")


def downgrade() -> None:
    op.execute("""
        DO $refuse$ BEGIN
            IF EXISTS (SELECT 1 FROM transfusion WHERE status = 'completed' AND reaction <> 'none') THEN
                RAISE EXCEPTION 'transfusions here hold reactions recorded after they ended, which t0049 cannot hold';
            END IF;
        END $refuse$
    """)
    for name in ("transfusion_reaction_after_start", "transfusion_reaction_severity",
                 "transfusion_late_reaction_says_when", "transfusion_stopped_by_reaction"):
        op.drop_constraint(name, "transfusion", type_="check")
    op.create_check_constraint("transfusion_stopped_by_reaction", "transfusion",
                               "(status = 'stopped') = (reaction IS NOT NULL AND reaction <> 'none')")
    op.drop_column("transfusion", "reaction_severity")
    op.drop_column("transfusion", "reaction_onset_at")
