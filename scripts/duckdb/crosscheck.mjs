// crosscheck.mjs SCANDIR SUMMARY_JSON
//
// An independent recount of mxsurvey's simple figures: DuckDB reads the RAW
// Parquet parts of one scan directory (docs/schema.md) and counts with plain
// SQL what `mxsurvey analyze` wrote into summary.json (docs/statistics.md).
// It shares no code with the Go analyzer, so a bug in the analyzer's reader,
// its counting or the scanner's row layout shows up as a mismatch.
// Prints one line per figure and exits 1 on any mismatch (2 on usage or
// read errors).
//
// What is NOT recounted: everything that needs the analyzer's certificate
// verification or RFC 6125 name matching (trusted, expired, match_*,
// valid_for_mx, issuers, key_types, primary/any_mx_valid, server software,
// MX providers). The certificate figures that are recounted (with_cert,
// cert_unparseable, cert_missing, self_signed) use the scanner's own columns
// (cert_parse_error, cert_self_signed), which are defined the same way.
import { DuckDBInstance } from '@duckdb/node-api';
import fs from 'node:fs';
import path from 'node:path';

const [scanDir, summaryPath] = process.argv.slice(2);
if (!scanDir || !summaryPath) {
  console.error('usage: node crosscheck.mjs SCANDIR SUMMARY_JSON');
  process.exit(2);
}
const summary = JSON.parse(fs.readFileSync(summaryPath, 'utf8'));

// The analyzer reads exactly the files named part-<digits>.parquet, in the
// order of their number (a .tmp file is an uncommitted part).
function partFiles(table) {
  const dir = path.join(scanDir, table);
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .map((name) => ({ name, m: /^part-(\d+)\.parquet$/.exec(name) }))
    .filter((p) => p.m && fs.statSync(path.join(dir, p.name)).isFile())
    .sort((a, b) => Number(a.m[1]) - Number(b.m[1]))
    .map((p) => path.join(dir, p.name));
}

const sqlString = (s) => "'" + s.replaceAll("'", "''") + "'";

// Columns used below, for an empty table when a scan has no parts of a kind.
const emptyProbes = `SELECT NULL::VARCHAR AS ip, NULL::VARCHAR AS mx_host, NULL::VARCHAR AS outcome,
  NULL::VARCHAR AS error_class, NULL::VARCHAR AS banner, NULL::VARCHAR AS banner_host,
  NULL::BOOLEAN AS starttls_offered, NULL::VARCHAR AS tls_version, NULL::VARCHAR AS tls_group,
  NULL::BLOB[] AS cert_chain, NULL::VARCHAR AS cert_parse_error, NULL::BOOLEAN AS cert_self_signed,
  NULL::BIGINT AS part, NULL::BIGINT AS rownum WHERE false`;
const emptyMX = `SELECT NULL::VARCHAR AS domain, NULL::VARCHAR AS dns_status, NULL::BOOLEAN AS implicit_mx,
  NULL::VARCHAR AS mx_host, NULL::VARCHAR AS ip WHERE false`;

function source(files) {
  const list = '[' + files.map(sqlString).join(', ') + ']';
  return `read_parquet(${list}, filename = true, file_row_number = true)`;
}

const instance = await DuckDBInstance.create(':memory:');
const con = await instance.connect();
const rows = async (sql) => (await con.runAndReadAll(sql)).getRowObjects();
const one = async (sql) => (await rows(sql))[0];

const probeFiles = partFiles('probes');
const mxFiles = partFiles('mx');
// part and rownum give the analyzer's reading order (parts by number, rows in
// file order): when a target repeats, it keeps the first probed row.
await con.run(`CREATE VIEW probes AS ${probeFiles.length === 0 ? emptyProbes : `
  SELECT *, regexp_extract(filename, 'part-([0-9]+)\\.parquet$', 1)::BIGINT AS part,
         file_row_number AS rownum
  FROM ${source(probeFiles)}`}`);
