"""Conformance suite: golden vectors and property tests that check a pruning backend against refprune."""
