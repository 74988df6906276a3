// Audit export at scale: fills a store with 100,000 entries (checkpoint every 1,000), exports
// them through the same generator Audit.ExportLog streams from, and reports wall time and how
// far the process's RSS rose; then verifies the file with scripts/verify-audit.ts.
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { promisify } from 'node:util';
import { ed25519 } from '@noble/curves/ed25519.js';
import { repoRoot, tempDir } from '../harness/token.js';
import { eventDraft } from '../src/core/audit/draft.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';
import { Checkpointer } from '../src/signer/audit/checkpointer.js';
import { exportRecords } from '../src/signer/audit/export.js';

const ENTRIES = Number(process.env.AUDIT_ENTRIES ?? 100_000);
const run = promisify(execFile);
const tmp = await tempDir('audit-export-');
try {
  const store = new SqliteStore(`${tmp.path}/audit.db`);
  // The HSM is not what is measured here: a software Ed25519 key stands in for the audit key.
  const secret = ed25519.utils.randomSecretKey();
  const key = { keyId: '_audit', version: 1, publicKey: ed25519.getPublicKey(secret) };
  const checkpointer = new Checkpointer(store, key, async (m) => ed25519.sign(m, secret), {
    everyEntries: 1000,
    everyMs: 3_600_000,
    origin: 'bench.example/hsm-signer',
  });
  for (let i = 0; i < ENTRIES; i += 1000) {
    const at = new Date(Date.UTC(2026, 0, 1) + i * 1000);
    await store.appendAudit(
      Array.from({ length: Math.min(1000, ENTRIES - i) }, (_, k) =>
        eventDraft('sign', new Date(at.getTime() + k * 1000), 'payment-engine', {
          keyId: 'hot-1',
          keyVersion: 1,
          intent: {
            chainId: '1',
            nonce: String(i + k),
            to: '0x000000000000000000000000000000000000a11c',
            value: '1000',
          },
        }),
      ),
    );
    await checkpointer.checkpointHead();
  }
  const file = `${tmp.path}/audit.jsonl`;
  const out = createWriteStream(file);
  const rssBefore = process.memoryUsage().rss;
  let peak = rssBefore;
  const started = performance.now();
  let records = 0;
  for await (const r of exportRecords(store, checkpointer, [key], { from: null, to: null })) {
    if (!out.write(`${JSON.stringify(r)}\n`)) await once(out, 'drain');
    if (++records % 5000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
  }
  out.end();
  await once(out, 'finish');
  const exportMs = performance.now() - started;
  const v0 = performance.now();
  const verified = await run(`${repoRoot}/node_modules/.bin/tsx`, ['scripts/verify-audit.ts', file], {
    cwd: repoRoot,
    env: { ...process.env, AUDIT_VERIFY_RSS: '1' },
  });
  const verifyMs = performance.now() - v0;
  const mib = (b: number) => (b / 2 ** 20).toFixed(0);
  console.log(
    `audit export: ${ENTRIES} entries, ${records} records in ${(exportMs / 1000).toFixed(1)} s; RSS ${mib(rssBefore)} -> peak ${mib(peak)} MiB (+${mib(peak - rssBefore)})`,
  );
  console.log(
    `verify-audit: ${(verifyMs / 1000).toFixed(1)} s wall (process start included): ${verified.stdout.trim()} ${verified.stderr.trim()}`,
  );
  await store.close();
} finally {
  await tmp.cleanup();
}
