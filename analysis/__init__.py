"""Stored trials -> proxy-vs-full correlation, strategy comparisons, plots and reports.

Submodules are imported on demand (``analysis.stats``, ``analysis.curves``,
``analysis.plots``, ...): the statistics need neither torch nor matplotlib.
"""
