"""Shared fixtures live in fixture plugins (``fix_*.py``), as psycopg's tests do."""

pytest_plugins = ["liberation_tests.fix_stack", "liberation_tests.fix_kafka", "liberation_tests.fix_cli"]
