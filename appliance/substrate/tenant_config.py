"""What a facility is, as written by hospital IT in `tenants/<slug>.toml`, and how such a file is read.

The file is validated whole before anything touches the database: a typo'd key, a wrong type or an
unknown time zone fails with the file, the field and what was expected, and nothing changes. Later
layers extend `TenantConfig` with their own sections (fee schedule, templates, order sets, KPI
targets); unknown keys are refused so a misspelt section never silently does nothing.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from appliance.substrate.db import SLUG_PATTERN

FacilityType = Literal["referral_hospital", "district_hospital", "health_centre", "clinic"]
WardKind = Literal["inpatient", "emergency", "maternity", "paediatric", "icu", "surgical", "outpatient"]
Code = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")]


class TenantFileError(ValueError):
    """A tenant file that cannot be applied; the message names the file, the field and the expectation."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class WardConfig(_Strict):
    code: Code
    name: str = Field(min_length=1, max_length=120)
    kind: WardKind = "inpatient"
    # Either a number of beds (coded <WARD>-01, <WARD>-02...) or the explicit bed codes.
    beds: int | list[Code] = Field(default=0)

    @field_validator("beds", mode="before")
    @classmethod
    def _beds_shape(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | list):
            raise ValueError("expected a number of beds (e.g. 12) or a list of bed codes (e.g. [\"A1\", \"A2\"])")
        return value

    @field_validator("beds")
    @classmethod
    def _beds_in_range(cls, value: int | list[str]) -> int | list[str]:
        if isinstance(value, int) and not 0 <= value <= 999:
            raise ValueError("a ward holds between 0 and 999 beds")
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError("bed codes must be unique within the ward")
        return value

    def bed_codes(self) -> list[str]:
        if isinstance(self.beds, int):
            return [f"{self.code}-{n:02d}" for n in range(1, self.beds + 1)]
        return list(self.beds)


class TenantConfig(_Strict):
    slug: str = Field(description="^[a-z][a-z0-9_]{1,30}$; schema and role are t_<slug>")
    name: str = Field(min_length=2, max_length=200)
    facility_type: FacilityType
    country_code: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    region: str = Field(min_length=1, max_length=120)
    district: str = Field(min_length=1, max_length=120)
    timezone: str = Field(description="IANA time zone, e.g. Africa/Nairobi")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    wards: list[WardConfig] = Field(default_factory=list)

    @field_validator("slug")
    @classmethod
    def _slug_shape(cls, value: str) -> str:
        if not SLUG_PATTERN.fullmatch(value):
            raise ValueError("expected 2-31 characters: lowercase letters, digits, underscore, starting "
                             "with a letter")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _unique_codes(self) -> TenantConfig:
        ward_codes = [ward.code for ward in self.wards]
        if len(set(ward_codes)) != len(ward_codes):
            raise ValueError("ward codes must be unique")
        bed_codes = [bed for ward in self.wards for bed in ward.bed_codes()]
        duplicates = sorted({bed for bed in bed_codes if bed_codes.count(bed) > 1})
        if duplicates:
            raise ValueError(f"bed codes must be unique across wards: {', '.join(duplicates)}")
        return self

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON form: equal files apply as 'unchanged'."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _describe(error: dict) -> str:
    location = ""
    for part in error["loc"]:
        location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; see tenants/README.md for the fields)"
    elif error["type"] == "missing":
        message = "required field is missing"
    got = error.get("input")
    if error["type"] not in {"missing", "extra_forbidden"} and not isinstance(got, dict | list):
        message += f" (got {got!r})"
    return f"{location or '(file)'}: {message}"


def parse_tenant_file(path: Path) -> TenantConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TenantFileError(path, ["file not found"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TenantFileError(path, [f"not valid TOML: {exc}"]) from exc
    try:
        return TenantConfig.model_validate(raw)
    except ValidationError as exc:
        raise TenantFileError(path, [_describe(error) for error in exc.errors()]) from exc


def tenant_files(path: Path) -> list[Path]:
    """A single file, or every `*.toml` in a directory, sorted."""
    if path.is_dir():
        return sorted(p for p in path.glob("*.toml") if p.is_file())
    return [path]
