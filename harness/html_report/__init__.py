"""The static HTML report of a results folder (``results/report/index.html``): a view of the per-image table.

:func:`build_report` reads the tables, the manifest, the logs and the store of a finished run and writes
``report/`` atomically; it runs nothing and computes nothing the CSV files do not already hold. jinja2 and
matplotlib are imported only while a report is built (``import harness`` stays light).
"""

from harness.html_report.build import CONTENT_SECURITY_POLICY, build_report
from harness.html_report.content import ReportError
from harness.results_folder import REPORT_DIR

__all__ = ["CONTENT_SECURITY_POLICY", "REPORT_DIR", "ReportError", "build_report"]
