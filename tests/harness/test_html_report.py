"""The HTML report: a view of a results folder, escaped, script-free, deterministic, atomic, and readable in a
real browser (headless Chromium; those tests skip only when no browser is installed)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.html_report import CONTENT_SECURITY_POLICY, ReportError, build_report, content, figures, sanity
from harness.scoring import DEFENSE, Matrix, ScoreRow
from harness.secret import SECRET_FILE
from machine import needs_browser
from report_world import HOSTILE_LABEL, HOSTILE_LOG_LINES, ODD_NAME, build_world
from research.browser import headless_chromium
from submission_kit import contract

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results of a small competition (ε 8 and 16) with a failing attack and a hostile defense, run by the CLI."""
    return build_world(tmp_path_factory.mktemp("report_world"))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _Tables(HTMLParser):
    """Cells of every ``<table class="leaderboard">`` (text only)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_board = 0
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("class", "leaderboard") in attrs:
            self._in_board = 1
        elif self._in_board and tag == "tr":
            self._row = []
        elif self._in_board and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_board = 0
        elif tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


# -- the folder ----------------------------------------------------------------------------------------------------
def test_run_writes_the_report_and_report_rebuilds_it_byte_for_byte(world: Path, capsys) -> None:
    report = world / "report"
    before = _files(report)
    assert {"index.html", "timings.html", "report.css", "figures/defense_accuracy_vs_epsilon.svg",
            "figures/attack_success_vs_epsilon.svg", "figures/accuracy_eps8.svg", "figures/accuracy_eps16.svg",
            "figures/targeted_hits_eps8.svg", "figures/targeted_hits_eps16.svg"} <= set(before)
    assert any(name.startswith("gallery/") and name.endswith("-clean.png") for name in before)
    assert main(["report", "--output_dir", str(world)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {report / 'index.html'}"
    assert _files(report) == before
    assert not list(world.glob(".report.*"))


def test_two_runs_with_the_same_seed_give_identical_report_files(world: Path, tmp_path: Path) -> None:
    """A second run (everything recomputed in a fresh folder holding the same secret, which drawn targets and opaque
    names derive from) gives the same page, figures and gallery; only timings.html (wall time, seconds) may differ."""
    (tmp_path / "again").mkdir()
    shutil.copy(world / SECRET_FILE, tmp_path / "again" / SECRET_FILE)
    again = build_world(world.parent, results=tmp_path / "again")
    first, second = _files(world / "report"), _files(again / "report")
    first.pop("timings.html")
    second.pop("timings.html")
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_svg_figures_carry_no_date_and_a_fixed_hash_salt() -> None:
    rows = [ScoreRow(epsilon=e, track=DEFENSE, rank=1, name="d", raw=1, normalized=0.5, all_or_nothing=0.25,
                     clean_accuracy=0.75, images=4, failed_runs=0, failed_images=0, failures="", seconds=1.0)
            for e in (4, 8)]
    svg = figures.defense_curves(rows)
    assert svg == figures.defense_curves(rows)
    assert b"<dc:date>" not in svg and b"<script" not in svg
    matrix = Matrix(epsilon=8, columns=("clean", "a"), rows=(("d", (1.0, None)),))
    assert figures.heatmap(matrix, title="t", colormap="viridis") == \
        figures.heatmap(matrix, title="t", colormap="viridis")


def test_leaderboard_rows_in_the_page_equal_leaderboard_csv(world: Path) -> None:
    parser = _Tables()
    parser.feed((world / "report" / "index.html").read_text(encoding="utf-8"))
    assert parser.rows == _csv_rows(world / "leaderboard.csv")
    assert len(parser.rows) == 2 * (3 + 3 + 1)  # 2 ε × (3 defenses + 3 attacks + 1 targeted)


def test_each_submission_has_an_anchor_a_page_and_links_that_land(world: Path) -> None:
    """Issue 30: a folded section per submission (id ``<track>-<name>``, safe for any legal name) and a page of its
    numbers; leaderboard names link to the section."""
    import re

    from harness.html_report import layout

    page = (world / "report" / "index.html").read_text(encoding="utf-8")
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    manifest = content.load_results(world).manifest
    for entry in manifest.submissions:
        anchor = layout.anchor_id(entry.track, entry.name)
        assert anchor in ids and (world / "report" / "submissions" / f"{anchor}.html").is_file()
    assert layout.anchor_id("defense", ODD_NAME) == "defense-x.2e-_y"
    assert set(re.findall(r'href="#([^"]+)"', page)) <= set(ids)
    assert f'<td><a href="#defense-x.2e-_y">{ODD_NAME}</a></td>' in page
    bucket = (world / "report" / "submissions" / "defense-bucket.html").read_text(encoding="utf-8")
    assert "<td>fgsm</td>" in bucket and 'href="../report.css"' in bucket and "<script" not in bucket


def test_participant_strings_are_escaped_and_the_page_has_no_script(world: Path) -> None:
    page = (world / "report" / "index.html").read_text(encoding="utf-8")
    assert f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">' \
        .replace("'", "&#39;") in page
    assert "script-src" not in CONTENT_SECURITY_POLICY and "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "<script" not in page.lower() and "onerror=" not in page.replace("onerror=alert(2)&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in page  # from the failed attack's log
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;b&gt;7&lt;/b&gt;" in page and HOSTILE_LABEL not in page  # a defense's non-integer label
    assert f">{ODD_NAME}<" in page
    assert ' style="' not in page  # inline styles would need 'unsafe-inline'


def test_failures_list_the_failed_run_with_its_log(world: Path) -> None:
    results = content.load_results(world)
    failed = content.failed_runs(results)
    assert {(f.run.name, f.run.epsilon) for f in failed} == {("broken", 8), ("broken", 16)}
    for item in failed:
        assert item.log_href is not None and (world / "report" / item.log_href).resolve().is_file()
        assert all(line in item.excerpt for line in HOSTILE_LOG_LINES)
    lines = {(line.epsilon, line.attack): line for line in content.referee_lines(results)}
    assert lines[(8, "broken")].substitutions == [("missing output image", 6)]
    assert lines[(16, "fgsm")].max_linf == 16 and lines[(16, "fgsm")].substitutions == []
    with open(world / "per_image.csv", newline="") as handle:
        bad = sum(1 for row in csv.DictReader(handle) if row["problem"] == f"non-integer label '{HOSTILE_LABEL}'")
    assert bad > 0 and content.missing_answers(results) == [(ODD_NAME, f"non-integer label '{HOSTILE_LABEL}'", bad)]


def test_log_links_never_leave_the_results_folder(world: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    results = content.load_results(world)
    assert content._log_path(results, str(outside)) is None
    assert content._log_path(results, "../" * 10 + str(outside)) is None
    assert content._log_path(results, "") is None


def test_header_warns_about_failures(world: Path) -> None:
    header = content.header(content.load_results(world))
    assert any("run(s) failed" in w and "broken" in w for w in header.warnings)
    assert any("replaced by the clean image" in w for w in header.warnings)
    assert header.images == 6 and header.epsilons == [8, 16]


def test_header_warns_when_protections_were_missing(world: Path) -> None:
    results = content.load_results(world)
    manifest = replace(results.manifest, protections={"sandbox": "none", "private_filesystem_and_pids": False,
                                                      "no_network": False, "cgroup_controllers": [], "notes": []})
    header = content.header(content.Results(**{**results.__dict__, "manifest": manifest}))
    assert sum("protection missing" in w for w in header.warnings) == 2


def test_gallery_images_are_seeded(world: Path) -> None:
    results = content.load_results(world)
    ids = content.gallery_ids(results)
    assert len(ids) == content.GALLERY_IMAGES and ids == content.gallery_ids(results)
    entries = content.gallery(results)
    fgsm = next(a for a in entries[0].attacks if a.attack == "fgsm" and a.epsilon == 16)
    assert fgsm.version is not None and fgsm.linf == 16 and len(fgsm.verdicts) == 3


def test_a_failed_build_keeps_the_previous_report(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _files(world / "report")

    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("disk full")

    monkeypatch.setattr(figures, "heatmap", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_report(world)
    assert _files(world / "report") == before
    assert not list(world.glob(".report.*"))


def test_report_of_a_folder_without_results_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["report", "--output_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing per_image.parquet" in err and "\n" not in err
    with pytest.raises(ReportError):
        build_report(tmp_path)


def test_the_referee_does_not_import_the_report_libraries() -> None:
    code = ("import sys, harness, harness.cli, harness.html_report; "
            "print(sorted(m for m in ('matplotlib', 'jinja2', 'selenium', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_visible_perturbation_stretches_to_the_full_range() -> None:
    clean = np.full((2, 2, 3), 100, dtype=np.uint8)
    adversarial = clean.copy()
    adversarial[0, 0, 0] = 104
    adversarial[1, 1, 2] = 98
    shown = contract.visible_perturbation(adversarial, clean)
    assert shown.dtype == np.uint8 and shown[0, 0, 0] == 255 and shown[1, 1, 2] == 64 and shown[0, 1, 1] == 128
    assert (contract.visible_perturbation(clean, clean) == 128).all()
    with pytest.raises(ValueError, match="different shapes"):
        contract.visible_perturbation(clean[:1], clean)


# -- sanity flags (hand-made tables) -----------------------------------------------------------------------------
def _matrix(eps: int, columns: tuple[str, ...], **rows: tuple[float | None, ...]) -> Matrix:
    return Matrix(epsilon=eps, columns=columns, rows=tuple(rows.items()))


def _defense(eps: int, normalized: float, aon: float, name: str = "d") -> ScoreRow:
    return ScoreRow(epsilon=eps, track=DEFENSE, rank=1, name=name, raw=0, normalized=normalized,
                    all_or_nothing=aon, clean_accuracy=0.9, images=20, failed_runs=0, failed_images=0, failures="",
                    seconds=0.0)


COLUMNS = ("clean", "fgsm", "pgd", "transfer", "random_noise")
#: What the sample attacks' metadata.json say of these names (keys "role" and "iterates").
ROLES = sanity.Roles(role={"fgsm": "white_box", "pgd": "white_box", "transfer": "transfer",
                           "random_noise": "random_noise", "step_target": "white_box", "iter_target": "white_box"},
                     iterates={"pgd": "fgsm", "iter_target": "step_target"})


def test_a_sound_evaluation_raises_no_flag() -> None:
    accuracy = [_matrix(4, COLUMNS, d=(0.9, 0.5, 0.2, 0.6, 0.85)), _matrix(16, COLUMNS, d=(0.9, 0.3, 0.0, 0.4, 0.8))]
    hits = [_matrix(16, ("step_target", "iter_target"), d=(0.1, 0.6))]
    scores = [_defense(4, 0.6, 0.2), _defense(16, 0.4, 0.0)]
    assert sanity.flags(scores, accuracy, hits, roles=ROLES) == []


@pytest.mark.parametrize("cells, check, detail", [
    ((0.9, 0.2, 0.5, 0.6, 0.85), "iterative weaker than single-step", "under pgd > 20.0 % under fgsm"),
    ((0.9, 0.5, 0.2, 0.1, 0.85), "transfer stronger than white-box", "under transfer < 20.0 %"),
    ((0.9, 0.5, 0.2, 0.6, 0.55), "attack weaker than random noise", "under transfer > 55.0 % under random_noise"),
    ((0.5, 0.6, 0.2, 0.4, None), "above clean accuracy", "under fgsm > clean 50.0 %"),
])
def test_each_matrix_check_raises_its_flag(cells: tuple[float | None, ...], check: str, detail: str) -> None:
    found = sanity.flags([], [_matrix(8, COLUMNS, d=cells)], [], roles=ROLES)
    assert [f.check for f in found] == [check]
    assert found[0].subject == "d" and found[0].epsilon == 8 and detail in found[0].detail


def test_targeted_iterative_with_fewer_hits_is_flagged() -> None:
    found = sanity.flags([], [], [_matrix(8, ("step_target", "iter_target"), d=(0.5, 0.25))], roles=ROLES)
    assert [(f.check, f.detail) for f in found] == [
        ("iterative weaker than single-step", "targeted hits 25.0 % with iter_target < 50.0 % with step_target")]


def test_accuracy_rising_with_epsilon_and_not_vanishing_are_flagged() -> None:
    scores = [_defense(4, 0.3, 0.1), _defense(8, 0.5, 0.1), _defense(128, 0.4, 0.3),
              _defense(4, 0.5, 0.1, name="fine"), _defense(128, 0.0, 0.0, name="fine")]
    found = sanity.flags(scores, [], [])
    assert [(f.check, f.epsilon, f.subject) for f in found] == [
        ("accuracy rises with ε", 8, "d"), ("does not fall to 0", 128, "d")]


# -- in a real browser -------------------------------------------------------------------------------------------


def _console_errors(driver: object) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]  # type: ignore[attr-defined]


@needs_browser
def test_report_in_headless_chromium(world: Path, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    report = world / "report"
    shot = tmp_path / "report.png"
    with headless_chromium() as driver:
        for page in ("timings.html", "index.html"):
            driver.get((report / page).as_uri())
            assert _console_errors(driver) == [], page
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);")
        assert len(images) > 10
        assert [src for src, complete, width in images if not complete or width == 0] == []
        assert driver.execute_script("return document.scripts.length;") == 0
        with pytest.raises(NoAlertPresentException):
            _ = driver.switch_to.alert.text
        rows = [[cell.get_attribute("textContent") for cell in row.find_elements(By.TAG_NAME, "td")]
                for row in driver.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr")]
        assert rows == _csv_rows(world / "leaderboard.csv")
        text = driver.find_element(By.TAG_NAME, "body").get_attribute("textContent")
        for hostile in (*HOSTILE_LOG_LINES, f"non-integer label '{HOSTILE_LABEL}'", ODD_NAME):
            assert hostile in text
        assert driver.find_elements(By.CSS_SELECTOR, "pre.log img, pre.log script, td b") == []
        assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@needs_browser
def test_the_content_security_policy_blocks_an_injected_script(world: Path) -> None:
    """Were escaping ever to fail, the page's own policy would still refuse to run a script."""
    page = (world / "report" / "index.html").read_text(encoding="utf-8")
    injected = world / "report" / "injected.html"
    injected.write_text(page.replace("<h1>", "<script>document.title = 'pwned';</script><h1>", 1),
                        encoding="utf-8")
    try:
        with headless_chromium() as driver:
            driver.get(injected.as_uri())
            assert driver.title != "pwned"
            assert any("Content Security Policy" in e["message"] for e in _console_errors(driver))
    finally:
        injected.unlink()


