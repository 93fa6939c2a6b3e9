"""Every error the referee raises on purpose, under one base class :class:`HarnessError`.

A leaf module: it imports nothing of the harness, so every module can import its errors from here without an
import cycle. Each class keeps the built-in base it had before (``ValueError`` or ``OSError``), so callers that
catch those still catch it; the modules that raise them re-export them under their old names
(``harness.dataset.DatasetError`` is :class:`DatasetError`). The command line catches :class:`HarnessError` and
prints its message as one line; any other exception is a fault of the harness itself.
"""

from __future__ import annotations

__all__ = ["ClusterError", "CompetitionError", "DatasetError", "HarnessError", "InstanceError", "ManifestError",
           "RecordError", "ReportError", "ScratchError", "SecretError", "SubmissionError", "TreeError"]


class HarnessError(Exception):
    """Base of every error the referee raises on purpose; its message is meant for the operator as it is."""


class CompetitionError(HarnessError, ValueError):
    """A problem with the harness's own inputs (not a submission's fault); the message says what to fix."""


class ClusterError(CompetitionError):
    """The cluster cannot run this competition (unreachable scheduler, refused workers); the message says why."""


class DatasetError(HarnessError, ValueError):
    """The input folder or its labels break the dataset contract; the message names the file and the fix."""


class SubmissionError(HarnessError, ValueError):
    """A submission folder that cannot be run; the message names the file and the fix."""


class RecordError(HarnessError, ValueError):
    """A stored record of another schema, or with missing or mistyped fields."""


class ManifestError(HarnessError, ValueError):
    """A manifest of a newer schema, or with a mistyped field; the message names the field."""


class ReportError(HarnessError, ValueError):
    """The results folder cannot be reported on; the message names the folder and what to do."""


class InstanceError(HarnessError, ValueError):
    """A string that is not an instance tag."""


class SecretError(HarnessError, ValueError):
    """The results folder's secret file is unreadable or malformed; the message says what to do."""


class TreeError(HarnessError, OSError):
    """A folder that cannot be walked, or a file that is not a readable regular file; the message is one line."""


class ScratchError(HarnessError, OSError):
    """The scratch folder cannot be made, or something there is not what the harness made (one-line message)."""
