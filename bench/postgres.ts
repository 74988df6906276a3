/** A throwaway PostgreSQL cluster (harness/postgres.ts) and the CPU its processes use. */
import { startPostgres } from '../harness/postgres.js';
import { findPostmaster, sampleTree } from './cpu.js';
import type { CpuSource } from './noise.js';

export interface BenchPostgres {
  url: string;
  /** CPU of the postmaster and its backends; 0 when the postmaster was not found. */
  cpu: CpuSource;
  stop(): Promise<void>;
}

export async function startBenchPostgres(log: (s: string) => void): Promise<BenchPostgres> {
  const pg = await startPostgres();
  const port = Number(new URL(pg.url).port);
  const pid = findPostmaster(port);
  if (pid === undefined) log(`no postmaster with -p ${port} in /proc: PostgreSQL's CPU will count as other processes (noise)`);
  return { url: pg.url, cpu: pid === undefined ? () => 0 : () => sampleTree(pid), stop: () => pg.stop() };
}
