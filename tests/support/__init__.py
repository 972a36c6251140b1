"""Test support shared by the suites: real outside services started for tests (Keystone, ...)."""
