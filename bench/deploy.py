"""Deployment figures: bundle size and build time, install from bundle to /ready, upgrade with 10
tenants, backup and restore of the demo facilities — the same real run as tests/deploy (a bundle
signed with a throwaway key, `playbooks/site.yml` inside a loopback-only network namespace).

Needs root (a network namespace and the appliance's system user), as CI has.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from tests.deploy.harness import Site, add_tenants, build_bundle, keygen, recap


def run(console) -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix="healthos-bench-deploy-", dir="/tmp"))
    root.chmod(0o755)
    site = None
    try:
        private, public = keygen(root)
        bundle, build_seconds = build_bundle(private, root / "dist")
        site = Site(root / "site", public)
        done, install_seconds = site.play(bundle)
        assert done.returncode == 0, done.stdout[-3000:]
        again, rerun_seconds = site.play(bundle)
        assert recap(again.stdout)["changed"] == 0
        started = time.monotonic()
        backup = site.root / "backups" / "bench.hbk"
        assert site.healthos("backup", "create", "--out", str(backup)).returncode == 0
        backup_seconds = time.monotonic() - started
        assert site.service("stop").returncode == 0
        shutil.rmtree(site.home / "pg")
        started = time.monotonic()
        restored = site.healthos("backup", "restore", str(backup))
        assert restored.returncode == 0, restored.stderr
        restore_seconds = time.monotonic() - started
        add_tenants(site, 7)
        site.service("start")
        site.wait_ready(timeout=300)
        tenants = json.loads(site.ready()[1])["tenants"]
        next_bundle, _ = build_bundle(private, root / "dist-next", version="0.1.1")
        upgraded, upgrade_seconds = site.play(next_bundle)
        assert upgraded.returncode == 0, upgraded.stdout[-3000:]
        return [
            {"name": "bundle size", "value": bundle.stat().st_size / 1e6, "unit": "MB"},
            {"name": "bundle build", "value": build_seconds, "unit": "s"},
            {"name": "install, bundle to /ready (offline)", "value": install_seconds, "unit": "s"},
            {"name": "second run (changed=0)", "value": rerun_seconds, "unit": "s"},
            {"name": "backup, demo facilities", "value": backup_seconds, "unit": "s"},
            {"name": "restore into a fresh appliance", "value": restore_seconds, "unit": "s"},
            {"name": f"upgrade to N+1 with {tenants} tenants", "value": upgrade_seconds, "unit": "s"},
        ]
    finally:
        if site is not None:
            site.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    from rich.console import Console

    for figure in run(Console()):
        print(f"{figure['name']}: {figure['value']:.1f} {figure['unit']}")
