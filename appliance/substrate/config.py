"""Settings of one appliance process, read from the environment once.

The appliance keeps everything it owns under one directory, `HEALTHOS_HOME` (default `./var`): the
embedded PostgreSQL cluster, its socket, generated secrets and demo credentials. Pointing
`HEALTHOS_DATABASE_URL` at a server switches the embedded cluster off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None = None
    tenants_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "tenants")
    policies_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "policies")
    # Connections are recycled so a backend's private caches (catalog, plan) stop growing with the
    # number of tenant schemas it has visited; bench/tenancy.py measures the memory this bounds.
    pool_size: int = 10
    pool_max_overflow: int = 10
    pool_recycle_seconds: int = 300
    pool_tenants_per_connection: int = 200
    log_json: bool = True
    # Served over TLS (directly or behind a terminating proxy): cookies get `Secure`, responses HSTS.
    tls: bool = False
    signin_attempts_per_minute: int = 10
    # The address people open the appliance at (https://healthos.example.org), for links printed where there is no
    # request to take it from: the CLI's enrolment links. Unset, the CLI prints the path to open there.
    public_url: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("HEALTHOS_HOME", "var")).expanduser().resolve()
        kwargs: dict = {"home": home, "database_url": env.get("HEALTHOS_DATABASE_URL") or None}
        if env.get("HEALTHOS_TENANTS_DIR"):
            kwargs["tenants_dir"] = Path(env["HEALTHOS_TENANTS_DIR"]).resolve()
        if env.get("HEALTHOS_POLICIES_DIR"):
            kwargs["policies_dir"] = Path(env["HEALTHOS_POLICIES_DIR"]).resolve()
        if env.get("HEALTHOS_POOL_SIZE"):
            kwargs["pool_size"] = int(env["HEALTHOS_POOL_SIZE"])
        if env.get("HEALTHOS_POOL_TENANTS_PER_CONNECTION"):
            kwargs["pool_tenants_per_connection"] = int(env["HEALTHOS_POOL_TENANTS_PER_CONNECTION"])
        if env.get("HEALTHOS_TLS", "").lower() in {"1", "true", "yes"}:
            kwargs["tls"] = True
        if env.get("HEALTHOS_SIGNIN_ATTEMPTS_PER_MINUTE"):
            kwargs["signin_attempts_per_minute"] = int(env["HEALTHOS_SIGNIN_ATTEMPTS_PER_MINUTE"])
        if env.get("HEALTHOS_PUBLIC_URL", "").strip():
            kwargs["public_url"] = env["HEALTHOS_PUBLIC_URL"].strip().rstrip("/")
        if env.get("HEALTHOS_LOG_FORMAT") == "console":
            kwargs["log_json"] = False
        return cls(**kwargs)

    @property
    def pgdata(self) -> Path:
        return self.home / "pg" / "data"
