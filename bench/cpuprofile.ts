/**
 * Summarises a V8 .cpuprofile (from `--cpu-prof`, e.g. `bench/bench.ts --cpu-prof <dir>`): where
 * the JavaScript thread spent its busy time, by phase (bench/phases.ts, as the bench's profiled
 * pass attributes it), by module and by function, self and inclusive.
 *
 *   npx tsx bench/cpuprofile.ts <file.cpuprofile> [--top 25] [--from <s>] [--to <s>]
 *
 * --from/--to keep only samples in that span (seconds since the profile started), e.g. to cut
 * start-up out.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { attribute } from './phases.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const program = new Command()
  .argument('<file>')
  .option('--top <n>', 'rows per table', (v) => Number(v), 25)
  .option('--from <s>', 'ignore samples before this second', (v) => Number(v), 0)
  .option('--to <s>', 'ignore samples after this second', (v) => Number(v), Infinity)
  .parse();
const o = program.opts<{ top: number; from: number; to: number }>();
const prof = JSON.parse(readFileSync(program.args[0]!, 'utf8')) as Profile;

const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

/** A module name: npm package, repo file, node internal, or a V8 pseudo-frame. */
function moduleOf(cf: CallFrame): string {
  const u = cf.url;
  if (!u) return cf.functionName.startsWith('(') ? cf.functionName : '(native)';
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (u.startsWith('node:')) return u.split('/').slice(0, 2).join('/');
  const src = u.indexOf('/src/');
  return src >= 0 ? u.slice(src + 1) : u;
}
const fnKey = (cf: CallFrame) =>
  `${cf.functionName || '(anonymous)'}  ${moduleOf(cf)}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;

const self = new Map<string, number>();
const selfModule = new Map<string, number>();
const inclusive = new Map<string, number>();
const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);

let t = 0;
let busy = 0;
let idle = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0;
  t += dt;
  const sec = t / 1e6;
  if (sec < o.from || sec > o.to) continue;
  const node = byId.get(prof.samples[i]!)!;
  if (node.callFrame.functionName === '(idle)') {
    idle += dt;
    continue;
  }
  busy += dt;
  add(self, fnKey(node.callFrame), dt);
  add(selfModule, moduleOf(node.callFrame), dt);
  const seen = new Set<string>();
  for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
    const k = fnKey(byId.get(id)!.callFrame);
    if (!seen.has(k)) add(inclusive, k, dt);
    seen.add(k);
  }
}

const ms = (us: number) => (us / 1000).toFixed(0).padStart(7);
const share = (us: number) => `${((us / busy) * 100).toFixed(1)}%`.padStart(6);
function table(title: string, m: Map<string, number>) {
  console.log(`\n${title}`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, o.top)) console.log(`${ms(v)} ms ${share(v)}  ${k}`);
}

const span = (prof.endTime - prof.startTime) / 1e6;
console.log(
  `profile ${span.toFixed(1)} s; JS thread busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s (shares below are of busy time)`,
);
const phases = attribute(prof, prof.startTime + o.from * 1e6, prof.startTime + o.to * 1e6).phases;
table('busy time by phase (bench/phases.ts)', new Map(phases.map((x) => [x.phase, x.us])));
table('self time by module', selfModule);
table('self time by function', self);
table('inclusive time by function', inclusive);
