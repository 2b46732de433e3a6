"""One identity: the master patient index, merges, sign-in, lockout, TOTP replay, sessions, tokens."""

import uuid
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from appliance.substrate import audit, identity, totp
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal


def test_national_id_links_exactly_and_demographics_only_propose(db: Database):
    nid = f"NID-{uuid.uuid4().hex[:10]}"
    with db.control() as conn:
        first = identity.match_or_create_subject(conn, family_name="Nakato", given_names="Grace Amina",
                                                 birth_date=date(1990, 4, 2), sex="female", national_id=nid)
        again = identity.match_or_create_subject(conn, family_name="NAKATO ", given_names="Grace",
                                                 national_id=nid)
        lookalike = identity.match_or_create_subject(conn, family_name="Nakató", given_names="amina  grace",
                                                     birth_date=date(1990, 4, 2), sex="F")
    assert first.how == "created"
    assert again.how == "national_id" and again.subject_id == first.subject_id
    # Same normalised names, birth date and sex: proposed as a candidate, never linked silently.
    assert lookalike.how == "created" and lookalike.subject_id != first.subject_id
    assert first.subject_id in lookalike.candidates


@pytest.mark.parametrize(("written", "typed"), [(("Østergaard", "Søren"), ("Ostergaard", "Soren")),
                                                 (("Đặng", "Văn Minh"), ("Dang", "Van  minh")),
                                                 (("Strauß", "Æsa"), ("Strauss", "Aesa"))])
def test_names_with_a_stroke_or_a_ligature_propose_the_same_person_typed_without_them(db: Database, written, typed):
    """The demographic key kept only the letters NFKD makes ASCII: "Søren Østergaard" was keyed "sren|stergaard"
    and "Đặng" "ang", so the same person typed on a keyboard without those letters was never proposed. Both
    spellings now key alike, folded as the patient search folds them."""
    born = date(1979, 3, 14)
    with db.control() as conn:
        first = identity.match_or_create_subject(conn, family_name=written[0], given_names=written[1],
                                                 birth_date=born, sex="male")
        second = identity.match_or_create_subject(conn, family_name=typed[0], given_names=typed[1],
                                                  birth_date=born, sex="male")
    assert first.subject_id in second.candidates and second.how == "created"
    assert identity.demographic_key(*written, born, "male") == identity.demographic_key(*typed, born, "male")


def test_the_national_id_question_is_refused_once_asked_too_often_by_one_asker_or_by_everyone(db: Database,
                                                                                               tenant_a):
    """Each differing answer tells a guess of the holder's birth date is wrong, so a script could ask day by day.
    One asker is answered NATIONAL_ID_ANSWERS_PER_ASKER times about a person in an hour, everyone together
    NATIONAL_ID_ANSWERS_PER_PERSON times; then the question is refused before anything is compared (the right
    guess too), audited. Another person's ID is still answered; a confirmed question is neither counted nor
    refused; an answer older than the hour no longer counts."""
    held, other = f"NID-{uuid.uuid4().hex[:10]}", f"NID-{uuid.uuid4().hex[:10]}"
    with db.control() as conn:
        holder = identity.match_or_create_subject(conn, family_name="Mwangi", given_names="Ann", sex="female",
                                                  birth_date=date(1984, 5, 20), national_id=held).subject_id
        identity.match_or_create_subject(conn, family_name="Ouma", given_names="Joy", sex="female",
                                         birth_date=date(1984, 5, 20), national_id=other)

    def asker() -> Principal:
        return Principal(account_id=uuid.uuid4(), kind="machine", display_name="feed", tenant=tenant_a.slug,
                         role="api_token")

    def ask(by: Principal, national_id: str = held, born: date = date(1984, 5, 1), confirmed: bool = False):
        with db.control() as conn:
            return identity.compare_national_id_holder(conn, national_id, birth_date=born, sex="female",
                                                       tenant=tenant_a.slug, by=by, confirmed=confirmed)

    prober = asker()
    answers = [ask(prober, born=date(1984, 5, day)) for day in range(1, identity.NATIONAL_ID_ANSWERS_PER_ASKER + 1)]
    assert answers == [identity.HolderComparison(["birth date"])] * identity.NATIONAL_ID_ANSWERS_PER_ASKER
    assert ask(prober, born=date(1984, 5, 20)) == identity.HolderComparison([], refused=True)  # right, unanswered
    assert ask(prober, national_id=other) == identity.HolderComparison(["birth date"])
    assert ask(prober, confirmed=True) == identity.HolderComparison(["birth date"])
    others = [ask(asker()) for _ in range(identity.NATIONAL_ID_ANSWERS_PER_PERSON
                                          - identity.NATIONAL_ID_ANSWERS_PER_ASKER)]
    assert not any(answer.refused for answer in others)
    assert ask(asker()) == identity.HolderComparison([], refused=True)  # everyone's ten are used
    with db.control() as conn:
        conn.execute(sa.update(identity.national_id_answer).where(identity.national_id_answer.c.subject_id == holder)
                     .values(answered_at=sa.func.now() - identity.NATIONAL_ID_QUESTION_WINDOW))
    assert ask(prober, born=date(1984, 5, 20)) == identity.HolderComparison([])
    refusals = [e["event"] for e in audit.read_events(db, None, event_type="identity.subject.national_id.compare")
                if e["event"]["detail"]["subject"] == str(holder) and "refused" in e["event"]["detail"]]
    assert [(e["detail"]["refused"], e["outcome"]) for e in refusals] == [("asked too often", "4")] * 2


