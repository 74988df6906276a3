/**
 * Verifies an audit export offline (no HSM, database or network): exit 0 when it is intact,
 * 1 with the first problem found, 2 when there is no verdict (unreadable file, usage error).
 * The file is streamed, so its size does not matter. AUDIT_VERIFY_RSS=1 prints the process's
 * peak RSS on stderr.
 *
 * An export that ends with its checkpoint note (format.ts, `note`) is checked against it by
 * default, offline, with the proofs it carries: the report names that checkpoint (origin, size,
 * root, cosignatures). With --checkpoint NOTE (a C2SP checkpoint you keep, e.g. witnessed), it
 * checks the export's entries against that one instead; with --previous OLDER, that the
 * checkpoint's tree extends the OLDER one you kept. Proofs the export cannot supply (the compact range before a period
 * export's first entry, consistency to a larger tree) are fetched from Audit with the auditor
 * certificate: they are untrusted, only the signed roots and the recomputed leaves are.
 *
 * With --requests, it also checks that every signature in the export was asked for by a client:
 * each entry's signed request (format hsm-signer/sign-request/v1) verifies under a key of its
 * client that you supply with --client-key CN=FILE (src/core/request-signing/audit-check.ts).
 */

import { createReadStream, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { hexToBytes } from '@noble/hashes/utils.js';
import { Command } from 'commander';
import type { AuditEntry } from '../src/core/audit/chain.js';
import { parseCheckpoint } from '../src/core/audit/checkpoint.js';
import type { NoteRecord } from '../src/core/audit/format.js';
import { NoteError, parseNote } from '../src/core/audit/note.js';
import {
  type Check,
  checkConsistent,
  checkEntryInclusion,
  frontierFromInclusionProof,
  openLogCheckpoint,
  RunRoot,
} from '../src/core/audit/tlog-verify.js';
import { formatReport, type VerifyReport, verifyExport } from '../src/core/audit/verify.js';
import { RequestAuditor, type RequestReport } from '../src/core/request-signing/audit-check.js';
import type { RequestKey } from '../src/core/request-signing/keys.js';
import { requestKeyOf } from '../src/infra/config/request-keys.js';
import { parseCertificates } from '../src/infra/grpc/peer-cert.js';
import { readExport } from './lib/export-file.js';
import { proofOptions, readNote } from './lib/proof-options.js';
import { checkWitnessed, parseWitnessKeys, witnessOptions } from './lib/witnesses.js';

/** Where a tree check gets its proofs: the export's own note record, or the Audit service. */
interface Proofs {
  inclusion(seq: number, treeSize: number): Promise<{ hashes: Uint8Array[] }>;
  consistency(fromSize: number, toSize: number): Promise<Uint8Array[]>;
  close(): void;
}

const program = witnessOptions(
  proofOptions(
    new Command()
      .name('verify-audit')
      .description(
        'Verify an hsm-signer-audit/1 export (JSONL or CSV) against the audit public keys in its header.\nCompare those keys, and the reported seq range and times, with what you expect.',
      )
      .argument('<FILE>', 'export written by scripts/export-audit.ts')
      .option('--checkpoint <note>', 'also check the entries are in this signed checkpoint (C2SP note file)')
      .option('--previous <note>', 'with --checkpoint: check it extends this older checkpoint you kept')
      .option('--origin <origin>', 'the log origin the checkpoints must carry (default: their own)')
      .option(
        '--log-key <base64>',
        "the log's audit public key for --checkpoint (default: a JSONL export's header keys)",
      )
      .option(
        '--signatures-only',
        "with --checkpoint: check only the note's log signature and --witnesses cosignatures, not that the export's entries are in its tree",
      )
      .option(
        '--requests',
        "also check that every signature in the export was asked for by a client: each entry's signed request verifies under a key you supply with --client-key",
      )
      .option(
        '--client-key <cn=file>',
        'with --requests: the client CN and a PEM file of its certificate(s) or public key(s) (P-256, Ed25519); repeat for more clients or keys',
        (v: string, all: string[]) => [...all, v],
        [] as string[],
      )
      .option('--no-note', 'do not check the export against the checkpoint note it ends with')
      .option('--json', 'print the report as JSON for programs instead of text for people'),
  ),
)
  // A usage error is no verdict: keep exit 1 for "FAILED".
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2))
  .parse();
const [file] = program.args as [string];
const opts = program.opts();
const json = !!opts.json;
if (opts.previous && !opts.checkpoint) program.error('--previous needs --checkpoint');
const required = Number(opts.witnesses);
if (!Number.isSafeInteger(required) || required < 0) program.error('--witnesses is a number of witnesses');
// --witnesses with no --checkpoint applies to the export's own note (checked once it is read).
let witnessKeys: ReturnType<typeof parseWitnessKeys> = [];
try {
  witnessKeys = parseWitnessKeys(opts.witnessKey as string[]);
} catch (e) {
  program.error((e as Error).message);
}
if (required > witnessKeys.length) program.error(`--witnesses ${required} but ${witnessKeys.length} --witness-key`);
if ((opts.clientKey as string[]).length > 0 && !opts.requests) program.error('--client-key needs --requests');
let clientKeys: Map<string, RequestKey[]> = new Map();
try {
  clientKeys = readClientKeys(opts.clientKey as string[]);
} catch (e) {
  program.error((e as Error).message);
}

