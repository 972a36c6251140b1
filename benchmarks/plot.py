"""PNG bar charts for benchmark results.

Public: ``plot_comparison(figures, path, title)``. One small panel per measured quantity, because
the quantities have different units (ops/s, MB/s, seconds, MB); each panel shows one bar per
system that has the figure, with the value printed on the bar and the Shoal/Swift ratio in the
panel title. matplotlib is imported inside the function, with the Agg backend, so importing this
module costs nothing and works on a machine without a display.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SYSTEMS = ("swift", "shoal")
COLORS = {"swift": "#c0504d", "shoal": "#1f77b4"}
PANEL_COLUMNS = 4


@dataclass(frozen=True)
class Panel:
    """One quantity: ``<system>_<key>`` in the figures; ``higher_is_better`` orients the ratio.

    ``ratio_name`` is the ``ratio_<name>`` line the comparison prints; None for a quantity whose
    ratio means nothing (RSS growth can be ~0 MB on either side).
    """

    key: str
    label: str
    ratio_name: str | None
    higher_is_better: bool = True


PANELS = (
    Panel("put_4k_ops_s", "4 KiB PUT (ops/s)", "put_4k"),
    Panel("get_4k_ops_s", "4 KiB GET (ops/s)", "get_4k"),
    Panel("put_1m_mb_s", "1 MiB PUT (MB/s)", "put_1m"),
    Panel("get_1m_mb_s", "1 MiB GET (MB/s)", "get_1m"),
    Panel("put_big_mb_s", "one large object PUT, curl (MB/s)", "put_big"),
    Panel("get_big_mb_s", "one large object GET, curl (MB/s)", "get_big"),
    Panel("list_10k_s", "JSON listing of {list_objects} objects (s)", "list_10k", False),
    Panel("rss_growth_mb", "proxy RSS growth, 1 GiB stream (MB)", None, higher_is_better=False),
)


def speedup(figures: dict[str, float], panel: Panel) -> float | None:
    """Shoal relative to Swift, oriented so that > 1 means Shoal is better; None if not both."""
    swift, shoal = figures.get(f"swift_{panel.key}"), figures.get(f"shoal_{panel.key}")
    if swift is None or shoal is None or panel.ratio_name is None:
        return None
    numerator, denominator = (shoal, swift) if panel.higher_is_better else (swift, shoal)
    return numerator / denominator if denominator > 0 else None


def plot_comparison(figures: dict[str, float], path: Path, title: str) -> Path:
    """Write a grid of bar charts, one per ``PANELS`` entry present in ``figures``; return path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in PANELS if any(f"{s}_{p.key}" in figures for s in SYSTEMS)]
    rows = max(1, -(-len(panels) // PANEL_COLUMNS))
    fig, axes = plt.subplots(rows, PANEL_COLUMNS, figsize=(4 * PANEL_COLUMNS, 3.2 * rows))
    flat_axes = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for axis, panel in zip(flat_axes, panels, strict=False):
        systems = [s for s in SYSTEMS if f"{s}_{panel.key}" in figures]
        values = [figures[f"{s}_{panel.key}"] for s in systems]
        bars = axis.bar(systems, values, color=[COLORS[s] for s in systems])
        axis.bar_label(bars, labels=[f"{v:.3g}" for v in values])
        ratio = speedup(figures, panel)
        suffix = f"\nShoal {ratio:.2f}x better" if ratio is not None else ""
        listed = int(figures.get("swift_list_objects", figures.get("shoal_list_objects", 0)))
        axis.set_title(panel.label.format(list_objects=f"{listed:,}") + suffix, fontsize=9)
        axis.margins(y=0.2)
    for axis in flat_axes[len(panels) :]:
        axis.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
