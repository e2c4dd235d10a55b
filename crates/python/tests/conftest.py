"""Fixtures: a fresh copy of the seed's example application for each test."""

import importlib

import pytest

import example_app


@pytest.fixture
def app():
    """The example module, reloaded: a new BanHammer, clock and empty action logs."""
    return importlib.reload(example_app)
