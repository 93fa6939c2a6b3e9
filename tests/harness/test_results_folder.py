"""harness.results_folder: the one owner of the results folder's paths and file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.manifest import Manifest, ManifestError
from harness.results_folder import ResultsFolder


def test_paths_and_log_names(tmp_path: Path) -> None:
    folder = ResultsFolder(tmp_path)
    assert folder.manifest == tmp_path / "manifest.json" and folder.secret == tmp_path / "secret.key"
    assert folder.file("leaderboard.csv") == tmp_path / "leaderboard.csv"
    assert (folder.logs, folder.store_root, folder.report, folder.local_scratch) == (
        tmp_path / "logs", tmp_path / "store", tmp_path / "report", tmp_path / "tmp")
    assert folder.discarded_by_force() == (tmp_path / "store", tmp_path / "logs")
    # the log names runs.csv and stored records hold (a resumed folder's records keep pointing at their logs),
    # sharded by the key's first two hex digits
    assert ResultsFolder.attack_log("fgsm", 16, "0123456789abcdef") == "logs/attacks/fgsm/eps16/01/0123456789ab.log"
    assert ResultsFolder.defense_log("jpeg", "0123456789abcdef") == "logs/defenses/jpeg/01/0123456789ab.log"
    assert folder.path(ResultsFolder.CLUSTER_LOG) == tmp_path / "logs" / "cluster.log"
    assert not folder.store().holds_records()


def test_missing_tables_and_manifest(tmp_path: Path) -> None:
    folder = ResultsFolder(tmp_path)
    assert folder.missing_tables() == ["per_image.parquet", "attack_images.csv", "runs.csv", "manifest.json"]
    assert folder.read_manifest() is None
    folder.write_manifest(Manifest(seed=7, epsilons=(16,)))
    assert folder.missing_tables() == ["per_image.parquet", "attack_images.csv", "runs.csv"]
    (tmp_path / "per_image.csv").write_text("")  # a folder written before Parquet holds the CSV only
    assert folder.missing_tables() == ["attack_images.csv", "runs.csv"]
    assert folder.read_manifest() == Manifest(seed=7, epsilons=(16,))
    assert folder.manifest.read_text().startswith('{\n "batch_size": null,\n')  # sorted keys, indent 1
    for text, word in (("{", "not JSON"), ("[]", "JSON object"), ('{"seed": "7"}', "seed")):
        folder.manifest.write_text(text)
        with pytest.raises(ManifestError, match=word):
            folder.read_manifest()
