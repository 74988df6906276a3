import { canonicalJson } from '../policy/canonical.js';

/**
 * Who may call the signer and with which keys, as one document the admin quorum changes (the
 * proposal kind "access"; README "Admin quorum"). The config file's `clients` and `keyAccess`
 * seed its first version. Pure: the signer, the scripts and an auditor build the same text.
 */
export const ACCESS_ROLES = ['signer', 'admin', 'auditor'] as const;
export type AccessRole = (typeof ACCESS_ROLES)[number];

export interface AccessClient {
  roles: AccessRole[];
  /** Canonical pins (`cert-sha256:<hex>`, `spki-sha256:<hex>`); empty: any certificate of the CN. */
  pins: string[];
  /** PEM SPKI public keys it may sign requests with besides its certificate's. */
  requestKeys: string[];
  /** Always explicit in the stored document, so what admins sign says it. */
  requireSignedRequests: boolean;
}

export interface AccessDocument {
  clients: Record<string, AccessClient>;
  /** Key id or `prefix*` -> clients that may sign with it (default deny). */
  keyAccess: Record<string, string[]>;
}

/** The proposal target of every access proposal (there is one access document). */
export const ACCESS_TARGET = 'access';

const sorted = (xs: readonly string[]) => [...new Set(xs)].sort();

/** Sets are sorted and deduplicated, so one document has one canonical text (what admins sign). */
export function normaliseAccess(doc: AccessDocument): AccessDocument {
  const clients: AccessDocument['clients'] = {};
  for (const [cn, c] of Object.entries(doc.clients)) {
    clients[cn] = {
      roles: sorted(c.roles) as AccessRole[],
      pins: sorted(c.pins),
      requestKeys: sorted(c.requestKeys),
      requireSignedRequests: c.requireSignedRequests,
    };
  }
  const keyAccess: AccessDocument['keyAccess'] = {};
  for (const [pattern, list] of Object.entries(doc.keyAccess)) keyAccess[pattern] = sorted(list);
  return { clients, keyAccess };
}

export const accessText = (doc: AccessDocument): string => canonicalJson(normaliseAccess(doc));

/**
 * Every way `next` lets someone do more than `current` (null: no version yet, so everything
 * is new). Empty: it only tightens and applies once approved. Adding a pin to a pinned client
 * admits another certificate, and removing its last pin admits any: both loosen; removing one
 * of several pins, or pinning an unpinned client, tightens.
 */
export function accessLoosenings(current: AccessDocument | null, next: AccessDocument): string[] {
  const out: string[] = [];
  const cur = current ?? { clients: {}, keyAccess: {} };
  for (const [cn, n] of Object.entries(next.clients)) {
    const c = cur.clients[cn];
    if (!c) {
      out.push(`client "${cn}" added (roles ${n.roles.join(', ')})`);
      continue;
    }
    for (const r of n.roles) if (!c.roles.includes(r)) out.push(`client "${cn}" gets the ${r} role`);
    if (c.pins.length > 0 && n.pins.length === 0) out.push(`client "${cn}" is no longer pinned (any certificate)`);
    else if (c.pins.length > 0)
      for (const p of n.pins) if (!c.pins.includes(p)) out.push(`client "${cn}" pin added: ${p}`);
    for (const k of n.requestKeys) if (!c.requestKeys.includes(k)) out.push(`client "${cn}" request-signing key added`);
    if (c.requireSignedRequests && !n.requireSignedRequests)
      out.push(`client "${cn}" may send unsigned requests (requireSignedRequests off)`);
  }
  for (const [pattern, list] of Object.entries(next.keyAccess)) {
    const before = cur.keyAccess[pattern] ?? [];
    for (const cn of list) if (!before.includes(cn)) out.push(`client "${cn}" may sign with keys "${pattern}"`);
  }
  return out;
}

/** A readable line diff of two access documents (for review before signing). */
export function accessDiff(current: AccessDocument | null, next: AccessDocument): string[] {
  const lines = (d: AccessDocument | null) => {
    if (!d) return [];
    const out: string[] = [];
    for (const [cn, c] of Object.entries(normaliseAccess(d).clients).sort(([a], [b]) => (a < b ? -1 : 1))) {
      out.push(`client ${cn} roles: ${c.roles.join(', ')}`);
      out.push(`client ${cn} requireSignedRequests: ${c.requireSignedRequests}`);
      for (const p of c.pins) out.push(`client ${cn} pin: ${p}`);
      for (const k of c.requestKeys) out.push(`client ${cn} request key: ${k.replace(/\s+/g, ' ').trim()}`);
    }
    for (const [p, list] of Object.entries(normaliseAccess(d).keyAccess).sort(([a], [b]) => (a < b ? -1 : 1)))
      out.push(`keyAccess ${p}: ${list.join(', ')}`);
    return out;
  };
  const a = lines(current);
  const b = lines(next);
  return [
    ...a.filter((l) => !b.includes(l)).map((l) => `- ${l}`),
    ...b.filter((l) => !a.includes(l)).map((l) => `+ ${l}`),
  ];
}