def test_two_facilities_registering_one_new_national_id_at_once_get_one_subject(db: Database):
    import threading

    nid = f"NID-{uuid.uuid4().hex[:10]}"
    got = {}
    with db.control() as first:  # the first registration has made the subject and not yet committed
        made = identity.match_or_create_subject(first, family_name="Achieng", given_names="Rose", national_id=nid)

        def second() -> None:
            with db.control() as conn:  # waits on the unique index until the first commits
                got["match"] = identity.match_or_create_subject(conn, family_name="Achieng", given_names="Rose",
                                                                national_id=nid)

        waiting = threading.Thread(target=second)
        waiting.start()
        waiting.join(timeout=1)
        assert waiting.is_alive()  # blocked, not failed
    waiting.join(timeout=10)
    assert got["match"].subject_id == made.subject_id and got["match"].how == "national_id"


def test_merge_and_unmerge_keep_every_record_reachable_from_the_right_subject(db: Database):
    with db.control() as conn:
        a = identity.match_or_create_subject(conn, family_name="Okello", given_names="John").subject_id
        b = identity.match_or_create_subject(conn, family_name="Okelo", given_names="John").subject_id
        merge = identity.merge_subjects(conn, survivor_id=a, merged_id=b, reason="same person, misspelt", by=None)
        assert identity.resolve_subject(conn, b) == a
        assert set(identity.subject_ids_resolving_to(conn, a)) == {a, b}
        identity.unmerge_subjects(conn, merge_id=merge, by=None)
        assert identity.resolve_subject(conn, b) == b
        assert identity.subject_ids_resolving_to(conn, a) == [a]
        with pytest.raises(identity.IdentityError):
            identity.unmerge_subjects(conn, merge_id=merge, by=None)


def test_merge_needs_a_reason(db: Database):
    with db.control() as conn:
        a = identity.match_or_create_subject(conn, family_name="A", given_names="B").subject_id
        b = identity.match_or_create_subject(conn, family_name="C", given_names="D").subject_id
        with pytest.raises(identity.IdentityError, match="reason"):
            identity.merge_subjects(conn, survivor_id=a, merged_id=b, reason="  ", by=None)


def test_wrong_password_and_unknown_account_get_the_same_refusal(db: Database, person_factory, tenant_a):
    person = person_factory("clinician", tenant_a.slug)
    with db.control() as conn:
        assert identity.check_password(conn, person.email, "wrong-password-123") is None
        assert identity.check_password(conn, "nobody@test.invalid", "whatever-123456") is None
        assert identity.check_password(conn, person.email, person.password) == person.account_id


