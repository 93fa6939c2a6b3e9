"""A small competition with hostile submissions, run by the real CLI, for the report tests."""

from __future__ import annotations

from pathlib import Path

from harness.cli import main
from tiny_world import BUCKET_DEFENSE, CONSTANT_DEFENSE, NOOP, PLUS, TOWARD_TARGET, write_dataset, write_submission

#: Strings a participant controls that must reach the page as text, never as markup.
HOSTILE_LOG_LINES = ("<script>alert(1)</script>.png", "<img src=x onerror=alert(2)>")
HOSTILE_LABEL = "<b>7</b>"
#: A name the naming rules let through that is awkward in HTML and URLs.
ODD_NAME = "x.-_y"

HOSTILE_ATTACK = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / "<img src=x onerror=alert(2)>.png").write_bytes(b"not a png")
print("<script>alert(1)</script>.png", file=sys.stderr)
print("<img src=x onerror=alert(2)>", file=sys.stderr)
sys.exit(1)
"""
HOSTILE_DEFENSE = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
with open(out, "w") as f:
    f.write("<script>alert(1)</script>.png,3\\n")
    for i, p in enumerate(sorted(inp.glob("*.png"))):
        label = "<b>7</b>" if i == 0 else str(int(np.asarray(Image.open(p)).mean()) // 50)
        f.write(f"{p.name},{label}\\n")
"""


def build_world(root: Path, *, results: Path | None = None, seed: int = 0) -> Path:
    """Write data and submissions under ``root``, run the CLI (ε 8 and 16) and return the results folder."""
    data = root / "data"
    if not data.exists():
        write_dataset(data, [10, 45, 90, 120, 180, 240])
        attacks, defenses = root / "attacks", root / "defenses"
        write_submission(attacks, "fgsm", "attack", PLUS)
        write_submission(attacks, "pgd", "attack", NOOP)
        write_submission(attacks, "iter_target", "targeted_attack", TOWARD_TARGET)
        write_submission(attacks, "broken", "attack", HOSTILE_ATTACK)
        write_submission(defenses, "bucket", "defense", BUCKET_DEFENSE)
        write_submission(defenses, "constant", "defense", CONSTANT_DEFENSE)
        write_submission(defenses, ODD_NAME, "defense", HOSTILE_DEFENSE)
    results = results or root / "results"
    status = main(["run", "--input_dir", str(data), "--attacks_dir", str(root / "attacks"), "--defenses_dir",
                   str(root / "defenses"), "--output_dir", str(results), "--max_epsilon", "8", "16",
                   "--seed", str(seed), "--min_seconds", "20", "--quiet"])
    assert status == 0
    return results
