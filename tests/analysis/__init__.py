"""Tests of src/analysis/."""
