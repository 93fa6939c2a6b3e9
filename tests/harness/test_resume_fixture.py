"""A results folder made by an earlier harness (commit 4fe88fa, ``tests/fixtures/results_4fe88fa``) resumes: under
the same conditions nothing reruns and every CSV comes out byte for byte as that harness wrote it.

"The same conditions" include the environment the runs could use (the submission library's content, Python and
package versions: :class:`harness.library.Fingerprint`), which later commits change; the test gives the harness the
fingerprint recorded in the fixture's manifest, as a machine with 4fe88fa's library and packages would compute it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.competition import CompetitionConfig, run_competition
from harness.library import Fingerprint, fingerprint
from harness.results_folder import ResultsFolder
from machine import needs_bwrap

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results_4fe88fa"


@needs_bwrap
@pytest.mark.parametrize("migrated", [False, True], ids=["as-written", "migrated"])
def test_a_results_folder_of_4fe88fa_resumes_with_zero_reruns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              migrated: bool) -> None:
    world = tmp_path / "world"
    shutil.copytree(FIXTURE, world)
    if migrated:  # its store moved in place to the sharded layout (harness.record_store.RecordStore.migrate)
        assert ResultsFolder(world / "results").store().migrate()
    recorded = json.loads((world / "results" / "manifest.json").read_text())["environment"]
    order = [name for name, _ in fingerprint().packages]  # the manifest lists them sorted; the key takes them so
    then = Fingerprint(library=recorded["library"], python=recorded["python"],
                       packages=tuple((name, recorded["packages"][name]) for name in order))
    assert then.key == recorded["key"], "the fingerprint's key formula changed: stored units would all rerun"
    monkeypatch.setattr("harness.execution.fingerprint", lambda *args, **kwargs: then)
    (world / "results" / "secret.key").chmod(0o600)  # git keeps no modes but the executable bit
    before = {path.name: path.read_bytes() for path in sorted((world / "results").glob("*.csv"))}
    assert {"leaderboard.csv", "per_image.csv", "accuracy_matrix.csv", "runs.csv"} <= before.keys()
    config = CompetitionConfig(input_dir=world / "data", attacks_dirs=(world / "attacks", world / "targeted"),
                               defenses_dirs=(world / "defenses",), output_dir=world / "results", epsilons=(4, 16),
                               jobs=2)  # what the fixture's command line gave, the rest its defaults
    result = run_competition(config, echo=lambda _: None)
    assert result.outcome.executed == {"attack": 0, "defense": 0}
    assert result.outcome.reused == {"attack": 6, "defense": 10}
    manifest = json.loads((world / "results" / "manifest.json").read_text())
    assert manifest["executed_units"] == {"attack": 0, "defense": 0}
    after = {path.name: path.read_bytes() for path in sorted((world / "results").glob("*.csv"))}
    assert after.keys() == before.keys()
    changed = [name for name in before if after[name] != before[name]]
    assert not changed, f"CSVs differ from the ones 4fe88fa wrote: {changed}"
