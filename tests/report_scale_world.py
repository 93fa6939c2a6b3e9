"""A synthetic results folder at the NIPS 2017 final round's number of submissions, for the report's scale tests.

150 attacks (100 untargeted ``a1…a100`` and 50 targeted ``t1…t50``) × 100 defenses (``d1…d97`` and three awkward
legal names) at ε 8 and 16 on a few 8×8 images: tables written by today's writers
(:func:`harness.report.write_results` over :func:`harness.scoring.score`), the manifest by
:meth:`ResultsFolder.write_manifest`, and the store's attack records, clean-version map and images through
:class:`harness.record_store.RecordStore`, so the gallery has pictures. Predictions are drawn with a seed from
per-defense robustness and per-attack strength (realistic spreads, not constants), with one failing attack at
ε 16 and one defense that leaves an answer out. Swap :func:`write_tables` when the tables' format changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from harness.manifest import DatasetEntry, Manifest, SubmissionEntry
from harness.records import AttackUnitRecord, ImageVerdict, RunRecord
from harness.report import write_results
from harness.results_folder import ResultsFolder
from harness.scoring import score_table
from harness.table import AttackImageRow, PredictionRow, RunRow
from harness.tabulation import table_from_rows
from harness.tracks import Track
from submission_kit import contract

#: Names the naming rules allow that are awkward in HTML, URLs and legends (the last one is 64 characters long).
ODD_DEFENSES = ("x.-_y", "Base-v2.1", "very_long_defense_name_" + "z" * 41)
EPSILONS = (8, 16)
#: The attack whose runs fail at ε 16 (its outputs replaced by the clean images).
FAILING = "a13"
#: The defense that gives no answer for the first image under every attack.
SILENT = "d42"


def names(attacks: int = 100, targeted: int = 50, defenses: int = 100) -> tuple[list[str], list[str], list[str]]:
    """(untargeted, targeted, defense) names, the defenses ending with :data:`ODD_DEFENSES`."""
    plain = [f"d{k}" for k in range(1, defenses - len(ODD_DEFENSES) + 1)]
    return ([f"a{k}" for k in range(1, attacks + 1)], [f"t{k}" for k in range(1, targeted + 1)],
            plain + list(ODD_DEFENSES))


def write_tables(root: Path, *, predictions: list[PredictionRow], attack_images: list[AttackImageRow],
                 runs: list[RunRow], manifest: Manifest) -> None:
    """The tables and manifest of a finished run, as ``run`` writes them today."""
    attacks = manifest.attacks
    table = table_from_rows(predictions, attack_images, runs, defenses=manifest.defenses,
                            attacks=[(name, track.value) for name, track in attacks], epsilons=manifest.epsilons)
    write_results(root, scores=score_table(table, epsilons=list(manifest.epsilons)), table=table,
                  aims=manifest.aims())
    ResultsFolder(root).write_manifest(manifest)


def build_scale_world(root: Path, *, attacks: int = 100, targeted: int = 50, defenses: int = 100, images: int = 6,
                      seed: int = 0) -> Path:
    """Write the results folder under ``root`` (created) and return it; deterministic for a seed."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    untargeted, aimed, defense_names = names(attacks, targeted, defenses)
    image_ids = [f"img{k:03d}" for k in range(images)]
    labels = rng.integers(0, 10, size=images)
    targets = (labels + 1 + rng.integers(0, 9, size=images)) % 10
    robustness = {d: 0.25 + 0.7 * rng.random() for d in defense_names}
    strength = {a: 0.2 + 0.75 * rng.random() for a in (*untargeted, *aimed)}
    clean_accuracy = {d: 0.7 + 0.3 * rng.random() for d in defense_names}

    store = ResultsFolder(root).store()
    clean_pixels = rng.integers(0, 256, size=(images, 8, 8, 3), dtype=np.uint8)

    def put(pixels: np.ndarray) -> str:
        data = contract.encode_png(pixels)
        version = hashlib.sha256(pixels.tobytes()).hexdigest()
        store.put_image(data, version)
        return version

    clean_versions = {image_id: put(clean_pixels[i]) for i, image_id in enumerate(image_ids)}
    store.put_clean_versions("scale-dataset", clean_versions)

    def answer(defense: str, i: int, right: float, hit: float) -> int:
        draw = rng.random()
        if draw < right:
            return int(labels[i])
        if draw < right + hit:
            return int(targets[i])
        return int((labels[i] + 1 + rng.integers(0, 9)) % 10)

    predictions: list[PredictionRow] = []
    attack_images: list[AttackImageRow] = []
    runs: list[RunRow] = []
    for defense in defense_names:
        for i, image_id in enumerate(image_ids):
            predictions.append(PredictionRow(None, "", "clean", defense, image_id, int(labels[i]), int(targets[i]),
                                             answer(defense, i, clean_accuracy[defense], 0.0), ""))
        runs.append(RunRow("defense", defense, None, f"defense-{defense}", images * (1 + 2 * len(strength)), 0,
                           False, 1.0, "", f"logs/defense-{defense}.log"))
    for eps in EPSILONS:
        for attack, track in [*((a, Track.ATTACK) for a in untargeted), *((a, Track.TARGETED_ATTACK) for a in aimed)]:
            failed = attack == FAILING and eps == 16
            batch = f"attack-{attack}-eps{eps}"
            verdicts = []
            for i, image_id in enumerate(image_ids):
                step = rng.integers(-eps, eps + 1, size=clean_pixels[i].shape)
                pixels = clean_pixels[i] if failed else np.clip(clean_pixels[i] + step, 0, 255).astype(np.uint8)
                linf = int(np.abs(pixels.astype(int) - clean_pixels[i]).max())
                problem = "missing output image" if failed else ""
                verdicts.append(ImageVerdict(image_id, put(pixels), problem, 0, 0, linf))
                attack_images.append(AttackImageRow(eps, attack, track.value, image_id, problem, 0, 0, linf))
            store.put_attack_record(AttackUnitRecord(
                key=batch, attack=attack, attack_hash=attack, attack_type=track, epsilon=eps,
                run=RunRecord(exit_code=1 if failed else 0, timed_out=False, seconds=0.5,
                              problem="exit code 1" if failed else "", log=f"logs/{batch}.log"),
                images=tuple(verdicts)))
            runs.append(RunRow(track.value, attack, eps, batch, images, 1 if failed else 0, False, 0.5,
                               "exit code 1" if failed else "", f"logs/{batch}.log"))
            power = 0.0 if failed else strength[attack] * eps / 16
            for defense in defense_names:
                right = clean_accuracy[defense] * (1 - power * (1 - robustness[defense]))
                hit = (1 - right) * 0.6 if track is Track.TARGETED_ATTACK else 0.0
                for i, image_id in enumerate(image_ids):
                    silent = defense == SILENT and i == 0
                    predictions.append(PredictionRow(
                        eps, attack, track.value, defense, image_id, int(labels[i]), int(targets[i]),
                        None if silent else answer(defense, i, right, hit), "no answer" if silent else ""))
    submissions = (*(SubmissionEntry(name=a, track=Track.ATTACK) for a in untargeted),
                   *(SubmissionEntry(name=a, track=Track.TARGETED_ATTACK) for a in aimed),
                   *(SubmissionEntry(name=d, track=Track.DEFENSE) for d in defense_names))
    manifest = Manifest(harness_version="scale-test", seed=seed, epsilons=EPSILONS, batch_size=images,
                        protections={"sandbox": "none", "private_filesystem_and_pids": True, "no_network": True},
                        dataset=DatasetEntry(root="synthetic", content_hash="scale-dataset", images=images,
                                             label_file="labels.csv"),
                        submissions=submissions)
    write_tables(root, predictions=predictions, attack_images=attack_images, runs=runs, manifest=manifest)
    return root