def test_a_run_whose_report_fails_still_succeeds_and_says_how_to_rebuild(
        world: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import harness.cli
    import harness.html_report

    def no_space(output_dir: Path, **options: object) -> Path:
        raise OSError(28, "No space left on device")

    class Ran:  # the tables exist already: the run only hands its table to the report
        table = None

    monkeypatch.setattr(harness.cli, "run_competition", lambda *args, **kwargs: Ran())
    monkeypatch.setattr(harness.html_report, "build_report", no_space)
    assert main(["run", "--output_dir", str(world), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: report not written ([Errno 28] No space left on device); rebuild it with: report --output_dir" \
        in err


def test_a_competition_without_attacks_still_gets_a_report(tmp_path: Path) -> None:
    from tiny_world import BUCKET_DEFENSE, write_dataset, write_submission

    data = write_dataset(tmp_path / "data", [10, 60, 110])
    (tmp_path / "attacks").mkdir()
    write_submission(tmp_path / "defenses", "bucket", "defense", BUCKET_DEFENSE)
    assert main(["run", "--input_dir", str(data), "--attacks_dir", str(tmp_path / "attacks"), "--defenses_dir",
                 str(tmp_path / "defenses"), "--output_dir", str(tmp_path / "results"), "--min_seconds", "20",
                 "--quiet"]) == 0
    report = tmp_path / "results" / "report"
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "All protections in force" in page or "protection missing" in page
    assert (report / "figures" / "defense_accuracy_vs_epsilon.svg").is_file()
    assert not (report / "figures" / "attack_success_vs_epsilon.svg").exists()


def test_a_results_folder_without_its_store_still_gets_a_report(world: Path, tmp_path: Path) -> None:
    """Tables, manifest and logs suffice; the gallery says which images the store no longer holds."""
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(world, copy, ignore=shutil.ignore_patterns("store", "report"))
    page = build_report(copy).read_text(encoding="utf-8")
    assert "not in the store" in page and 'src="gallery/' not in page
    assert not (copy / "report" / "gallery").exists()
    parser = _Tables()
    parser.feed(page)
    assert parser.rows == _csv_rows(copy / "leaderboard.csv")


class _WorstCaseTable(_Tables):
    """Cells of the ``<table class="worst-case">``."""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("class", "worst-case") in attrs:
            self._in_board = 1
        elif self._in_board and tag == "tr":
            self._row = []
        elif self._in_board and tag == "td":
            self._cell = []


def test_worst_case_table_shows_the_attacks_aimed_at_each_defense(world: Path, tmp_path: Path) -> None:
    """Issue 21: per defense, its worst case over all attacks, with the attacks written against it marked."""
    import json

    copy = tmp_path / "results"
    shutil.copytree(world, copy, ignore=shutil.ignore_patterns("report"))
    manifest = json.loads((copy / "manifest.json").read_text())
    for submission in manifest["submissions"]:
        if submission["name"] == "fgsm":
            submission["targets_defense"] = "bucket"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    build_report(copy)
    parser = _WorstCaseTable()
    parser.feed((copy / "report" / "index.html").read_text(encoding="utf-8"))
    headers, rows = content.worst_case(content.load_results(copy))
    assert parser.rows == rows and len(rows) == 2 * 3  # 2 ε × 3 defenses
    aimed = headers.index("aimed attacks")
    assert {row[1] for row in rows if row[aimed] == "fgsm"} == {"bucket"}
    assert all(row[aimed] == "" for row in rows if row[1] != "bucket")


def test_differences_of_one_image_are_not_flagged_when_n_is_given() -> None:
    accuracy = [_matrix(8, COLUMNS, d=(0.9, 0.50, 0.55, 0.6, 0.8))]  # pgd one image (of 20) above fgsm
    assert [f.check for f in sanity.flags([], accuracy, [], roles=ROLES)] == ["iterative weaker than single-step"]
    assert sanity.flags([], accuracy, [], images=20, roles=ROLES) == []
    two_images = [_matrix(8, COLUMNS, d=(0.9, 0.50, 0.60, 0.6, 0.8))]
    assert [f.check for f in sanity.flags([], two_images, [], images=20, roles=ROLES)] == [
        "iterative weaker than single-step"]


# -- attack roles from metadata.json (issue 29) ------------------------------------------------------------------
MODERN = ("clean", "apgd", "cw_linf", "di_mi_fgsm", "gauss", "uap")
MODERN_ROLES = sanity.Roles(role={"apgd": "white_box", "cw_linf": "white_box", "di_mi_fgsm": "transfer",
                                  "gauss": "random_noise"}, iterates={"cw_linf": "apgd"})


@pytest.mark.parametrize("cells, check, detail", [
    ((0.9, 0.2, 0.5, 0.6, 0.85, 0.7), "iterative weaker than single-step", "under cw_linf > 20.0 % under apgd"),
    ((0.9, 0.3, 0.2, 0.1, 0.85, 0.7), "transfer stronger than white-box",
     "under di_mi_fgsm < 20.0 % under the best white-box attack (cw_linf)"),
    ((0.9, 0.3, 0.2, 0.6, 0.55, 0.7), "attack weaker than random noise", "under di_mi_fgsm > 55.0 % under gauss"),
])
def test_roles_come_from_metadata_not_from_names(cells: tuple[float, ...], check: str, detail: str) -> None:
    """Attacks named unlike the NIPS 2017 samples are checked by their role; without roles, by nothing."""
    matrix = _matrix(8, MODERN, d=cells)
    found = sanity.flags([], [matrix], [], roles=MODERN_ROLES)
    assert [f.check for f in found] == [check] and detail in found[0].detail
    assert sanity.flags([], [matrix], []) == []
    assert MODERN_ROLES.unchecked(MODERN[1:]) == ["uap"]


def test_targeted_attacks_are_compared_on_hits_only() -> None:
    """A targeted white-box attack that leaves accuracy high is no "weaker than noise" flag: it aims elsewhere."""
    accuracy = [_matrix(8, COLUMNS + ("iter_target",), d=(0.9, 0.5, 0.2, 0.6, 0.85, 0.88))]
    hits = [_matrix(8, ("step_target", "iter_target"), d=(0.1, 0.6))]
    assert sanity.flags([], accuracy, hits, roles=ROLES) == []


def test_roles_are_read_from_the_manifest() -> None:
    manifest = {"submissions": [
        {"name": "cw_linf", "type": "attack", "role": "white_box", "iterates": "apgd"},
        {"name": "apgd", "type": "attack", "role": "white_box"},
        {"name": "old", "type": "attack"},
        {"name": "bucket", "type": "defense"}]}
    roles = sanity.Roles.from_manifest(manifest)
    assert roles == sanity.Roles(role={"cw_linf": "white_box", "apgd": "white_box"}, iterates={"cw_linf": "apgd"})
    assert roles.unchecked(["cw_linf", "apgd", "old"]) == ["old"]
    assert sanity.Roles.from_manifest({}) == sanity.Roles()


def test_a_report_checks_attacks_by_their_metadata_roles_and_lists_those_without_one(tmp_path: Path) -> None:
    """cw_linf (white-box, changes nothing) and di_mi_fgsm (transfer, fools the defense) are compared; apgd
    declares no role and is listed as not checked."""
    import json

    from tiny_world import BUCKET_DEFENSE, NOOP, PLUS, write_dataset, write_submission

    data = write_dataset(tmp_path / "data", [40, 90, 140])
    attacks = tmp_path / "attacks"
    for name, body, role in (("cw_linf", NOOP, "white_box"), ("di_mi_fgsm", PLUS, "transfer"), ("apgd", NOOP, "")):
        folder = write_submission(attacks, name, "attack", body)
        if role:
            metadata = json.loads((folder / "metadata.json").read_text())
            (folder / "metadata.json").write_text(json.dumps({**metadata, "role": role}))
    write_submission(tmp_path / "defenses", "bucket", "defense", BUCKET_DEFENSE)
    assert main(["run", "--input_dir", str(data), "--attacks_dir", str(attacks), "--defenses_dir",
                 str(tmp_path / "defenses"), "--output_dir", str(tmp_path / "results"), "--max_epsilon", "16",
                 "--min_seconds", "20", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "results" / "manifest.json").read_text())
    assert {s["name"]: s.get("role") for s in manifest["submissions"]} == {
        "cw_linf": "white_box", "di_mi_fgsm": "transfer", "apgd": None, "bucket": None}
    page = (tmp_path / "results" / "report" / "index.html").read_text(encoding="utf-8")
    assert ("<td>transfer stronger than white-box</td><td>16</td><td>bucket</td><td>accuracy 0.0 % under di_mi_fgsm "
            "&lt; 100.0 % under the best white-box attack (cw_linf)</td>") in page
    assert "other attacks): apgd.</p>" in page
