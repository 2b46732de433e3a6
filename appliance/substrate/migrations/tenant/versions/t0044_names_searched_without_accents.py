"""A patient's name searched with its accents folded (issue 4): desk staff type "muller", "nunez", "zoe", "dang"
for "Müller", "Nuñez", "Zoë", "Đặng", and `patient.name_search` (lower-cased "given family") kept the accents, so
the desk was told no such patient and offered to register them again.

- `patient.name_search` is refilled with the folded text the clinical search now compares with the folded query
  (appliance/substrate/identity.py `search_text`); the trigram index over it serves the search as before.
- `patient.given_search` and `patient.family_search`: each part folded alike, which FHIR's `Patient?family=` and
  `given=` narrow by (FHIR matches strings "after both have been normalized by case and accent").

The folding is frozen here as `search_text` stood when this revision was written (as t0008 froze its SQL): a later
change to it must come with a revision refilling the columns again, never reach back into this one. The downgrade
puts t0043's lower-cased text back and takes the two columns away.

Revision ID: t0044
Revises: t0043
Create Date: 2026-11-27
"""

import re
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "t0044"
down_revision = "t0043"
branch_labels = None
depends_on = None

BATCH = 1000  # patients refilled per statement: a large facility's registry is not held in memory at once

_UNDECOMPOSED_LETTERS = str.maketrans({"đ": "d", "ð": "d", "ø": "o", "ł": "l", "ħ": "h", "ı": "i", "ŧ": "t",
                                       "æ": "ae", "œ": "oe", "þ": "th"})
_ACCENTS = ("\u0300", "\u036f")


def folded(text: str) -> str:
    """identity.search_text as of this revision."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    unmarked = "".join(ch for ch in decomposed if not _ACCENTS[0] <= ch <= _ACCENTS[1])
    return " ".join(unicodedata.normalize("NFC", unmarked.translate(_UNDECOMPOSED_LETTERS)).split())


def lowered(text: str) -> str:
    """The search text before this revision (t0002 to t0043): lower-cased, whitespace single."""
    return re.sub(r"\s+", " ", text.lower()).strip()


_PAGE = sa.text("SELECT id, given_names, family_name FROM patient WHERE id > :after ORDER BY id LIMIT :batch")
_REFILL = sa.text("""
UPDATE patient p SET name_search = v.name_search, given_search = v.given_search, family_search = v.family_search
FROM unnest(CAST(:ids AS uuid[]), CAST(:names AS text[]), CAST(:givens AS text[]), CAST(:families AS text[]))
     AS v(id, name_search, given_search, family_search)
WHERE p.id = v.id""")
_RESTORE = sa.text("""
UPDATE patient p SET name_search = v.name_search
FROM unnest(CAST(:ids AS uuid[]), CAST(:names AS text[])) AS v(id, name_search)
WHERE p.id = v.id AND p.name_search IS DISTINCT FROM v.name_search""")


def _pages(bind: sa.Connection):
    after = "00000000-0000-0000-0000-000000000000"
    while rows := bind.execute(_PAGE, {"after": after, "batch": BATCH}).all():
        yield rows
        after = rows[-1].id


def upgrade() -> None:
    op.add_column("patient", sa.Column("given_search", sa.Text(), nullable=True))
    op.add_column("patient", sa.Column("family_search", sa.Text(), nullable=True))
    bind = op.get_bind()
    for rows in _pages(bind):
        bind.execute(_REFILL, {"ids": [r.id for r in rows],
                               "names": [folded(f"{r.given_names} {r.family_name}") for r in rows],
                               "givens": [folded(r.given_names) for r in rows],
                               "families": [folded(r.family_name) for r in rows]})
    op.alter_column("patient", "given_search", nullable=False)
    op.alter_column("patient", "family_search", nullable=False)


def downgrade() -> None:
    bind = op.get_bind()
    for rows in _pages(bind):
        bind.execute(_RESTORE, {"ids": [r.id for r in rows],
                                "names": [lowered(f"{r.given_names} {r.family_name}") for r in rows]})
    op.drop_column("patient", "family_search")
    op.drop_column("patient", "given_search")
