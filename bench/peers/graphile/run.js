#!/usr/bin/env node
// Graphile Worker peer for the Errands benchmark (bench/run.py --peers).
//
//   node run.js migrate DSN               install / migrate the graphile_worker schema
//   node run.js once DSN CONCURRENCY      run the queued jobs, exit when the queue is empty
//   node run.js continuous DSN CONCURRENCY LATENCY_FILE
//                                         W2: print READY, run until SIGTERM
//
// One process, Graphile's fastest documented configuration (worker.graphile.org
// "Performance": localQueue.size 500, completeJobBatchDelay 0, failJobBatchDelay 0,
// prepared statements on (the default), maxPoolSize = concurrency + 1 as in its
// perfTest).  The `noop` task does nothing; `latency` appends start - payload.t (ms)
// to LATENCY_FILE.  At exit it prints one JSON line like bench/worker.py:
// {"ok": N, "failed": N, "distinct": N} counted from `job:success` / `job:failed`.
"use strict";

const fs = require("fs");
const { EventEmitter } = require("events");
const { run, runOnce, runMigrations, Logger } = require("graphile-worker");

const [mode, dsn, concurrencyArg, latencyFile] = process.argv.slice(2);
const concurrency = parseInt(concurrencyArg || "10", 10);

const quiet = new Logger(() => (level, message) => {
  if (level === "error") console.error(message);
});

function preset() {
  return {
    worker: {
      connectionString: dsn,
      concurrentJobs: concurrency,
      maxPoolSize: concurrency + 1,
      pollInterval: 2000,
      preparedStatements: true,
      localQueue: { size: 500 },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    },
  };
}

let latencyOut = null;
const taskList = {
  noop: async () => {},
  latency: async (payload) => {
    const start = performance.timeOrigin + performance.now(); // epoch ms, sub-ms
    if (latencyOut === null) latencyOut = fs.openSync(latencyFile, "a");
    fs.writeSync(latencyOut, `${(start - payload.t * 1000).toFixed(4)}\n`);
  },
};

function counter() {
  const events = new EventEmitter();
  const state = { ok: 0, failed: 0, ids: new Set() };
  events.on("job:success", ({ job }) => {
    state.ok += 1;
    state.ids.add(String(job.id));
  });
  events.on("job:failed", ({ job }) => {
    state.failed += 1;
    state.ids.add(String(job.id));
  });
  return { events, state };
}

// Peak RSS (VmHWM, MB) of this process; see bench/worker.py for why not rusage.
function vmhwmMb() {
  const m = /^VmHWM:\s+(\d+)/m.exec(fs.readFileSync("/proc/self/status", "utf8"));
  return m ? parseInt(m[1], 10) / 1024 : 0;
}

function report(state) {
  const out = {
    ok: state.ok,
    failed: state.failed,
    distinct: state.ids.size,
    vmhwm_mb: vmhwmMb(),
  };
  process.stdout.write(JSON.stringify(out) + "\n");
}

async function main() {
  if (mode === "migrate") {
    await runMigrations({ preset: preset(), logger: quiet });
  } else if (mode === "once") {
    const { events, state } = counter();
    await runOnce({ preset: preset(), logger: quiet, events, taskList });
    report(state);
  } else if (mode === "continuous") {
    const { events, state } = counter();
    const runner = await run({ preset: preset(), logger: quiet, events, taskList });
    process.stdout.write("READY\n");
    await runner.promise; // Graphile stops gracefully on SIGTERM
    report(state);
  } else {
    throw new Error(`unknown mode ${JSON.stringify(mode)}: migrate | once | continuous`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
