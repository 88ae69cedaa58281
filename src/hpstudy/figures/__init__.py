"""Seaborn figures for the report: PNG files, readable at a glance, with axis units.

Every figure is drawn from tidy frames (summary.csv rows, per-epoch histories, per-layer
diagnostics). Which figures a study gets depends on the columns its groups vary: generic
plots per group factor, plus special plots when a group varies batch size and LR, gradient
accumulation, workers x cleanup, or the scheduler (see `hpstudy.figure_plan`).

One module per section of the report, on two shared ones:

- style:       axis labels with units, the theme, t-interval error bars, epoch axes
- layout:      labels that never overlap (checked at every save), names beside dots, saving
- overview:    "Recommended configuration": every experiment, mean and 95% CI
- groups:      each "Group" section: factor effects, special views, curves, gradient flow
- diagnostics: below "Training diagnostics": LR, schedules, early stopping, cost, best run
- whole_study: "Whole study": parallel coordinates, variance shares, the run timeline

Each figure is a `NAME(..., path)` that draws and saves it and, where tests look at the
drawing itself, a `NAME_figure(...)` that returns the matplotlib figure.
"""

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere below: files, never a window
import matplotlib.pyplot as plt  # noqa: E402

from hpstudy.figures.diagnostics import (  # noqa: E402
    cost,
    cost_figure,
    early_stopping,
    gradient_flow_run,
    lr_schedules,
    lr_vs_metric,
)
from hpstudy.figures.groups import (  # noqa: E402
    CURVES_TITLE,
    GRADIENTS_TITLE,
    accumulation_bars,
    factor_effect,
    factor_effect_figure,
    gradient_flow_group,
    learning_curves,
    learning_curves_figure,
    scheduler_comparison,
    scheduler_comparison_figure,
    workers_cleanup,
)
from hpstudy.figures.layout import (  # noqa: E402
    FigureOverlapWarning,
    figure_labels,
    figure_title,
    label_points,
    overlapping_labels,
    save,
)
from hpstudy.figures.overview import overview, overview_figure  # noqa: E402
from hpstudy.figures.style import METRIC_LABELS, T_CI, label, t_ci  # noqa: E402
from hpstudy.figures.whole_study import (  # noqa: E402
    OUTCOME_COLOURS,
    parallel_coordinates,
    parallel_coordinates_figure,
    timeline,
    timeline_figure,
    variance_share,
    variance_share_figure,
)

__all__ = [
    "CURVES_TITLE",
    "GRADIENTS_TITLE",
    "METRIC_LABELS",
    "OUTCOME_COLOURS",
    "T_CI",
    "FigureOverlapWarning",
    "accumulation_bars",
    "cost",
    "cost_figure",
    "early_stopping",
    "factor_effect",
    "factor_effect_figure",
    "figure_labels",
    "figure_title",
    "gradient_flow_group",
    "gradient_flow_run",
    "label",
    "label_points",
    "learning_curves",
    "learning_curves_figure",
    "lr_schedules",
    "lr_vs_metric",
    "overlapping_labels",
    "overview",
    "overview_figure",
    "parallel_coordinates",
    "parallel_coordinates_figure",
    "plt",
    "save",
    "scheduler_comparison",
    "scheduler_comparison_figure",
    "t_ci",
    "timeline",
    "timeline_figure",
    "variance_share",
    "variance_share_figure",
    "workers_cleanup",
]