def test_nth_failure_locks_even_the_right_password_out(db: Database, person_factory, tenant_a):
    person = person_factory("nurse", tenant_a.slug)
    for _ in range(identity.DEFAULT_SETTINGS.max_failed_signins):
        with db.control() as conn:
            assert identity.check_password(conn, person.email, "not-the-password") is None
    with db.control() as conn:
        assert identity.check_password(conn, person.email, person.password) is None
    with db.control() as conn:
        row = identity.account_by_email(conn, person.email)
    assert row.locked_until is not None and row.failed_signins >= 5


def test_a_totp_code_works_once(db: Database, person_factory, tenant_a):
    person = person_factory("clinician", tenant_a.slug)
    import time

    code = totp.totp_at(person.totp_secret, time.time())
    with db.control() as conn:
        assert identity.check_totp(conn, person.account_id, code) is True
    with db.control() as conn:
        assert identity.check_totp(conn, person.account_id, code) is False


@pytest.mark.parametrize("how", ["revoked", "idle", "absolute", "disabled"])
def test_dead_sessions_do_not_load(db: Database, person_factory, tenant_a, how):
    person = person_factory("clinician", tenant_a.slug)
    with db.control() as conn:
        token = identity.start_session(conn, person.account_id, mfa_passed=True)
        assert identity.load_session(conn, token) is not None
        where = identity.session.c.token_hash == identity.token_digest(token)
        if how == "revoked":
            identity.revoke_all_sessions(conn, person.account_id)
        elif how == "idle":
            conn.execute(sa.update(identity.session).where(where).values(
                last_seen_at=sa.func.now() - timedelta(minutes=16)))
        elif how == "absolute":
            conn.execute(sa.update(identity.session).where(where).values(expires_at=sa.func.now()))
        else:
            identity.disable_account(conn, person.email)
        assert identity.load_session(conn, token) is None


def test_enrolment_code_sets_password_and_totp_once(db: Database, policy, tenant_a):
    import time

    with db.control() as conn:
        new = identity.create_account(conn, policy, kind="staff", email=f"e-{uuid.uuid4().hex[:8]}@test.invalid",
                                      display_name="New Nurse", role="nurse", tenant=tenant_a.slug)
        pending = identity.pending_enrolment(conn, new.enrolment_code)
        with pytest.raises(identity.IdentityError, match="12"):
            code = totp.totp_at(pending.totp_secret, time.time())
            identity.complete_enrolment(conn, new.enrolment_code, "short", code)
    with db.control() as conn:
        identity.complete_enrolment(conn, new.enrolment_code, "a long enough passphrase",
                                    totp.totp_at(pending.totp_secret, time.time()))
    with pytest.raises(identity.IdentityError, match="not valid"), db.control() as conn:
        identity.pending_enrolment(conn, new.enrolment_code)
    with db.control() as conn:
        assert identity.check_password(conn, pending.email, "a long enough passphrase") == new.account_id


def test_reset_mfa_gives_a_way_in_only_to_a_person_who_may_still_sign_in(db: Database, policy, person_factory,
                                                                        tenant_a):
    """A reset of a disabled account printed a link that enrolment then refused; one of a machine client's
    account (listed as 'awaiting enrolment') let a person enrol it and sign in as the facility's admin."""
    with db.control() as conn:
        token = identity.issue_machine_token(conn, policy, tenant=tenant_a.slug, name="lab feed",
                                             permissions=["clinical.patient.read"])
        machine = conn.execute(sa.text("SELECT a.email FROM control.api_token t JOIN control.account a "
                                       "ON a.id = t.account_id WHERE t.token_hash = :h"),
                               {"h": identity.token_digest(token)}).scalar()
        assert next(a for a in identity.list_accounts(conn) if a["email"] == machine)["state"] == "active"
        with pytest.raises(identity.IdentityError, match="machine client"):
            identity.reset_mfa(conn, machine)
    person = person_factory("nurse", tenant_a.slug)
    with db.control() as conn:
        identity.disable_account(conn, person.email)
        with pytest.raises(identity.IdentityError, match="disabled"):
            identity.reset_mfa(conn, person.email)


