"""Stored trials -> proxy-vs-full correlation, strategy comparisons, plots and reports.

Modules (import the one you need; none is imported here, so the statistics need
neither torch nor matplotlib):

- ``analysis.load``: storage -> ``StudyRecord`` / ``TrialRecord`` rows (``load_all``,
  ``load_study``, ``best_complete``);
- ``analysis.stats``: ``correlation`` (Spearman/Kendall/Pearson, bootstrap CI),
  ``top_k_precision``, ``mann_whitney``, ``wilcoxon_paired``, ``holm``, ``pairwise_tests``;
- ``analysis.curves``: best-so-far curves per run and their median/IQR bands;
- ``analysis.plots`` and ``analysis.cell_graph``: the figures (PNG + SVG), each returning
  the data it drew;

- CLIs: ``python -m analysis.correlate`` and ``python -m analysis.report``
  (and ``python -m benchmarks.compare``, which runs the studies and then the report).
"""
