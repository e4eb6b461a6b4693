"""Pictures and reports of runs."""

from selfsup.report.images import save_image_grid

__all__ = ["save_image_grid"]
