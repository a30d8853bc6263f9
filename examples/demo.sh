#!/usr/bin/env bash
# The `make demo` walk-through.  Run from the repository root with the errands
# command on PATH (make demo puts .venv/bin first).  Every step is a command you
# can type yourself.
set -euo pipefail

step() { printf '\n==> %s\n' "$*"; }

step "errands db start            # a local PostgreSQL in ./.errands, created on first run"
errands db start

step "errands install             # create (or upgrade) the errands schema"
errands install

step "python examples/enqueue.py  # add the example jobs in one transaction"
python examples/enqueue.py "$(errands db url)"
errands jobs

step "errands worker --tasks examples/tasks.py   # stopped once no job is left"
errands worker --tasks examples/tasks.py --poll-interval 1 &
worker=$!
trap 'kill -TERM "$worker" 2>/dev/null || true' EXIT
deadline=$((SECONDS + 60))
while :; do
  sleep 1
  # Completed jobs are deleted, so an empty list means everything ran.
  left=$(errands jobs --json 2>/dev/null | wc -l)
  [ "$left" -eq 0 ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "demo: jobs still not done after 60 s:" >&2
    errands jobs >&2
    exit 1
  fi
done
kill -TERM "$worker"   # a graceful shutdown, as on Ctrl-C
wait "$worker" || true
trap - EXIT

step "errands jobs                # nothing left: every job succeeded"
errands jobs

cat <<'DONE'

Done. In the worker's log above:
  * hello succeeded at once;
  * flaky failed on attempt 1 and succeeded on attempt 2, ~2.7 s later (backoff);
  * send_emails failed for bounce@example.com only, and the retry sent just that one;
  * queued_step ran steps 1, 2, 3 one after another (named queue serial-demo).

The embedded database is still running: try `.venv/bin/errands add hello --payload
'{"name": "you"}'` and `.venv/bin/errands worker --tasks examples/tasks.py --once`;
stop it with `.venv/bin/errands db stop`.
DONE
