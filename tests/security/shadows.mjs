// Shadow generation for the search_path capture tests.
//
// 1. extractNames() reads ably_pg's own SQL text — every SQL-looking string
//    literal in src/**/*.rs (test modules excluded) and sql/*.sql — and
//    collects the unqualified names a caller's search_path could capture:
//    identifiers called as functions, operators (including those implied by
//    LIKE, IN, BETWEEN, IS DISTINCT FROM …) and type names used in casts.
//    A query added to the extension later is covered automatically.
// 2. shadowPlan() turns those names into CREATE statements for one attacker
//    schema, using the live catalog: for every function name, clones of each
//    pg_catalog signature (they win when the attacker's schema comes before
//    pg_catalog) plus variants with one argument replaced by a plausible
//    call-site type (they win even behind pg_catalog, e.g. f(text) against an
//    unknown literal, =(regclass, regclass) against the catalog's =(oid, oid));
//    aggregates are shadowed by aggregates; every operator for pairs of
//    plausible types; every cast target type by a domain whose CHECK reports.
// 3. Every shadow calls <schema>.ably_shadow_hit(what), which writes
//      LOG:  ably-shadow [<what>] of <creator> ran as <current_user>
//    to the server log (so it survives a rolled-back transaction) and, when
//    it is not running as its creator, tries ALTER ROLE <creator> SUPERUSER.
//    shadowRuns()/foreignRuns() read those lines back from Cluster.log().
//
// Run as a script (`node security/shadows.mjs`) it prints the extracted names.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

// ---------------------------------------------------------------- extraction

function filesUnder(dir, ext) {
  const out = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path, ext));
    else if (path.endsWith(ext)) out.push(path);
  }
  return out.sort();
}

/** Decodes the escapes of a Rust (non-raw) string literal body. */
function unescapeRust(body) {
  return body.replace(/\\(\r?\n\s*|u\{([0-9a-fA-F]+)\}|x([0-9a-fA-F]{2})|.)/g, (m, esc, u, x) => {
    if (u) return String.fromCodePoint(parseInt(u, 16));
    if (x) return String.fromCharCode(parseInt(x, 16));
    if (/^\r?\n/.test(esc)) return '';
    return { n: '\n', t: '\t', r: '\r', 0: '\0', '\\': '\\', '"': '"', "'": "'" }[esc] ?? esc;
  });
}

/** Every string literal of a Rust source file, decoded. */
export function rustStringLiterals(source) {
  const out = [];
  const token = /\/\/[^\n]*|\/\*[\s\S]*?\*\/|[bc]?r(#*)"([\s\S]*?)"\1|[bc]?"((?:[^"\\]|\\[\s\S])*)"|'(?:[^'\\\n]|\\[^\n]{1,10}?)'/g;
  let m;
  while ((m = token.exec(source))) {
    if (m[2] !== undefined) out.push(m[2]);
    else if (m[3] !== undefined) out.push(unescapeRust(m[3]));
  }
  return out;
}

/** The Rust source without its `#[cfg(test)] mod … { … }` blocks. */
function withoutTestModules(source) {
  let out = source;
  for (;;) {
    const at = out.search(/#\[cfg\((?:test|any\(test[^)]*\))\)\]\s*(?:pub\s+)?mod\s+\w+\s*\{/);
    if (at < 0) return out;
    let i = out.indexOf('{', at);
    let depth = 0;
    for (; i < out.length; i++) {
      if (out[i] === '{') depth++;
      else if (out[i] === '}' && --depth === 0) break;
    }
    out = out.slice(0, at) + out.slice(i + 1);
  }
}

const SQL_WORDS = /\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|TRUNCATE|WITH|GRANT|REVOKE|COMMENT|WHERE|FROM|JOIN|VALUES|RETURNING|ORDER BY)\b/;

/** ably_pg's SQL text: [{ source, sql }]. */
export function sqlTexts(root = ROOT) {
  const texts = [];
  for (const file of filesUnder(join(root, 'src'), '.rs')) {
    if (/(^|\/)tests\.rs$/.test(file)) continue;
    const source = withoutTestModules(readFileSync(file, 'utf8'));
    for (const lit of rustStringLiterals(source)) {
      if (SQL_WORDS.test(lit)) texts.push({ source: relative(root, file), sql: lit });
    }
  }
  for (const file of filesUnder(join(root, 'sql'), '.sql')) {
    texts.push({ source: relative(root, file), sql: readFileSync(file, 'utf8') });
  }
  return texts;
}

/** SQL with comments and string literals removed, dollar quotes opened. */
function stripSql(sql) {
  return sql
    .replace(/--[^\n]*/g, ' ')
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/\$([A-Za-z_][A-Za-z0-9_]*)?\$/g, ' ')
    .replace(/[EeBbXxUu]?'(?:[^']|'')*'/g, " '' ");
}

