// PostGraphile 5 for tests_py/test_postgraphile.py and docs/postgraphile.md.
//
//   DATABASE_URL=postgresql://web@127.0.0.1:5432/mydb PORT=5678 node server.mjs
//
// Only the `app` schema is exposed; PostGraphile connects as the web role, so every
// query runs with that role's grants (errands.grant_enqueue: enqueue, nothing else).
import { createServer } from "node:http";
import { postgraphile } from "postgraphile";
import { makePgService } from "postgraphile/adaptors/pg";
import { defaultMaskError } from "postgraphile/grafserv";
import { grafserv } from "postgraphile/grafserv/node";
import { GraphQLError } from "postgraphile/graphql";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

const connectionString = process.env.DATABASE_URL;
const port = Number(process.env.PORT ?? 5678);
const host = "127.0.0.1"; // never listen beyond this machine
const schemas = (process.env.SCHEMAS ?? "app").split(",");

// PostGraphile hides database errors from clients (they may name tables, values,
// roles). Let through only the application's own input errors: SQLSTATE 22023
// raised with a message starting "app: " (see app.send_welcome_email).
function maskError(error) {
  const original = error.originalError;
  if (original?.code === "22023" && original.message?.startsWith("app: ")) {
    return new GraphQLError(original.message, {
      nodes: error.nodes,
      source: error.source,
      positions: error.positions,
      path: error.path,
      extensions: { code: original.code },
    });
  }
  return defaultMaskError(error);
}

const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [makePgService({ connectionString, schemas })],
  grafserv: { port, host, graphiql: false, maskError },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (err) => {
  console.error(err);
  process.exit(1);
});
await serv.addTo(server);
// Build the schema before answering, so a failed introspection exits instead of
// surfacing on the first request.
await pgl.getSchema();
server.listen(port, host, () => {
  console.log(`postgraphile listening on http://${host}:${port}/graphql`);
});
const stop = () => {
  server.close();
  pgl.release().finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
