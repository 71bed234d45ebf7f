"""Tests written against surviving mutants of the backends tree (docs/testing.md, "Mutation testing").

Each test checks values the unmutated code must produce; the docstring names the mutants it kills.
"""
