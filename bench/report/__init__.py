"""Results on disk and the self-contained HTML report rendered from them alone."""

from bench.report.render import render_report

__all__ = ["render_report"]
