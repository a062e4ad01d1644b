"""Log-based capture from MySQL/MariaDB: the row-based binary log, read through python-mysql-replication.

``client`` and ``snapshot`` do the I/O; ``log``, ``values``, ``mapping``,
``decoder`` and ``position`` are pure: log items in, change events and
positions out, testable without a server.
"""
