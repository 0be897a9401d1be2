"""Tests of src/ml/."""
