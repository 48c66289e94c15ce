"""Tasks register by name: every configured task is found again by the name its runs' statuses
record, without a list kept by hand, and no two tasks share a name."""

from __future__ import annotations

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from benchmarks import tasks
from benchmarks.config import CONF_DIR
from benchmarks.tasks import base

CONFIGS = sorted((CONF_DIR / "task").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_every_configured_task_is_found_by_its_name(config):
    cls = get_class(OmegaConf.load(config)["_target_"])
    assert tasks.lookup(cls.name) is cls
    assert cls.name in tasks.names()


def test_an_unknown_name_finds_no_task():
    assert tasks.lookup("no_such_task") is None


def test_a_task_needs_a_name_of_its_own(monkeypatch):
    tasks.load_builtin()
    monkeypatch.setattr(base, "REGISTRY", dict(base.REGISTRY))

    class Unnamed(base.Task):
        pass

    class Impostor(base.Task):
        name = "gaussian"

    with pytest.raises(TypeError, match="Unnamed needs a non-empty class attribute `name`"):
        base.register(Unnamed)
    with pytest.raises(TypeError, match="is taken by benchmarks.tasks.toy.gaussian.GaussianToy"):
        base.register(Impostor)
    assert base.register(tasks.lookup("gaussian")) is tasks.lookup("gaussian")  # again: no harm
