"""Bundles: what ``python -m swarm.queen`` runs, found through --agents or the entry point."""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points

import pytest

from swarm.errors import ConfigError
from swarm.service.bundle import ENTRY_POINT_GROUP, Bundle, load_bundle
from tests.service.agents import EchoAgent


def test_the_default_is_the_installed_entry_point() -> None:
    (ep,) = entry_points(group=ENTRY_POINT_GROUP, name="default")
    assert ep.value == "agents.app:bundle"
    bundle = load_bundle(None)
    assert bundle.name == "tge" and bundle.job is not None
    assert len({a.role for a in bundle.make_agents()}) == 5
    parser = argparse.ArgumentParser()
    assert bundle.add_arguments is not None
    bundle.add_arguments(parser)  # the stock job's options mount on the Queen's parser


def test_agents_specs_of_every_shape() -> None:
    listed = load_bundle("tests.service.agents:make_agents")
    assert [a.role for a in listed.make_agents()] == ["echo", "hold", "boom"]
    assert [a.role for a in listed.make_agents()] == ["echo", "hold", "boom"]  # fresh again
    single = load_bundle("tests.service.agents:EchoAgent")
    assert isinstance(single.make_agents()[0], EchoAgent) and single.job is None
    bundle = load_bundle("agents.app:bundle")
    assert isinstance(bundle, Bundle) and bundle.job is not None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module:x", "cannot import agents module 'no_such_module'"),
        ("tests.service.agents:nothing", "has no attribute 'nothing'"),
        ("tests.service.agents:Echo", "neither a Bundle nor a callable returning agents"),
    ],
)
def test_bad_specs_are_config_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        b = load_bundle(spec)
        b.make_agents()


def test_a_factory_of_no_agents_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="non-empty list of Agent instances"):
        Bundle(name="empty", agents=list).make_agents()
