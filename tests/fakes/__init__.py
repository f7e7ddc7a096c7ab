"""In-memory fakes of the ports, for service tests; each passes its port's contract suite in ``tests/contract``.

Faults are played through the fakes (``tests.fakes.faults``: ``fail_next(method, error)`` on any fake),
never by patching a real adapter.
"""
