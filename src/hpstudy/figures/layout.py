"""Labels that never run into each other: the overlap check every saved figure passes,
slanted tick labels where they would collide, names placed beside dots, and the one way a
figure is saved (atomically, its title in the PNG's metadata)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from hpstudy.atomic import atomic_path


def text_renderer(fig):
    """The renderer that measures text (an Agg figure's own; any figure's after drawing)."""
    canvas = fig.canvas
    return canvas.get_renderer() if hasattr(canvas, "get_renderer") else fig._get_renderer()


class FigureOverlapWarning(UserWarning):
    """Two labels of a saved figure overlap; the report's figures must read cleanly."""


def _tick_labels(ax, which: str) -> list:
    """The tick labels an axis draws: non-empty, visible, at ticks inside the view."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    span = (hi - lo) * 1e-9
    out = []
    for locs, labels in (
        (axis.get_majorticklocs(), axis.get_majorticklabels()),
        (axis.get_minorticklocs(), axis.get_minorticklabels()),
    ):
        for loc, text in zip(locs, labels, strict=False):
            if text.get_visible() and text.get_text() and lo - span <= loc <= hi + span:
                out.append(text)
    return out


def _measure(texts, renderer) -> list[tuple]:
    """Each text measured once: (text, window box, rotation mod 180, anchor in pixels)."""
    return [
        (
            t,
            t.get_window_extent(renderer),
            t.get_rotation() % 180,
            t.get_transform().transform(t.get_position()),
        )
        for t in texts
    ]


def _overlapping_pairs(measured: list[tuple], renderer) -> list[tuple]:
    """Pairs of measured texts that overlap. Tick labels of one axis slanted alike overlap
    only when their baselines are closer than a line of text, whatever their bounding boxes."""
    pairs = []
    for i, (a, box_a, rot_a, at_a) in enumerate(measured):
        for b, box_b, rot_b, at_b in measured[i + 1 :]:
            slanted = rot_a == rot_b and rot_a not in (0, 90)
            if slanted and getattr(a, "_hp_tick", None) == getattr(b, "_hp_tick", 0):
                along = np.hypot(*(at_a - at_b)) * abs(np.sin(np.radians(rot_a)))
                height = renderer.points_to_pixels(min(a.get_fontsize(), b.get_fontsize()))
                if along < height:
                    pairs.append((a, b))
            elif box_a.width > 0 and box_b.width > 0 and box_a.overlaps(box_b):
                pairs.append((a, b))
    return pairs


def figure_labels(fig) -> list:
    """The labels of a figure: suptitle and figure texts, and per axes (colour bars
    included) its title, axis labels and tick labels. Annotations inside a plot (heat-map
    cells, the cost plot's experiment names) are data, not labels."""
    texts = [t for t in fig.texts if t.get_visible() and t.get_text()]
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            if text.get_visible() and text.get_text():
                texts.append(text)
        for which in ("x", "y"):
            for text in _tick_labels(ax, which):
                text._hp_tick = (i, which)  # tick labels of one axis, for _overlapping_pairs
                texts.append(text)
    return texts


def overlapping_labels(fig) -> list[tuple[str, str]]:
    """Pairs of labels of a drawn figure that overlap (empty when the figure reads cleanly)."""
    renderer = text_renderer(fig)
    pairs = _overlapping_pairs(_measure(figure_labels(fig), renderer), renderer)
    return [(a.get_text(), b.get_text()) for a, b in pairs]


def _unclutter_x_ticks(fig) -> None:
    """Slant (45°, then 90°) the x tick labels of any axes whose labels run together; the
    figure is drawn (laid out) when this returns."""
    for angle in (45, 90, None):
        fig.draw_without_rendering()
        if angle is None:
            return
        renderer = text_renderer(fig)
        changed = False
        for i, ax in enumerate(fig.axes):
            labels = _tick_labels(ax, "x") if ax.get_visible() else []
            for label_ in labels:
                label_._hp_tick = (i, "x")
            if _overlapping_pairs(_measure(labels, renderer), renderer):
                changed = True
                for text in ax.get_xticklabels():
                    text.set_rotation(angle)
                    text.set_horizontalalignment("right" if angle != 90 else "center")
                    text.set_rotation_mode("anchor" if angle != 90 else "default")
        if not changed:
            return


def figure_title(fig) -> str:
    """The figure's suptitle, else its panels' titles joined (kept in the PNG's metadata)."""
    if fig.get_suptitle():
        return fig.get_suptitle()
    return " | ".join(ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title())


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _unclutter_x_ticks(fig)  # lays the figure out
    overlaps = overlapping_labels(fig)
    if overlaps:
        warnings.warn(
            FigureOverlapWarning(f"{path.name}: overlapping labels {overlaps[:4]}"), stacklevel=2
        )
    fig.set_layout_engine("none")  # keep the layout just checked; savefig need not redo it
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(
            tmp, dpi=110, bbox_inches="tight", format="png", metadata={"Title": figure_title(fig)}
        )
    plt.close(fig)
    return path


# where an annotation may sit relative to its dot (points), tried in this order
LABEL_OFFSETS = [(dx, dy) for dy in (3, -11, 13, -21, 23, -31) for dx in (5, -5)]


def label_points(ax, xs, ys, names, fontsize: float = 7) -> list:
    """Write `names` next to the dots (xs, ys) of `ax`, each at the first nearby offset where
    it overlaps neither an earlier name nor a dot (greedy; the last offset when all are taken)."""
    fig = ax.figure
    fig.draw_without_rendering()
    renderer = text_renderer(fig)
    radius = renderer.points_to_pixels(3.5)
    dots = [ax.transData.transform((x, y)) for x, y in zip(xs, ys, strict=True)]
    taken = [
        matplotlib.transforms.Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)
        for x, y in dots
    ]
    texts = []
    for x, y, name in zip(xs, ys, names, strict=True):
        for dx, dy in LABEL_OFFSETS:
            text = ax.annotate(
                name,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=fontsize,
                ha="left" if dx > 0 else "right",
                va="bottom",
            )
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(t) for t in taken) or (dx, dy) == LABEL_OFFSETS[-1]:
                break
            text.remove()
        taken.append(box)
        texts.append(text)
    return texts
