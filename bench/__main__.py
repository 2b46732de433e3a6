"""`python -m bench [name ...]`: run benchmarks, print a table, write bench/results/latest.json."""

from __future__ import annotations

import importlib
import json
import logging
import platform
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from appliance.substrate.logs import configure_logging

HERE = Path(__file__).parent
BENCHMARKS = ["tenancy", "signin", "audit", "chart", "intake", "pages", "kpis", "charge", "nursing", "national", "hl7",
              "fhir", "search"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    configure_logging(json=True, level=logging.WARNING)  # per-request log lines would drown the figures
    console = Console()
    results: dict = {"machine": {"python": platform.python_version(), "cpus": _cpus()},
                     "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "benchmarks": {}}
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        console.print(f"[bold]running bench/{name}.py[/]")
        figures = module.run(console)
        results["benchmarks"][name] = figures
        table = Table("figure", "value", "unit", "target", "met", title=f"bench/{name}.py")
        for figure in figures:
            met = figure.get("met")
            table.add_row(figure["name"], f"{figure['value']:.4g}", figure.get("unit", ""),
                          figure.get("target", ""), "" if met is None else ("yes" if met else "NO"))
        console.print(table)
    out = HERE / "results" / "latest.json"
    out.write_text(json.dumps(results, indent=2))
    console.print(f"figures written to {out}")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
