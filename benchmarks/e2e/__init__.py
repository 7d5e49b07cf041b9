"""The end-to-end benchmark (``benchmarks/run.py``), one job per module.

``config`` (settings), ``procs`` and ``cpu`` (processes started, CPU sampled), ``workload``,
``bench`` (the run's state, launching and scraping workers), the phases ``ceiling``,
``quix``, ``workers``, ``memory``, ``latency`` and ``profile``, ``phases`` (their order),
``verdicts`` (the targets, and the verdict on each), ``report`` (tables and JSON) and ``cli``.
"""
