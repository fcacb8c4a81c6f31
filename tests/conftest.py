"""Shared fixtures: one torch thread (tests run beside other work on 2 cores), a private cache."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path_factory):
    torch.set_num_threads(1)
    monkeypatch.setenv("CPIKAN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
