"""Keys: the appliance key, the checkpoint signing key, and the data keys of every audit log.

Three layers, each protecting the next:

- the **appliance key** (32 bytes), in `$HEALTHOS_HOME/keys/appliance.key` (mode 0600, in a 0700
  directory), created at first use; or, when `HEALTHOS_APPLIANCE_PASSPHRASE` is set, derived from
  that passphrase with Argon2id, so that nothing on disk opens the data keys. The salt, the Argon2
  parameters and a check value (which tells a mistyped passphrase from a damaged key) are kept in
  `keys/appliance.kdf.json`; a second appliance node needs a copy of the `keys/` directory;
- the **checkpoint signing key** (Ed25519) in `keys/checkpoint-signing.pem`, PKCS#8 encrypted under
  a key derived from the appliance key. Its public key is what a regulator pins. Rotating it
  (`audit.rotate_signing_key`) makes the next key in `keys/checkpoint-signing.next.pem`, has the old key
  sign its introduction, then puts it in place of the old one, whose private half is gone from then
  on; its public half stays in `keys/checkpoint-signing.<key id>.pub`, so this appliance still
  trusts the checkpoints it signed. Which key is current is the newest row of
  `control.audit_signing_key`: a process still holding the old key in memory reads it again from
  `keys/` when it sees that (another node needs the new `keys/` copied to it, as at setup);
- one AES-256 **data key** per audit log and generation (a tenant's log, or the appliance's own),
  in `control.audit_data_key`, wrapped by the appliance key (AES-256-GCM, bound to its key id and
  log) and sealed to every registered regulator's X25519 key (`control.audit_data_key_seal`), so a
  regulator decrypts exported evidence without our key. Rotation adds a generation: new events use
  it, old ones keep naming the key that encrypted them. Destroying a log's keys (a tenant dropped)
  erases the wrapped and sealed copies: what they encrypted is unreadable from then on.

A tenant transaction runs as the tenant's role, which cannot read `control`; so data keys are
unwrapped in a control transaction on a connection of their own and cached in process memory by key
id. That side connection comes from a tiny unpooled engine, not the appliance's pool: a request that
already holds a pooled connection must never wait on the pool for a second one (a burst of requests
for tenants whose keys are not yet cached would otherwise deadlock the pool).

What crypto-shredding does not cover, and the operator must: PostgreSQL keeps a deleted row's bytes
until VACUUM reclaims them, and backups keep them until they expire.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from appliance.audit_verify import FormatError, key_id_of, load_public_key, patient_ref, patient_ref_key, seal
from appliance.substrate.config import Settings
from appliance.substrate.db import Database, control_metadata, tenant_metadata, tenant_schema

PASSPHRASE_ENV = "HEALTHOS_APPLIANCE_PASSPHRASE"  # noqa: S105 -- the name of a variable, not a secret
APPLIANCE_KEY_FILE = "appliance.key"
KDF_FILE = "appliance.kdf.json"
SIGNING_KEY_FILE = "checkpoint-signing.pem"
NEXT_SIGNING_KEY_FILE = "checkpoint-signing.next.pem"  # made by a rotation, until it is in place
RETIRED_SIGNING_KEY_GLOB = "checkpoint-signing.*.pub"  # public halves of the keys rotated out
APPLIANCE_LOG_KIND = "appliance"

# Argon2id for the passphrase: RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes).
_ARGON2 = {"memory_cost": 64 * 1024, "iterations": 3, "lanes": 4}

# -- tables ---------------------------------------------------------------------------------------

audit_log = sa.Table(
    "audit_log",
    control_metadata,
    sa.Column("log_id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("tenant", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("kind IN ('appliance', 'tenant')", name="audit_log_kind_known"),
)
"""Every audit log this appliance has kept: its own, and one per tenant lifetime (closed when dropped)."""

audit_data_key = sa.Table(
    "audit_data_key",
    control_metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("log_id", sa.Text, sa.ForeignKey("control.audit_log.log_id"), nullable=False),
    sa.Column("tenant", sa.Text),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("wrapped", sa.LargeBinary),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("destroyed_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("log_id", "generation", name="audit_data_key_log_generation_key"),
)
"""Data keys, wrapped by the appliance key; `wrapped` is NULL once destroyed (crypto-shredded)."""

audit_regulator_key = sa.Table(
    "audit_regulator_key",
    control_metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("retired_at", sa.DateTime(timezone=True)),
)

audit_data_key_seal = sa.Table(
    "audit_data_key_seal",
    control_metadata,
    sa.Column("key_id", sa.Text, sa.ForeignKey("control.audit_data_key.key_id"), primary_key=True),
    sa.Column("regulator_key_id", sa.Text, sa.ForeignKey("control.audit_regulator_key.key_id"), primary_key=True),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
)

audit_signing_key = sa.Table(
    "audit_signing_key",
    control_metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
"""Public halves of the checkpoint keys that signed something here (what exports carry); the newest
row is the key that signs from now on, and each key signed from its `created_at` until the next one's."""

