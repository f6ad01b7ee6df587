"""Shared fixtures: tiny models and data so unit and conformance tests run in seconds, offline."""

from __future__ import annotations

import os

import pytest
import torch

from benchmark.api import UnlearnRequest
from benchmark.conformance import tiny_model as make_tiny_model
from benchmark.conformance import tiny_request as make_tiny_request
from benchmark.models.class_unet import ClassConditionalUNet

# Pin torch's CPU threads (a background job on the same cores otherwise makes tests up to 100x slower).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes caches into a per-session temp folder, never into the user's home."""
    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def tiny_model() -> ClassConditionalUNet:
    return make_tiny_model()


@pytest.fixture
def tiny_request() -> UnlearnRequest:
    return make_tiny_request(max_steps=3)


__all__ = ["make_tiny_model"]