def test_roles_must_fit_their_scope(db: Database, policy, tenant_a):
    with pytest.raises(identity.IdentityError, match="tenant"), db.control() as conn:
        identity.create_account(conn, policy, kind="staff", email="x1@test.invalid", display_name="x", role="nurse")
    with pytest.raises(identity.IdentityError, match="appliance-wide"), db.control() as conn:
        identity.create_account(conn, policy, kind="regulator", email="x2@test.invalid", display_name="x",
                                role="regulator", tenant=tenant_a.slug)
    with pytest.raises(identity.IdentityError, match="unknown role"), db.control() as conn:
        identity.create_account(conn, policy, kind="staff", email="x3@test.invalid", display_name="x", role="wizard")


def test_sign_in_failures_merges_and_unmerges_reach_the_audit_trail(db: Database, person_factory, tenant_a):
    from appliance.substrate.audit import control_audit_event

    def count(event_type: str) -> int:
        with db.control() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(control_audit_event).where(
                control_audit_event.c.event_type == event_type)).scalar()

    before = {t: count(t) for t in ["identity.signin", "identity.subject.merge", "identity.subject.unmerge"]}
    person = person_factory("clinician", tenant_a.slug)
    with db.control() as conn:
        assert identity.check_password(conn, person.email, "wrong-password-zz") is None
        a = identity.match_or_create_subject(conn, family_name="Audit", given_names="One").subject_id
        b = identity.match_or_create_subject(conn, family_name="Audit", given_names="Two").subject_id
        merge = identity.merge_subjects(conn, survivor_id=a, merged_id=b, reason="duplicate", by=None)
        identity.unmerge_subjects(conn, merge_id=merge, by=None)
    assert count("identity.signin") == before["identity.signin"] + 1
    assert count("identity.subject.merge") == before["identity.subject.merge"] + 1
    assert count("identity.subject.unmerge") == before["identity.subject.unmerge"] + 1


def test_totp_seeds_rest_sealed_and_bound_to_their_account(db: Database, person_factory, tenant_a):
    person = person_factory("clinician", tenant_a.slug)
    other = person_factory("clinician", tenant_a.slug)
    with db.control() as conn:
        stored = conn.execute(sa.select(identity.account.c.mfa_secret).where(
            identity.account.c.id == person.account_id)).scalar()
        assert person.totp_secret not in stored and stored.startswith("sealed1:")
        # A sealed seed copied onto another account does not open there.
        conn.execute(sa.update(identity.account).where(identity.account.c.id == other.account_id)
                     .values(mfa_secret=stored))
    import time

    with pytest.raises(Exception, match="does not open"), db.control() as conn:
        identity.check_totp(conn, other.account_id, totp.totp_at(person.totp_secret, time.time()))


def test_a_machine_author_gets_a_name_and_never_a_way_in(db: Database, tenant_a):
    from appliance.substrate.demo import demo_author
    from appliance.web.portal import people_named

    author = demo_author(uuid.uuid4(), tenant_a.slug, "nursing", "nurse")
    email = f"demo-data-{author.account_id.hex[:12]}@test.invalid"
    with db.control() as conn:
        assert identity.name_machine_author(conn, author, email=email) is True
        assert identity.name_machine_author(conn, author, email=email) is False  # once, however often asked
        row = identity.account_by_email(conn, email)
        created = conn.execute(sa.text(
            "SELECT count(*) FROM control.audit_event WHERE event_type = 'identity.account.create' "
            "AND recorded > now() - interval '1 minute'")).scalar()
    assert row.kind == "machine" and row.disabled_at is not None and row.password_hash is None
    assert created >= 1
    assert people_named(db, {author.account_id}) == {author.account_id: "Demo data (nursing)"}
    with db.control() as conn:
        assert identity.check_password(conn, email, "") is None
