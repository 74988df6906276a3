import { type Logger, pino } from 'pino';

export type { Logger };

/**
 * Structured JSON logs. Fields that could carry secrets are redacted by name as a second line
 * of defence; the first is never passing them to the logger.
 */
export function createLogger(level = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'hsm-signer' },
      redact: { paths: ['pin', '*.pin', 'key', 'share', 'nonce', 'payload', '*.payload'], censor: '[redacted]' },
    },
    destination as pino.DestinationStream | undefined,
  );
}
