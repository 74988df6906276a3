import { createPrivateKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ProposalKind } from '../../src/core/admin/proposal.js';
import { canonicalJson } from '../../src/core/policy/canonical.js';

/** A proposal as KeyAdmin returns it (proto signer.v1.Proposal). */
export interface WireProposal {
  id: string;
  kind: ProposalKind;
  target: string;
  baseVersion: number;
  document: string;
  proposedBy: string;
  proposedAt: { seconds: string } | null;
  state: string;
  quorum: number;
  loosenings: string[];
  approvals: Array<{ admin: string; valid: boolean; invalidReason: string }>;
  approvedAt: { seconds: string } | null;
  activatesAt: { seconds: string } | null;
  activeDocument: string;
  signingBytes: Buffer;
  note: string;
}

const when = (t: { seconds: string } | null) => (t ? new Date(Number(t.seconds) * 1000).toISOString() : '-');

/** One proposal in a few lines for people. */
export function describe(p: WireProposal): string {
  const approvals = p.approvals.map((a) => `${a.admin}${a.valid ? '' : ` (does not count: ${a.invalidReason})`}`);
  return [
    `proposal ${p.id}: ${p.kind} ${p.target} (base version ${p.baseVersion}) by ${p.proposedBy} at ${when(p.proposedAt)}`,
    `  state ${p.state}; approvals ${p.approvals.filter((a) => a.valid).length} of ${p.quorum}: ${approvals.join(', ') || 'none'}`,
    `  approved ${when(p.approvedAt)}; applies ${when(p.activatesAt)}${p.note ? `; ${p.note}` : ''}`,
  ].join('\n');
}

/** The policy pretty-printed with sorted keys, so a diff shows changes, not key order. */
export function pretty(doc: string): string[] {
  return doc ? JSON.stringify(JSON.parse(canonicalJson(JSON.parse(doc))), null, 2).split('\n') : [];
}

/** A line diff (longest common subsequence): "-" lines only in `a`, "+" lines only in `b`. */
export function lineDiff(a: string[], b: string[]): string[] {
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      out.push(`  ${a[i++]}`);
      j++;
    } else if (j < m && (i === n || lcs[i]![j + 1]! >= lcs[i + 1]![j]!)) out.push(`+ ${b[j++]}`);
    else out.push(`- ${a[i++]}`);
  }
  return out;
}

/**
 * Signs the proposal's canonical bytes with an admin's private key file (PEM): ECDSA P-256 with
 * SHA-256 (r||s), or Ed25519. The key never leaves this process.
 */
export function signWithKeyFile(file: string, bytes: Uint8Array): Buffer {
  const key = createPrivateKey(readFileSync(file));
  if (key.asymmetricKeyType === 'ed25519') return sign(null, bytes, key);
  if (key.asymmetricKeyType === 'ec') return sign('sha256', bytes, { key, dsaEncoding: 'ieee-p1363' });
  throw new Error(`${file}: expected a P-256 or Ed25519 private key, got ${key.asymmetricKeyType}`);
}
