"""Dedupe: quality filters, exact and near-duplicate groups across datasets, keep policy, conflicts, leakage.

``run_dedupe(workspace, DedupeConfig())`` reads the `faces` table and writes `decisions` (unit `all`).
"""

from fusekit.dedupe.report import render_report, render_summary, status_lines, summary
from fusekit.dedupe.stage import DedupeConfig, DedupeReport, run_dedupe

__all__ = ["DedupeConfig", "DedupeReport", "run_dedupe", "status_lines", "render_report", "render_summary",
           "summary"]
