// Drives the router's PostgreSQL door with node-postgres (npm `pg`), the
// extended query protocol: parameters ($n), named prepared statements,
// binary results, an INSERT, errors with SQLSTATE. Prints one JSON line
// with what it saw; tests/integration/test_sql.py checks it.
// Usage: node pg_client.js PORT TABLE T0_MS
"use strict";
const { Client, types } = require("pg");

// Binary results decoded from the bytes the server sent. node-pg 8 reads
// every DataRow field as UTF-8 text, also a binary one, and hands a binary
// field over as Buffer.from(that text) (pg-protocol's parseDataRowMessage,
// pg's result.js), so a binary value survives only when each of its bytes
// is below 0x80: the binary query below picks values that are (int8
// counts, float8 2.5 and 4, text); timestamptz and negative float8 in
// binary are checked byte by byte by test_extended_protocol instead.
function bytes(b, n) {
  if (!Buffer.isBuffer(b) || (n && b.length !== n) || b.some((x) => x >= 0x80))
    throw new Error("binary field mangled by the client: " + JSON.stringify(b));
  return b;
}
const binary = {
  20: (b) => bytes(b, 8).readBigInt64BE(0).toString(),
  701: (b) => bytes(b, 8).readDoubleBE(0),
  25: (b) => bytes(b).toString("utf8"),
};
const typeParsers = {
  getTypeParser: (oid, format) =>
    format === "binary" ? (binary[oid] || ((s) => s)) : types.getTypeParser(oid, format),
};

async function main() {
  const [port, table, t0s] = process.argv.slice(2);
  const t0 = Number(t0s);
  const c = new Client({ host: "127.0.0.1", port: Number(port), user: "pgjs",
                         database: "strata", connectionTimeoutMillis: 10000 });
  await c.connect();
  const out = {};
  // INSERT with parameters (Parse/Bind/Describe/Execute/Sync)
  const ins = await c.query(
    `INSERT INTO ${table} (time, host, temp) VALUES ($1, $2, $3), ($4, $5, $6), ($7, $8, $9)`,
    [new Date(t0).toISOString(), "a", 1.5, new Date(t0 + 1000).toISOString(), "a", 2.5,
     new Date(t0).toISOString(), "b", -4]);
  out.insert = { command: ins.command, rowCount: ins.rowCount };
  // the rows are there (bounded poll: a write is answered once stored)
  let n = 0;
  for (let i = 0; i < 50 && n !== 3; i++) {
    const r = await c.query(`SELECT count(*) AS n FROM ${table}`);
    n = Number(r.rows[0].n);
    if (n !== 3) await new Promise((res) => setTimeout(res, 100));
  }
  out.count = n;
  // a named prepared statement, run twice with other parameters
  const q = `SELECT time, host, temp FROM ${table} WHERE host = $1 ORDER BY time`;
  out.prepared = [];
  for (const h of ["a", "b"]) {
    const r = await c.query({ name: "by_host", text: q, values: [h] });
    out.prepared.push(r.rows.map((x) => [x.time.getTime(), x.host, x.temp]));
  }
  // binary results: int8, float8, timestamptz, text (a second session)
  const cb = new Client({ host: "127.0.0.1", port: Number(port), user: "pgjs",
                          database: "strata", connectionTimeoutMillis: 10000, binary: true,
                          types: typeParsers });
  await cb.connect();
  const b = await cb.query({
    name: "agg",
    text: `SELECT host, count(*) AS n, max(abs(temp)) AS m FROM ${table} ` +
          `WHERE temp > $1 GROUP BY host ORDER BY host`,
    values: [-10] });
  out.binary = b.rows.map((x) => [x.host, x.n, x.m]);
  out.binary_types = b.fields.map((f) => [f.name, f.dataTypeID, f.format]);
  await cb.end();
  // errors carry SQLSTATE; the session goes on after them
  out.errors = [];
  for (const bad of ["SELEKT 1", `SELECT nope FROM ${table}`,
                     `INSERT INTO ${table} (time, host) VALUES ($1, $2)`]) {
    try {
      await c.query(bad, bad.includes("$1") ? [new Date(t0).toISOString(), "c"] : []);
      out.errors.push(null);
    } catch (e) {
      out.errors.push(e.code || "none");
    }
  }
  const one = await c.query("SELECT 1 + $1::int8 AS x", [41]);
  out.after_errors = Number(one.rows[0].x);
  await c.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String(e && e.stack || e), code: e && e.code }));
  process.exit(1);
});
