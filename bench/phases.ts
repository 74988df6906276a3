/**
 * Where a JavaScript thread's busy time goes, by phase of a request: a V8 .cpuprofile (from
 * `--cpu-prof`) cut to a time window and each sample's stack attributed by one small explicit
 * table (PHASE_RULES). Pure: bench/profiled.ts and bench/cpuprofile.ts read the files.
 *
 * Native addon calls (better-sqlite3's `run`, pkcs11js's `C_Sign*`) have no frame of their own in
 * a V8 profile: their time is the calling JavaScript frame's, so the callers (src/infra/store,
 * src/infra/hsm) are in the table as well as the packages.
 */

export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber?: number;
}
export interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
/** The fields of a .cpuprofile that matter here; times in µs of the monotonic clock (process.hrtime). */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export const PHASES = [
  'gRPC',
  'request signature',
  'auth',
  'policy',
  'store',
  'audit',
  'HSM calls',
  'self-check',
  'payload decode',
  'FROST math',
  'rollback mark',
  'metrics',
  'GC',
  'native',
  'other',
] as const;
export type Phase = (typeof PHASES)[number];

/**
 * How a rule claims a sample:
 * - `owner`: everything under the frame (the outermost owner on the stack wins): work done on a
 *   phase's behalf, whatever library does it (the self-check's recovery, the rollback guard's reads);
 * - `specific`: the innermost specific frame on the stack wins (the store's code, its driver);
 * - `generic`: a shared library (hashes, curves, node's streams): only when no owner or specific
 *   frame is on the stack, the innermost generic frame's phase.
 * Repository files not named in the table are the `catch-all` "other" (service code of its own):
 * as a specific frame, so that a library calling back into them (grpc-js calling a handler) does
 * not take their time, except that a generic library they call keeps its phase (noble's schnorr
 * verify called by the threshold signer is FROST math, not "other").
 */
type Kind = 'owner' | 'specific' | 'catch-all' | 'generic';
interface Rule {
  phase: Phase;
  kind: Kind;
  /** Tested against the frame's url, or its function name when `fn` is set. */
  match: RegExp;
  fn?: true;
}

const NM = '/node_modules/';
const pkg = (name: string) => new RegExp(`${NM}${name.replace('/', '\\/')}/`);
const src = (path: string) => new RegExp(`/src/${path}`);