tenant_audit_key = sa.Table(
    "audit_key",
    tenant_metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("log_id", sa.Text, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
"""In each tenant schema: which data key is current (ids only, never key material), so an append
running as the tenant role picks up a rotation made by another process at once."""


# -- errors ---------------------------------------------------------------------------------------


SEALED_PREFIX = "sealed1:"


class KeyUnavailable(RuntimeError):
    """A key the operation needs cannot be had."""


class KeyDestroyed(KeyUnavailable):
    """The data key was destroyed (its tenant dropped): what it encrypted is unreadable."""

    def __init__(self, key_id: str):
        super().__init__(f"data key {key_id} has been destroyed")
        self.key_id = key_id


class WrongApplianceKey(KeyUnavailable):
    """The appliance key here is not the one that wrapped the data keys (or the passphrase is wrong)."""


# -- the keyring: what lives on disk --------------------------------------------------------------


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o700)
    return path


def _write_new(path: Path, data: bytes) -> bool:
    """Create `path` with mode 0600 holding `data`, atomically; False if another process made it first."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # fails if it exists: the first writer wins, nobody overwrites
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _read_private(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyUnavailable(f"{path} is readable by other users (mode {mode:04o}); run `chmod 600 {path}`")
    return path.read_bytes()


class Keyring:
    """The appliance key and the checkpoint signing key of one HEALTHOS_HOME."""

    def __init__(self, home: Path, passphrase: str | None = None):
        self.home = Path(home)
        self.passphrase = passphrase
        self._lock = threading.RLock()
        self._appliance_key: bytes | None = None
        self._signing_key: Ed25519PrivateKey | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        return cls(settings.home, os.environ.get(PASSPHRASE_ENV) or None)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    # -- appliance key --------------------------------------------------------------------------

    def appliance_key(self) -> bytes:
        with self._lock:
            if self._appliance_key is None:
                self._appliance_key = self._derive() if self.passphrase else self._load_or_create()
            return self._appliance_key

    def _load_or_create(self) -> bytes:
        directory = _private_dir(self.keys_dir)
        path = directory / APPLIANCE_KEY_FILE
        if not path.exists():
            _write_new(path, secrets.token_bytes(32))
        key = _read_private(path)
        if len(key) != 32:
            raise KeyUnavailable(f"{path} holds {len(key)} bytes, not a 32-byte appliance key")
        return key

    def _derive(self) -> bytes:
        directory = _private_dir(self.keys_dir)
        path = directory / KDF_FILE
        if not path.exists():
            salt = secrets.token_bytes(16)
            key = self._argon2(salt, _ARGON2)
            document = {"kdf": "argon2id", "salt": salt.hex(), **_ARGON2, "check": _check_value(key)}
            _write_new(path, json.dumps(document, indent=1).encode())
        document = json.loads(_read_private(path))
        params = {name: int(document[name]) for name in _ARGON2}
        key = self._argon2(bytes.fromhex(document["salt"]), params)
        if not hmac.compare_digest(_check_value(key), document["check"]):
            raise WrongApplianceKey(f"the passphrase in {PASSPHRASE_ENV} is not the one this appliance was set up "
                                    f"with ({path})")
        return key

    def _argon2(self, salt: bytes, params: dict) -> bytes:
        assert self.passphrase is not None
        return Argon2id(salt=salt, length=32, **params).derive(self.passphrase.encode("utf-8"))

    def _subkey(self, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(self.appliance_key())

    # -- wrapping data keys ---------------------------------------------------------------------

    def wrap(self, data_key: bytes, *, key_id: str, log_id: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self.appliance_key()).encrypt(nonce, data_key, _wrap_aad(key_id, log_id))

    def unwrap(self, wrapped: bytes, *, key_id: str, log_id: str) -> bytes:
        try:
            return AESGCM(self.appliance_key()).decrypt(wrapped[:12], wrapped[12:], _wrap_aad(key_id, log_id))
        except InvalidTag as exc:
            raise WrongApplianceKey(
                f"data key {key_id} does not unwrap with the appliance key in {self.keys_dir} (another appliance's "
                "keys/ directory, or a different passphrase)") from exc

    # -- small secrets at rest ------------------------------------------------------------------

    def seal_secret(self, plaintext: str, *, purpose: str, bound_to: str) -> str:
        """Encrypt a small secret (a TOTP seed) for a database column, bound to its row so a sealed
        value copied onto another row does not open."""
        nonce = secrets.token_bytes(12)
        aead = AESGCM(self._subkey(b"healthos sealed secret " + purpose.encode()))
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + aead.encrypt(nonce, plaintext.encode(),
                                                                            bound_to.encode())).decode()

    def open_secret(self, sealed: str, *, purpose: str, bound_to: str) -> str:
        if not sealed.startswith(SEALED_PREFIX):
            raise KeyUnavailable(f"a {purpose} value is not sealed by this appliance")
        raw = base64.urlsafe_b64decode(sealed.removeprefix(SEALED_PREFIX))
        aead = AESGCM(self._subkey(b"healthos sealed secret " + purpose.encode()))
        try:
            return aead.decrypt(raw[:12], raw[12:], bound_to.encode()).decode()
        except InvalidTag as exc:
            raise WrongApplianceKey(f"a sealed {purpose} does not open with the appliance key in {self.keys_dir}") \
                from exc

    # -- signing key ----------------------------------------------------------------------------

    def signing_key(self) -> Ed25519PrivateKey:
        with self._lock:
            if self._signing_key is None:
                self._signing_key = self._signing_key_file(SIGNING_KEY_FILE)
            return self._signing_key

    def _signing_key_file(self, name: str) -> Ed25519PrivateKey:
        """The signing key in keys/`name`, made there first if missing."""
        password = self._subkey(b"healthos checkpoint signing key file/1").hex().encode()
        path = _private_dir(self.keys_dir) / name
        if not path.exists():
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password))
            _write_new(path, pem)
        try:
            key = serialization.load_pem_private_key(_read_private(path), password=password)
        except ValueError as exc:
            raise WrongApplianceKey(f"{path} does not open with this appliance key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyUnavailable(f"{path} is not an Ed25519 key")
        return key

    def next_signing_key_raw(self) -> bytes:
        """The public half of the key a rotation puts in place (made on first call; a rotation that
        stopped half-way takes up the same key again)."""
        with self._lock:
            return _raw(self._signing_key_file(NEXT_SIGNING_KEY_FILE).public_key())

    def pending_signing_key_id(self) -> str | None:
        """The id of the key a rotation is putting in place (keys/ holds it as the next key), or None."""
        with self._lock:
            if not (self.keys_dir / NEXT_SIGNING_KEY_FILE).exists():
                return None
            return key_id_of(self.next_signing_key_raw())

    def promote_next_signing_key(self) -> str:
        """Put the next key in place of the current one; returns its id. The current key's public half
        is kept beside it (`checkpoint-signing.<id>.pub`), its private half is gone."""
        with self._lock:
            directory = _private_dir(self.keys_dir)
            following = directory / NEXT_SIGNING_KEY_FILE
            if following.exists():
                retiring = self._signing_key_file(SIGNING_KEY_FILE).public_key()
                retired = directory / f"checkpoint-signing.{key_id_of(_raw(retiring))}.pub"
                if not retired.exists():
                    _write_new(retired, retiring.public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
                with contextlib.suppress(FileNotFoundError):  # another process on this node did it first
                    following.replace(directory / SIGNING_KEY_FILE)
            self._signing_key = None
            return self.signing_key_id

    def follow_rotation(self, current_id: str) -> None:
        """Sign with `current_id`, the key the database names as current, if this node holds it: read
        again from keys/ (another process rotated), or put in place from the next key (a rotation that
        stopped after it was recorded). KeyUnavailable when this node's keys/ does not hold it."""
        with self._lock:
            if self.signing_key_id == current_id:
                return
            self._signing_key = None
            if self.signing_key_id != current_id and self.pending_signing_key_id() == current_id:
                self.promote_next_signing_key()
            if self.signing_key_id != current_id:
                held = self.signing_key_id
                self._signing_key = None
                raise KeyUnavailable(
                    f"the checkpoint signing key was rotated to {current_id}, but {self.keys_dir} holds {held}: "
                    "copy keys/ from the node that rotated it")

    def retired_public_keys(self) -> dict[str, Ed25519PublicKey]:
        """The public halves of the signing keys this appliance rotated out, by id."""
        found: dict[str, Ed25519PublicKey] = {}
        for path in sorted(self.keys_dir.glob(RETIRED_SIGNING_KEY_GLOB)):
            key = load_public_key(path.read_bytes())
            found[key_id_of(_raw(key))] = key
        return found

    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key().public_key()

    def public_key_raw(self) -> bytes:
        return _raw(self.public_key())

    def public_key_pem(self) -> bytes:
        return self.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def signing_key_id(self) -> str:
        return key_id_of(self.public_key_raw())

    def sign(self, statement: bytes) -> bytes:
        return self.signing_key().sign(statement)


# -- another appliance's signing key (national federation) ----------------------------------------


def ed25519_public_raw(data: bytes) -> bytes:
    """Another appliance's Ed25519 public key (PEM as `Keyring.public_key_pem` writes it, or 32 bytes
    in hex or base64) as its raw 32 bytes; ValueError naming the problem otherwise."""
    try:
        key = load_public_key(data)
    except (FormatError, ValueError) as exc:
        raise ValueError(str(exc)) from exc
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ed25519_public_pem(public_raw: bytes) -> bytes:
    """A raw Ed25519 public key as PEM, as `Keyring.public_key_pem` writes it."""
    return Ed25519PublicKey.from_public_bytes(public_raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def ed25519_signature_ok(public_raw: bytes, signature: bytes, statement: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, statement)
    except (ValueError, InvalidSignature):
        return False
    return True


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _wrap_aad(key_id: str, log_id: str) -> bytes:
    return f"healthos-audit-key-wrap/1\nkey={key_id}\nlog={log_id}\n".encode()


def _check_value(key: bytes) -> str:
    return hmac.new(key, b"healthos appliance key check/1", hashlib.sha256).hexdigest()[:32]


# Which keyring serves which database (by engine). The CLI and `healthos up` bind theirs explicitly;
# anything else (tests, a job) gets one for the embedded cluster's HEALTHOS_HOME, found from the
# socket directory the engine connects through, or else the one the environment names.
_keyrings: weakref.WeakKeyDictionary[Engine, Keyring] = weakref.WeakKeyDictionary()
_keyrings_lock = threading.Lock()


def bind(db: Database | Engine, keyring: Keyring) -> Keyring:
    engine = db.engine if isinstance(db, Database) else db
    with _keyrings_lock:
        _keyrings[engine] = keyring
    return keyring


def keyring_for(db: Database | Engine) -> Keyring:
    engine = db.engine if isinstance(db, Database) else db
    with _keyrings_lock:
        keyring = _keyrings.get(engine)
        if keyring is None:
            keyring = _keyrings[engine] = Keyring(_home_of(engine), os.environ.get(PASSPHRASE_ENV) or None)
        return keyring


def _home_of(engine: Engine) -> Path:
    host = engine.url.query.get("host")
    if isinstance(host, str):
        socket_dir = Path(host)
        # The embedded cluster's socket lives in $HEALTHOS_HOME/pg/run (see embedded.EmbeddedCluster).
        if socket_dir.name == "run" and socket_dir.parent.name == "pg" and (socket_dir.parent / "data").is_dir():
            return socket_dir.parent.parent
    return Settings.from_env().home


# -- data keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataKey:
    key_id: str
    log_id: str
    tenant: str | None
    generation: int
    material: bytes
    aead: AESGCM
    ref_key: bytes
    # Per purpose, the AEAD of patient data a room keeps sealed outside the trail (`seal_value`).
    sealers: dict[str, AESGCM] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, key_id: str, log_id: str, tenant: str | None, generation: int, material: bytes) -> DataKey:
        return cls(key_id, log_id, tenant, generation, material, AESGCM(material), patient_ref_key(material))

    def patient_ref(self, patient_id: object) -> str:
        return patient_ref(self.ref_key, str(patient_id))

    def sealer(self, purpose: str) -> AESGCM:
        """A key of its own for `purpose`, derived from this one: the trail's key never encrypts anything but
        events, while rotating, exporting or destroying this key does the same to what `purpose` sealed."""
        found = self.sealers.get(purpose)
        if found is None:
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                           info=b"healthos tenant data/1 " + purpose.encode()).derive(self.material)
            found = self.sealers[purpose] = AESGCM(derived)
        return found


