"""Start-up cost of the sample submissions: a CIFAR-10 submission imports only what it calls, loads each weights
file once and computes nothing at import time (issue 14: every launch pays its imports, ~220 launches per run).

Each check runs in a fresh interpreter, because the test process itself has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Modules no CIFAR-10 sample submission calls: torchvision (ImageNet wrappers only; it pulls in torch._dynamo,
#: ~1 s), scikit-image (the ROF / NL-means filters), scikit-learn and SciPy (the PRN detector), matplotlib.
HEAVY = ("torchvision", "torch._dynamo", "skimage", "sklearn", "scipy", "matplotlib")

#: What submissions import first: the SDK, the zoo and the wrappers of every sample family.
ENTRY_MODULES = ("submission_kit.sdk", "submission_kit.zoo", "submission_kit.attack_methods",
                 "submission_kit.attack_methods.submission", "submission_kit.attack_methods.gradient",
                 "submission_kit.attack_methods.universal", "submission_kit.defense_blocks.classify",
                 "submission_kit.defense_blocks.denoise", "submission_kit.defense_blocks.filters",
                 "submission_kit.defense_blocks.vdef", "submission_kit.hgd.defense", "submission_kit.prn.defense",
                 "submission_kit.feature_denoising.defense")

#: Sample folders that call none of :data:`HEAVY` (the ROF / NL-means defenses call scikit-image, ``prn`` calls
#: its scikit-learn SVM on SciPy DCT features).
LIGHT_SAMPLES = ("attacks/fgsm", "attacks/transfer", "attacks/iter_target", "attacks/uap", "attacks/noop",
                 "defenses/base", "defenses/jpeg", "defenses/hgd_lgd", "defenses/prn_always",
                 "defenses/fd_nonlocal", "defenses/adv_baseline")


def _python(code: str, tmp_path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                               "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_submission_library_loads_nothing_heavy_and_no_weights(tmp_path: Path) -> None:
    code = f"""
import json, sys, torch
def no_loading_at_import(*args, **kwargs):
    raise AssertionError(f"torch.load{{args[:1]}} at import time")
torch.load = no_loading_at_import
for name in {ENTRY_MODULES!r}:
    __import__(name)
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    assert _python(code, tmp_path) == []


def test_a_zoo_imagenet_name_still_imports_on_first_use(tmp_path: Path) -> None:
    code = """
import json, sys
from submission_kit import zoo
before = "torchvision" in sys.modules
mean = zoo.IMAGENET_MEAN
print(json.dumps([before, "torchvision" in sys.modules, list(mean), hasattr(zoo, "load_torchvision")]))
"""
    assert _python(code, tmp_path) == [False, True, [0.485, 0.456, 0.406], True]


def test_sample_submissions_import_only_what_they_call_and_load_each_file_once(tmp_path: Path) -> None:
    """Run light sample folders on 4 sample images in one interpreter; record imports and torch.load calls."""
    images = tmp_path / "in"
    images.mkdir()
    for path in sorted((ROOT / "sample_data").glob("*.png"))[:4]:
        (images / path.name).write_bytes(path.read_bytes())
    (images / "target_class.csv").write_text("".join(f"{p.name},3\n" for p in sorted(images.glob("*.png"))))
    code = f"""
import collections, gc, json, os, runpy, sys, torch
real_load = torch.load
loads = collections.Counter()
def counting_load(f, *args, **kwargs):
    loads[str(f)] += 1
    return real_load(f, *args, **kwargs)
torch.load = counting_load
report = {{}}
for folder in {LIGHT_SAMPLES!r}:
    loads.clear()
    path = os.path.join({str(ROOT)!r}, folder)
    script = next(n for n in ("attack.py", "defense.py", "attack_noop.py") if os.path.exists(os.path.join(path, n)))
    out = os.path.join({str(tmp_path)!r}, "out", folder)
    os.makedirs(out)
    args = [out, "16"] if folder.startswith("attacks/") else [os.path.join(out, "result.csv")]
    sys.argv = [script, {str(images)!r}, *args]
    sys.path.insert(0, path)
    runpy.run_path(os.path.join(path, script), run_name="__main__")
    sys.path.remove(path)
    produced = len(os.listdir(out)) if folder.startswith("attacks/") else len(open(args[0]).read().split())
    report[folder] = [produced, max(loads.values(), default=0), gc.get_freeze_count()]
    gc.unfreeze()
print(json.dumps({{"heavy": sorted(m for m in {HEAVY!r} if m in sys.modules), "runs": report}}))
"""
    result = _python(code, tmp_path)
    assert result["heavy"] == []
    for folder, (produced, most_loads_of_one_file, frozen) in result["runs"].items():
        assert produced == 4, folder  # it ran: 4 images or 4 CSV rows
        assert most_loads_of_one_file <= 1, f"{folder} loaded a weights file {most_loads_of_one_file} times"
        if folder not in ("attacks/noop",):  # torch users skip the collection of torch's objects at exit
            assert frozen > 10_000, f"{folder} did not call sdk.freeze_startup_objects()"
