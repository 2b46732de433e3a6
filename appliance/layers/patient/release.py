"""Release rules: which reviewed results the patient portal shows, and when (`policies/release.toml`).

Every result is decided by the first rule naming its LOINC code, else by the file's default; none is
shown before a clinician has reviewed it. A rule either shows the result some hours after the review
(time for the clinician to call first) or keeps it off the portal until a clinician has given it to the
patient in person (`in_person`: an HIV test, whose result is given with counselling). The clinician
records that act (a `result_disclosure` entry, its time the result's `disclosed_at`), and from that
moment the result shows like any other — so a patient on treatment sees their viral load history once
told. Of the results not given yet the portal says only how many a facility holds — never the test's
name or its value — so a screen read over the patient's shoulder tells nothing.

Vaccinations are decided apart (`[immunization]`): shown on the patient's vaccination card at once, or not
at all (`IMMUNIZATION_RELEASES`); no review stands between a dose and the card, as none stands between a
dose and the paper card the nurse fills in. So are a mother's deliveries (`[delivery]`): on her record at once, or
not at all; she was there, and nothing in a delivery waits on a clinician's reading. And so is her antenatal card's
summary (`[antenatal]`): her due date, the weeks today and her next contact, never a test's result.

Family planning is decided apart too (`[family_planning]`): the methods a client was given and her next injection or
re-supply, on her record at once or not at all. And so is HIV care (`[hiv_care]`): the person's ART number, regimen,
next appointment and the day their next viral load is due, at once or not at all; never a viral load's value, which
the rule for its LOINC code (given in person) decides as every result's. And so is TB care (`[tb_care]`): the register
number, regimen, the phase and until when, the next sputum check's day and the outcome, at once or not at all; never a
follow-up's smear, culture or Xpert finding, for which the file has no rule.

Documents filed on the record (`[documents]`) are decided by their category: at once, some hours after filing, or
(a category not named) never. No clinician's review stands between a scan and the chart, so the hours after filing are
the time a clinician has to read it and call first, as REL-003's hours after review are.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from appliance.substrate.tenant_config import loinc_check_digit_ok

RELEASES = ("after_review", "in_person")
IMMUNIZATION_RELEASES = ("at_once", "not_shown")
DELIVERY_RELEASES = IMMUNIZATION_RELEASES  # shown as soon as recorded, or never
FAMILY_PLANNING_RELEASES = IMMUNIZATION_RELEASES  # shown as soon as recorded, or never
HIV_CARE_RELEASES = IMMUNIZATION_RELEASES  # shown as soon as recorded, or never
TB_CARE_RELEASES = IMMUNIZATION_RELEASES  # shown as soon as recorded, or never
ANTENATAL_RELEASES = IMMUNIZATION_RELEASES
DOCUMENT_RELEASES = ("at_once", "after_filing")
# The record's document categories (clinical models' DOCUMENT_CATEGORIES, which a layer may not import; a test holds
# the two the same), so a category misspelt in the file is refused rather than silently never shown.
DOCUMENT_CATEGORIES = ("referral_letter", "consent_form", "ecg", "outside_result", "outside_imaging",
                       "identity_document", "clinical_photograph", "other")
_RULE_ID = re.compile(r"^REL-\d{3}$")
_LOINC = re.compile(r"^\d{1,7}-\d$")


class ReleasePolicyError(ValueError):
    """The release rules file cannot be used; the message names the problem."""


@dataclass(frozen=True)
class ReleaseRule:
    id: str
    description: str
    release: str
    hours_after_review: int
    loinc: frozenset[str]


@dataclass(frozen=True)
class ReleaseRules:
    default: ReleaseRule
    rules: tuple[ReleaseRule, ...]
    immunizations: str = "at_once"  # one of IMMUNIZATION_RELEASES
    deliveries: str = "at_once"  # one of DELIVERY_RELEASES
    antenatal: str = "at_once"  # one of ANTENATAL_RELEASES
    family_planning: str = "at_once"  # one of FAMILY_PLANNING_RELEASES
    hiv_care: str = "at_once"  # one of HIV_CARE_RELEASES
    tb_care: str = "at_once"  # one of TB_CARE_RELEASES
    # Each document category the portal shows, and the hours after filing it shows from (0: at once); none named, none.
    documents: Mapping[str, int] = field(default_factory=dict)

    def document_shown_from(self, category: str, filed_at: dt.datetime) -> dt.datetime | None:
        """When a document of `category` filed at `filed_at` reaches the portal; None: never."""
        hours = self.documents.get(category)
        return None if hours is None else filed_at + dt.timedelta(hours=hours)

    @property
    def immunizations_shown(self) -> bool:
        return self.immunizations == "at_once"

    @property
    def deliveries_shown(self) -> bool:
        return self.deliveries == "at_once"

    @property
    def antenatal_shown(self) -> bool:
        return self.antenatal == "at_once"

    @property
    def family_planning_shown(self) -> bool:
        return self.family_planning == "at_once"

    @property
    def hiv_care_shown(self) -> bool:
        return self.hiv_care == "at_once"

    @property
    def tb_care_shown(self) -> bool:
        return self.tb_care == "at_once"

    def rule_for(self, code: str) -> ReleaseRule:
        return next((rule for rule in self.rules if code in rule.loinc), self.default)

    def in_person_rule(self, code: str) -> str | None:
        """The rule (REL-001...) keeping results of `code` off the portal until given in person; None: no rule
        does. What the clinical layer is handed (it imports no other layer) to leave such results out of what
        it writes for the patient, a discharge summary's key results."""
        rule = self.rule_for(code)
        return rule.id if rule.release == "in_person" else None


