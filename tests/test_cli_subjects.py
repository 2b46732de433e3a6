"""`healthos subject`: listing likely duplicate people and deciding on them from the command line, as an
operator runs it, against the session's embedded cluster."""

import datetime as dt
import json
import secrets
import string
import uuid

from click.testing import CliRunner

from appliance.cli import main
from appliance.substrate import audit, identity


def run(settings, *args):
    env = {"HEALTHOS_HOME": str(settings.home), "HEALTHOS_LOG_FORMAT": "console"}
    if settings.database_url:
        env["HEALTHOS_DATABASE_URL"] = settings.database_url
    return CliRunner().invoke(main, ["subject", *args], env=env, catch_exceptions=False)


def test_duplicates_are_listed_then_dismissed_merged_and_unmerged_from_the_cli(settings, db, tenant_a):
    family = "Mpi" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
    with db.control() as conn:
        one, other = (identity.match_or_create_subject(conn, family_name=family, given_names="Okello John",
                                                       birth_date=dt.date(1970, 6, 1), sex="male").subject_id
                      for _ in range(2))
        identity.note_facility(conn, one, tenant_a.slug)
    first, second = sorted((one, other))
    since = dt.datetime.now(dt.UTC)

    listed = run(settings, "duplicates", "--json", "--limit", "10000")
    assert listed.exit_code == 0, listed.output
    pairs = {(p["first"]["id"], p["second"]["id"]): p for p in json.loads(listed.stdout)["pairs"]}
    pair = pairs[(str(first), str(second))]
    assert pair["signals"] == ["demographics"] and pair["first"]["family_name"] == family
    assert [tenant_a.name] in (pair["first"]["facilities"], pair["second"]["facilities"])
    assert audit.read_events(db, None, event_type="identity.subject.duplicates.read", since=since)

    text = run(settings, "duplicates", "--limit", "10000").stdout
    assert f"healthos subject merge {first} {second}" in text and f"{family.upper()}, Okello John" in text

    merged = run(settings, "merge", str(second), str(first), "--reason", "one man, two cards")
    assert merged.exit_code == 0
    merge_id = merged.stdout.split("healthos subject unmerge ")[1].strip()
    assert (str(first), str(second)) not in {(p["first"]["id"], p["second"]["id"]) for p in json.loads(
        run(settings, "duplicates", "--json", "--limit", "10000").stdout)["pairs"]}
    assert run(settings, "unmerge", merge_id).exit_code == 0

    assert run(settings, "dismiss", str(first), str(second), "--reason", "father and son").exit_code == 0
    again = run(settings, "dismiss", str(second), str(first), "--reason", "again")
    assert again.exit_code != 0 and "not listed as likely duplicates" in again.output
    guessed = run(settings, "merge", str(first), str(uuid.uuid4()), "--reason", "guess")
    assert guessed.exit_code != 0 and "no subject" in guessed.output and "Traceback" not in guessed.output
