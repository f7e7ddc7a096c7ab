"""Contract suites: one per port, every test run against the in-memory fake and the real adapter (on moto).

A fake that passes its port's suite can stand in for the adapter in service tests.
"""
