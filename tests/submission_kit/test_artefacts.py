"""One registry of every trained artefact: names, weights, commands, provenance, one override, one message."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from submission_kit import artefacts
from submission_kit.hgd import registry as hgd_registry
from submission_kit.zoo import registry as zoo_registry

ROOT = Path(__file__).resolve().parents[2]


def _committed_weights() -> set[Path]:
    listed = subprocess.run(["git", "ls-files", "submission_kit"], cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0, f"the tests run from a git checkout of the project: {listed.stderr}"
    return {(ROOT / line).resolve() for line in listed.stdout.split()
            if "/weights/" in line and line.endswith((".pt", ".joblib"))}


def test_every_committed_weights_file_is_a_registered_available_artefact():
    registered = artefacts.artefacts()
    by_path = {a.weights.resolve(): a for a in registered.values()}
    committed = _committed_weights()
    assert len(committed) >= 20
    assert committed <= set(by_path), sorted(str(p) for p in committed - set(by_path))
    for path in committed:
        artefact = by_path[path]
        assert artefact.available
        record = artefact.provenance()
        assert record is not None, f"{artefact.name}: no provenance record at {artefact.record}"
    assert {a.family for a in registered.values()} == set(artefacts.FAMILIES)
    for name, artefact in registered.items():
        assert name == artefact.name and name.startswith(artefact.family + "/")
        assert artefact.command.startswith("python -m research."), artefact.command
        assert artefact.description


def test_unknown_name_suggests_the_closest_and_is_not_quoted():
    with pytest.raises(artefacts.UnknownArtefactError) as caught:
        artefacts.get("zoo/vgg6_w4")
    message = str(caught.value)
    assert message.startswith("unknown artefact 'zoo/vgg6_w4'. Did you mean 'zoo/vgg6_w48'")
    assert isinstance(caught.value, KeyError)
    # the families share the message
    with pytest.raises(KeyError, match=r"unknown model 'vgg6_w4'\. Did you mean 'vgg6_w48'"):
        zoo_registry.entry("vgg6_w4")


def test_one_environment_override_for_every_family(tmp_path, monkeypatch):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "prn").mkdir()
    monkeypatch.setenv(artefacts.WEIGHTS_ENV, str(tmp_path))
    registered = artefacts.artefacts()
    assert registered["zoo/vgg6_w48"].weights == tmp_path / "zoo" / "vgg6_w48.pt"
    assert registered["prn/vgg6_w48/prn_inf"].weights == tmp_path / "prn" / "vgg6_w48" / "prn_inf.pt"
    assert not registered["zoo/vgg6_w48"].available
    # a family without a subfolder keeps its committed weights
    assert registered["hgd/dunet_lgd"].weights == hgd_registry.WEIGHTS_DIR / "dunet_lgd.pt"
    assert hgd_registry.WEIGHTS_ENV == artefacts.WEIGHTS_ENV
    with pytest.raises(zoo_registry.WeightsNotFoundError, match="python -m research.zoo.train --model vgg6_w48"):
        registered["zoo/vgg6_w48"].load("cpu")
    with pytest.raises(ValueError, match="unknown artefact family 'zo'"):
        artefacts.weights_dir("zo", tmp_path)


def test_committed_hgd_folders_are_what_make_defense_writes(tmp_path):
    from research.hgd import make_defense

    for guide in make_defense.GUIDE_TEXT:
        made = make_defense.write_folder(guide, tmp_path)
        committed = ROOT / "defenses" / make_defense.folder_name(guide)
        assert sorted(p.name for p in made.iterdir()) == sorted(p.name for p in committed.iterdir())
        for path in made.iterdir():
            assert (committed / path.name).read_bytes() == path.read_bytes(), f"{committed.name}/{path.name}"
            assert (committed / path.name).stat().st_mode & 0o111 == path.stat().st_mode & 0o111


def test_listing_names_every_artefact_with_presence_and_command(capsys):
    registered = artefacts.artefacts()
    assert artefacts.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(registered)
    for line, artefact in zip(lines, registered.values()):
        assert line.split()[1] == ("present" if artefact.available else "MISSING")
        assert line.endswith(artefact.command)
    assert artefacts.main(["--bogus"]) == 2
