import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Where a coordinator can be held for a test: after round three, after the prepared step is stored. */
export type PausePoint = 'round3' | 'prepared';

/**
 * Test-only: with SIGNER_TEST_CEREMONY_PAUSE="<point>:<op>:<dir>" (op: create, rotate or
 * refresh), the coordinator writes `<dir>/reached-<point>` when such a ceremony gets there and
 * waits until `<dir>/release-<point>` exists. A crash test kills the process exactly at that
 * point instead of hoping for timing. Unset (production), this returns at once.
 */
export async function testPause(point: PausePoint, op: string): Promise<void> {
  const spec = process.env.SIGNER_TEST_CEREMONY_PAUSE;
  const prefix = `${point}:${op}:`;
  const dir = spec?.startsWith(prefix) ? spec.slice(prefix.length) : undefined;
  if (dir === undefined) return;
  await writeFile(join(dir, `reached-${point}`), String(process.pid));
  while (!existsSync(join(dir, `release-${point}`))) await new Promise((r) => setTimeout(r, 50));
}