def seal_value(key: DataKey, plaintext: bytes, *, purpose: str, bound_to: str) -> bytes:
    """Patient data for a column of a tenant table, encrypted under the tenant's data key (AES-256-GCM, a
    subkey per purpose) and bound to its row (`bound_to`), so a value copied onto another row does not open."""
    nonce = secrets.token_bytes(12)
    return nonce + key.sealer(purpose).encrypt(nonce, plaintext, bound_to.encode())


def open_value(key: DataKey, sealed: bytes, *, purpose: str, bound_to: str) -> bytes:
    try:
        return key.sealer(purpose).decrypt(sealed[:12], sealed[12:], bound_to.encode())
    except InvalidTag as exc:
        raise KeyUnavailable(f"a sealed {purpose} does not open with data key {key.key_id} for its row") from exc


_cache: dict[str, DataKey] = {}
_cache_lock = threading.Lock()
_side_engines: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def forget(key_ids: list[str] | None = None) -> None:
    """Drop unwrapped keys from this process's memory (all of them when `key_ids` is None)."""
    with _cache_lock:
        if key_ids is None:
            _cache.clear()
        for key_id in key_ids or ():
            _cache.pop(key_id, None)


def side_engine(engine: Engine) -> Engine:
    """An unpooled engine on the same database, for control work while a pooled connection is held."""
    with _keyrings_lock:
        side = _side_engines.get(engine)
        if side is None:
            side = _side_engines[engine] = sa.create_engine(
                engine.url, poolclass=NullPool, connect_args={"application_name": "healthos-keys"})
        return side


