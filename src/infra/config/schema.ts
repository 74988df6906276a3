import { z } from 'zod';
import { timezoneProblem } from '../../core/rotation/due.js';
import { cronProblem } from './cron.js';
import { normalisePin } from './pins.js';
import { requestKeyOf } from './request-keys.js';

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port');
const role = z.enum(['signer', 'admin', 'auditor']);
const hsmAlgorithm = z.enum(['ecdsa-secp256k1', 'ecdsa-p256', 'ed25519']);
const algorithm = z.enum([...hsmAlgorithm.options, 'frost-ed25519', 'frost-secp256k1-tr']);
/** An Ed25519 public key as standard base64 of its 32 bytes. */
const base64Key = z.string().refine((v) => /^[A-Za-z0-9+/]{43}=$/.test(v) && Buffer.from(v, 'base64').length === 32, {
  message: 'expected base64 of a 32-byte Ed25519 public key',
});
const certPair = z.object({ certFile: z.string().min(1), keyFile: z.string().min(1) }).strict();
const KiB = 1024;
const MiB = 1024 * KiB;
const DEFAULT_MESSAGE_BYTES = { sign: 256 * KiB, signBatch: 4 * MiB, setPolicy: 1 * MiB, other: 64 * KiB };
/** Half a MiB under the 4 MiB default receive limit of gRPC clients. */
export const DEFAULT_BATCH_RESPONSE_BYTES = 4 * MiB - 512 * KiB;
/** A client's request-signing public key: PEM SPKI of a P-256 or Ed25519 key. */
const requestKeyPem = z.string().refine(
  (v) => {
    try {
      requestKeyOf(v, 'registered');
      return true;
    } catch {
      return false;
    }
  },
  { message: 'expected a PEM public key (SubjectPublicKeyInfo), P-256 or Ed25519' },
);
/** Certificate pins in canonical form (src/infra/config/pins.ts). */
const pins = z.array(
  z.string().transform((v, ctx) => {
    const r = normalisePin(v);
    if ('pin' in r) return r.pin;
    ctx.addIssue({ code: 'custom', message: r.problem });
    return z.NEVER;
  }),
);

/**
 * An admin quorum: k of the named members, each a client certificate (its P-256 key,
 * `certificateFile`) or a registered key (`publicKey`: PEM SPKI, P-256 or Ed25519).
 */
const adminsSchema = z
  .object({
    quorum: z.number().int().min(1).max(64),
    policyDelaySeconds: z
      .number()
      .int()
      .min(0)
      .max(30 * 86400)
      .default(86400),
    members: z.record(
      z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'an admin name is 1..64 of [A-Za-z0-9._-]'),
      z
        .object({ certificateFile: z.string().min(1).optional(), publicKey: z.string().min(1).optional() })
        .strict()
        .refine((m) => (m.certificateFile === undefined) !== (m.publicKey === undefined), {
          message: 'expected exactly one of certificateFile or publicKey',
        }),
    ),
  })
  .strict()
  .refine((a) => a.quorum <= Object.keys(a.members).length, {
    message: 'quorum is larger than the number of members',
    path: ['quorum'],
  });

/**
 * An access document as admins propose it (core/admin/access.ts; README "Admin quorum"): the
 * config's `clients` and `keyAccess` in one object. `requireSignedRequests` absent means true
 * (a proposal must turn it off explicitly, and that is a loosening).
 */
export const accessDocumentSchema = z
  .object({
    clients: z.record(
      z.string().min(1),
      z
        .object({
          roles: z.array(role).min(1),
          pins: pins.default([]),
          requestKeys: z.array(requestKeyPem).default([]),
          requireSignedRequests: z.boolean().default(true),
        })
        .strict(),
    ),
    keyAccess: z.record(z.string().min(1), z.array(z.string().min(1))).default({}),
  })
  .strict();

/**
 * The whole configuration, validated at start. Unknown fields are errors (deny by default), so a
 * misspelt option never silently falls back to a default.
 */
