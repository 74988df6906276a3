/**
 * Reads the service's Prometheus endpoint and turns two scrapes into what happened between them:
 * signs served, CPU used, and the server-side latency histograms.
 */
import { get } from 'node:http';

/** Every sample of a scrape, keyed by `name{labels}` exactly as exposed. */
export type Scrape = Map<string, number>;

export function scrape(url: string): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
        const out: Scrape = new Map();
        for (const line of body.split('\n')) {
          if (!line || line.startsWith('#')) continue;
          const i = line.lastIndexOf(' ');
          out.set(line.slice(0, i), Number(line.slice(i + 1)));
        }
        resolve(out);
      });
    }).on('error', reject);
  });
}

export interface HistogramDelta {
  count: number;
  meanMs: number;
  /** Upper bound of the bucket holding the quantile (histograms only know buckets). */
  p50LeMs: number;
  p99LeMs: number;
}

export interface ServerWindow {
  signsOk: number;
  cpuSeconds: number;
  /** signer_sign_duration_seconds: handler start to signature verified (pool wait included). */
  handler?: HistogramDelta;
  /** signer_hsm_sign_duration_seconds: a session held from C_SignInit to C_SignAsync's continuation. */
  hsm?: HistogramDelta;
  /** The event-loop delay over the window (prom-client resets its histogram on every scrape). */
  eventLoop: { p99Ms?: number; maxMs?: number };
}

const sum = (s: Scrape, pred: (k: string) => boolean) => [...s].filter(([k]) => pred(k)).reduce((a, [, v]) => a + v, 0);
const diff = (a: Scrape, b: Scrape, pred: (k: string) => boolean) => sum(b, pred) - sum(a, pred);

function histogram(a: Scrape, b: Scrape, name: string, labels: string): HistogramDelta | undefined {
  const sel = (suffix: string) => (k: string) => k.startsWith(`${name}${suffix}`) && k.includes(labels);
  const count = diff(a, b, sel('_count'));
  if (count <= 0) return undefined;
  const buckets = [...b.keys()]
    .filter(sel('_bucket'))
    .map((k) => ({ le: Number(/le="([^"]+)"/.exec(k)![1]), n: (b.get(k) ?? 0) - (a.get(k) ?? 0) }))
    .sort((x, y) => x.le - y.le);
  const quantile = (q: number) => (buckets.find((x) => x.n >= q * count)?.le ?? Infinity) * 1000;
  return { count, meanMs: (diff(a, b, sel('_sum')) / count) * 1000, p50LeMs: quantile(0.5), p99LeMs: quantile(0.99) };
}

export function serverWindow(a: Scrape, b: Scrape, algorithm: string): ServerWindow {
  return {
    signsOk: diff(a, b, (k) => k.startsWith('signer_signs_total{') && k.includes('outcome="ok"')),
    cpuSeconds: diff(a, b, (k) => k === 'process_cpu_seconds_total'),
    handler: histogram(a, b, 'signer_sign_duration_seconds', `algorithm="${algorithm}"`),
    hsm: histogram(a, b, 'signer_hsm_sign_duration_seconds', ''),
    eventLoop: { p99Ms: ms(b, 'nodejs_eventloop_lag_p99_seconds'), maxMs: ms(b, 'nodejs_eventloop_lag_max_seconds') },
  };
}

const ms = (s: Scrape, k: string) => (s.has(k) ? s.get(k)! * 1000 : undefined);