def cached(key_id: str) -> DataKey | None:
    return _cache.get(key_id)


def load(conn: Connection, key_id: str) -> DataKey:
    """A data key by id, from the cache or unwrapped from `control` (conn: a control transaction)."""
    key = _cache.get(key_id)
    if key is not None:
        return key
    row = conn.execute(sa.select(audit_data_key).where(audit_data_key.c.key_id == key_id)).first()
    if row is None:
        raise KeyUnavailable(f"no data key {key_id} on this appliance")
    if row.wrapped is None:
        raise KeyDestroyed(key_id)
    material = keyring_for(conn.engine).unwrap(row.wrapped, key_id=key_id, log_id=row.log_id)
    key = DataKey.of(key_id, row.log_id, row.tenant, row.generation, material)
    with _cache_lock:
        _cache[key_id] = key
    return key


def appliance_log_id(conn: Connection) -> str:
    log_id = conn.execute(sa.select(audit_log.c.log_id).where(audit_log.c.kind == APPLIANCE_LOG_KIND)).scalar()
    if log_id is None:
        raise KeyUnavailable("the appliance audit log is missing from control.audit_log (migrate control)")
    return log_id


def live_log_id(conn: Connection, tenant: str | None) -> str | None:
    if tenant is None:
        return appliance_log_id(conn)
    return conn.execute(sa.select(audit_log.c.log_id).where(
        audit_log.c.tenant == tenant, audit_log.c.kind == "tenant", audit_log.c.closed_at.is_(None))).scalar()


