"""Campaign reports: figures computed in one streaming pass over the jobs, rendered for the terminal,
Markdown, JSON and Excel, and served by the control endpoint (``GET /reports/summary``)."""

from speechai.reports.data import Column, Report, ReportFilter, Section, build_report

__all__ = ["Column", "Report", "ReportFilter", "Section", "build_report"]
