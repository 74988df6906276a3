/**
 * Fetches a signed checkpoint note (Audit.GetCheckpoint, auditor role) and saves it as is, to
 * keep and to verify exports against later (verify-audit --checkpoint / --previous). With
 * --public-key it also checks the note's signature before saving (exit 1 when it fails).
 */
import { writeFileSync } from 'node:fs';
import { hexToBytes } from '@noble/hashes/utils.js';
import { Command } from 'commander';
import { openLogCheckpoint } from '../src/core/audit/tlog-verify.js';
import { proofOptions } from './lib/proof-options.js';
import { ProofSource } from './lib/proofs.js';

const program = proofOptions(
  new Command()
    .name('audit-checkpoint')
    .description("Fetch and save the latest (or a given size's) signed audit checkpoint note.")
    .requiredOption('--out <file>', 'where to write the note')
    .option('--size <n>', 'the checkpoint of exactly this tree size (default: the latest)', '0')
    .option('--public-key <hex>', 'check the note is signed by this audit Ed25519 key before saving'),
).exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
program.parse();
const opts = program.opts();
const source = new ProofSource(opts);
try {
  const note = await source.checkpoint(Number(opts.size));
  if (opts.publicKey) {
    try {
      const { checkpoint } = openLogCheckpoint(note, [hexToBytes(String(opts.publicKey))]);
      process.stderr.write(`audit-checkpoint: ${checkpoint.origin} size ${checkpoint.size} verified\n`);
    } catch (e) {
      process.stdout.write(`FAILED: the checkpoint does not verify: ${(e as Error).message}\n`);
      process.exit(1);
    }
  }
  writeFileSync(String(opts.out), note);
  process.stdout.write(`${note.split('\n').slice(0, 2).join(' size ')}\n`);
} catch (e) {
  process.stderr.write(`audit-checkpoint: no verdict: ${(e as Error).message}\n`);
  process.exitCode = 2;
} finally {
  source.close();
}
