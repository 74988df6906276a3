import { z } from 'zod';
import { timezoneProblem } from '../../core/rotation/due.js';
import { cronProblem } from './cron.js';

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port');
const role = z.enum(['signer', 'admin', 'auditor']);
const hsmAlgorithm = z.enum(['ecdsa-secp256k1', 'ecdsa-p256', 'ed25519']);
const algorithm = z.enum([...hsmAlgorithm.options, 'frost-ed25519', 'frost-secp256k1-tr']);
const certPair = z.object({ certFile: z.string().min(1), keyFile: z.string().min(1) }).strict();

/**
 * The whole configuration, validated at start. Unknown fields are errors (deny by default), so a
 * misspelt option never silently falls back to a default.
 */
export const configSchema = z
  .object({
    /**
     * `signer` serves Signer/KeyAdmin/Audit (and coordinates threshold keys); `cosigner` holds
     * one share of each threshold key and serves only signer.v1.Cosigner.
     */
    role: z.enum(['signer', 'cosigner']).default('signer'),
    listen: hostPort,
    tls: z
      .object({
        caFile: z.string().min(1),
        certFile: z.string().min(1),
        keyFile: z.string().min(1),
      })
      .strict(),
    hsm: z
      .object({
        /** RFC 7512 URI naming module, token (label or serial) and PIN source. */
        uri: z.string().startsWith('pkcs11:'),
        sessions: z.number().int().min(1).max(256).default(8),
        /** Environment the PKCS#11 module reads at load (e.g. SOFTHSM2_CONF). */
        moduleEnv: z.record(z.string(), z.string()).default({}),
        /** How often a dead token is probed for recovery. */
        recoveryIntervalMs: z.number().int().min(50).default(1000),
      })
      .strict(),
    /** Exactly one backend: embedded SQLite, or PostgreSQL shared by replicas. */
    store: z.union([
      z.object({ sqlite: z.object({ path: z.string().min(1) }).strict() }).strict(),
      z
        .object({
          postgres: z
            .object({ url: z.string().startsWith('postgres'), poolSize: z.number().int().min(1).max(100).default(10) })
            .strict(),
        })
        .strict(),
    ]),
    /**
     * Named signing policies (schema: src/core/policy/schema.ts). Recorded in the store at start when
     * their text changed since config last set them; KeyAdmin.SetPolicy adds later versions.
     */
    policies: z.record(z.string(), z.unknown()).default({}),
    replay: z
      .object({
        /**
         * How long a reservation stays owned by the replica signing it; after a crash, retries of
         * the same request get ABORTED until then, and sign it afterwards.
         */
        leaseMs: z.number().int().min(100).max(600_000).default(30_000),
      })
      .strict()
      .default({ leaseMs: 30_000 }),
    audit: z
      .object({
        /** Sign the chain head with the HSM audit key after this many entries... */
        checkpointEveryEntries: z.number().int().min(1).default(1000),
        /** ...or this long after the last checkpoint. */
        checkpointEveryMs: z.number().int().min(100).default(60_000),
        /**
         * The origin line of the checkpoint notes (and the log key's name): names this deployment
         * to auditors and witnesses. No spaces or '+'. Default `hsm-signer/<hostname>`.
         */
        origin: z
          .string()
          .regex(/^[\x21-\x7e]+$/)
          .refine((s) => !s.includes('+'), 'no "+" in an origin')
          .optional(),
      })
      .strict()
      .default({ checkpointEveryEntries: 1000, checkpointEveryMs: 60_000 }),
    rotation: z
      .object({
        /** How long a rotated-out version stays verify-only before it is disabled. */
        overlapSeconds: z.number().int().min(0).max(90 * 24 * 3600).default(24 * 3600),
        /**
         * Scheduled rotation per key id: node-cron expressions (5 fields, or 6 with seconds
         * first), read in `timezone` (default UTC). A fire rotates the key only when its active
         * version is at least `minAgeSeconds` old; a fire missed while down runs once at start.
         */
        schedules: z
          .record(
            z.string().min(1),
            z
              .object({
                cron: z.string().superRefine((v, ctx) => {
                  const problem = cronProblem(v);
                  if (problem) ctx.addIssue({ code: 'custom', message: problem });
                }),
                minAgeSeconds: z.number().int().min(0).default(0),
                /**
                 * rotate: a new key version (new address). refresh: threshold keys only, new
                 * shares on the cosigners for the same key; minAgeSeconds then counts from the
                 * last refresh.
                 */
                action: z.enum(['rotate', 'refresh']).default('rotate'),
                timezone: z
                  .string()
                  .superRefine((v, ctx) => {
                    const problem = timezoneProblem(v);
                    if (problem) ctx.addIssue({ code: 'custom', message: problem });
                  })
                  .optional(),
              })
              .strict(),
          )
          .default({}),
      })
      .strict()
      .default({ overlapSeconds: 24 * 3600, schedules: {} }),
    /** How often a replica reloads keys and policies that other replicas changed. */
    refreshMs: z.number().int().min(100).default(5000),
    /** Client identities are certificate subject CNs from the trusted CA. */
    clients: z.record(z.string().min(1), z.object({ roles: z.array(role).min(1) }).strict()),
    /**
     * Which clients may sign with which keys. Keys are exact ids or prefixes ending in `*`.
     * A key matching no entry can be signed by nobody.
     */
    keyAccess: z.record(z.string().min(1), z.array(z.string().min(1))).default({}),
    metrics: z.object({ listen: hostPort }).strict().optional(),
    /** Signer role: the cosigners that hold threshold keys' shares (FROST, src/threshold). */
    threshold: z
      .object({
        /** Shares needed to sign (t of n); n is the number of cosigners. */
        minSigners: z.number().int().min(2),
        cosigners: z
          .array(
            z
              .object({
                id: z.number().int().min(1).max(255),
                address: hostPort,
                /** Name the cosigner's certificate is checked against (default: its host). */
                serverName: z.string().min(1).optional(),
              })
              .strict(),
          )
          .min(2),
        /** Client certificate this signer presents to cosigners (clientAuth, from the same CA). */
        tls: certPair,
        /** A cosigner that has not answered a protocol step within this is skipped. */
        deadlineMs: z.number().int().min(50).max(60_000).default(2000),
        /** Nonce commitments fetched ahead per cosigner and key, so signing is one round trip. */
        poolSize: z.number().int().min(1).max(256).default(32),
        /** Threshold signatures out to the cosigners at once; more wait here, hot ones first. */
        maxInFlight: z.number().int().min(1).max(1024).default(16),
      })
      .strict()
      .refine((t) => t.minSigners <= t.cosigners.length, { message: 'minSigners must not exceed the number of cosigners' })
      .refine((t) => new Set(t.cosigners.map((c) => c.id)).size === t.cosigners.length, { message: 'cosigner ids must be unique' })
      .optional(),
    /** Cosigner role: this node's id and the client certificate CNs allowed to call it. */
    cosigner: z
      .object({
        id: z.number().int().min(1).max(255),
        peers: z.array(z.string().min(1)).min(1),
        /**
         * Certificate (CN=cosigner-<id>, from the tls CA) and key this cosigner signs its
         * ceremony messages with; the other cosigners check them, so the coordinator cannot
         * impersonate a cosigner in a DKG or refresh.
         */
        identity: certPair,
        /** Pooled nonces per key are capped; the oldest are discarded first. */
        maxPooledNonces: z.number().int().min(1).max(100_000).default(10_000),
      })
      .strict()
      .optional(),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') })
      .strict()
      .default({ level: 'info' }),
  })
  .strict()
  .refine((c) => c.role !== 'cosigner' || c.cosigner !== undefined, { message: 'role "cosigner" needs a cosigner section', path: ['cosigner'] })
  .refine((c) => c.role !== 'cosigner' || 'sqlite' in c.store, { message: 'a cosigner keeps its shares in an sqlite store', path: ['store'] });

export type Config = z.infer<typeof configSchema>;
export type Role = z.infer<typeof role>;
export type Algorithm = z.infer<typeof algorithm>;
export type HsmAlgorithm = z.infer<typeof hsmAlgorithm>;
export const algorithms = algorithm.options;