def current_key(conn: Connection, tenant: str | None) -> DataKey | None:
    """The live log's newest data key (conn: a control transaction), or None if it has none yet."""
    log_id = live_log_id(conn, tenant)
    if log_id is None:
        return None
    key_id = conn.execute(
        sa.select(audit_data_key.c.key_id).where(audit_data_key.c.log_id == log_id,
                                                 audit_data_key.c.wrapped.is_not(None))
        .order_by(audit_data_key.c.generation.desc()).limit(1)).scalar()
    return load(conn, key_id) if key_id else None


def create_key(conn: Connection, tenant: str | None) -> DataKey:
    """A new generation of data key for the tenant's live log (created, for a first key), sealed to every
    regulator. Runs in the caller's control transaction, serialised per log by an advisory lock."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"healthos.audit.key.{tenant}"})
    log_id = live_log_id(conn, tenant)
    if log_id is None:
        assert tenant is not None  # the appliance log is created by its migration
        log_id = f"{tenant}.{secrets.token_hex(8)}"
        conn.execute(sa.insert(audit_log).values(log_id=log_id, kind="tenant", tenant=tenant))
    generation = 1 + (conn.execute(sa.select(sa.func.max(audit_data_key.c.generation))
                                   .where(audit_data_key.c.log_id == log_id)).scalar() or 0)
    key_id = secrets.token_hex(8)
    material = secrets.token_bytes(32)
    keyring = keyring_for(conn.engine)
    conn.execute(sa.insert(audit_data_key).values(
        key_id=key_id, log_id=log_id, tenant=tenant, generation=generation,
        wrapped=keyring.wrap(material, key_id=key_id, log_id=log_id)))
    # Shared with other key creations, exclusive with a regulator's registration: a key made while a
    # regulator is being registered is sealed to it either here or by the registration, never neither.
    conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(hashtext('healthos.audit.regulators'))"))
    regulators = conn.execute(sa.select(audit_regulator_key.c.key_id, audit_regulator_key.c.public_key)
                              .where(audit_regulator_key.c.retired_at.is_(None))).all()
    for regulator_id, public in regulators:
        conn.execute(sa.insert(audit_data_key_seal).values(
            key_id=key_id, regulator_key_id=regulator_id,
            sealed=seal(material, X25519PublicKey.from_public_bytes(public), key_id=key_id, log_id=log_id)))
    if tenant is not None:
        # The tenant schema's mirror: ids only, written as the schema owner.
        conn.execute(sa.insert(tenant_audit_key.to_metadata(sa.MetaData(), schema=tenant_schema(tenant)))
                     .values(key_id=key_id, log_id=log_id, generation=generation))
    key = DataKey.of(key_id, log_id, tenant, generation, material)
    with _cache_lock:
        _cache[key_id] = key
    return key


def first_key(conn: Connection, tenant: str | None) -> tuple[DataKey, bool]:
    """The live log's current key, made if it has none; (key, whether this call made it). Two processes
    appending a tenant's first event at once make one key between them, not two generations."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"healthos.audit.key.{tenant}"})
    key = current_key(conn, tenant)
    return (key, False) if key is not None else (create_key(conn, tenant), True)


