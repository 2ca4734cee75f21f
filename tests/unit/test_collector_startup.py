"""The collector is a small web service: it starts without importing Dagster (seconds of start-up it never uses)."""

from __future__ import annotations

import subprocess
import sys


def test_the_collector_service_imports_no_dagster():
    probe = "import sys, etl_assets.collector.service; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster')[:3])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
