#!/usr/bin/python
"""Ansible module: check a HealthOS bundle against the operator's public key, then unpack it.

It runs on the target before anything of the appliance is installed there, so it needs only the
standard library and `openssl` (for Ed25519). It implements the format that
`appliance/substrate/bundle.py` defines and writes (read that module's docstring): a canonical ustar
archive of regular files, a signed MANIFEST.json naming the SHA-256 of every other file. Any byte
changed anywhere in the file, a file added or missing, or a signature by another key refuses the
bundle, and nothing is unpacked.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: healthos_bundle
short_description: Verify a signed HealthOS bundle and unpack it into a release directory
description:
  - Checks every archive header, padding byte and file digest of the bundle against its MANIFEST.json,
    and the Ed25519 signature of MANIFEST.json with the operator's public key (through C(openssl)).
  - Unpacks into I(releases_dir)/<version>/bundle only when every check passes; an existing release
    with the same manifest is left alone (no change).
options:
  src:
    description: The bundle file on the target.
    type: path
    required: true
  public_key:
    description: The operator's Ed25519 public key (PEM) on the target.
    type: path
    required: true
  releases_dir:
    description: Where releases live; omit to verify only.
    type: path
author: HealthOS
"""

EXAMPLES = r"""
- name: Verify and unpack the bundle
  healthos_bundle:
    src: /var/lib/healthos-bundles/healthos-appliance-0.1.0-linux-x86_64-cp311.tar
    public_key: /var/lib/healthos-bundles/signing.pub
    releases_dir: /opt/healthos/releases
"""

RETURN = r"""
version: {description: Version of the appliance in the bundle, type: str, returned: success}
release_dir: {description: The release directory (bundle under it), type: str, returned: when releases_dir}
manifest_sha256: {description: SHA-256 of the signed manifest, type: str, returned: success}
"""

import base64  # noqa: E402 -- Ansible modules keep their documentation strings first
import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

MANIFEST = "MANIFEST.json"
SIGNATURE = "MANIFEST.json.sig"
FORMAT = "healthos-bundle/1"
BLOCK = tarfile.BLOCKSIZE
CHUNK = 1 << 20


def scan(path):
    """(top directory, {inner name: (sha256, small contents or None)}, problems)."""
    problems, found, top = [], {}, None
    with Path(path).open("rb") as handle:
        end = 0
        try:
            with tarfile.open(fileobj=handle, mode="r:") as tar:
                for member in tar:
                    head, _, inner = member.name.partition("/")
                    top = top or head
                    parts = inner.split("/")
                    if not member.isreg():
                        problems.append(f"{member.name}: not a regular file")
                        continue
                    if head != top or not inner or ".." in parts or member.name.startswith("/"):
                        problems.append(f"{member.name}: outside the bundle's directory")
                        continue
                    position = handle.tell()
                    handle.seek(member.offset)
                    try:
                        canonical = member.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
                    except ValueError:
                        canonical = b""
                    if handle.read(BLOCK) != canonical:
                        problems.append(f"{inner}: its archive header was altered")
                    digest, kept, keep = hashlib.sha256(), bytearray(), inner in (MANIFEST, SIGNATURE)
                    handle.seek(member.offset_data)
                    remaining = member.size
                    while remaining:
                        chunk = handle.read(min(CHUNK, remaining))
                        if not chunk:
                            break
                        digest.update(chunk)
                        if keep and len(kept) <= CHUNK:
                            kept += chunk
                        remaining -= len(chunk)
                    padding = -member.size % BLOCK
                    if handle.read(padding).strip(b"\0"):
                        problems.append(f"{inner}: bytes changed in the archive's padding")
                    end = member.offset_data + member.size + padding
                    if inner in found:
                        problems.append(f"{inner}: appears twice")
                    found[inner] = (digest.hexdigest(), bytes(kept) if keep else None)
                    handle.seek(position)
        except (tarfile.TarError, OSError, UnicodeDecodeError) as exc:
            problems.append(f"not a readable bundle archive ({exc})")
            return top, found, problems
        handle.seek(end)
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            if chunk.strip(b"\0"):
                problems.append("bytes changed after the archive's last file")
                break
    return top, found, problems


