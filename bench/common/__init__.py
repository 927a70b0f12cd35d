"""Leaf modules shared by the experiments and the report: statistics, models, names.

Nothing here imports anything else from ``bench``.
"""
