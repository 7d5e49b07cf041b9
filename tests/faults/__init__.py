"""Fault injection against real Tansu, redis-server and worker processes (issue 5).

``harness.py`` runs the scenarios and compares with an offline reference; ``test_faults.py``
runs each at small scale in the normal suite; ``scripts/faults`` runs the soak.
"""
