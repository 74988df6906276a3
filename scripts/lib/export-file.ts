import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { isCsvHeader, parseCsvLine } from '../../src/core/audit/csv.js';
import { type ExportRecord, parseJsonLine } from '../../src/core/audit/format.js';

/** The records of an export file (JSONL or CSV, told apart by the first line), streamed. */
export async function* readExport(file: string): AsyncGenerator<ExportRecord> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let n = 0;
  let csv = false;
  for await (const raw of lines) {
    n++;
    let text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (n === 1) {
      if (text.startsWith('\ufeff')) text = text.slice(1);
      if (isCsvHeader(text)) {
        csv = true;
        continue;
      }
    }
    yield csv ? parseCsvLine(text, n) : parseJsonLine(text, n);
  }
}
