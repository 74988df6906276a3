import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../src/infra/log.js';

/** A real JSON logger whose lines a test reads back (to count them, or to look for secrets). */
export function captureLog(level = 'info'): {
  log: Logger;
  lines: Array<Record<string, unknown>>;
  text(): string;
} {
  const lines: Array<Record<string, unknown>> = [];
  let raw = '';
  const sink = new Writable({
    write(chunk, _encoding, done) {
      raw += String(chunk);
      for (const line of String(chunk).split('\n')) {
        if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { log: createLogger(level, sink), lines, text: () => raw };
}