def openssl_verify(public_key, message, signature):
    with tempfile.TemporaryDirectory() as scratch:
        message_path, signature_path = Path(scratch) / "m", Path(scratch) / "s"
        message_path.write_bytes(message)
        signature_path.write_bytes(signature)
        done = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", public_key, "-rawin",
                               "-in", str(message_path), "-sigfile", str(signature_path)],
                              capture_output=True, check=False)
    return done.returncode == 0


def check(path, public_key):
    top, found, problems = scan(path)
    manifest_entry, signature_entry = found.pop(MANIFEST, None), found.pop(SIGNATURE, None)
    if problems:
        return None, top, problems
    if manifest_entry is None or signature_entry is None:
        return None, top, ["no signed manifest: the bundle is unsigned or not a bundle"]
    raw_signature = signature_entry[1]
    try:
        signature = base64.b64decode(raw_signature[:-1], validate=True)
    except ValueError:
        signature = b""
    if base64.b64encode(signature) + b"\n" != raw_signature or not openssl_verify(public_key, manifest_entry[1],
                                                                                   signature):
        return None, top, ["the signature of MANIFEST.json does not verify with the operator's public key"]
    manifest = json.loads(manifest_entry[1])
    if manifest.get("format") != FORMAT:
        return None, top, [f"MANIFEST.json is not a {FORMAT} manifest"]
    listed = manifest["files"]
    for name in sorted(listed):
        if name not in found:
            problems.append(f"{name}: listed in the manifest, missing from the bundle")
        elif found[name][0] != listed[name]:
            problems.append(f"{name}: SHA-256 differs from the manifest")
    problems += [f"{name}: in the bundle, not in the manifest" for name in sorted(set(found) - set(listed))]
    manifest["_sha256"] = hashlib.sha256(manifest_entry[1]).hexdigest()
    return (None if problems else manifest), top, problems


def unpack(path, manifest, destination):
    """Write every file into a staging directory, re-checking digests, then rename it into place."""
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=Path(destination).parent))
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                inner = member.name.partition("/")[2]
                target = staging.joinpath(*inner.split("/"))
                target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                source, digest = tar.extractfile(member), hashlib.sha256()
                with target.open("wb") as out:
                    for chunk in iter(lambda source=source: source.read(CHUNK), b""):
                        digest.update(chunk)
                        out.write(chunk)
                target.chmod(0o644)
                if inner not in (MANIFEST, SIGNATURE) and digest.hexdigest() != manifest["files"][inner]:
                    raise ValueError(f"{inner} changed while being unpacked")
        staging.chmod(0o755)  # a release is read by the appliance's user; it holds no secret
        staging.rename(destination)
    finally:
        if staging.is_dir():
            shutil.rmtree(staging)


def main():
    module = AnsibleModule(argument_spec={"src": {"type": "path", "required": True},
                                          "public_key": {"type": "path", "required": True},
                                          "releases_dir": {"type": "path"}},
                           supports_check_mode=True)
    src, public_key, releases_dir = (module.params[k] for k in ("src", "public_key", "releases_dir"))
    manifest, _top, problems = check(src, public_key)
    if manifest is None:
        module.fail_json(msg=f"bundle {src} refused, nothing installed: " + "; ".join(problems[:10]),
                         problems=problems)
    result = {"changed": False, "version": manifest["version"], "platform": manifest["platform"],
              "manifest_sha256": manifest["_sha256"], "signing_key": manifest["signing_key"]}
    if releases_dir:
        release = Path(releases_dir) / manifest["version"]
        destination = release / "bundle"
        result["release_dir"] = str(release)
        existing = destination / MANIFEST
        if existing.exists():
            if hashlib.sha256(existing.read_bytes()).hexdigest() != manifest["_sha256"]:
                module.fail_json(msg=f"{destination} holds another build of version {manifest['version']}; "
                                     "move it away to install this one", **result)
        else:
            result["changed"] = True
            if not module.check_mode:
                release.mkdir(mode=0o755, parents=True, exist_ok=True)
                try:
                    unpack(src, manifest, destination)
                except (OSError, ValueError, tarfile.TarError) as exc:
                    module.fail_json(msg=f"bundle {src} refused while unpacking: {exc}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
