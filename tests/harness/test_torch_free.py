"""The referee's tests need no torch: ``pip install -e ".[referee-test]"`` (no torch) runs every test in
tests/harness, and ./test.sh runs them in such an environment. These checks fail earlier, in any environment: no
module here imports torch or another package only the submission library needs, by name or through any module it
imports (the shared helpers of tests/, the project's modules), at the top of the file or inside a test."""

from __future__ import annotations

import ast
import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
#: Import names of what the library's "kit" extra adds to a referee-only install (setup.cfg).
LIBRARY_ONLY = ("torch", "torchvision", "torchattacks", "scipy", "skimage", "sklearn")

#: Runs each import statement given (JSON) with LIBRARY_ONLY blocked; prints {statement: error} as JSON.
RUN_IMPORTS = """
import json, sys
for name in json.loads(sys.argv[1]):
    sys.modules[name] = None  # "import torch" now raises ImportError, even where torch is installed
failures = {}
for statement in json.loads(sys.argv[2]):
    try:
        exec(statement, {})
    except ImportError as exc:
        failures[statement] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failures))
"""


def import_statements(path: Path) -> set[str]:
    """Every absolute import statement of ``path`` (top level, functions, classes), one per line."""
    return {ast.unparse(node) for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
            if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0)}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names ``path`` imports anywhere."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def run_imports(statements: list[str], *path: Path) -> dict[str, str]:
    """{statement: error} of the ``statements`` that fail with LIBRARY_ONLY blocked, ``path`` + ROOT on sys.path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(folder) for folder in (*path, ROOT))}
    done = subprocess.run([sys.executable, "-c", RUN_IMPORTS, json.dumps(LIBRARY_ONLY), json.dumps(statements)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def referee_test_files() -> list[Path]:
    return sorted(HERE.glob("*.py"))


def test_no_referee_test_imports_a_library_only_package_by_name() -> None:
    offenders = sorted(f"{path.relative_to(ROOT)}: {name}" for path in referee_test_files()
                       for name in imported_modules(path) if name.split(".")[0] in LIBRARY_ONLY)
    assert offenders == [], "move these tests to tests/submission_kit or tests/research:\n" + "\n".join(offenders)


def test_every_import_of_a_referee_test_runs_without_torch() -> None:
    """Each test module itself (so the top-level imports of the helpers it uses count) and every import statement
    in it, inside tests included."""
    statements = sorted({f"import {path.stem}" for path in referee_test_files()}
                        | {line for path in referee_test_files() for line in import_statements(path)})
    assert "import test_cli" in statements and any(line.startswith("from tiny_world import") for line in statements)
    failures = run_imports(statements, HERE, TESTS)
    assert failures == {}, "these need a library-only package; move the tests that need them to tests/submission_kit " \
        "or tests/research:\n" + "\n".join(f"{statement}: {error}" for statement, error in failures.items())


def test_the_referee_test_extra_adds_test_tools_and_no_library_package() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = config["options.extras_require"]
    referee_test = {line.strip() for line in extras["referee-test"].splitlines() if line.strip()}
    kit = {line.strip() for line in extras["kit"].splitlines() if line.strip()}
    assert {"pytest", "hypothesis", "selenium"} <= referee_test
    assert not referee_test & kit, referee_test & kit  # the referee needs none of the library's packages


def test_the_check_sees_torch_through_a_helper_and_inside_a_test(tmp_path: Path) -> None:
    """A test importing a helper that imports torch at its top, or a library module that does inside a test, fails
    the check (the check can fail)."""
    (tmp_path / "torch_helper.py").write_text("import torch\n")
    test = tmp_path / "test_uses_helper.py"
    test.write_text("import json\nfrom torch_helper import *\n\n\ndef test_fgsm():\n"
                    "    from submission_kit.attack_methods import gradient\n    assert gradient.fgsm\n")
    statements = sorted({"import test_uses_helper"} | import_statements(test))
    failures = run_imports(statements, tmp_path, TESTS)
    assert set(failures) == {"import test_uses_helper", "from torch_helper import *",
                             "from submission_kit.attack_methods import gradient"}, failures
    assert all("torch" in error for error in failures.values()), failures
