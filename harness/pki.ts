/**
 * A throwaway PKI for tests, made with the `openssl` CLI: a CA, a server certificate, client
 * certificates, and a second ("foreign") CA whose client certificate must be rejected; later
 * client certificates (replacements, short-lived), CRLs and pins for the revocation tests.
 */
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
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
    openssl([
      'req',
      '-x509',
      '-new',
      ...P256,
      '-keyout',
      files.key,
      '-out',
      files.cert,
      '-subj',
      `/CN=${cn}`,
      '-days',
      DAYS,
      '-sha256',
      '-config',
      cnf,
      '-extensions',
      'ca_ext',
      '-set_serial',
      serial(),
    ]);

  interface Leaf {
    files: KeyPairFiles;
    cn: string;
    ext: 'server_ext' | 'client_ext';
    issuer: KeyPairFiles;
    csr: string;
  }
  const leaves: Leaf[] = [
    { files: server, cn: 'hsm-signer', ext: 'server_ext', issuer: ca, csr: join(work, 'server.csr') },
    ...clientNames.map(
      (cn): Leaf => ({
        files: clients[cn]!,
        cn,
        ext: 'client_ext',
        issuer: ca,
        csr: join(work, `client-${cn}.csr`),
      }),
    ),
    {
      files: foreignClient,
      cn: 'payment-engine',
      ext: 'client_ext',
      issuer: foreignCa,
      csr: join(work, 'foreign-client.csr'),
    },
  ];

  // Round 1: both CAs and every leaf key + CSR at once; round 2: every signature at once.
  await Promise.all([
    makeCa(ca, 'hsm-signer test CA'),
    makeCa(foreignCa, 'hsm-signer foreign test CA'),
    ...leaves.map((l) =>
      openssl(['req', '-new', ...P256, '-keyout', l.files.key, '-out', l.csr, '-subj', `/CN=${l.cn}`, '-config', cnf]),
    ),
  ]);
  await Promise.all(
    leaves.map((l) =>
      openssl([
        'x509',
        '-req',
        '-in',
        l.csr,
        '-CA',
        l.issuer.cert,
        '-CAkey',
        l.issuer.key,
        '-set_serial',
        serial(),
        '-days',
        DAYS,
        '-sha256',
        '-extfile',
        cnf,
        '-extensions',
        l.ext,
        '-out',
        l.files.cert,
      ]),
    ),
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

// ---------------------------------------------------------------------------------------------
// Revocation: more client certificates after the fact (replacements, short-lived ones, ones
// from the foreign CA), CRLs, and the pins an operator would compute with openssl.

export interface IssuedCert extends KeyPair {
  files: KeyPairFiles;
}

type Issuer = 'ca' | 'foreign';
const issuerFiles = (pki: Pki, issuer: Issuer) =>
  issuer === 'ca'
    ? { cert: pki.files.caCert, key: pki.files.caKey }
    : { cert: pki.files.foreign.caCert, key: pki.files.foreign.caKey };
const rootOf = (pki: Pki) => dirname(pki.files.caCert);

/** openssl's YYMMDDHHMMSSZ (UTCTime) for `ms`. */
const utcTime = (ms: number) => new Date(ms).toISOString().replace(/^\d\d|[-:T]|\.\d+/g, '');

/**
 * A new key and a client certificate for `cn` (clientAuth), in `<stem>.{crt,key}` beside the
 * PKI. `validSeconds` makes it short-lived: valid from a minute ago until that many seconds
 * from now (`openssl ca`, since `openssl x509` of OpenSSL 3.0 counts only whole days).
 */
export async function issueClient(
  pki: Pki,
  cn: string,
  opts: { stem?: string; validSeconds?: number; issuer?: Issuer } = {},
): Promise<IssuedCert> {
  checkCn(cn);
  const root = rootOf(pki);
  const stem = opts.stem ?? `client-${cn}-${randomBytes(4).toString('hex')}`;
  checkCn(stem);
  const files = { cert: join(root, `${stem}.crt`), key: join(root, `${stem}.key`) };
  const work = await mkdtemp(join(root, '.issue-'));
  try {
    const cnf = join(work, 'openssl.cnf');
    const ca = issuerFiles(pki, opts.issuer ?? 'ca');
    await writeFile(
      cnf,
      `${OPENSSL_CNF}
[ca]
default_ca = tca
[tca]
database = ${join(work, 'index.txt')}
serial = ${join(work, 'serial')}
new_certs_dir = ${work}
default_md = sha256
policy = anything
unique_subject = no
[anything]
commonName = supplied
`,
    );
    await writeFile(join(work, 'index.txt'), '');
    const csr = join(work, 'client.csr');
    await openssl(['req', '-new', ...P256, '-keyout', files.key, '-out', csr, '-subj', `/CN=${cn}`, '-config', cnf]);
    await chmod(files.key, 0o600);
    if (opts.validSeconds === undefined) {
      await openssl([
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        ca.cert,
        '-CAkey',
        ca.key,
        '-set_serial',
        serial(),
        '-days',
        DAYS,
        '-sha256',
        '-extfile',
        cnf,
        '-extensions',
        'client_ext',
        '-out',
        files.cert,
      ]);
    } else {
      const now = Date.now();
      // openssl ca reads an even number of hex digits.
      await writeFile(join(work, 'serial'), `0${serial().slice(2)}\n`);
      await openssl([
        'ca',
        '-batch',
        '-notext',
        '-config',
        cnf,
        '-cert',
        ca.cert,
        '-keyfile',
        ca.key,
        '-in',
        csr,
        '-out',
        files.cert,
        '-extfile',
        cnf,
        '-extensions',
        'client_ext',
        '-startdate',
        utcTime(now - 60_000),
        '-enddate',
        utcTime(now + opts.validSeconds * 1000),
      ]);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const [cert, key] = await Promise.all([readFile(files.cert), readFile(files.key)]);
  return { cert, key, files };
}

/**
 * Writes a CRL of `issuer` (default: the test CA) listing `revoked` certificates to `file`, PEM
 * or DER, through a rename (as an operator should publish one, so a reader never sees half a
 * file). CRL numbers increase across calls.
 */
export async function writeCrl(
  pki: Pki,
  file: string,
  revoked: readonly Buffer[],
  opts: { issuer?: Issuer; der?: boolean; days?: number } = {},
): Promise<void> {
  const root = rootOf(pki);
  const issuer = opts.issuer ?? 'ca';
  const state = join(root, '.crl', issuer);
  await mkdir(state, { recursive: true, mode: 0o700 });
  const numberFile = join(state, 'crlnumber');
  await readFile(numberFile).catch(() => writeFile(numberFile, '01\n'));
  const index = revoked.map((pem) => {
    const c = new X509Certificate(pem);
    const subject = c.subject
      .split('\n')
      .map((p) => `/${p}`)
      .join('');
    const dates = [utcTime(Date.parse(c.validTo)), utcTime(Date.now() - 1000)];
    return ['R', ...dates, c.serialNumber, 'unknown', subject].join('\t');
  });
  const cnf = join(state, 'openssl.cnf');
  await writeFile(join(state, 'index.txt'), index.map((l) => `${l}\n`).join(''));
  await writeFile(
    cnf,
    `[ca]
default_ca = tca
[tca]
database = ${join(state, 'index.txt')}
crlnumber = ${numberFile}
default_md = sha256
default_crl_days = ${opts.days ?? 7}
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
`,
  );
  const ca = issuerFiles(pki, issuer);
  const pem = join(state, 'crl.pem');
  await openssl(['ca', '-gencrl', '-config', cnf, '-cert', ca.cert, '-keyfile', ca.key, '-out', pem]);
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  if (opts.der) await openssl(['crl', '-in', pem, '-outform', 'DER', '-out', tmp]);
  else await writeFile(tmp, await readFile(pem));
  await rename(tmp, file);
}

/**
 * The two pins of a certificate, computed the way the README tells an operator to: with the
 * openssl CLI, independently of the signer's own code.
 */
export async function pinsOf(certFile: string): Promise<{ cert: string; spki: string }> {
  const q = `'${certFile.replaceAll("'", `'\\''`)}'`;
  const sh = (cmd: string) => run('sh', ['-c', cmd]).then((r) => r.stdout.trim());
  const fingerprint = await sh(`openssl x509 -in ${q} -noout -fingerprint -sha256`);
  const spki = await sh(
    `openssl x509 -in ${q} -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64`,
  );
  return { cert: `cert-sha256:${fingerprint.slice(fingerprint.indexOf('=') + 1)}`, spki: `spki-sha256:${spki}` };
}
