"""Pictures and reports of runs."""

from selfsup.report.html import REPORT_FILE, comparison, write_report
from selfsup.report.images import image_grid, save_image_grid

__all__ = ["REPORT_FILE", "comparison", "image_grid", "save_image_grid", "write_report"]
