"""Explaining energy trees: breakdowns (pure data), terminal tables, one HTML page, figures.

- :mod:`irene.report.breakdown` — shares, top-N, per-primitive-type aggregates, errors, comparisons
- :mod:`irene.report.terminal` — rich rendering of a breakdown or a comparison
- :mod:`irene.report.html` — one self-contained HTML report (no network needed to open it)
- :mod:`irene.report.plots` — matplotlib figures (PNG or SVG), including
  :func:`~irene.report.plots.plot_crossvalidation` for the cross-validation folds

Submodules are imported on use, so ``import irene.report`` stays cheap (no matplotlib).
"""

#: colours of the three node types (model / module / ML primitive), shared by page and figures
NODE_TYPE_COLOURS = {"model": "#8e44ad", "module": "#2f6fb3", "ml": "#2e9e5b"}