@dataclass(frozen=True)
class Released:
    """One facility's results as the portal may show them."""

    shown: list[dict]
    later: list[tuple[dict, dt.datetime]]  # reviewed, shown from that time
    in_person: int  # reviewed, given only in person and not given yet: a count, nothing else


def _rule(item: dict, where: str, *, default: bool = False) -> ReleaseRule:
    release = item.get("release")
    if release not in RELEASES:
        raise ReleasePolicyError(f"{where}: release {release!r} is not one of {', '.join(RELEASES)}")
    hours = item.get("hours_after_review", 0)
    if not isinstance(hours, int) or isinstance(hours, bool) or hours < 0:
        raise ReleasePolicyError(f"{where}: hours_after_review {hours!r} is not a whole number of hours")
    if release == "in_person" and "hours_after_review" in item:
        raise ReleasePolicyError(f"{where}: an in_person result shows once it has been given in person, so it "
                                 "takes no hours_after_review")
    if default:
        return ReleaseRule("default", "the default", release, hours, frozenset())
    rule_id, description, codes = item.get("id"), item.get("description"), item.get("loinc")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise ReleasePolicyError(f"{where}: id {rule_id!r} is not of the form REL-001")
    if not isinstance(description, str) or not description.strip():
        raise ReleasePolicyError(f"{where} ({rule_id}): a rule says why, in its description")
    if not isinstance(codes, list) or not codes:
        raise ReleasePolicyError(f"{where} ({rule_id}): loinc must list the codes the rule decides")
    for code in codes:
        if not isinstance(code, str) or not _LOINC.fullmatch(code) or not loinc_check_digit_ok(code):
            raise ReleasePolicyError(f"{where} ({rule_id}): {code!r} is not a LOINC code (such as 68961-2, its "
                                     "check digit after the hyphen)")
    return ReleaseRule(rule_id, description, release, hours, frozenset(codes))


def load_release_rules(path: Path) -> ReleaseRules:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ReleasePolicyError(f"{path}: {exc}") from exc
    if not isinstance(data.get("default"), dict):
        raise ReleasePolicyError(f"{path}: a [default] table says what happens to results no rule names")
    default = _rule(data["default"], f"{path} [default]", default=True)
    rules = tuple(_rule(item, f"{path} rule {n}") for n, item in enumerate(data.get("rule", []), start=1))
    ids = [rule.id for rule in rules]
    if len(set(ids)) != len(ids):
        raise ReleasePolicyError(f"{path}: rule ids must be unique")
    return ReleaseRules(default, rules, _shown_or_not(data, "immunization", IMMUNIZATION_RELEASES, path),
                        _shown_or_not(data, "delivery", DELIVERY_RELEASES, path),
                        _shown_or_not(data, "antenatal", ANTENATAL_RELEASES, path),
                        family_planning=_shown_or_not(data, "family_planning", FAMILY_PLANNING_RELEASES, path),
                        hiv_care=_shown_or_not(data, "hiv_care", HIV_CARE_RELEASES, path),
                        tb_care=_shown_or_not(data, "tb_care", TB_CARE_RELEASES, path),
                        documents=_documents(data.get("documents", {}), path))


def _documents(table: object, path: Path) -> dict[str, int]:
    """`[documents]`: each category named, with the hours after filing it shows from (0 for at_once)."""
    where = f"{path} [documents]"
    if not isinstance(table, dict):
        raise ReleasePolicyError(f"{where}: names document categories, each with its release")
    hours_of = {}
    for category, item in table.items():
        if category not in DOCUMENT_CATEGORIES:
            raise ReleasePolicyError(f"{where}: {category!r} is not a document category (one of "
                                     f"{', '.join(DOCUMENT_CATEGORIES)})")
        release = item.get("release") if isinstance(item, dict) else None
        if release not in DOCUMENT_RELEASES:
            raise ReleasePolicyError(f"{where} {category}: release is one of {', '.join(DOCUMENT_RELEASES)}")
        hours = item.get("hours_after_filing", 0)
        if set(item) - {"release", "hours_after_filing"} or (release == "at_once" and "hours_after_filing" in item):
            raise ReleasePolicyError(f"{where} {category}: takes release, and hours_after_filing only after_filing")
        if not isinstance(hours, int) or isinstance(hours, bool) or hours < 0:
            raise ReleasePolicyError(f"{where} {category}: hours_after_filing {hours!r} is not a whole number of hours")
        hours_of[category] = hours
    return hours_of


def _shown_or_not(data: dict, table: str, releases: tuple[str, ...], path: Path) -> str:
    """The release of a table that shows its entries at once or never (at once where the file names none)."""
    found = data.get(table, {"release": "at_once"})
    if not isinstance(found, dict) or found.get("release") not in releases or set(found) != {"release"}:
        raise ReleasePolicyError(f"{path} [{table}]: release is one of {', '.join(releases)}, and nothing else")
    return found["release"]


def release(results: list[dict], rules: ReleaseRules, now: dt.datetime) -> Released:
    """Reviewed results sorted by what the portal may show of them now. A result given only in person
    shows once `disclosed_at` (when the clinician recorded giving it) is set and past."""
    shown, later, in_person = [], [], 0
    for result in results:
        if result.get("signed_at") is None:
            continue
        if rules.in_person_rule(result["code"]) is not None:
            if given(result, now):
                shown.append(result)
            else:
                in_person += 1
            continue
        at = result["signed_at"] + dt.timedelta(hours=rules.rule_for(result["code"]).hours_after_review)
        if at <= now:
            shown.append(result)
        else:
            later.append((result, at))
    return Released(shown, later, in_person)


def given(result: dict, now: dt.datetime) -> bool:
    """Whether a clinician has recorded giving this result to the patient in person (`disclosed_at`), by `now`."""
    disclosed = result.get("disclosed_at")
    return disclosed is not None and disclosed <= now
