"""The Dagster-free core of liberation.

The pipeline reads as packages: ``readers`` produce canonical change events
(``events``), ``contract`` validates and serializes them, ``publish`` sends them
to Kafka together with the position that covers them.  Nothing here imports
dagster, so the same code runs from the CLI, from tests and from Dagster.
"""