export const PHASE_RULES: Rule[] = [
  { phase: 'GC', kind: 'owner', match: /^\(garbage collector\)$/, fn: true },
  // V8's "(program)": native work with no JavaScript on the stack (TLS and HTTP/2 framing in C++,
  // libuv callbacks before they reach JavaScript).
  { phase: 'native', kind: 'owner', match: /^\(program\)$/, fn: true },
  { phase: 'metrics', kind: 'owner', match: pkg('prom-client') },
  { phase: 'metrics', kind: 'owner', match: src('infra/metrics\\.ts') },
  { phase: 'rollback mark', kind: 'owner', match: src('infra/hsm/mark') },
  { phase: 'rollback mark', kind: 'owner', match: src('signer/audit/(rollback-guard|log-heads)\\.ts') },
  { phase: 'self-check', kind: 'owner', match: src('signer/signing/(selfcheck|secp256k1-native)\\.ts') },
  { phase: 'request signature', kind: 'owner', match: src('signer/grpc/request-signature\\.ts') },
  { phase: 'request signature', kind: 'owner', match: src('(infra/request-verify-native|core/signatures)\\.ts') },
  { phase: 'request signature', kind: 'owner', match: src('core/request-signing/') },
  { phase: 'request signature', kind: 'owner', match: src('cosigner/request-check\\.ts') },
  { phase: 'FROST math', kind: 'owner', match: src('core/frost/') },
  { phase: 'audit', kind: 'specific', match: src('core/audit/') },
  { phase: 'audit', kind: 'specific', match: src('signer/audit/drafts\\.ts') },
  { phase: 'store', kind: 'specific', match: src('infra/store/') },
  { phase: 'store', kind: 'specific', match: src('(core/replay/|cosigner/(store|records|destroy-store)\\.ts)') },
  { phase: 'audit', kind: 'specific', match: src('cosigner/share-audit\\.ts') },
  { phase: 'store', kind: 'specific', match: pkg('better-sqlite3') },
  { phase: 'store', kind: 'specific', match: /\/node_modules\/pg(-[a-z]+)?\// },
  { phase: 'HSM calls', kind: 'specific', match: src('infra/hsm/') },
  { phase: 'HSM calls', kind: 'specific', match: pkg('pkcs11js') },
  { phase: 'HSM calls', kind: 'specific', match: /^C_[A-Za-z]+$/, fn: true },
  { phase: 'auth', kind: 'specific', match: src('infra/grpc/(auth|peer-cert|peer-trust|crl|client-slots)\\.ts') },
  { phase: 'policy', kind: 'specific', match: src('(core/policy/|signer/policy/|cosigner/policy-check\\.ts)') },
  { phase: 'payload decode', kind: 'specific', match: src('core/payloads/') },
  { phase: 'payload decode', kind: 'specific', match: pkg('viem') },
  { phase: 'gRPC', kind: 'specific', match: pkg('@grpc/grpc-js') },
  { phase: 'gRPC', kind: 'specific', match: pkg('protobufjs') },
  { phase: 'gRPC', kind: 'specific', match: src('(infra/grpc/(unary|proto|request-guard)|signer/grpc/convert)\\.ts') },
  { phase: 'gRPC', kind: 'specific', match: src('signer/threshold/cosigner-client\\.ts') },
  { phase: 'other', kind: 'catch-all', match: /^(?!.*\/node_modules\/).*\/(src|harness)\// },
  { phase: 'self-check', kind: 'generic', match: pkg('secp256k1') },
  { phase: 'FROST math', kind: 'generic', match: pkg('sodium-native') },
  { phase: 'FROST math', kind: 'generic', match: pkg('@noble/curves') },
  { phase: 'payload decode', kind: 'generic', match: /\/node_modules\/(ox|abitype|@noble\/hashes\/sha3)/ },
  { phase: 'audit', kind: 'generic', match: pkg('@noble/hashes') },
  { phase: 'gRPC', kind: 'generic', match: /^node:(internal\/)?(http2|net|tls|_tls|stream|js_stream_socket)/ },
];

/** A frame's rule: the first in table order that matches (so the narrower rule comes first). */
function ruleOf(cf: CallFrame): Rule | undefined {
  for (const r of PHASE_RULES) if (r.match.test(r.fn ? cf.functionName : cf.url)) return r;
  return undefined;
}

/** The phase of one sample, from its stack (leaf first). */
export function phaseOf(stack: CallFrame[]): Phase {
  let owner: Phase | undefined;
  let specific: Phase | undefined;
  let generic: Phase | undefined;
  for (const cf of stack) {
    const r = ruleOf(cf);
    if (!r) continue;
    if (r.kind === 'owner')
      owner = r.phase; // keeps going: the outermost owner wins
    else if (r.kind === 'specific') specific ??= r.phase;
    else if (r.kind === 'catch-all') specific ??= generic ?? r.phase;
    else generic ??= r.phase;
  }
  return owner ?? specific ?? generic ?? 'other';
}

export interface PhaseProfile {
  /** The window actually covered by samples, µs. */
  windowUs: number;
  /** JS thread on a CPU (every sample but "(idle)"), µs. */
  busyUs: number;
  idleUs: number;
  samples: number;
  /** µs of busy time by phase, largest first; phases with none left out. */
  phases: Array<{ phase: Phase; us: number }>;
}

/**
 * Attributes the samples whose time falls in [fromUs, toUs] (the profile's clock: µs of the
 * monotonic clock, as `process.hrtime.bigint() / 1000n` of any process on the machine). A
 * sample's time is the profile's startTime plus the deltas up to it; its weight is its own delta.
 */
export function attribute(p: CpuProfile, fromUs = -Infinity, toUs = Infinity): PhaseProfile {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const memo = new Map<number, Phase | 'idle'>();
  const phaseOfNode = (id: number): Phase | 'idle' => {
    let ph = memo.get(id);
    if (ph) return ph;
    const leaf = byId.get(id)!.callFrame.functionName;
    if (leaf === '(idle)') ph = 'idle';
    else {
      const stack: CallFrame[] = [];
      for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) stack.push(byId.get(n)!.callFrame);
      ph = phaseOf(stack);
    }
    memo.set(id, ph);
    return ph;
  };
  const us = new Map<Phase, number>();
  let [t, busyUs, idleUs, samples, first, last] = [p.startTime, 0, 0, 0, Infinity, -Infinity];
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    t += dt;
    if (t < fromUs || t > toUs) continue;
    [first, last] = [Math.min(first, t - dt), t];
    samples++;
    const ph = phaseOfNode(p.samples[i]!);
    if (ph === 'idle') idleUs += dt;
    else {
      busyUs += dt;
      us.set(ph, (us.get(ph) ?? 0) + dt);
    }
  }
  const phases = [...us].map(([phase, v]) => ({ phase, us: v })).sort((a, b) => b.us - a.us);
  return { windowUs: samples ? last - first : 0, busyUs, idleUs, samples, phases };
}
