"""Tests of src/tracking/."""
