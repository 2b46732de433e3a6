"""`control.subject_death_of(subject, chart)`: the death a chart shows, its own link to the person considered
(appliance/substrate/deaths.py).

c0016 kept a death certified on a chart linked over a differing national-ID answer to that chart, but the reverse
was left open: `subject_death_of` was asked by person, so when the national ID's holder died at another facility,
the wrongly linked chart showed his death, and its patient, alive, was refused visits, admissions and bookings and
her own certificate. The function now takes the chart too. A chart whose link is in dispute shows only a death
recorded on it; a death kept to a chart is shown on that chart alone, not on another chart of the same facility.
Every other chart reads as before, and a living person never merged still costs three index probes.

Revision ID: c0017
Revises: c0016
Create Date: 2026-11-28
"""

import importlib

from alembic import op

revision = "c0017"
down_revision = "c0016"
branch_labels = None
depends_on = None

c0010 = importlib.import_module("appliance.substrate.migrations.control.versions.c0010_subject_death")
c0016 = importlib.import_module("appliance.substrate.migrations.control.versions.c0016_link_dispute")

_DEATH_OF = """
    CREATE FUNCTION control.subject_death_of(p_subject uuid, p_patient uuid)
    RETURNS TABLE (died_at timestamptz, tenant text, facility text, timezone text, entry_id uuid, confined boolean)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog ROWS 1 AS $$
    #variable_conflict use_column
    DECLARE
        caller text;
        disputed boolean;
    BEGIN
        -- As c0016's: three index probes answer for a living person never merged.
        IF NOT EXISTS (SELECT 1 FROM control.subject_death d WHERE d.subject_id = p_subject AND d.withdrawn_at IS NULL)
           AND NOT EXISTS (SELECT 1 FROM control.subject s WHERE s.id = p_subject AND s.merged_into IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM control.subject s WHERE s.merged_into = p_subject) THEN
            RETURN;
        END IF;
        caller := __CALLER__;
        disputed := EXISTS (SELECT 1 FROM control.subject_link_dispute l
                            WHERE l.tenant = caller AND l.patient_id = p_patient);
        RETURN QUERY
        __PERSON__
        SELECT d.died_at, d.tenant, coalesce(t.name, 'a facility no longer on this appliance'),
               coalesce(t.timezone, 'UTC'), d.entry_id, d.confined
        FROM control.subject_death d LEFT JOIN control.tenant t ON t.slug = d.tenant
        WHERE d.subject_id IN (SELECT id FROM person) AND d.withdrawn_at IS NULL
          -- A chart whose link to the person is in dispute shows its own death, never the person's; a death kept to
          -- a chart is that chart's alone.
          AND ((d.tenant = caller AND d.patient_id = p_patient) OR (NOT disputed AND NOT d.confined))
          AND EXISTS (SELECT 1 FROM control.subject_facility f
                      WHERE f.subject_id IN (SELECT id FROM person) AND f.tenant = caller)
        -- The recording facility reads its own kept death first, even once the holder's is certified elsewhere.
        ORDER BY d.confined DESC, d.recorded_at LIMIT 1;
    END $$
"""

FUNCTION = _DEATH_OF.replace("__CALLER__", c0010._CALLER).replace("__PERSON__", c0010._PERSON)
SIGNATURE = "control.subject_death_of(uuid, uuid)"
BY_PERSON = "control.subject_death_of(uuid)"


def upgrade() -> None:
    op.execute(f"DROP FUNCTION {BY_PERSON}")
    op.execute(FUNCTION)
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO PUBLIC")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute(c0016.FUNCTIONS[0])
    op.execute(f"GRANT EXECUTE ON FUNCTION {BY_PERSON} TO PUBLIC")
