"""Every error the referee raises on purpose derives from one base class and keeps its built-in base; the
library and the referee suggest names alike."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import harness
from harness import errors
from harness.submission import suggest
from submission_kit.artefacts import unknown_message
from submission_kit.messages import close_names


def _referee_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(harness.__path__, "harness."))


def test_every_exception_class_of_the_referee_derives_from_the_base():
    found = {}
    for name in _referee_modules():
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__.startswith("harness"):
                found[f"{value.__module__}.{value.__qualname__}"] = value
                assert issubclass(value, errors.HarnessError), f"{name}.{attribute}"
    assert len(found) >= 11, sorted(found)  # the base and the ten kinds of today
    # each is defined in errors.py (a new one too), whichever module re-exports it
    assert all(value.__module__ == "harness.errors" for value in found.values()), sorted(found)


@pytest.mark.parametrize("module, name, builtin", [
    ("harness.competition", "CompetitionError", ValueError), ("harness.dask_executor", "ClusterError", ValueError),
    ("harness.dataset", "DatasetError", ValueError), ("harness.submission", "SubmissionError", ValueError),
    ("harness.records", "RecordError", ValueError), ("harness.html_report", "ReportError", ValueError),
    ("harness.instance", "InstanceError", ValueError), ("harness.secret", "SecretError", ValueError),
    ("harness.tree", "TreeError", OSError), ("harness.workspace", "ScratchError", OSError),
])
def test_errors_keep_their_old_names_and_builtin_bases(module, name, builtin):
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name)
    assert issubclass(cls, builtin) and issubclass(cls, errors.HarnessError)
    assert str(cls("what went wrong")) == "what went wrong"


def test_cluster_error_is_a_competition_error():
    assert issubclass(errors.ClusterError, errors.CompetitionError)


def test_referee_and_library_suggest_the_same_names():
    choices = ["attack", "defense", "targeted_attack"]
    # similar at 0.5 but not at 0.6: the library used to suggest it, the referee not
    assert close_names("defxx", choices) == []
    assert suggest("defxx", choices) == ""
    assert "Did you mean" not in unknown_message("type", "defxx", choices)
    assert close_names("atack", choices) == ["attack"]
    assert suggest("atack", choices) == " — did you mean 'attack'?"
    assert "Did you mean 'attack'" in unknown_message("type", "atack", choices)
    assert close_names("atack", ["defense", "attacks", "attack"], n=3) == ["attack", "attacks"]