// Words that precede "(" without being a function call.
const NOT_CALLS = new Set(`
  all and any array as by case cast check coalesce create default delete distinct each else end operator
  exists extract filter for from function greatest grouping if in include index insert into is
  join key least limit list not null nullif on or over overlay partition position primary
  references returning returns row rows select set some substring table then trigger trim type
  unique update using values view when where with within`.split(/\s+/).filter(Boolean));

/**
 * Names in ably_pg's SQL that a search_path could capture.
 *
 * Returns { functions, operators, types } — the sets to shadow: every name
 * the SQL uses unqualified, plus every pg_catalog name it qualifies (so that
 * a query that loses its qualification later is still attacked) — and
 * { unqualified, qualified, texts } for the record.
 */
export function extractNames(root = ROOT, extraSql = []) {
  const texts = [...sqlTexts(root), ...extraSql.map((sql) => ({ source: 'test', sql }))];
  const unqualified = { functions: new Set(), operators: new Set(), types: new Set() };
  const catalog = { functions: new Set(), operators: new Set(), types: new Set() };
  const qualified = new Set();
  for (const { sql } of texts) {
    let s = stripSql(sql);
    // OPERATOR(schema.op): qualified, and not a function call
    s = s.replace(/\bOPERATOR\s*\(\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\.\s*([^)\s]+)\s*\)/gi, (_, schema, op) => {
      qualified.add(`OPERATOR(${schema}.${op})`);
      if (schema.toLowerCase() === 'pg_catalog') catalog.operators.add(op);
      return ' ';
    });
    // function calls: ident ( — not an alias (AS x(...))
    const call = /(?:("?)([A-Za-z_][A-Za-z0-9_$]*)\1\s*\.\s*)?("?)([A-Za-z_][A-Za-z0-9_$]*)\3\s*\(/g;
    let m;
    while ((m = call.exec(s))) {
      const name = m[4].toLowerCase();
      if (m[2]) {
        qualified.add(`${m[2]}.${name}`);
        if (m[2].toLowerCase() === 'pg_catalog') catalog.functions.add(name);
        continue;
      }
      const before = s.slice(Math.max(0, m.index - 12), m.index);
      if (/\.\s*$/.test(before)) continue; // a column or table of a qualified name
      if (/\bAS\s*$/i.test(before)) continue;
      if (NOT_CALLS.has(name)) continue;
      unqualified.functions.add(name);
    }
    // casts: ::[schema.]type
    const cast = /::\s*("?)([A-Za-z_][A-Za-z0-9_]*)\1(?:\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?)?/g;
    while ((m = cast.exec(s))) {
      if (m[3]) {
        qualified.add(`::${m[2]}.${m[3]}`);
        if (m[2].toLowerCase() === 'pg_catalog') catalog.types.add(m[3].toLowerCase());
      } else {
        unqualified.types.add(m[2].toLowerCase());
      }
    }
    // symbolic operators (:: is not one; a lone * is a wildcard)
    const ops = s.replace(/::/g, ' ').match(/[+\-*/<>=~!@#%^&|`?]+/g) ?? [];
    for (const op of ops) {
      if (op === '*' || op === '?') continue;
      unqualified.operators.add(op === '!=' ? '<>' : op);
    }
    // operators written as keywords (always looked up through search_path)
    const kw = (re, ...names) => { if (re.test(s)) names.forEach((n) => unqualified.operators.add(n)); };
    kw(/\bNOT\s+LIKE\b/i, '!~~');
    kw(/(?<!NOT\s+)\bLIKE\b/i, '~~');
    kw(/\bNOT\s+ILIKE\b/i, '!~~*');
    kw(/(?<!NOT\s+)\bILIKE\b/i, '~~*');
    kw(/\bSIMILAR\s+TO\b/i, '~');
    kw(/\bBETWEEN\b/i, '>=', '<=');
    kw(/\bNOT\s+IN\s*\(/i, '<>');
    kw(/(?<!NOT\s+)\bIN\s*\(/i, '=');
    kw(/\bIS\s+(NOT\s+)?DISTINCT\s+FROM\b/i, '=');
  }
  const union = (k) => new Set([...unqualified[k], ...catalog[k]]);
  return { functions: union('functions'), operators: union('operators'), types: union('types'), unqualified, qualified, texts };
}

// ---------------------------------------------------------------- the plan

/** Argument types a call site in ably_pg plausibly passes. */
export const CALL_TYPES = [
  'int2', 'int4', 'int8', 'oid', 'regclass', 'regprocedure', 'regtype', 'text', 'name', 'bool',
  'jsonb', 'json', 'timestamptz', 'bytea', '"char"', 'anyelement',
  'text[]', 'int8[]', 'int4[]', 'int2[]', 'name[]', 'oid[]', 'anyarray',
];
/** Types paired with each other for operators (every ordered pair). */
export const OPERATOR_CORE = ['int2', 'int4', 'int8', 'oid', 'regclass', 'regprocedure', 'text', 'name'];
/** Types only paired with themselves for operators. */
export const OPERATOR_SAME = ['bool', 'jsonb', 'json', 'timestamptz', 'bytea', '"char"', 'text[]', 'int8[]', 'int4[]', 'name[]', 'oid[]'];
const COMPARISONS = new Set(['=', '<>', '<', '>', '<=', '>=', '&&', '<@', '@>', '~~', '!~~', '~~*', '!~~*', '~', '!~', '~*', '!~*']);
const UNSUPPORTED = /\b(internal|cstring|"any"|any|language_handler|fdw_handler|index_am_handler|table_am_handler|tsm_handler|trigger|event_trigger|opaque|unknown|pg_ddl_command|anyrange|anymultirange|anycompatiblerange|anycompatiblemultirange)\b/;

const ident = (s) => s.replace(/[^a-z0-9]+/gi, '_').replace(/^_|_$/g, '').toLowerCase();

/**
 * The CREATE statements that shadow `names` in `schema` for `creator`.
 * `client` is a pg client connected as anyone (catalog reads only).
 * Returns { statements, summary } where summary lists what is shadowed.
 */
export async function shadowPlan(client, { schema, creator, names = extractNames() }) {
  const q = (sql, params) => client.query(sql, params).then((r) => r.rows);
  const sch = quoteIdent(schema);
  const statements = [];
  const summary = { functions: [], aggregates: [], operators: [], types: [], skipped: [] };
  const hit = (what) => `PERFORM ${sch}.ably_shadow_hit(${literal(what)});`;

  // Reports once per session, user and shadow (a per-session setting
  // remembers it), so that a shadow hit per row does not flood the log.
  statements.push(`CREATE FUNCTION ${sch}.ably_shadow_hit(what pg_catalog.text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $ably$
    DECLARE memo pg_catalog.text := 'ably_shadow.h' OPERATOR(pg_catalog.||) pg_catalog.md5(what OPERATOR(pg_catalog.||) current_user);
    BEGIN
      IF pg_catalog.current_setting(memo, true) IS NOT NULL THEN RETURN; END IF;
      PERFORM pg_catalog.set_config(memo, 'y', false);
      RAISE LOG 'ably-shadow [%] of % ran as %', what, ${literal(creator)}, current_user;
      IF current_user OPERATOR(pg_catalog.<>) ${literal(creator)} THEN
        BEGIN
          EXECUTE ${literal(`ALTER ROLE ${quoteIdent(creator)} SUPERUSER`)};
          RAISE LOG 'ably-shadow [%] of % made % superuser', what, ${literal(creator)}, ${literal(creator)};
        EXCEPTION WHEN OTHERS THEN
          RAISE LOG 'ably-shadow [%] of % could not escalate: %', what, ${literal(creator)}, SQLERRM;
        END;
      END IF;
    END $ably$`);
  // Every shadow reports, then does what the catalog's object would do, so
  // that the code it captured carries on and reaches its next query.
  const body = (what, code) => `LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $ably$
    BEGIN ${hit(what)} ${code} END $ably$`;

  // Keyword classes: a "col_name" or reserved keyword is never looked up as a
  // function or generic type name.
  const keywords = new Map((await q(`SELECT word, catcode FROM pg_catalog.pg_get_keywords()`)).map((r) => [r.word, r.catcode]));

  // ---- functions and aggregates
  const fnames = [...names.functions].sort();
  const procs = await q(
    `SELECT p.proname::text AS name, p.prokind::text AS kind, p.proretset AS retset,
            pg_catalog.format_type(p.prorettype, NULL) AS rettype,
            pg_catalog.pg_get_function_result(p.oid) AS result,
            ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM pg_catalog.unnest(p.proargtypes::pg_catalog.oid[]) t) AS args,
            p.provariadic <> 0 AS variadic,
            COALESCE('o' = ANY (p.proargmodes) OR 'b' = ANY (p.proargmodes) OR 't' = ANY (p.proargmodes), false) AS outparams,
            pg_catalog.pg_get_function_arguments(p.oid) AS fullargs,
            n.nspname::text AS schema
       FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname IN ('pg_catalog', 'ably') AND p.proname::text = ANY ($1)`,
    [fnames],
  );
  const known = new Set(procs.map((p) => p.name));
  for (const name of fnames) {
    if (!known.has(name)) summary.skipped.push(`${name}() (no such function in pg_catalog or ably)`);
  }
  const seen = new Set();
  let n = 0;
  for (const name of fnames.filter((f) => known.has(f))) {
    const mine = procs.filter((p) => p.name === name);
    const variants = [];
    for (const p of mine) {
      // the clone, exactly as declared (OUT parameters and all)
      if (!p.variadic && !UNSUPPORTED.test(p.fullargs) && !UNSUPPORTED.test(p.result)) {
        variants.push({ p, args: p.args, fullargs: p.fullargs.replace(/\s+DEFAULT\s+[^,]+/g, ''), result: p.result });
      }
      // one argument replaced by each plausible call-site type; the shadow
      // casts it back to the catalog's type when it delegates
      p.args.forEach((_, i) => {
        for (const t of CALL_TYPES) {
          const args = p.args.slice();
          args[i] = t;
          variants.push({ p, args, casts: p.args.map((o, j) => (j === i && !/any/.test(o) ? o : null)) });
        }
      });
    }
    // uniform argument lists for every arity the catalog uses
    for (const arity of new Set(mine.map((p) => p.args.length))) {
      for (const t of CALL_TYPES) variants.push({ p: mine.find((p) => p.args.length === arity), args: Array(arity).fill(t) });
    }
    for (const v of variants) {
      const argList = v.fullargs ?? v.args.join(', ');
      if (UNSUPPORTED.test(argList)) continue;
      const key = `${name}(${v.args.map(canonType).join(',')})`;
      if (seen.has(key)) continue;
      seen.add(key);
      const what = `${name}(${v.args.join(', ')})`;
      const fn = `${sch}.${quoteIdent(name)}`;
      const callArgs = v.args.map((_, i) => (v.casts?.[i] ? `$${i + 1}::${v.casts[i]}` : `$${i + 1}`)).join(', ');
      const orig = `${v.p.schema}.${quoteIdent(name)}`;
      if (v.p.kind === 'a') {
        // an aggregate is only replaced by an aggregate
        const agg = aggregateShadow(name, v.args, v.p.rettype);
        if (!agg) continue;
        const sfunc = `${sch}.ably_shadow_sfunc_${++n}`;
        statements.push(`CREATE FUNCTION ${sfunc}(${[agg.stype, ...v.args].join(', ')}) RETURNS ${agg.stype}
          ${body(what, agg.step)}`);
        statements.push(`CREATE AGGREGATE ${fn}(${v.args.join(', ') || '*'}) (SFUNC = ${sfunc}, STYPE = ${agg.stype}${agg.init ? `, INITCOND = '${agg.init}'` : ''})`);
        summary.aggregates.push(what);
      } else if (v.p.kind === 'f') {
        const result = v.result ?? resultFor(v.p, v.args);
        if (!result || UNSUPPORTED.test(result)) continue;
        const setof = /^(SETOF|TABLE)\b/.test(result);
        const code = setof
          ? `RETURN QUERY SELECT * FROM ${orig}(${callArgs});`
          : /\bOUT\b/.test(argList) ? 'RETURN;'
            : result === 'void' ? `PERFORM ${orig}(${callArgs}); RETURN;` : `RETURN ${orig}(${callArgs});`;
        statements.push(`CREATE FUNCTION ${fn}(${argList}) RETURNS ${result} ${body(what, code)}`);
        summary.functions.push(what);
      }
    }
  }

  // ---- operators
  const opnames = [...names.operators].sort();
  const pairs = [];
  for (const a of OPERATOR_CORE) for (const b of OPERATOR_CORE) pairs.push([a, b]);
  for (const t of OPERATOR_SAME) pairs.push([t, t]);
  const catalogOps = await q(
    `SELECT o.oprname::text AS name, pg_catalog.format_type(o.oprleft, NULL) AS l,
            pg_catalog.format_type(o.oprright, NULL) AS r, pg_catalog.format_type(o.oprresult, NULL) AS res
       FROM pg_catalog.pg_operator o
      WHERE o.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace AND o.oprname::text = ANY ($1) AND o.oprleft <> 0`,
    [opnames],
  );
  const resultOf = new Map(catalogOps.map((o) => [`${o.name}(${canonType(o.l)},${canonType(o.r)})`, o.res]));
  // clones of catalog operators whose operand types are plausible call-site types
  const plausible = new Set(CALL_TYPES.map(canonType));
  for (const o of catalogOps) {
    if (plausible.has(canonType(o.l)) && plausible.has(canonType(o.r))) pairs.push([o.l, o.r, o.name]);
  }
  for (const op of opnames) {
    const opsSeen = new Set();
    for (const [l, r, only] of pairs) {
      if (only && only !== op) continue;
      const key = `${canonType(l)},${canonType(r)}`;
      if (opsSeen.has(key)) continue;
      opsSeen.add(key);
      const res = resultOf.get(`${op}(${key})`) ?? (COMPARISONS.has(op) ? 'bool' : (l.includes('any') ? null : l));
      if (!res || UNSUPPORTED.test(res) || (/any/.test(res) && !/any/.test(l + r))) continue;
      const fn = `${sch}.ably_shadow_op_${++n}`;
      const what = `${op}(${l}, ${r})`;
      statements.push(`CREATE FUNCTION ${fn}(${l}, ${r}) RETURNS ${res}
        ${body(what, `RETURN $1 OPERATOR(pg_catalog.${op}) $2;`)}`);
      statements.push(`CREATE OPERATOR ${sch}.${op} (LEFTARG = ${l}, RIGHTARG = ${r}, FUNCTION = ${fn})`);
      summary.operators.push(what);
    }
  }

  // ---- types named in casts, shadowed by domains over the same type whose
  // CHECK reports (a cast to the shadow runs it)
  for (const t of [...names.types].sort()) {
    const cat = keywords.get(t);
    if (cat === 'C' || cat === 'R') {
      summary.skipped.push(`::${t} (a keyword type, always pg_catalog's)`);
      continue;
    }
    const check = `${sch}.ably_shadow_type_${ident(t)}`;
    statements.push(`CREATE FUNCTION ${check}(pg_catalog.${quoteIdent(t)}) RETURNS bool ${body(`type ${t}`, 'RETURN true;')}`);
    statements.push(`CREATE DOMAIN ${sch}.${quoteIdent(t)} AS pg_catalog.${quoteIdent(t)} CHECK (${check}(VALUE))`);
    summary.types.push(t);
  }
  return { statements, summary };
}

/** State, step and initial value of an aggregate shadow that computes what the catalog's would. */
function aggregateShadow(name, args, rettype) {
  if (name === 'count') {
    return { stype: 'int8', init: '0', step: args.length ? 'RETURN $1 + CASE WHEN $2 IS NULL THEN 0 ELSE 1 END;' : 'RETURN $1 + 1;' };
  }
  if (args.length !== 1) return null;
  const t = args[0];
  if (/anyenum/.test(t)) return null;
  if (name === 'min' || name === 'max') {
    const op = name === 'min' ? '<' : '>';
    return { stype: t, step: `RETURN CASE WHEN $1 IS NULL THEN $2 WHEN $2 IS NULL THEN $1 WHEN $2 OPERATOR(pg_catalog.${op}) $1 THEN $2 ELSE $1 END;` };
  }
  if (/^(internal|"any")$/.test(rettype) || (/any/.test(rettype) && !/any/.test(t))) return null;
  return { stype: /any/.test(rettype) ? t : rettype, step: 'RETURN $1;' };
}

/** Creates the shadows as the attacker (`client` must be connected as `creator`). */
export async function installShadows(client, { schema, creator, names }) {
  await client.query(`SET search_path = pg_catalog, pg_temp`);
  // Visible to everyone: a schema the running user may not use drops out of
  // its search_path, and the attacker wants its shadows found by anyone.
  await client.query(`GRANT USAGE ON SCHEMA ${quoteIdent(schema)} TO PUBLIC`);
  const plan = await shadowPlan(client, { schema, creator, names });
  // The reporter first, then each object on its own (a variant PostgreSQL
  // refuses, e.g. a polymorphic result it cannot infer, is skipped).
  await client.query(plan.statements[0]);
  await client.query(`CREATE FUNCTION ${quoteIdent(schema)}.ably_shadow_try(stmts pg_catalog.text[]) RETURNS pg_catalog.text[]
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $ably$
    DECLARE s pg_catalog.text; failed pg_catalog.text[] := '{}';
    BEGIN
      FOREACH s IN ARRAY stmts LOOP
        BEGIN EXECUTE s; EXCEPTION WHEN OTHERS THEN failed := failed || (SQLERRM || ' <- ' || pg_catalog.left(s, 200)); END;
      END LOOP;
      RETURN failed;
    END $ably$`);
  const { rows } = await client.query(`SELECT ${quoteIdent(schema)}.ably_shadow_try($1::pg_catalog.text[]) AS failed`, [plan.statements.slice(1)]);
  await client.query(`DROP FUNCTION ${quoteIdent(schema)}.ably_shadow_try(pg_catalog.text[])`);
  await client.query(`RESET search_path`);
  plan.failed = rows[0].failed;
  return plan;
}

function resultFor(p, args) {
  if (p.outparams) return null;
  const base = p.rettype;
  const polymorphic = /^any/.test(base) || base === '"any"';
  let type = base;
  if (polymorphic && !args.some((a) => /^any/.test(a))) {
    // the polymorphic result follows the replaced argument, when it can
    const concrete = args.find((a, i) => /^any/.test(p.args[i] ?? ''));
    if (!concrete) return null;
    type = base === 'anyarray' && !concrete.endsWith('[]') ? `${concrete}[]` : concrete;
  }
  return p.retset ? `SETOF ${type}` : type;
}

const ALIASES = { integer: 'int4', bigint: 'int8', smallint: 'int2', boolean: 'bool', 'timestamp with time zone': 'timestamptz', 'character varying': 'varchar' };
function canonType(t) {
  const arr = t.endsWith('[]');
  const base = arr ? t.slice(0, -2) : t;
  return (ALIASES[base] ?? base) + (arr ? '[]' : '');
}

export function quoteIdent(s) {
  return /^[a-z_][a-z0-9_]*$/.test(s) ? s : `"${s.replace(/"/g, '""')}"`;
}

export function literal(s) {
  return `'${String(s).replace(/'/g, "''")}'`;
}

// ---------------------------------------------------------------- the log

/** Every shadow run in `logText`: [{ what, creator, ranAs, line }]. */
export function shadowRuns(logText) {
  const out = [];
  for (const line of logText.split('\n')) {
    const m = /ably-shadow \[(.*)\] of (\S+) ran as (\S+)/.exec(line);
    if (m) out.push({ what: m[1], creator: m[2], ranAs: m[3], line });
  }
  return out;
}

/** Shadow runs under anyone but their creator (optionally of `creators` only). */
export function foreignRuns(logText, creators) {
  return shadowRuns(logText).filter((r) => r.ranAs !== r.creator && (!creators || creators.includes(r.creator)));
}

/** A readable list of foreign runs for an assertion message. */
export function describeRuns(runs, max = 15) {
  const counts = new Map();
  for (const r of runs) {
    const k = `${r.what} of ${r.creator} ran as ${r.ranAs}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const lines = [...counts].map(([k, c]) => `  ${k}${c > 1 ? ` (${c}x)` : ''}`);
  return lines.slice(0, max).join('\n') + (lines.length > max ? `\n  … and ${lines.length - max} more` : '');
}

/** What was extracted and what will be shadowed, for the test output. */
export function describeNames(names) {
  const list = (set) => [...set].sort().join(' ');
  const extra = (k) => [...names[k]].filter((n) => !names.unqualified[k].has(n));
  return [
    `ably_pg SQL texts scanned: ${names.texts.length}`,
    `unqualified in ably_pg's SQL — functions: ${list(names.unqualified.functions)}`,
    `  operators: ${list(names.unqualified.operators)}`,
    `  cast types: ${list(names.unqualified.types)}`,
    `qualified in ably_pg's SQL: ${list(names.qualified)}`,
    `shadowed: ${names.functions.size} function names (${extra('functions').length} of them only seen pg_catalog-qualified: ${extra('functions').sort().join(' ')}), ` +
      `${names.operators.size} operators (${list(names.operators)}), ${names.types.size} types (${list(names.types)})`,
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(describeNames(extractNames()) + '\n');
}
