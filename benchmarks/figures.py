"""What every task's figures share: matplotlib off-screen, the legend under the panels, and the
mark for a variance that is exactly zero (no place on a log axis)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.tasks.base import Style  # noqa: E402


def legend_below(fig: plt.Figure, handles: list) -> None:
    """The legend under the panels in rows of three, or fewer where long labels would not fit
    the figure's width, with room made for it."""
    for ncol in range(min(len(handles), 3), 0, -1):
        legend = fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False)
        box = legend.get_window_extent(fig.canvas.get_renderer())
        if ncol == 1 or box.width <= 0.98 * fig.bbox.width:
            break
        legend.remove()
    fig.tight_layout(rect=(0, box.height / fig.bbox.height + 0.01, 1, 1))


def over_seeds(seeds: int) -> str:
    """What a figure's curves are, for its title: one seed's, or the mean over seeds with a band."""
    return "1 seed" if seeds == 1 else f"mean over {seeds} seeds, band ±1 sd"


ZERO_VARIANCE = "zero_variance"


def mark_zero_variance(ax: plt.Axes, xs: pd.Series, color) -> None:
    """A triangle on the bottom edge at each x where the variance is zero, which has no place
    on a log axis (DisARM at theta = 0 is exact)."""
    if xs.empty:
        return  # an empty line's extent would throw off the layout
    bottom = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    ax.plot(
        xs, [0.0] * len(xs), "v", color=color, clip_on=False, gid=ZERO_VARIANCE, transform=bottom
    )


def line_handles(style: Style, labels, marker: bool = True, dashed: bool = False) -> list:
    """Legend entries, one per label in ``labels`` that ``style`` knows, in the style's order
    (with each label's dash pattern where ``dashed``, for figures that draw it)."""
    shown = set(labels)
    return [
        plt.Line2D(
            [],
            [],
            color=style.colors[lbl],
            marker=style.markers[lbl] if marker else None,
            ls=style.linestyle(lbl) if dashed else "-",
            label=lbl,
        )
        for lbl in style.colors
        if lbl in shown
    ]
