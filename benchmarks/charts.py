"""Charts of the benchmark figures, drawn from ``results/latest.json`` with matplotlib: one SVG per scenario,
requests per second of every target measured in the same run. The documentation site draws them when it is built
(``docs/_hooks/charts.py``); ``python benchmarks/charts.py OUT_DIR`` draws them by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
CELLO = ("cello", "cello-run")  # drawn in the accent colour


def draw(out_dir: Path, results: Path = RESULTS) -> list[Path]:
    """One SVG per scenario of ``results`` into ``out_dir``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # NOTE: no display: files only
    matplotlib.rcParams["svg.hashsalt"] = "cello"  # the same results draw the same file (ids and no date)
    from matplotlib import pyplot

    report = json.loads(results.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for scenario in report["settings"]["scenarios"]:
        rows = [r for r in report["results"] if r["scenario"] == scenario and r.get("status") == "ok" and r["rps"]]
        if not rows:
            continue
        rows.sort(key=lambda row: row["rps"])
        names = [row["target"] for row in rows]
        figure, axes = pyplot.subplots(figsize=(7, 0.45 * len(rows) + 1.0))
        colours = ["#ff9100" if name in CELLO else "#7a869a" for name in names]
        bars = axes.barh(names, [row["rps"] for row in rows], color=colours)
        axes.bar_label(bars, labels=[f"{row['rps']:,.0f}" for row in rows], padding=3, fontsize=8)
        axes.set_xlabel("requests per second (one core)")
        axes.set_title(f"{scenario}: {report['timestamp']}", fontsize=10)
        axes.spines[["top", "right"]].set_visible(False)
        axes.set_xlim(0, max(row["rps"] for row in rows) * 1.18)
        figure.tight_layout()
        path = out_dir / f"{scenario}.svg"
        figure.savefig(path, format="svg", metadata={"Date": None})
        pyplot.close(figure)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in draw(Path(sys.argv[1] if len(sys.argv) > 1 else "charts")):
        print(path)