def destroy_log_keys(conn: Connection, log_id: str) -> list[str]:
    """Crypto-shred a log: erase every wrapped and sealed copy of its data keys; returns their ids."""
    key_ids = list(conn.execute(
        sa.update(audit_data_key).where(audit_data_key.c.log_id == log_id, audit_data_key.c.wrapped.is_not(None))
        .values(wrapped=None, destroyed_at=sa.func.now()).returning(audit_data_key.c.key_id)).scalars())
    all_ids = list(conn.execute(sa.select(audit_data_key.c.key_id).where(audit_data_key.c.log_id == log_id))
                   .scalars())
    if all_ids:
        conn.execute(sa.delete(audit_data_key_seal).where(audit_data_key_seal.c.key_id.in_(all_ids)))
    forget(all_ids)
    return key_ids


def sealed_copies(conn: Connection, key_ids: list[str]) -> dict[str, list[dict]]:
    """key id -> [{regulator, sealed}] for the given data keys (what an export carries)."""
    copies: dict[str, list[dict]] = {key_id: [] for key_id in key_ids}
    rows = conn.execute(sa.select(audit_data_key_seal).where(audit_data_key_seal.c.key_id.in_(key_ids))
                        .order_by(audit_data_key_seal.c.key_id, audit_data_key_seal.c.regulator_key_id))
    for row in rows:
        copies[row.key_id].append({"regulator": row.regulator_key_id, "sealed": row.sealed})
    return copies


