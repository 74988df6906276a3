/**
 * A throwaway PKI for tests, made with the `openssl` CLI: a CA, a server certificate, client
 * certificates, and a second ("foreign") CA whose client certificate must be rejected.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const DEFAULT_CLIENTS = ['payment-engine', 'security-admin', 'auditor', 'no-role-client'] as const;

export interface KeyPair {
  cert: Buffer;
  key: Buffer;
}

export interface KeyPairFiles {
  cert: string;
  key: string;
}

export interface Pki {
  caCert: Buffer;
  /** CN=hsm-signer, SAN DNS:localhost + IP:127.0.0.1, serverAuth. */
  server: KeyPair;
  /** By CN; clientAuth, signed by the CA. */
  clients: Record<string, KeyPair>;
  /** An unrelated CA and a client certificate CN=payment-engine signed by it. */
  foreign: { caCert: Buffer; client: KeyPair };
  files: {
    caCert: string;
    caKey: string;
    server: KeyPairFiles;
    clients: Record<string, KeyPairFiles>;
    foreign: { caCert: string; caKey: string; client: KeyPairFiles };
  };
}

const DAYS = '825';

const OPENSSL_CNF = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new Error('openssl not found: run `bash scripts/dev-setup.sh --test`');
    throw new Error(`openssl ${args[0]} failed: ${err.stderr?.trim() || err.message}`);
  }
}

/** A positive 120-bit serial, so certificates from different runs never collide. */
const serial = () => `0x1${randomBytes(15).toString('hex')}`;

/** CNs end up in file names and in `-subj`, so only a safe subset is accepted. */
function checkCn(cn: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(cn)) throw new Error(`makePki: unsupported client CN "${cn}"`);
}

/**
 * Creates the PKI in `dir` (created if needed). Files: ca.{crt,key}, server.{crt,key},
 * client-<cn>.{crt,key}, foreign-ca.{crt,key}, foreign-client-payment-engine.{crt,key}.
 * Keys are ECDSA P-256 in PKCS#8 PEM, mode 0600.
 */
export async function makePki(dir: string, clientNames: readonly string[] = DEFAULT_CLIENTS): Promise<Pki> {
  clientNames.forEach(checkCn);
  if (new Set(clientNames).size !== clientNames.length) throw new Error('makePki: duplicate client CN');
  const root = resolve(dir);
  const work = join(root, '.work');
  await mkdir(work, { recursive: true, mode: 0o700 });
  const cnf = join(work, 'openssl.cnf');
  await writeFile(cnf, OPENSSL_CNF);

  const pair = (stem: string): KeyPairFiles => ({ cert: join(root, `${stem}.crt`), key: join(root, `${stem}.key`) });
  const ca = pair('ca');
  const foreignCa = pair('foreign-ca');
  const server = pair('server');
  const clients = Object.fromEntries(clientNames.map((cn) => [cn, pair(`client-${cn}`)]));
  const foreignClient = pair('foreign-client-payment-engine');

  const makeCa = (files: KeyPairFiles, cn: string) =>
    openssl(['req', '-x509', '-new', ...P256, '-keyout', files.key, '-out', files.cert, '-subj', `/CN=${cn}`,
      '-days', DAYS, '-sha256', '-config', cnf, '-extensions', 'ca_ext', '-set_serial', serial()]);

  interface Leaf { files: KeyPairFiles; cn: string; ext: 'server_ext' | 'client_ext'; issuer: KeyPairFiles; csr: string }
  const leaves: Leaf[] = [
    { files: server, cn: 'hsm-signer', ext: 'server_ext', issuer: ca, csr: join(work, 'server.csr') },
    ...clientNames.map((cn): Leaf => ({
      files: clients[cn]!, cn, ext: 'client_ext', issuer: ca, csr: join(work, `client-${cn}.csr`),
    })),
    { files: foreignClient, cn: 'payment-engine', ext: 'client_ext', issuer: foreignCa, csr: join(work, 'foreign-client.csr') },
  ];

  // Round 1: both CAs and every leaf key + CSR at once; round 2: every signature at once.
  await Promise.all([
    makeCa(ca, 'hsm-signer test CA'),
    makeCa(foreignCa, 'hsm-signer foreign test CA'),
    ...leaves.map((l) =>
      openssl(['req', '-new', ...P256, '-keyout', l.files.key, '-out', l.csr, '-subj', `/CN=${l.cn}`, '-config', cnf])),
  ]);
  await Promise.all(
    leaves.map((l) =>
      openssl(['x509', '-req', '-in', l.csr, '-CA', l.issuer.cert, '-CAkey', l.issuer.key, '-set_serial', serial(),
        '-days', DAYS, '-sha256', '-extfile', cnf, '-extensions', l.ext, '-out', l.files.cert])),
  );
  const keyFiles = [ca.key, foreignCa.key, ...leaves.map((l) => l.files.key)];
  await Promise.all(keyFiles.map((k) => chmod(k, 0o600)));
  await rm(work, { recursive: true, force: true });

  const load = async (f: KeyPairFiles): Promise<KeyPair> => {
    const [cert, key] = await Promise.all([readFile(f.cert), readFile(f.key)]);
    return { cert, key };
  };
  const [caCert, foreignCaCert] = await Promise.all([readFile(ca.cert), readFile(foreignCa.cert)]);
  const [serverPair, foreignPair, ...clientPairs] = await Promise.all([
    load(server),
    load(foreignClient),
    ...clientNames.map((cn) => load(clients[cn]!)),
  ]);

  return {
    caCert,
    server: serverPair!,
    clients: Object.fromEntries(clientNames.map((cn, i) => [cn, clientPairs[i]!])),
    foreign: { caCert: foreignCaCert, client: foreignPair! },
    files: {
      caCert: ca.cert,
      caKey: ca.key,
      server,
      clients,
      foreign: { caCert: foreignCa.cert, caKey: foreignCa.key, client: foreignClient },
    },
  };
}
