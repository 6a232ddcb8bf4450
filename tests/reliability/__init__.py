"""Reliability and security tests (a package, so that its conftest and helpers never clash with tests/'s)."""
