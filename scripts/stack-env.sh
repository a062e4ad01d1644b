# Sourced by the scripts: PostgreSQL runs as the `postgres` OS user, so if it cannot reach this clone
# (say, under a 0700 folder), keep the stack's data in a folder it can reach.
if [ -z "${LIBERATION_STACK_DIR:-}" ] && id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$PWD" 2>/dev/null; then
  export LIBERATION_STACK_DIR="/var/tmp/liberation-stack-$(printf %s "$PWD" | md5sum | cut -c1-8)"
fi
