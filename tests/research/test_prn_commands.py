"""The PRN commands in the order docs/prn.md gives them, with tiny settings, on the real CIFAR-10 data and zoo
model, into temporary folders (skipped without the data set or the target model's weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research.prn import make_pool, metrics, synthetic, train, train_detector
from research.prn.pool import load_train_test
from submission_kit import zoo
from submission_kit.prn import paths

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.usefixtures("cifar10"),
]


def test_commands_in_order(tmp_path: Path) -> None:
    pools, weights = tmp_path / "pools", tmp_path / "weights"
    tiny = ["--subset-size", "4", "--validation-size", "40", "--min-fooling-rate", "0", "--max-cosine", "1",
            "--pools-dir", str(pools)]
    methods = {"sgd": ["--epochs", "1", "--batch-size", "4"], "deepfool": ["--max-iter-uni", "1"]}
    for norm in paths.NORMS:
        for role in paths.ROLES:
            method = "deepfool" if (norm, role) == ("inf", "test") else "sgd"
            manifest = make_pool.main(["--norm", norm, "--role", role, "--count", "1", "--method", method,
                                       *methods[method], *tiny])
            assert len(manifest["candidates"]) == 1 and manifest["candidates"][0]["kept"]
            assert manifest["candidates"][0]["method"] == method
    spec = json.loads(paths.pool_path(zoo.TARGET_MODEL, "2", "train", pools).with_suffix(".json").read_text())["spec"]
    assert 250 < spec["xi_255"] < 350  # 4 % of the mean CIFAR-10 image norm (about 29 on the [0, 1] scale)
    _, _, largest = load_train_test(zoo.TARGET_MODEL, "inf", root=pools)
    assert 0 <= largest <= 1
    for norm in paths.NORMS:
        record = synthetic.main(["--norm", norm, "--count", "3", "--evaluate", "2", "--max-attempts", "256",
                                 "--l2-fraction", "0.5", "--pools-dir", str(pools)])
        assert record["count"] == 3 and len(record["fooling_rates_synthetic"]) == 2
        record = train.main(["--norm", norm, "--images", "32", "--epochs", "1", "--width", "2", "--batch-size", "16",
                             "--pools-dir", str(pools), "--weights-dir", str(weights)])
        assert record["iterations"] == 2 and record["classifier_unchanged"]
        assert paths.prn_path(zoo.TARGET_MODEL, norm, weights).with_suffix(".log").is_file()
        record = train_detector.main(["--norm", norm, "--images", "40", "--pools-dir", str(pools),
                                      "--weights-dir", str(weights)])
        assert 0 <= record["validation_accuracy_real_train_perturbations"] <= 1
    report = tmp_path / "prn.md"
    report.write_text("# PRN\n\n<!-- prn-metrics:start -->\nold\n<!-- prn-metrics:end -->\ntail\n")
    result = metrics.main(["--images", "30", "--pools-dir", str(pools), "--weights-dir", str(weights),
                           "--out", str(report), "--json", str(tmp_path / "metrics.json")])
    assert set(result["table1"]) == {"same/inf", "same/2", "different/inf", "different/2"}
    cell = result["table1"]["same/inf"]
    assert cell["A"]["images"] == 30 and cell["B"]["images"] <= 30 and cell["detector"]
    text = report.read_text()
    assert "old" not in text and text.endswith("tail\n") and "Table 1 layout" in text and "77.0" in text
    assert json.loads((tmp_path / "metrics.json").read_text())["images"] == 30
