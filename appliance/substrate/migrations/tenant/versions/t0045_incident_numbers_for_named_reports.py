"""Named incident reports numbered apart from the anonymous ones (operations layer, incidents.py): t0035 gave every
report the facility's next running number, and since no page or API gives an anonymous report's number, the named
reports' numbers skipped where one fell (1, 2, 4): the gap said a report was filed between two named reports whose
times and reporters are shown, which is part of what the anonymous reporter was promised would not be told.

- `incident.number` is no longer an identity column: a named report is given the next value of a sequence of its
  own, `incident_named_number_seq` (incidents.report draws it, as the financial layer draws an invoice's), and an
  anonymous report none (NULL). The column has no default, so a report written without a number is unnumbered,
  which is right for an anonymous one; a check holds both ways: a number if and only if the report is named.
- The named reports' numbers already given are kept, every one: a number may have been written on paper, quoted in
  a meeting or a letter, and must still find the same report. The new sequence starts after the highest number any
  report holds, so no number is given twice (the named reports filed before this revision keep their gaps; those
  filed from now on have none).
- The anonymous reports filed before this revision lose the number the table kept for them: no page or API shows
  an anonymous report's number (a report is found by its id, never by its number), so nobody can have quoted one
  to find it, and without them the one check holds for every row.

The downgrade gives the anonymous reports a number each, after the highest, in the order they were reported (t0035's
identity column needs one on every row), and puts the identity column back, starting after the highest number.

Revision ID: t0045
Revises: t0044
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0045"
down_revision = "t0044"
branch_labels = None
depends_on = None

SEQUENCE = "incident_named_number_seq"


def _highest(bind: sa.Connection) -> int:
    return bind.execute(sa.text("SELECT coalesce(max(number), 0) FROM incident")).scalar_one()


def upgrade() -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE incident ALTER COLUMN number DROP IDENTITY")
    op.alter_column("incident", "number", nullable=True)
    op.execute(f"CREATE SEQUENCE {SEQUENCE} OWNED BY incident.number")
    highest = _highest(bind)
    if highest:
        bind.execute(sa.text("SELECT setval(CAST(:sequence AS regclass), :highest)"),
                     {"sequence": SEQUENCE, "highest": highest})
    op.execute("UPDATE incident SET number = NULL WHERE anonymous")
    op.create_check_constraint("incident_numbered_when_named", "incident", "anonymous = (number IS NULL)")


def downgrade() -> None:
    bind = op.get_bind()
    op.drop_constraint("incident_numbered_when_named", "incident", type_="check")
    op.execute(f"DROP SEQUENCE {SEQUENCE}")
    bind.execute(sa.text("""
        UPDATE incident i SET number = n.number
        FROM (SELECT id, (SELECT coalesce(max(number), 0) FROM incident)
                         + row_number() OVER (ORDER BY reported_at, id) AS number
              FROM incident WHERE number IS NULL) n
        WHERE i.id = n.id"""))
    op.alter_column("incident", "number", nullable=False)
    op.execute(f"ALTER TABLE incident ALTER COLUMN number ADD GENERATED ALWAYS AS IDENTITY "
               f"(START WITH {_highest(bind) + 1})")
