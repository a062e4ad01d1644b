"""Benchmarks: our patterns against the physical ceilings and Debezium, on the same data, in one run.

Run ``.venv/bin/python -m bench`` (``--rows 100000`` for a quick pass).  Lives
outside the test suite: performance is measured and printed here, never
asserted in timed tests.
"""
