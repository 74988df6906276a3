/**
 * Velocity usage is kept in fixed buckets per (scope, subject) rather than one row per
 * signature, so a window's sum reads at most window/bucket rows. A window query includes the
 * whole oldest bucket it touches: limits err on the side of refusing, never of allowing more.
 */
export const VELOCITY_BUCKET_MS = 10_000;

export const velocityBucket = (ms: number) => Math.floor(ms / VELOCITY_BUCKET_MS);
