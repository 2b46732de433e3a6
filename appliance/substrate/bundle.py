"""The signed air-gapped bundle: its format, the operator's signing key, writing, checking, unpacking.

One file, `healthos-appliance-<version>-<platform>.tar`, installs an appliance with no network. It
is a plain ustar archive of regular files only, every one under one top directory::

    <top>/MANIFEST.json        what the bundle is and the SHA-256 of every other file
    <top>/MANIFEST.json.sig    Ed25519 signature of MANIFEST.json's exact bytes (base64, one line)
    <top>/requirements.txt     every wheel pinned with its hash (pip --require-hashes)
    <top>/wheels/*.whl         the appliance and everything it needs, PostgreSQL included
    <top>/sbom.cdx.json        CycloneDX SBOM of those wheels
    <top>/playbooks/ tenants/ policies/ ...

The archive is canonical: members in the manifest's order, ustar headers with fixed owner and mode,
zero padding, nothing after the end blocks. The checker re-encodes every header and compares it
byte for byte and requires every padding byte to be zero, so a change of any single byte of the file
— in a header, in a file's contents, in padding — is refused, not only one inside a listed file.

The signing key belongs to the operator who builds bundles (`healthos bundle keygen`), never to
the repository; hosts hold only its public half. `playbooks/library/healthos_bundle.py` checks the
same format on the target with the standard library and `openssl`, because the appliance (and its
`cryptography`) is not installed there yet; tests run both checkers over the same altered bundles.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.audit_verify import key_id_of

FORMAT = "healthos-bundle/1"
MANIFEST = "MANIFEST.json"
SIGNATURE = "MANIFEST.json.sig"
_BLOCK = tarfile.BLOCKSIZE
_CHUNK = 1 << 20


class BundleError(RuntimeError):
    """The bundle cannot be used; `problems` says every reason found."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: refused: " + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))


# -- keys -----------------------------------------------------------------------------------------


