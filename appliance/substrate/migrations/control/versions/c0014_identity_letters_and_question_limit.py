"""Two changes to the one-identity index (appliance/substrate/identity.py):

- A subject's demographic key (normalised names, birth date, sex: what registration proposes as the same person,
  and the duplicate review pairs by) dropped every letter NFKD does not decompose: "Đặng" was keyed "ang",
  "Søren Østergaard" "sren|stergaard", so the same person typed "Dang" or "Soren Ostergaard" at another desk was
  never proposed. `normalise_name` now folds those letters as the patient search does (`search_text`'s table:
  đ→d, ø→o, æ→ae...) and folds case as it does (ß→ss); every stored key is recomputed by it.
- `national_id_answer`: each differing answer to the national-ID question kept for an hour, which the limit on
  asking counts (`compare_national_id_holder`), so the question cannot be repeated to learn a birth date.

PostgreSQL has no fold equal to Python's (NFKD is there, but `lower` of "Đ" follows the database's collation and
the letter table would be a second copy in SQL), so the keys are recomputed here in Python, a batch at a time, by
the rule frozen as it stood when this revision was written (as t0044 froze the search text's): a later change to
`normalise_name` must come with a revision recomputing them again. The key is a function of the subject's stored
names, birth date and sex, so the downgrade recomputes it by the old rule exactly, and drops the table.

Revision ID: c0014
Revises: c0013
Create Date: 2026-11-27
"""

import unicodedata
from collections.abc import Callable
from datetime import date

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "c0014"
down_revision = "c0013"
branch_labels = None
depends_on = None

BATCH = 1000  # subjects recomputed per statement: a country's index is not held in memory at once

_UNDECOMPOSED_LETTERS = str.maketrans({"đ": "d", "ð": "d", "ø": "o", "ł": "l", "ħ": "h", "ı": "i", "ŧ": "t",
                                       "æ": "ae", "œ": "oe", "þ": "th"})


def folded_name(name: str) -> str:
    """identity.normalise_name as of this revision."""
    decomposed = unicodedata.normalize("NFKD", name.casefold()).translate(_UNDECOMPOSED_LETTERS)
    return "".join(ch for ch in decomposed if "a" <= ch <= "z")


def ascii_name(name: str) -> str:
    """identity.normalise_name before this revision (c0002 to c0013): the letters NFKD leaves ASCII."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed.lower() if "a" <= ch <= "z")


def keyed(normalise: Callable[[str], str], family_name: str, given_names: str, birth_date: date | None,
          sex: str | None) -> str:
    """identity.demographic_key, its names normalised by `normalise`."""
    given = " ".join(sorted(normalise(part) for part in given_names.split() if normalise(part)))
    born = birth_date.isoformat() if birth_date else ""
    return f"{normalise(family_name)}|{given}|{born}|{(sex or '')[:1].lower()}"


_PAGE = sa.text("SELECT id, family_name, given_names, birth_date, sex FROM control.subject WHERE id > :after "
                "ORDER BY id LIMIT :batch")
_REKEY = sa.text("""
UPDATE control.subject s SET demographic_key = v.demographic_key
FROM unnest(CAST(:ids AS uuid[]), CAST(:keys AS text[])) AS v(id, demographic_key)
WHERE s.id = v.id AND s.demographic_key IS DISTINCT FROM v.demographic_key""")


def _rekey(normalise: Callable[[str], str]) -> None:
    bind = op.get_bind()
    after = "00000000-0000-0000-0000-000000000000"
    while rows := bind.execute(_PAGE, {"after": after, "batch": BATCH}).all():
        bind.execute(_REKEY, {"ids": [r.id for r in rows],
                              "keys": [keyed(normalise, r.family_name, r.given_names, r.birth_date, r.sex)
                                       for r in rows]})
        after = rows[-1].id


def upgrade() -> None:
    op.create_table(
        "national_id_answer",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("subject_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("control.subject.id"), nullable=False),
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        schema="control",
    )
    op.create_index("national_id_answer_subject_idx", "national_id_answer", ["subject_id", "answered_at"],
                    schema="control")
    _rekey(folded_name)


def downgrade() -> None:
    _rekey(ascii_name)
    op.drop_index("national_id_answer_subject_idx", "national_id_answer", schema="control")
    op.drop_table("national_id_answer", schema="control")
