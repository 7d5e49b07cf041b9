"""The end-to-end benchmark (``benchmarks/run.py``), one job per module.

``config`` (settings), ``procs`` and ``cpu`` (processes started, CPU sampled), ``workload``,
``bench`` (the run's state, launching and scraping workers), the phases ``ceiling``,
``workers``, ``memory``, ``latency`` and ``profile``, ``phases`` (their order), ``targets``
(the verdicts), ``report`` (tables and JSON) and ``cli``.
"""
