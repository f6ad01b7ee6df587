"""Shared fixtures: tiny models and data so unit and conformance tests run in seconds, offline."""

from __future__ import annotations

import pytest
import torch

from benchmark.api import LabeledImages, UnlearnRequest
from benchmark.data.mnist import mnist_splits
from benchmark.models.class_unet import ClassConditionalUNet, tiny_unet_config


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes caches into a per-session temp folder, never into the user's home."""
    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def make_tiny_model(seed: int = 0) -> ClassConditionalUNet:
    return ClassConditionalUNet.from_config(tiny_unet_config((8, 16), num_classes=10), seed=seed)


@pytest.fixture
def tiny_model() -> ClassConditionalUNet:
    return make_tiny_model()


def subset(data: LabeledImages, n: int) -> LabeledImages:
    return LabeledImages(data.x[:n], data.y[:n])


@pytest.fixture
def tiny_request() -> UnlearnRequest:
    forget, retain = mnist_splits().forget_retain(3)
    gen = torch.Generator().manual_seed(0)
    keep = torch.randperm(len(retain), generator=gen)[:96]
    return UnlearnRequest(forget=subset(forget, 32), retain=LabeledImages(retain.x[keep], retain.y[keep]),
                          forget_target=3, remap_targets=[c for c in range(10) if c != 3], num_classes=10,
                          seed=0, max_steps=3)
