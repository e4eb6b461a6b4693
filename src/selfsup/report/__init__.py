"""Reports of runs: a run's page (:mod:`.html`), built from HTML pieces (:mod:`.page`), figures
(:mod:`.figures`), the sections that need the run's data or method (:mod:`.sections`) and tables
(:mod:`.tables`)."""

from selfsup.report.html import REPORT_FILE, comparison, write_report
from selfsup.report.tables import format_ablation

__all__ = ["REPORT_FILE", "comparison", "format_ablation", "write_report"]
