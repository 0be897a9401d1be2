"""Tests of src/sweep/."""
