"""The three parts stay apart: the referee never imports torch, the library never imports the referee or the
research code, and a sandboxed run can import the library and nothing else of the project."""

from __future__ import annotations

import ast
import csv
import subprocess
import sys
from pathlib import Path

import pytest

from harness.competition import run_competition
from harness.sandboxes.base import SandboxKind
from machine import needs_bwrap
from tiny_world import config_for, write_dataset, write_submission

ROOT = Path(__file__).resolve().parents[2]



def _modules_after(code: str) -> set[str]:
    """Top-level module names imported by a fresh interpreter that runs ``code`` from the repository root."""
    script = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split()[-1000:])


def test_importing_the_referee_imports_no_torch():
    modules = _modules_after("import harness, harness.cli, harness.competition, harness.validate, harness.execution, "
                             "harness.library, harness.process, harness.sandboxes.factory, harness.report, "
                             "harness.scoring")
    assert "harness" in modules
    assert not {"torch", "torchvision", "sklearn", "skimage", "matplotlib"} & modules


@pytest.mark.parametrize("command", [["score", "--help"], ["validate", "--help"], ["run", "--help"], ["--help"]])
def test_cli_help_imports_no_torch(command):
    code = ("import runpy, sys\n"
            f"sys.argv = ['run_competition.py', *{command!r}]\n"
            "try:\n    runpy.run_path('run_competition.py', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n")
    assert "torch" not in _modules_after(code)


def test_score_of_a_results_folder_imports_no_torch(tmp_path, world):
    from tiny_world import BUCKET_DEFENSE, PLUS

    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    run_competition(config_for(world, sandbox=SandboxKind.NONE), echo=lambda _line: None)
    code = ("import sys\nfrom harness.cli import main\n"
            f"assert main(['score', '--output_dir', {str(world['results'])!r}]) == 0\n")
    assert "torch" not in _modules_after(code)


def _imported_top_levels(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_library_and_sample_submissions_import_neither_referee_nor_research():
    checked = 0
    for folder in ("submission_kit", "attacks", "defenses"):
        for path, names in _imported_top_levels(ROOT / folder).items():
            assert not {"harness", "research"} & names, f"{path} imports {sorted({'harness', 'research'} & names)}"
            checked += 1
    assert checked > 40


def test_referee_imports_only_the_torch_free_contract_of_the_library():
    for path, names in _imported_top_levels(ROOT / "harness").items():
        assert "research" not in names, path
        assert not {"torch", "torchvision", "sklearn", "skimage", "scipy"} & names, path
        # matplotlib draws the HTML report's figures, and nothing else of the referee may pull it in.
        assert "matplotlib" not in names or path.startswith("harness/html_report/"), path
    uses = {path for path, names in _imported_top_levels(ROOT / "harness").items() if "submission_kit" in names}
    for path in uses:
        text = (ROOT / path).read_text()
        for line in text.splitlines():
            if "submission_kit" in line and ("import" in line):
                assert ("submission_kit.contract" in line or "submission_kit.messages" in line
                        or line.strip() == "from submission_kit import contract"), f"{path}: {line.strip()}"


#: A defense that answers 1 + 2·(harness importable) + 4·(research importable) when the library imports.
PROBE_DEFENSE = """
import importlib.util
label = 0
try:
    import submission_kit.contract
    label = 1
except ImportError:
    pass
label += 2 * (importlib.util.find_spec("harness") is not None) + 4 * (importlib.util.find_spec("research") is not None)
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
with open(out, "w") as f:
    for p in sorted(inp.glob("*.png")):
        f.write(f"{p.name},{label}\\n")
"""


@needs_bwrap
def test_sandboxed_run_sees_the_library_and_nothing_else_of_the_project(tmp_path):
    world = {"data": write_dataset(tmp_path / "data", [10, 60]), "attacks": tmp_path / "attacks",
             "defenses": tmp_path / "defenses", "results": tmp_path / "results"}
    world["attacks"].mkdir()
    write_submission(world["defenses"], "probe", "defense", PROBE_DEFENSE)
    run_competition(config_for(world, sandbox=SandboxKind.BWRAP), echo=lambda _line: None)
    with open(world["results"] / "per_image.csv") as handle:
        predictions = {row["prediction"] for row in csv.DictReader(handle)}
    assert predictions == {"1"}


def test_plain_process_has_only_the_library_on_its_pythonpath(tmp_path):
    """Without a sandbox the run's PYTHONPATH is a folder holding only submission_kit, not the repository root;
    harness and research are importable only if this Python has them installed (as in CI)."""
    installed = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(int(u.find_spec('harness') is not None), "
                               "int(u.find_spec('research') is not None))"],
        cwd="/", capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=120).stdout.split()
    expected = 1 + 2 * int(installed[0]) + 4 * int(installed[1])
    world = {"data": write_dataset(tmp_path / "data", [10, 60]), "attacks": tmp_path / "attacks",
             "defenses": tmp_path / "defenses", "results": tmp_path / "results"}
    world["attacks"].mkdir()
    write_submission(world["defenses"], "probe", "defense", PROBE_DEFENSE)
    run_competition(config_for(world, sandbox=SandboxKind.NONE), echo=lambda _line: None)
    with open(world["results"] / "per_image.csv") as handle:
        predictions = {row["prediction"] for row in csv.DictReader(handle)}
    assert predictions == {str(expected)}


def test_referee_install_needs_no_torch_and_covers_its_imports():
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    required = {line.strip().lower() for line in config["options"]["install_requires"].splitlines() if line.strip()}
    # cryptography: not imported by the referee, but by distributed's Security.temporary() (local clusters' TLS)
    assert required == {"numpy", "pillow", "pyarrow", "joblib", "tabulate", "tqdm", "jinja2", "matplotlib",
                        "dask[distributed]",
                        "cryptography"}
    kit = {line.strip() for line in config["options.extras_require"]["kit"].splitlines() if line.strip()}
    assert {"torch", "torchvision", "scikit-learn", "scikit-image"} <= kit
    distribution_of = {"PIL": "pillow", "numpy": "numpy", "joblib": "joblib", "tabulate": "tabulate", "tqdm": "tqdm",
                       "jinja2": "jinja2", "matplotlib": "matplotlib", "dask": "dask[distributed]",
                       "distributed": "dask[distributed]"}
    third_party = set()
    for names in _imported_top_levels(ROOT / "harness").values():
        third_party |= {n for n in names if n not in sys.stdlib_module_names and n not in ("harness", "submission_kit")}
    library = _imported_top_levels(ROOT / "submission_kit")
    for names in (library["submission_kit/contract.py"], library["submission_kit/messages.py"]):
        third_party |= {n for n in names if n not in sys.stdlib_module_names and n != "submission_kit"}
    assert {distribution_of.get(n, n) for n in third_party} <= required
    packages = config["options.packages.find"]["include"]
    assert all(p in packages for p in ("harness", "submission_kit", "research"))
