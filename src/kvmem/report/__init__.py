"""The HTML report of ``kvmem reproduce`` (see :mod:`kvmem.report.html` and docs/report.md)."""

from .html import (
    MAX_ROWS,
    PAPER_PREFIX,
    PUBLISHED_COLUMNS,
    PUBLISHED_TABLE,
    ClaimRow,
    Figure,
    PublishedRow,
    ReportData,
    Section,
    TableView,
    build_report_from_dir,
    collect_environment,
    render_html,
    report_from_dir,
    report_from_runs,
    write_report,
)

__all__ = [
    "MAX_ROWS",
    "PAPER_PREFIX",
    "PUBLISHED_COLUMNS",
    "PUBLISHED_TABLE",
    "ClaimRow",
    "Figure",
    "PublishedRow",
    "ReportData",
    "Section",
    "TableView",
    "build_report_from_dir",
    "collect_environment",
    "render_html",
    "report_from_dir",
    "report_from_runs",
    "write_report",
]
