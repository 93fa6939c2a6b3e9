"""submission_kit.defense_blocks.sample_defenses: the one source of the sample defenses' transformation options."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest
import torch

from submission_kit.defense_blocks import denoise, sample_defenses

ROOT = Path(__file__).resolve().parents[2]
X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("name", "reference"), [
    ("tv_denoise", partial(denoise.tv_denoise, weight=10.0)),  # Lee et al. 2018: the "weight of 10"
    ("nl_means", partial(denoise.nl_means, patch_size=2, patch_distance=3, h=0.05, fast_mode=True)),
    ("jpeg", partial(denoise.jpeg, quality=75, subsampling="4:2:0")),
])
def test_plain_transform_has_the_papers_options(name, reference):
    assert torch.equal(sample_defenses.transform(name)(X), reference(X))


def test_vdef_transform_adds_the_stored_offset_before_the_denoiser(tmp_path):
    offset = torch.full((3, 32, 32), 0.25)
    import numpy as np
    np.save(tmp_path / "v_def.npy", offset.numpy())
    composed = sample_defenses.transform("jpeg_vdef", v_def=tmp_path / "v_def.npy")
    assert torch.equal(composed(X), sample_defenses.transform("jpeg")((X + 0.25).clamp(0, 1)))


def test_wrap_applies_to_the_denoiser_inside_the_offset(tmp_path):
    import numpy as np
    np.save(tmp_path / "v_def.npy", torch.full((3, 32, 32), 0.5).numpy())
    seen = []

    def wrap(transform):
        def wrapped(x):
            seen.append(x.clone())
            return transform(x)
        return wrapped

    sample_defenses.transform("tv_denoise_vdef", v_def=tmp_path / "v_def.npy", wrap=wrap)(X)
    assert torch.equal(seen[0], (X + 0.5).clamp(0, 1))  # the wrapped denoiser receives the offset images


@pytest.mark.parametrize(("name", "options", "message"), [
    ("median", {}, "unknown sample defense 'median'; use one of jpeg, nl_means, tv_denoise"),
    ("tv_denoise_vdef", {}, "tv_denoise_vdef: pass v_def=<path of v_def.npy>"),
    ("tv_denoise", {"v_def": "v.npy"}, "tv_denoise takes no v_def (did you mean tv_denoise_vdef?)"),
])
def test_bad_names_and_options_say_what_to_fix(name, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sample_defenses.transform(name, **options)


def test_input_is_not_modified():
    before = X.clone()
    sample_defenses.transform("nl_means")(X)
    assert torch.equal(X, before)
