#!/usr/bin/env bash
# PyFlink and Flink's SQL Kafka connector for liberation_tests/consumers/test_flink.py: ~800 MB, so kept in a cache
# outside the clone (reused by later clones on this machine) rather than in the project's venv.  Sourced by
# scripts/test.sh; prints the two variables the test reads.  Not fatal: without them the Flink test skips, saying why.
FLINK_HOME_DIR=${LIBERATION_FLINK_HOME:-${HOME:-/root}/.cache/liberation/flink}
FLINK_VERSION=2.0.1
CONNECTOR=org.apache.flink:flink-sql-connector-kafka:4.0.1-2.0
mkdir -p "$FLINK_HOME_DIR/jars"
if [ ! -x "$FLINK_HOME_DIR/venv/bin/python" ] || ! "$FLINK_HOME_DIR/venv/bin/python" -c "import pyflink" 2>/dev/null; then
  echo "setup: installing PyFlink $FLINK_VERSION into $FLINK_HOME_DIR (once)"
  ${PYTHON:-python3.11} -m venv "$FLINK_HOME_DIR/venv" \
    && "$FLINK_HOME_DIR/venv/bin/python" -m pip install -q "apache-flink==$FLINK_VERSION" >"$FLINK_HOME_DIR/pip.log" 2>&1 \
    || echo "setup: PyFlink could not be installed (see $FLINK_HOME_DIR/pip.log); the Flink test will skip" >&2
fi
jar="$FLINK_HOME_DIR/jars/flink-sql-connector-kafka-4.0.1-2.0.jar"
if [ ! -f "$jar" ]; then
  mvn -q -B dependency:copy -Dartifact="$CONNECTOR" -DoutputDirectory="$FLINK_HOME_DIR/jars" >"$FLINK_HOME_DIR/mvn.log" 2>&1 \
    || echo "setup: $CONNECTOR could not be resolved (see $FLINK_HOME_DIR/mvn.log); the Flink test will skip" >&2
fi
if [ -x "$FLINK_HOME_DIR/venv/bin/python" ] && [ -f "$jar" ]; then
  export LIBERATION_FLINK_PYTHON="$FLINK_HOME_DIR/venv/bin/python" LIBERATION_FLINK_KAFKA_JAR="$jar"
fi