await con.run(`CREATE VIEW mx AS ${mxFiles.length === 0 ? emptyMX : `SELECT * FROM ${source(mxFiles)}`}`);
// Normalised probe columns: a NULL string counts as empty.
await con.run(`CREATE VIEW p AS SELECT
  ip, mx_host, part, rownum,
  coalesce(outcome, '') AS outcome,
  coalesce(error_class, '') AS error_class,
  coalesce(banner, '') AS banner,
  coalesce(banner_host, '') AS banner_host,
  coalesce(starttls_offered, false) AS starttls,
  coalesce(tls_version, '') AS tls_version,
  coalesce(tls_group, '') AS tls_group,
  coalesce(len(cert_chain), 0) > 0 AND coalesce(octet_length(cert_chain[1]), 0) > 0 AS has_leaf,
  coalesce(cert_parse_error, '') AS parse_error,
  coalesce(cert_self_signed, false) AS self_signed
FROM probes`);

const results = []; // {name, duck, analyzer, note}
function check(name, duck, analyzer, note = '') {
  results.push({ name, duck: duck === undefined ? null : Number(duck), analyzer: analyzer === undefined ? null : Number(analyzer), note });
}

// ---- hosts (one probe row each) --------------------------------------------
const h = await one(`SELECT
  count(*) AS total,
  count(*) FILTER (outcome = 'skipped') AS skipped,
  count(*) FILTER (outcome <> 'skipped') AS probed,
  count(*) FILTER (outcome NOT IN ('skipped', 'connect')) AS connected,
  count(*) FILTER (outcome <> 'skipped' AND banner <> '') AS greeted,
  count(*) FILTER (outcome <> 'skipped' AND banner_host <> '') AS banner_host_present,
  count(*) FILTER (outcome <> 'skipped' AND banner_host <> '' AND banner_host = mx_host) AS banner_is_mx,
  count(*) FILTER (starttls) AS starttls_offered,
  count(*) FILTER (tls_version <> '') AS tls_ok,
  count(*) FILTER (tls_version <> '' AND has_leaf AND parse_error = '') AS with_cert,
  count(*) FILTER (tls_version <> '' AND has_leaf AND parse_error <> '') AS cert_unparseable,
  count(*) FILTER (tls_version <> '' AND NOT has_leaf) AS cert_missing,
  count(*) FILTER (tls_version <> '' AND has_leaf AND parse_error = '' AND self_signed) AS self_signed_scanner
FROM p`);
for (const k of ['total', 'skipped', 'probed', 'connected', 'greeted', 'banner_host_present',
  'banner_is_mx', 'starttls_offered', 'tls_ok', 'with_cert', 'cert_unparseable', 'cert_missing']) {
  check(`hosts.${k}`, h[k], summary.hosts?.[k]);
}

// self_signed: the scanner's cert_self_signed and the analyzer's self_signed
// are one definition (docs/schema.md, "Self-signed"), computed by the same Go
// function; the analyzer counts it among hosts.with_cert (tls_ok and a
// parseable leaf).
check('hosts.self_signed', h.self_signed_scanner, summary.hosts?.self_signed, 'cert_self_signed among parseable leaves');

// ---- top lists that need no certificate evaluation ---------------------------
async function topList(name, sql) {
  const counts = new Map((await rows(sql)).map((r) => [r.name, Number(r.n)]));
  const s = summary.top?.[name];
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  check(`top.${name}.total`, total, s?.total);
  check(`top.${name}.distinct`, counts.size, s?.distinct);
  let listed = 0;
  for (const e of s?.entries ?? []) {
    listed += e.count;
    check(`top.${name}[${e.name}]`, counts.get(e.name) ?? 0, e.count);
  }
  // Names DuckDB sees that the list omits must fit in "other", and the list
  // must hold the largest counts.
  check(`top.${name}.other`, total - listed, s?.other);
  const entries = s?.entries ?? [];
  const smallest = entries.length ? Math.min(...entries.map((e) => e.count)) : Infinity;
  const listedNames = new Set(entries.map((e) => e.name));
  const bigger = [...counts].filter(([n, c]) => !listedNames.has(n) && c > smallest);
  if (bigger.length) {
    check(`top.${name} (unlisted name above the list's smallest)`, bigger.length, 0,
      bigger.slice(0, 3).map(([n, c]) => `${n}=${c}`).join(' '));
  }
}
await topList('tls_versions', `SELECT tls_version AS name, count(*) AS n FROM p WHERE tls_version <> '' GROUP BY 1`);
await topList('tls_groups', `SELECT tls_group AS name, count(*) AS n FROM p WHERE tls_version <> '' AND tls_group <> '' GROUP BY 1`);
await topList('outcomes', `SELECT CASE WHEN outcome = '' THEN '(none)' ELSE outcome END AS name, count(*) AS n FROM p GROUP BY 1`);
await topList('error_classes', `SELECT error_class AS name, count(*) AS n FROM p WHERE error_class <> '' GROUP BY 1`);