function noVerdict(message: string): never {
  if (json) process.stdout.write(`${JSON.stringify({ error: message })}\n`);
  else process.stderr.write(`verify-audit: ${message}\n`);
  process.exit(2);
}

let report: VerifyReport;
try {
  if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a file'), { code: 'not a regular file' });
  report = await verifyExport(createInterface({ input: createReadStream(file), crlfDelay: Infinity }));
} catch (e) {
  // No verdict either way: an unreadable file (or a bug) must not look like a tampered export.
  const code = (e as NodeJS.ErrnoException).code;
  noVerdict(code ? `cannot read ${file}: ${code}` : `internal error: ${(e as Error).message}`);
}

const checks: Check[] = [];
// The checkpoint to check against: --checkpoint, else the note the export ends with.
const embedded = report.ok && opts.note !== false ? report.note : undefined;
const noteText = opts.checkpoint ? readNote(String(opts.checkpoint)) : embedded?.note;
if (report.ok && !noteText && required > 0)
  noVerdict('--witnesses needs --checkpoint: this export carries no checkpoint note');
if (report.ok && noteText) {
  const source: Proofs =
    !opts.checkpoint && !opts.previous
      ? exportProofs(embedded!, report.firstSeq, report.lastSeq)
      : new (await import('./lib/proofs.js')).ProofSource(opts);
  try {
    if (!opts.checkpoint) {
      // The record's size picks the proofs; the signed text is what counts: they must agree.
      const signed = parseCheckpoint(parseNote(noteText).text).size;
      const same = signed === embedded!.size;
      const sizeCheck: Check = same
        ? { ok: true, what: `checkpoint note of size ${signed} carried by the export` }
        : { ok: false, what: `the export's note record says size ${embedded!.size} but its note signs size ${signed}` };
      checks.push(sizeCheck);
    }
    // Once failed, proofs for another size would only give no verdict.
    if (!checks.some((c) => !c.ok) && !opts.signaturesOnly)
      checks.push(...(await checkTree(report.firstSeq, report.lastSeq, noteText, source)));
    if (required > 0 || opts.signaturesOnly) {
      const logKeys = opts.logKey ? [new Uint8Array(Buffer.from(String(opts.logKey), 'base64'))] : await headerKeys();
      checks.push(...checkWitnessed(noteText, logKeys, witnessKeys, required, opts.origin as string | undefined));
    }
  } catch (e) {
    if (e instanceof NoteError)
      checks.push({ ok: false, what: `a checkpoint does not verify: ${e.kind}: ${e.message}` });
    else noVerdict(`cannot check the checkpoint: ${(e as Error).message}`);
  } finally {
    source.close();
  }
}
// Request signatures: only over an export whose chain verified (its entries are the log's).
let requests: RequestReport | undefined;
if (report.ok && opts.requests) {
  const auditor = new RequestAuditor(clientKeys);
  for await (const r of readExport(file)) {
    if (r.type !== 'entry') continue;
    const { type: _t, ...e } = r;
    auditor.accept(e);
  }
  requests = auditor.report();
}
const ok = report.ok && checks.every((c) => c.ok) && (requests?.ok ?? true);
if (json) process.stdout.write(`${JSON.stringify({ ...report, ok, checks, ...(requests ? { requests } : {}) })}\n`);
else {
  process.stdout.write(`${formatReport(report)}\n`);
  for (const c of checks) process.stdout.write(`${c.ok ? 'ok    ' : 'FAILED'} ${c.what}\n`);
  if (requests) {
    for (const f of requests.findings) process.stdout.write(`FAILED entry ${f.seq}: ${f.what}\n`);
    process.stdout.write(
      `${requests.ok ? 'OK' : 'FAILED'}: requests: ${requests.verified} client request signatures verified, ` +
        `${requests.covered} signatures asked for by a client, ${requests.findings.length} problems\n`,
    );
  }
  if (report.ok && checks.length)
    process.stdout.write(
      ok ? `OK: checkpoint ${required > 0 ? 'witnessed' : 'verified'}\n` : 'FAILED: checkpoint check\n',
    );
}
if (process.env.AUDIT_VERIFY_RSS) process.stderr.write(`peak RSS: ${process.resourceUsage().maxRSS} KiB\n`);
process.exitCode = ok ? 0 : 1;

