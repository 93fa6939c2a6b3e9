"""research.cli: the parent parser of the research commands, and the typed training configs they fill in."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from research import cli

#: The research package (found from the module, so this test may live in any tests/ subfolder).
RESEARCH = Path(cli.__file__).resolve().parent


def _child(**options: cli.Option) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="child", parents=[cli.parent(**options)])
    parser.add_argument("--own", type=int, default=7)
    return parser


def test_parent_gives_each_shared_option_one_type_and_the_command_its_default() -> None:
    parser = _child(seed=cli.Option(default=1), out=cli.Option(default=Path("a.md")), threads=cli.Option(default=2),
                    images=cli.Option(default=1000))
    args = parser.parse_args([])
    assert (args.seed, args.out, args.threads, args.images, args.own) == (1, Path("a.md"), 2, 1000, 7)
    args = parser.parse_args(["--seed", "5", "--out", "b/c.json", "--threads", "1", "--images", "30", "--own", "3"])
    assert (args.seed, args.out, args.threads, args.images, args.own) == (5, Path("b/c.json"), 1, 30, 3)
    assert isinstance(args.out, Path)
    with pytest.raises(SystemExit):
        parser.parse_args(["--seed", "x"])


def test_options_a_command_does_not_take_are_refused_not_ignored() -> None:
    parser = _child(seed=cli.Option(default=0))
    for flag in ("--out", "--threads", "--images"):
        with pytest.raises(SystemExit):
            parser.parse_args([flag, "1"])
    assert vars(parser.parse_args([])) == {"seed": 0, "own": 7}


def test_each_call_is_a_fresh_parent_so_commands_keep_their_own_defaults() -> None:
    first = _child(seed=cli.Option(default=0), threads=cli.Option(default=2))
    second = _child(seed=cli.Option(default=9), threads=cli.Option())
    first.set_defaults(seed=4)  # a child changing a default must not reach the other command
    assert (first.parse_args([]).seed, first.parse_args([]).threads) == (4, 2)
    assert (second.parse_args([]).seed, second.parse_args([]).threads) == (9, None)


def test_required_and_repeated_out() -> None:
    required = _child(out=cli.Option(required=True))
    with pytest.raises(SystemExit):
        required.parse_args([])
    assert required.parse_args(["--out", "x.npy"]).out == Path("x.npy")
    repeated = _child(out=cli.Option(required=True, repeat=True))
    assert repeated.parse_args(["--out", "a.npy", "--out", "b/a.npy"]).out == [Path("a.npy"), Path("b/a.npy")]
    with pytest.raises(ValueError, match="only --out may be repeated"):
        cli.parent(seed=cli.Option(repeat=True))


def test_help_shows_the_commands_wording_or_the_shared_one() -> None:
    text = _child(seed=cli.Option(default=0, help="seeds the subset"), threads=cli.Option(default=2)).format_help()
    assert "seeds the subset" in text and cli.HELP["threads"] in text


def test_no_research_command_defines_a_shared_option_itself() -> None:
    """Every --seed/--out/--threads/--images of a research command comes from the parent."""
    own = re.compile(r"""add_argument\(\s*["']--(seed|out|threads|images)["']""")
    offenders = [f"{path.relative_to(RESEARCH)}: --{match.group(1)}"
                 for path in sorted(RESEARCH.rglob("*.py"))
                 for match in own.finditer(path.read_text())]
    assert not offenders, offenders
    users = [path for path in RESEARCH.rglob("*.py") if "parents=[shared]" in path.read_text()]
    assert len(users) >= 18, sorted(str(p) for p in users)


# --- the typed configs ------------------------------------------------------------------------------------------


def _configs() -> list[tuple[type, dict]]:
    from research.feature_denoising import train as fd_train
    from research.hgd import data as hgd_data
    from research.hgd import train as hgd_train
    from research.prn import make_pool
    from research.prn import train as prn_train
    from research.zoo import train as zoo_train

    return [(zoo_train.TrainConfig, {"epochs": 1, "seed": 0}), (fd_train.TrainConfig, {"epochs": 1, "seed": 0}),
            (hgd_train.DenoiserTrainConfig, {"guide": "lgd", "epochs": 1}), (prn_train.TrainConfig, {}),
            (hgd_data.Recipe, {}),
            (make_pool.PoolSpec, {"model": "m", "norm": "inf", "role": "train", "xi": 0.04, "subset_size": 4})]


def test_configs_are_frozen_and_keyword_only() -> None:
    for kind, required in _configs():
        config = kind(**required)
        first = dataclasses.fields(kind)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, first, getattr(config, first))
        with pytest.raises(TypeError):
            kind(*required.values()) if required else kind(32)
        assert dataclasses.replace(config) == config


def test_configs_keep_the_recipes_defaults() -> None:
    """The defaults the committed weights were trained with (and the command lines still pass)."""
    from research.feature_denoising import train as fd_train
    from research.hgd import train as hgd_train
    from research.zoo import train as zoo_train

    zoo = zoo_train.TrainConfig(epochs=15, seed=0)
    assert (zoo.batch_size, zoo.max_lr, zoo.weight_decay, zoo.label_smoothing, zoo.log_every) == (
        256, 0.2, 5e-4, 0.1, 50)
    fd = fd_train.TrainConfig(epochs=15, seed=0)
    assert (fd.attack, fd.pgd_steps, fd.max_minutes, fd.steps, fd.stop_after, fd.eps, fd.batch_size, fd.max_lr,
            fd.weight_decay, fd.label_smoothing, fd.clean_start_prob, fd.train_images, fd.monitor_images,
            fd.monitor_pgd_images, fd.calibration_steps, fd.log_every) == (
        "fgsm_rs", 3, None, None, None, 8 / 255, 256, 0.2, 5e-4, 0.1, 0.2, None, 1000, 200, 3, 50)
    hgd = hgd_train.DenoiserTrainConfig(guide="lgd", epochs=6)
    assert (hgd.decay_epoch, hgd.lr, hgd.lr_final, hgd.batch_size, hgd.seed, hgd.minutes_budget, hgd.log_every) == (
        None, 1e-3, 1e-4, 64, 0, None, 50)


def test_configs_refuse_what_training_would_refuse() -> None:
    from research.feature_denoising import train as fd_train
    from research.hgd import train as hgd_train

    with pytest.raises(ValueError, match="unknown training attack 'cw'"):
        fd_train.TrainConfig(epochs=1, seed=0, attack="cw")
    with pytest.raises(ValueError, match="stop_after=3 needs steps"):
        fd_train.TrainConfig(epochs=1, seed=0, stop_after=3)
    with pytest.raises(ValueError, match="stop_after=6 needs steps"):
        fd_train.TrainConfig(epochs=1, seed=0, steps=5, stop_after=6)
    assert fd_train.TrainConfig(epochs=1, seed=0, steps=5, stop_after=5).stop_after == 5
    with pytest.raises(ValueError, match="unknown guide 'xgd'"):
        hgd_train.DenoiserTrainConfig(guide="xgd", epochs=1)
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        hgd_train.DenoiserTrainConfig(guide="pgd", epochs=0)