def log_keys(conn: Connection, log_id: str) -> list[DataKey | str]:
    """Every data key of a log, unwrapped; the id alone for a destroyed one."""
    found: list[DataKey | str] = []
    for key_id in conn.execute(sa.select(audit_data_key.c.key_id).where(audit_data_key.c.log_id == log_id)
                               .order_by(audit_data_key.c.generation)).scalars():
        try:
            found.append(load(conn, key_id))
        except KeyDestroyed:
            found.append(key_id)
    return found


# -- regulators -----------------------------------------------------------------------------------


def load_regulator_public_key(data: bytes) -> X25519PublicKey:
    """A regulator's X25519 public key: PEM, or the raw 32 bytes in hex or base64."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(text)
        if not isinstance(key, X25519PublicKey):
            raise ValueError("the regulator key must be an X25519 public key")
        return key
    for decode in (bytes.fromhex, lambda s: base64.b64decode(s, validate=True)):
        with contextlib.suppress(ValueError, binascii.Error):
            raw = decode(text.decode("ascii"))
            if len(raw) == 32:
                return X25519PublicKey.from_public_bytes(raw)
    raise ValueError("not an X25519 public key (PEM, or 32 bytes in hex or base64)")


def regulator_key_id(public: X25519PublicKey) -> str:
    return key_id_of(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def register_regulator(conn: Connection, public: X25519PublicKey, label: str) -> tuple[str, int]:
    """Register a regulator's key and seal every live data key to it; returns (its id, keys sealed)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    regulator_id = key_id_of(raw)
    # Waits for keys being made to commit (so they are sealed below), and holds new ones back until
    # this registration commits (so they see this regulator). See create_key.
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('healthos.audit.regulators'))"))
    conn.execute(postgresql.insert(audit_regulator_key).values(key_id=regulator_id, label=label, public_key=raw)
                 .on_conflict_do_update(index_elements=[audit_regulator_key.c.key_id],
                                        set_={"label": label, "retired_at": None}))
    live = conn.execute(sa.select(audit_data_key.c.key_id).where(
        audit_data_key.c.wrapped.is_not(None),
        ~sa.exists().where(audit_data_key_seal.c.key_id == audit_data_key.c.key_id,
                           audit_data_key_seal.c.regulator_key_id == regulator_id))).scalars().all()
    for key_id in live:
        key = load(conn, key_id)
        conn.execute(sa.insert(audit_data_key_seal).values(
            key_id=key_id, regulator_key_id=regulator_id,
            sealed=seal(key.material, public, key_id=key_id, log_id=key.log_id)))
    return regulator_id, len(live)


def generate_regulator_keypair(private_path: Path) -> tuple[Path, Path, X25519PublicKey]:
    """Write a new X25519 private key (PEM, 0600) and its public key beside it (`.pub`)."""
    private = X25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    private_path = Path(private_path)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    if not _write_new(private_path, pem):
        raise FileExistsError(f"{private_path} already exists; not overwriting a key")
    public_path = private_path.with_name(private_path.name + ".pub")
    public_path.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path, private.public_key()