def generate_signing_key(private_path: Path) -> tuple[Path, Path, str]:
    """Write a new Ed25519 bundle-signing key (PKCS#8 PEM, 0600) and its public key beside it (`.pub`)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    private_path = Path(private_path)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(f"{private_path} already exists; not overwriting a key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path = private_path.with_name(private_path.name + ".pub")
    public_path.write_bytes(public_pem(private.public_key()))
    return private_path, public_path, public_key_id(private.public_key())


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (what `keygen` writes beside the private key)."""
    try:
        key = serialization.load_pem_public_key(data.strip())
    except ValueError as exc:
        raise ValueError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the bundle key must be an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_id(key: Ed25519PublicKey) -> str:
    return key_id_of(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


# -- writing --------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write_bundle(out_path: Path, top: str, files: Mapping[str, Path], metadata: dict,
                 signing_key: Ed25519PrivateKey) -> dict:
    """Write the canonical, signed bundle; returns its manifest. `files` maps a path inside the bundle
    (relative to `top`) to the file on this machine; `metadata` goes into the manifest as it is."""
    mtime = int(metadata.get("built_epoch", 0))
    digests = {name: _sha256_file(source) for name, source in sorted(files.items())}
    manifest = {"format": FORMAT, **metadata, "signing_key": public_key_id(signing_key.public_key()),
                "files": digests}
    manifest_bytes = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    signature = base64.b64encode(signing_key.sign(manifest_bytes)) + b"\n"
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_path.with_name(f".{out_path.name}.{secrets.token_hex(4)}")
    try:
        with tarfile.open(temporary, "w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in ((MANIFEST, manifest_bytes), (SIGNATURE, signature)):
                tar.addfile(_member(f"{top}/{name}", len(data), mtime), io.BytesIO(data))
            for name in digests:
                source = Path(files[name])
                with source.open("rb") as handle:
                    tar.addfile(_member(f"{top}/{name}", source.stat().st_size, mtime), handle)
        temporary.replace(out_path)
    finally:
        temporary.unlink(missing_ok=True)
    return manifest


# -- checking -------------------------------------------------------------------------------------


@dataclass
class BundleCheck:
    """What `check_bundle` found: the manifest (once signed and readable) and every problem."""

    path: Path
    problems: list[str] = field(default_factory=list)
    manifest: dict | None = None
    top: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.manifest is not None


def _safe_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts and "\\" not in name


def _scan(handle, size: int, check: BundleCheck) -> dict[str, tuple[str, bytes | None]]:
    """Every member's digest (and the contents of the two small signed files), checking layout as we go."""
    found: dict[str, tuple[str, bytes | None]] = {}
    handle.seek(0)
    end = 0
    try:
        with tarfile.open(fileobj=handle, mode="r:") as tar:
            for member in tar:
                top, _, inner = member.name.partition("/")
                if check.top is None:
                    check.top = top
                if not member.isreg():
                    check.problems.append(f"{member.name}: not a regular file (links and devices are refused)")
                    continue
                if top != check.top or not inner or not _safe_name(member.name):
                    check.problems.append(f"{member.name}: outside the bundle's directory {check.top}/")
                    continue
                position = handle.tell()
                handle.seek(member.offset)
                raw_header = handle.read(_BLOCK)
                try:
                    canonical = member.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
                except ValueError:
                    canonical = b""
                if raw_header != canonical:
                    check.problems.append(f"{inner}: its archive header was altered")
                digest = hashlib.sha256()
                keep = inner in {MANIFEST, SIGNATURE} and member.size <= _CHUNK
                kept = bytearray()
                handle.seek(member.offset_data)
                remaining = member.size
                while remaining:
                    chunk = handle.read(min(_CHUNK, remaining))
                    if not chunk:
                        break
                    digest.update(chunk)
                    if keep:
                        kept += chunk
                    remaining -= len(chunk)
                padding = -member.size % _BLOCK
                if handle.read(padding).strip(b"\0"):
                    check.problems.append(f"{inner}: bytes changed in the archive's padding")
                end = member.offset_data + member.size + padding
                if inner in found:
                    check.problems.append(f"{inner}: appears twice")
                found[inner] = (digest.hexdigest(), bytes(kept) if keep else None)
                handle.seek(position)
    except (tarfile.TarError, OSError, UnicodeDecodeError) as exc:
        check.problems.append(f"not a readable bundle archive ({exc})")
        return found
    handle.seek(end)
    while chunk := handle.read(_CHUNK):
        if chunk.strip(b"\0"):
            check.problems.append("bytes changed after the archive's last file")
            break
    if end == 0 and size:
        check.problems.append("the archive holds no files")
    return found


def check_bundle(path: Path, public_key: Ed25519PublicKey) -> BundleCheck:
    """Check every byte of the bundle against its signed manifest; never raises for a bad bundle."""
    path = Path(path)
    check = BundleCheck(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        check.problems.append(f"cannot read it: {exc.strerror}")
        return check
    with handle:
        found = _scan(handle, path.stat().st_size, check)
    manifest_entry, signature_entry = found.pop(MANIFEST, None), found.pop(SIGNATURE, None)
    if manifest_entry is None or manifest_entry[1] is None:
        check.problems.append(f"no {MANIFEST}: unsigned or not a bundle")
        return check
    if signature_entry is None or signature_entry[1] is None:
        check.problems.append(f"no {SIGNATURE}: the bundle is unsigned")
        return check
    manifest_bytes = manifest_entry[1]
    try:
        signature = base64.b64decode(signature_entry[1].removesuffix(b"\n"), validate=True)
        if base64.b64encode(signature) + b"\n" != signature_entry[1]:
            raise ValueError("signature file is not exactly one line of base64")  # every byte counts
        public_key.verify(signature, manifest_bytes)
    except (InvalidSignature, binascii.Error, ValueError):
        signer = ""
        with contextlib.suppress(ValueError, AttributeError):
            signer = json.loads(manifest_bytes).get("signing_key", "")
        check.problems.append(
            f"the signature of {MANIFEST} does not verify with key {public_key_id(public_key)}"
            + (f" (the manifest names key {signer})" if signer and signer != public_key_id(public_key)
               else " (altered manifest or signature)"))
        return check
    manifest = json.loads(manifest_bytes)
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        check.problems.append(f"{MANIFEST} is not a {FORMAT} manifest")
        return check
    listed: dict[str, str] = manifest["files"]
    for name, digest in sorted(listed.items()):
        if name not in found:
            check.problems.append(f"{name}: listed in the manifest, missing from the bundle")
        elif found[name][0] != digest:
            check.problems.append(f"{name}: SHA-256 differs from the manifest")
    for name in sorted(set(found) - set(listed)):
        check.problems.append(f"{name}: in the bundle, not in the manifest")
    check.manifest = manifest
    return check


def verify_bundle(path: Path, public_key: Ed25519PublicKey) -> dict:
    """The manifest of a bundle that passes every check; BundleError naming every problem otherwise."""
    check = check_bundle(path, public_key)
    if not check.ok:
        raise BundleError(Path(path), check.problems or ["unreadable"])
    assert check.manifest is not None
    return check.manifest


def extract_bundle(path: Path, public_key: Ed25519PublicKey, dest: Path) -> dict:
    """Verify, then unpack into `dest` (which must not exist), re-checking each file's digest as it is
    written so a file swapped between the check and the copy is caught; returns the manifest."""
    manifest = verify_bundle(path, public_key)
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    staging = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}")
    staging.mkdir(parents=True, mode=0o755)
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                inner = member.name.partition("/")[2]
                target = staging / inner
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                source = tar.extractfile(member)
                assert source is not None
                digest = hashlib.sha256()
                with target.open("wb") as out:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                expected = manifest["files"].get(inner)
                if inner not in {MANIFEST, SIGNATURE} and digest.hexdigest() != expected:
                    raise BundleError(Path(path), [f"{inner}: changed while being unpacked"])
                target.chmod(0o644)
        staging.rename(dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest
