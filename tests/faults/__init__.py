"""Fault injection against real Tansu, redis-server and worker processes (issue 5).

``harness.py`` is the command line that runs the scenarios (``scenarios.py``, ``group.py``)
and compares each outcome with an offline reference (``reference.py``); ``test_faults.py``
runs each at small scale in the normal suite; ``scripts/faults`` runs the soak.
"""