export const configSchema = z
  .object({
    /**
     * `signer` serves Signer/KeyAdmin/Audit (and coordinates threshold keys); `cosigner` holds
     * one share of each threshold key and serves signer.v1.Cosigner (and Witness); `witness` serves
     * only signer.v1.Witness (section `witnessing`).
     */
    role: z.enum(['signer', 'cosigner', 'witness']).default('signer'),
    listen: hostPort,
    tls: z
      .object({
        /** The CA (PEM, one or more certificates) for every link below that names none of its own. */
        caFile: z.string().min(1),
        certFile: z.string().min(1),
        keyFile: z.string().min(1),
        /** Signer: CA of client certificates (payment engine, admins, auditors). Default caFile. */
        clientCaFile: z.string().min(1).optional(),
        /**
         * CA of the signer <-> cosigner links: a cosigner accepts coordinators from it, a signer
         * checks cosigners' server certificates against it. Default caFile.
         */
        peerCaFile: z.string().min(1).optional(),
        /** CA of cosigners' ceremony identities (`cosigner.identity`). Default caFile. */
        identityCaFile: z.string().min(1).optional(),
        /**
         * Certificate revocation lists (PEM, one or more; or one DER), each signed by one of the
         * CAs above. Checked at every call, also on connections opened before a revocation.
         */
        crlFile: z.string().min(1).optional(),
        /** Refuse a client (or cosigner peer) that has no pins (default: pins are checked where set). */
        requirePins: z.boolean().default(false),
        /** Reload the CRL and the config's clients when either file changes (SIGHUP always does). */
        watch: z.boolean().default(true),
      })
      .strict(),
    /**
     * Connections are closed (GOAWAY) this long after they open, so a client re-handshakes and a
     * stream started before a revocation does not outlive it for long; calls in flight get the
     * grace to finish.
     */
    connections: z
      .object({
        maxAgeMs: z
          .number()
          .int()
          .min(1000)
          .default(30 * 60_000),
        maxAgeGraceMs: z.number().int().min(0).default(60_000),
      })
      .strict()
      .default({ maxAgeMs: 30 * 60_000, maxAgeGraceMs: 60_000 }),
    hsm: z
      .object({
        /** RFC 7512 URI naming module, token (label or serial) and PIN source. */
        uri: z.string().startsWith('pkcs11:'),
        sessions: z.number().int().min(1).max(256).default(8),
        /** Environment the PKCS#11 module reads at load (e.g. SOFTHSM2_CONF). */
        moduleEnv: z.record(z.string(), z.string()).default({}),
        /** How often a dead token is probed for recovery. */
        recoveryIntervalMs: z.number().int().min(50).default(1000),
        /**
         * Longest wait for a free HSM session, for a hot request and for a batch item (a batch
         * queues all its items at once); a gRPC deadline that comes first ends the wait sooner.
         * Then the request gets UNAVAILABLE HSM_UNAVAILABLE with a retry delay.
         */
        sessionWaitMs: z.number().int().min(1).max(600_000).default(2000),
        batchSessionWaitMs: z.number().int().min(1).max(600_000).default(60_000),
        /**
         * Longest an HSM call may run: the request then gets UNAVAILABLE, and the session stays
         * out of the pool until the call returns.
         */
        callTimeoutMs: z.number().int().min(10).max(600_000).default(5000),
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
    /**
     * Store rollback detection: the latest audit head under which signatures were released is
     * kept in the HSM (a data object per replica) and checked against the database at start and
     * before every release. `replica` names this replica's mark: every replica sharing a token
     * MUST have its own. `mark: false` turns it off (benchmarks; not for production).
     */
    rollback: z
      .object({
        mark: z.boolean().default(true),
        replica: z
          .string()
          .regex(/^[A-Za-z0-9._-]{1,64}$/, '1..64 of A-Z a-z 0-9 . _ -')
          .default('default'),
      })
      .strict()
      .default({ mark: true, replica: 'default' }),
    rotation: z
      .object({
        /** How long a rotated-out version stays verify-only before it is disabled. */
        overlapSeconds: z
          .number()
          .int()
          .min(0)
          .max(90 * 24 * 3600)
          .default(24 * 3600),
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
    /**
     * Bounds at the gRPC edge (README "Limits"). A request larger than its method's limit is
     * refused with RESOURCE_EXHAUSTED, MESSAGE_TOO_LARGE; the transport refuses (without
     * ErrorInfo) only what exceeds the largest method limit plus 1 MiB.
     */
    limits: z
      .object({
        messageBytes: z
          .object({
            sign: z
              .number()
              .int()
              .min(1024)
              .max(64 * MiB)
              .default(256 * KiB),
            /** Sized for the largest batch (10,000 items) of EVM transfers. */
            signBatch: z
              .number()
              .int()
              .min(1024)
              .max(64 * MiB)
              .default(4 * MiB),
            setPolicy: z
              .number()
              .int()
              .min(1024)
              .max(64 * MiB)
              .default(1 * MiB),
            /** Every other method: ids and small fields only. */
            other: z
              .number()
              .int()
              .min(1024)
              .max(64 * MiB)
              .default(64 * KiB),
          })
          .strict()
          .default(DEFAULT_MESSAGE_BYTES),
        /** HTTP/2 streams (calls) at once on one connection; more wait in the client. */
        maxConcurrentStreams: z.number().int().min(1).max(10_000).default(100),
        /** Calls one client (certificate CN) may have in flight; more get CLIENT_OVERLOADED. */
        maxInFlightPerClient: z.number().int().min(1).max(100_000).default(256),
        /** WatchKeys streams one client may hold open; more get CLIENT_OVERLOADED. */
        maxWatchStreamsPerClient: z.number().int().min(1).max(10_000).default(16),
        /** At stop, calls still running after this are cancelled. */
        shutdownGraceMs: z.number().int().min(0).max(60_000).default(2000),
        /**
         * The largest SignBatch response (and GetBatchResults page) the signer sends, in bytes:
         * a batch whose response could exceed it is refused before anything is reserved
         * (BATCH_RESPONSE_TOO_LARGE). Below the 4 MiB receive limit of default gRPC clients,
         * with room for the frame; raise it only for clients that raised theirs.
         */
        batchResponseBytes: z
          .number()
          .int()
          .min(64 * KiB)
          .max(64 * MiB)
          .default(DEFAULT_BATCH_RESPONSE_BYTES),
      })
      .strict()
      .default({
        messageBytes: DEFAULT_MESSAGE_BYTES,
        maxConcurrentStreams: 100,
        maxInFlightPerClient: 256,
        maxWatchStreamsPerClient: 16,
        shutdownGraceMs: 2000,
        batchResponseBytes: DEFAULT_BATCH_RESPONSE_BYTES,
      }),
    /** How often a replica reloads keys and policies that other replicas changed. */
    refreshMs: z.number().int().min(100).default(5000),
    /**
     * Client identities are certificate subject CNs from the client CA. Pins (see
     * src/infra/config/pins.ts; several during a rollover) narrow a client to those certificates
     * or keys. Reloaded on SIGHUP and when the config file changes.
     */
    clients: z.record(
      z.string().min(1),
      z
        .object({
          roles: z.array(role).min(1),
          pins: pins.optional(),
          /**
           * Whether this client's Sign and SignBatch must carry a request signature (README "How a
           * payment engine signs its requests"). Absent: the deployment's `requireSignedRequests`.
           */
          requireSignedRequests: z.boolean().optional(),
          /**
           * Public keys (PEM SubjectPublicKeyInfo, P-256 or Ed25519) the client may sign requests
           * with besides its certificate's key; several during a rollover.
           */
          requestKeys: z.array(requestKeyPem).optional(),
        })
        .strict(),
    ),
    /**
     * The deployment default of `clients.<name>.requireSignedRequests`. Absent means false: a
     * config written before request signing existed keeps serving its unsigned payment engine
     * (the signer logs a warning per such client at start). New deployments set it to true, as
     * scripts/dev-setup.sh does.
     */
    requireSignedRequests: z.boolean().default(false),
    /**
     * Which clients may sign with which keys. Keys are exact ids or prefixes ending in `*`.
     * A key matching no entry can be signed by nobody.
     */
    keyAccess: z.record(z.string().min(1), z.array(z.string().min(1))).default({}),
    metrics: z.object({ listen: hostPort }).strict().optional(),
    /**
     * The admin quorum (README "Admin quorum"): with this section, policies, key destruction and
     * unfreezing change only by proposals that `quorum` distinct members approve, each with a
     * signature by their own key over the proposal's canonical bytes; a loosening waits
     * `policyDelaySeconds` after approval. Each member is a client certificate (its P-256 key,
     * `certificateFile`) or a registered key (`publicKey`: PEM SPKI, P-256 or Ed25519).
     */
    admins: adminsSchema.optional(),
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
      .refine((t) => t.minSigners <= t.cosigners.length, {
        message: 'minSigners must not exceed the number of cosigners',
      })
      .refine((t) => new Set(t.cosigners.map((c) => c.id)).size === t.cosigners.length, {
        message: 'cosigner ids must be unique',
      })
      .optional(),
    /** Cosigner role: this node's id and the client certificate CNs allowed to call it. */
    cosigner: z
      .object({
        id: z.number().int().min(1).max(255),
        peers: z.array(z.string().min(1)).min(1),
        /** Pins per peer CN, as `clients.<name>.pins` on a signer. */
        peerPins: z.record(z.string().min(1), pins).default({}),
        /**
         * Certificate (CN=cosigner-<id>, from the tls CA) and key this cosigner signs its
         * ceremony messages with; the other cosigners check them, so the coordinator cannot
         * impersonate a cosigner in a DKG or refresh.
         */
        identity: certPair,
        /** Pooled nonces per key are capped; the oldest are discarded first. */
        maxPooledNonces: z.number().int().min(1).max(100_000).default(10_000),
        /**
         * How long a share ordered destroyed by the admin quorum (checked against this node's
         * own `admins` section) stops signing before it is overwritten; any one admin can
         * cancel meanwhile (README "Destroying threshold shares").
         */
        shareDestroyDelaySeconds: z
          .number()
          .int()
          .min(0)
          .max(30 * 86400)
          .default(86400),
        /**
         * The clients whose signed requests this cosigner releases shares for (README "What a
         * cosigner checks"): a request signed with the client certificate's key (from
         * `clientCaFile`, CN = the client, not on `tls.crlFile`) or with one of `requestKeys`
         * (PEM SPKI, P-256 or Ed25519). A client not listed gets no share.
         */
        clients: z
          .record(z.string().min(1), z.object({ requestKeys: z.array(requestKeyPem).optional() }).strict())
          .default({}),
        /** CA of client certificates. Default `tls.clientCaFile`, then `tls.caFile`. */
        clientCaFile: z.string().min(1).optional(),
        /**
         * Policy texts this cosigner trusts without approvals: the signer's config policies (the
         * versions the signer's config file set). Compared as canonical JSON.
         */
        policies: z.record(z.string(), z.unknown()).default({}),
      })
      .strict()
      .optional(),
    /**
     * Witness and cosigner roles: cosign the signer's audit checkpoints (src/witness). A cosigner
     * without this section serves no Witness.
     */
    witnessing: z
      .object({
        /** This witness's key name in notes, e.g. `witness-1.example.com` (no spaces, no '+'). */
        name: z.string().regex(/^[^\s+]+$/, 'a key name has no spaces and no "+"'),
        /** Client certificate CNs (from the tls CA) allowed to call, e.g. the signer's. */
        clients: z.array(z.string().min(1)).min(1),
        /**
         * Pins per client CN, as `clients.<name>.pins` on a signer. With `tls.crlFile` they are
         * checked at every call and reloaded (SIGHUP, file watch) like a signer's.
         */
        clientPins: z.record(z.string().min(1), pins).default({}),
        /** The logs witnessed: origin line and the log's Ed25519 audit public key (base64, 32 bytes). */
        logs: z.array(z.object({ origin: z.string().min(1), publicKey: base64Key }).strict()).min(1),
        /**
         * Its own SQLite file for the cosigned heads (role witness: default `store.sqlite.path`);
         * a cosigner needs one apart from its share store.
         */
        dbPath: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    /**
     * Signer role: witnesses that cosign each audit checkpoint; a checkpoint counts as published
     * once `required` of them cosigned it.
     */
    witness: z
      .object({
        endpoints: z
          .array(
            z
              .object({
                /** The witness's key name (its `witnessing.name`). */
                name: z.string().regex(/^[^\s+]+$/, 'a key name has no spaces and no "+"'),
                address: hostPort,
                /** Its Ed25519 cosigning public key, base64 (logged by the witness at start). */
                publicKey: base64Key,
                /** Name the witness's certificate is checked against (default: its host). */
                serverName: z.string().min(1).optional(),
              })
              .strict(),
          )
          .min(1),
        required: z.number().int().min(0),
        /** Client certificate this signer presents to witnesses. */
        tls: certPair,
        deadlineMs: z.number().int().min(50).max(60_000).default(3000),
      })
      .strict()
      .refine((w) => w.required <= w.endpoints.length, { message: 'required must not exceed the number of endpoints' })
      .refine((w) => new Set(w.endpoints.map((e) => e.name)).size === w.endpoints.length, {
        message: 'witness names must be unique',
      })
      .optional(),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') })
      .strict()
      .default({ level: 'info' }),
  })
  .strict()
  .refine((c) => c.role !== 'cosigner' || c.cosigner !== undefined, {
    message: 'role "cosigner" needs a cosigner section',
    path: ['cosigner'],
  })
  .refine((c) => c.role !== 'cosigner' || 'sqlite' in c.store, {
    message: 'a cosigner keeps its shares in an sqlite store',
    path: ['store'],
  })
  .refine((c) => c.role !== 'witness' || c.witnessing !== undefined, {
    message: 'role "witness" needs a witnessing section',
    path: ['witnessing'],
  })
  .refine((c) => c.role !== 'witness' || 'sqlite' in c.store || c.witnessing?.dbPath !== undefined, {
    message: 'a witness keeps its heads in an sqlite file (store.sqlite or witnessing.dbPath)',
    path: ['store'],
  })
  .refine((c) => c.role !== 'cosigner' || c.witnessing === undefined || c.witnessing.dbPath !== undefined, {
    message: 'a cosigner keeps witnessed heads in their own file: set witnessing.dbPath',
    path: ['witnessing', 'dbPath'],
  });

export type Config = z.infer<typeof configSchema>;
export type Role = z.infer<typeof role>;
export type Algorithm = z.infer<typeof algorithm>;
export type HsmAlgorithm = z.infer<typeof hsmAlgorithm>;
export const algorithms = algorithm.options;
