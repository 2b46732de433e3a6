"""The master patient index's review of likely duplicates: which pairs it lists and why, what it shows
of each person, and merging, dismissing and undoing a listed pair — on the session's real database,
where other modules' subjects are listed too, so each test finds its own people by id."""

import datetime as dt
import secrets
import string
import uuid
from datetime import date

import pytest
import sqlalchemy as sa

from appliance.substrate import audit, identity
from appliance.substrate.db import Database


def surname() -> str:
    """A family name no other test registers (letters only: the demographic key keeps nothing else)."""
    return "Mpi" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))


def register(db: Database, family: str, given: str, born: date | None = date(1990, 4, 2), sex: str | None = "female",
             national_id: str | None = None, facility: str | None = None) -> uuid.UUID:
    with db.control() as conn:
        subject_id = identity.match_or_create_subject(conn, family_name=family, given_names=given, birth_date=born,
                                                      sex=sex, national_id=national_id).subject_id
        if facility:
            identity.note_facility(conn, subject_id, facility)
    return subject_id


def listed(db: Database) -> dict[frozenset, identity.DuplicatePair]:
    with db.control() as conn:
        review = identity.likely_duplicates(conn, by=None, limit=100_000)
    assert review.total == len(review.pairs)
    return {frozenset((pair.first.id, pair.second.id)): pair for pair in review.pairs}


def test_the_review_lists_lookalikes_and_id_variants_and_leaves_out_merged_dismissed_and_crowded(
        db: Database, tenant_a, tenant_b):
    family = surname()
    started = dt.datetime.now(dt.UTC)
    twin_a = register(db, family, "Grace Amina", facility=tenant_a.slug)
    twin_b = register(db, family.upper() + " ", "amina grace", sex="F", facility=tenant_b.slug)
    digits = "".join(secrets.choice(string.digits) for _ in range(8))
    typed = register(db, surname(), "Rose", born=date(1984, 1, 9), national_id=f"KE {digits[:4]}-{digits[4:]}")
    retyped = register(db, surname(), "Rosa", born=date(1984, 1, 9), national_id=f"ke{digits}")
    swapped_a = register(db, family, "Sarah", born=date(2001, 7, 30))
    swapped_b = register(db, "Sarah", family, born=date(2001, 7, 30))
    merged_a = register(db, family, "Joy", born=date(1975, 3, 3))
    merged_b = register(db, family, "Joy", born=date(1975, 3, 3))
    dismissed_a = register(db, family, "Faith", born=date(1999, 9, 9))
    dismissed_b = register(db, family, "Faith", born=date(1999, 9, 9))
    unrelated = register(db, surname(), "Grace Amina")
    crowd = [register(db, family, "Baby", born=date(2026, 1, 1)) for _ in range(identity.CROWDED_KEY + 1)]
    no_latin = [register(db, "Ἀθηνᾶ" if n else "Δῆμος", "Ἑλένη", born=date(1990, 1, 1)) for n in range(2)]
    with db.control() as conn:
        identity.merge_subjects(conn, survivor_id=merged_a, merged_id=merged_b, reason="one person", by=None)
        identity.dismiss_duplicate(conn, one=dismissed_b, other=dismissed_a, reason="twins", by=None)

    pairs = listed(db)
    lookalikes = pairs[frozenset((twin_a, twin_b))]
    assert lookalikes.signals == ["demographics"]
    first = lookalikes.first if lookalikes.first.id == twin_a else lookalikes.second
    second = lookalikes.second if first is lookalikes.first else lookalikes.first
    assert (first.family_name, first.given_names, first.birth_date, first.sex) == (
        family, "Grace Amina", date(1990, 4, 2), "female")
    assert first.facilities == [tenant_a.name] and second.facilities == [tenant_b.name]
    assert pairs[frozenset((typed, retyped))].signals == ["national_id"]
    assert pairs[frozenset((swapped_a, swapped_b))].signals == ["names_reordered"]
    for gone in [(merged_a, merged_b), (dismissed_a, dismissed_b), (twin_a, unrelated), tuple(no_latin)]:
        assert frozenset(gone) not in pairs
    assert not any(subject_id in pair for pair in pairs for subject_id in crowd)
    # The strongest signal first: every national-ID pair before every lookalike.
    with db.control() as conn:
        order = [pair.signals[0] for pair in identity.likely_duplicates(conn, by=None, limit=100_000).pairs]
    assert order == sorted(order, key=[s.code for s in identity.DUPLICATE_SIGNALS].index)

    # Showing them is a read of the people shown, in the appliance's audit trail.
    seen = audit.read_events(db, None, event_type="identity.subject.duplicates.read", since=started)
    assert seen and {str(twin_a), str(twin_b)} <= set(seen[-1]["event"]["detail"]["subjects"])
    assert seen[-1]["event"]["action"] == "R"


def test_a_listed_pair_is_merged_undone_and_dismissed_and_anything_else_refused(db: Database):
    family = surname()
    one, other = (register(db, family, "Peter", sex="male", born=date(1960, 5, 5)) for _ in range(2))
    stranger = register(db, surname(), "Paul", sex="male")
    with db.control() as conn:
        assert identity.duplicate_signals(conn, one, other) == ["demographics"]
        for survivor, merged, why in [(one, uuid.uuid4(), "no such pair"), (uuid.uuid4(), other, "no such pair"),
                                      (one, one, "no such pair"), (one, stranger, "not listed"),
                                      (one, other, "reason")]:
            with pytest.raises(identity.IdentityError, match=why):
                identity.merge_duplicate(conn, survivor_id=survivor, merged_id=merged,
                                         reason="" if why == "reason" else "same person", by=None)
        merge_id = identity.merge_duplicate(conn, survivor_id=other, merged_id=one, reason="same man", by=None)
        assert identity.resolve_subject(conn, one) == other
        assert identity.duplicate_signals(conn, one, other) == []
        in_force = {m["id"]: m for m in identity.live_merges(conn, by=None, limit=1000)}
        assert in_force[merge_id]["survivor"].id == other and in_force[merge_id]["merged"].id == one
        with pytest.raises(identity.IdentityError, match="not listed"):
            identity.dismiss_duplicate(conn, one=one, other=other, reason="twins", by=None)
        identity.unmerge_subjects(conn, merge_id=merge_id, by=None)
        assert identity.duplicate_signals(conn, one, other) == ["demographics"]
        with pytest.raises(identity.IdentityError, match="say why"):
            identity.dismiss_duplicate(conn, one=one, other=other, reason="  ", by=None)
        identity.dismiss_duplicate(conn, one=one, other=other, reason="father and son, both Peter", by=None)
        assert identity.duplicate_signals(conn, one, other) == []
        with pytest.raises(identity.IdentityError, match="not listed"):
            identity.dismiss_duplicate(conn, one=other, other=one, reason="again", by=None)
        kept = conn.execute(sa.select(identity.subject_distinct.c.reason).where(
            identity.subject_distinct.c.first_id == min(one, other))).scalars().all()
    assert kept == ["father and son, both Peter"]