/** The entries firstSeq..lastSeq of the (already chain-verified) export against --checkpoint. */
async function checkTree(firstSeq: number, lastSeq: number, noteText: string, source: Proofs): Promise<Check[]> {
  const keys: Uint8Array[] = [];
  const entries = readExport(file);
  const out: Check[] = [];
  const origin = opts.origin as string | undefined;
  let first: AuditEntry | undefined;
  for await (const r of entries) {
    if (r.type === 'header') keys.push(...r.auditKeys.map((k) => hexToBytes(k.publicKey)));
    if (r.type === 'entry') {
      const { type: _t, ...e } = r;
      first = e;
      break;
    }
  }
  const opened = openLogCheckpoint(noteText, keys, { origin });
  const cp = opened.checkpoint;
  const root = Buffer.from(cp.root).toString('base64');
  const cosigned = parseNote(noteText).sigs.length - 1;
  out.push({
    ok: true,
    what: `checkpoint ${cp.origin} size ${cp.size} root ${root} (${cosigned} other signature lines) is signed by an audit key of the header`,
  });
  // The compact range before the first entry: the left half of the first entry's audit path.
  let run = new RunRoot();
  if (firstSeq > 1) {
    const { hashes } = await source.inclusion(firstSeq, Math.max(cp.size, firstSeq));
    const proved = checkEntryInclusion(first!, hashes, cp);
    out.push(...proved.slice(2).map((c) => ({ ...c, what: `first ${c.what}` })));
    if (!proved.every((c) => c.ok)) return out;
    run = new RunRoot(frontierFromInclusionProof(firstSeq - 1, cp.size, hashes));
  }
  let atSize: Uint8Array | undefined;
  for await (const r of readExport(file)) {
    if (r.type !== 'entry' || r.seq > Math.max(lastSeq, cp.size)) continue;
    const { type: _t, ...e } = r;
    run.add(e);
    if (run.size === cp.size) atSize = run.root();
  }
  const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
  if (cp.size <= lastSeq) {
    out.push({
      ok: !!atSize && eq(atSize, cp.root),
      what: `the tree of entries 1..${cp.size}, recomputed from the export, has the signed root`,
    });
    if (cp.size < lastSeq)
      out.push({ ok: true, what: `note: entries ${cp.size + 1}..${lastSeq} are after this checkpoint` });
  } else {
    const proof = await source.consistency(lastSeq, cp.size);
    const ok = verifyConsistencyOf(lastSeq, cp.size, proof, run.root(), cp.root);
    out.push({
      ok,
      what: `the tree of entries 1..${lastSeq}, recomputed from the export, is a prefix of the signed tree of size ${cp.size}`,
    });
  }
  if (opts.previous) {
    const older = openLogCheckpoint(readNote(String(opts.previous)), keys, { origin }).checkpoint;
    if (older.origin !== cp.origin)
      out.push({ ok: false, what: `the previous checkpoint is of another log (${older.origin})` });
    const proof = older.size > 0 && older.size <= cp.size ? await source.consistency(older.size, cp.size) : [];
    out.push(checkConsistent(older, cp, proof));
  }
  return out;
}

function verifyConsistencyOf(a: number, b: number, proof: Uint8Array[], ra: Uint8Array, rb: Uint8Array): boolean {
  return checkConsistent({ origin: '', size: a, root: ra }, { origin: '', size: b, root: rb }, proof).ok;
}

/** --client-key cn=file values: each file's certificates and public keys, by client CN. */
function readClientKeys(values: string[]): Map<string, RequestKey[]> {
  const out = new Map<string, RequestKey[]>();
  for (const v of values) {
    const i = v.indexOf('=');
    if (i <= 0) throw new Error('--client-key is <client CN>=<PEM file>');
    const [cn, path] = [v.slice(0, i), v.slice(i + 1)];
    const pem = readFileSync(path, 'utf8');
    const keys = [
      ...parseCertificates(pem).map((c) => requestKeyOf(c.publicKey, 'certificate')),
      ...(pem.match(/-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/g) ?? []).map((b) =>
        requestKeyOf(b, 'registered'),
      ),
    ];
    if (keys.length === 0) throw new Error(`${path} holds no certificate or public key`);
    out.set(cn, [...(out.get(cn) ?? []), ...keys]);
  }
  return out;
}

/** The proofs the export's note record carries; any other is not in the file. */
function exportProofs(n: NoteRecord, first: number, last: number): Proofs {
  const bytes = (hs: string[]) => hs.map((h) => hexToBytes(h));
  return {
    async inclusion(seq, treeSize) {
      if (seq !== first || treeSize !== n.size)
        throw new Error(`the export carries no inclusion proof of ${seq} in a tree of ${treeSize}`);
      return { hashes: bytes(n.inclusion) };
    },
    async consistency(fromSize, toSize) {
      if (fromSize !== last || toSize !== n.size)
        throw new Error(`the export carries no consistency proof from ${fromSize} to ${toSize}`);
      return bytes(n.consistency);
    },
    close() {},
  };
}

/** The audit keys of the export's header (none for CSV: pass --log-key). */
async function headerKeys(): Promise<Uint8Array[]> {
  for await (const r of readExport(file)) {
    if (r.type === 'header') return r.auditKeys.map((k) => hexToBytes(k.publicKey));
    break;
  }
  return [];
}
