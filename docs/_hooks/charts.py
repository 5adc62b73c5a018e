"""MkDocs hook: draw the benchmark charts (``benchmarks/charts.py``, matplotlib) into ``docs/charts/`` before the
site is built, from the committed results — so the site's figures are always those results, never pasted images."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def on_pre_build(config: Any) -> None:
    spec = importlib.util.spec_from_file_location("cello_benchmark_charts", ROOT / "benchmarks" / "charts.py")
    assert spec is not None
    assert spec.loader is not None
    charts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(charts)
    charts.draw(Path(config["docs_dir"]) / "charts")
