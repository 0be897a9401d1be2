"""Tests; helpers shared between modules live in conftest.py."""
