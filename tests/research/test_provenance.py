"""research.provenance: the environment fields written next to every stored result."""

import json
import platform

import torch

from research import provenance


def test_environment_records_device_threads_and_versions():
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        env = provenance.environment(torch.device("cpu"))
    finally:
        torch.set_num_threads(previous)
    assert env == {"device": "cpu", "threads": 1, "torch": torch.__version__,
                   "python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    assert json.loads(json.dumps(env)) == env  # stored as JSON as it is


def test_environment_names_the_cuda_device_as_given():
    assert provenance.environment("cuda:1")["device"] == "cuda:1"