// ---- domains -----------------------------------------------------------------
// One row per domain, by distinct name (the analyzer relies on the scanner
// writing a domain's rows contiguously in one part: a violation shows up here).
await con.run(`CREATE VIEW dom AS SELECT domain,
    count(DISTINCT coalesce(dns_status, '')) AS statuses,
    min(coalesce(dns_status, '')) AS dns_status,
    bool_or(coalesce(implicit_mx, false)) AS implicit_mx
  FROM mx GROUP BY domain`);
// A target is a distinct (ip, mx_host) with an address; its probe summary is
// the first probed row in reading order, else "not probed".
await con.run(`CREATE VIEW target AS SELECT ip, mx_host,
    count(*) FILTER (outcome <> 'skipped') > 0 AS probed,
    arg_min(starttls, (part, rownum)) FILTER (outcome <> 'skipped') AS starttls
  FROM p GROUP BY ip, mx_host`);
const d = await one(`WITH dt AS (
    SELECT DISTINCT domain, ip, mx_host FROM mx WHERE coalesce(ip, '') <> '' AND coalesce(mx_host, '') <> ''
  ), per AS (
    SELECT dt.domain,
      count(*) FILTER (t.probed) AS probed,
      count(*) FILTER (t.probed AND NOT t.starttls) AS probed_without_starttls
    FROM dt LEFT JOIN target t USING (ip, mx_host) GROUP BY dt.domain
  )
  SELECT
    count(*) AS total,
    count(*) FILTER (dns_status = 'ok') AS with_mx,
    count(*) FILTER (implicit_mx) AS implicit_mx,
    count(*) FILTER (dns_status = 'null_mx') AS null_mx,
    count(*) FILTER (dns_status = 'no_mx') AS no_mx,
    count(*) FILTER (dns_status NOT IN ('ok', 'null_mx', 'no_mx')) AS dns_error,
    count(*) FILTER (dns_status = 'ok' AND coalesce(per.probed, 0) > 0) AS with_probed_mx,
    count(*) FILTER (dns_status = 'ok' AND coalesce(per.probed, 0) > 0 AND per.probed_without_starttls = 0) AS starttls_all_mx,
    count(*) FILTER (statuses > 1) AS mixed_status
  FROM dom LEFT JOIN per USING (domain)`);
for (const k of ['total', 'with_mx', 'implicit_mx', 'null_mx', 'no_mx', 'dns_error', 'with_probed_mx', 'starttls_all_mx']) {
  check(`domains.${k}`, d[k], summary.domains?.[k]);
}
// Not an analyzer figure: the dataset contract (all rows of a domain share its
// dns_status); domains.* above assume it.
check('mx: domains with more than one dns_status (must be 0)', d.mixed_status, 0);

// ---- report -------------------------------------------------------------------
const w = Math.max(...results.map((r) => r.name.length));
const fmt = (v) => (v === null || Number.isNaN(v) ? 'missing' : String(v));
console.log(`crosscheck: ${scanDir} (${probeFiles.length} probes parts, ${mxFiles.length} mx parts) vs ${summaryPath}`);
console.log(`${'figure'.padEnd(w)}  ${'duckdb'.padStart(9)}  ${'analyzer'.padStart(9)}`);
let bad = 0;
for (const r of results) {
  const ok = r.duck !== null && r.analyzer !== null && r.duck === r.analyzer;
  if (!ok) bad++;
  console.log(`${r.name.padEnd(w)}  ${fmt(r.duck).padStart(9)}  ${fmt(r.analyzer).padStart(9)}  ${ok ? 'ok' : 'MISMATCH'}${r.note ? '  (' + r.note + ')' : ''}`);
}
if (bad) {
  console.log(`crosscheck: FAILED: ${bad} of ${results.length} figures differ`);
  process.exit(1);
}
console.log(`crosscheck: ok: ${results.length} figures agree`);
