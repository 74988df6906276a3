import { createHash, createPrivateKey, type KeyObject, sign, verify, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { CeremonyParams, Round1Entry } from '../core/frost/wire.js';

/**
 * A cosigner's identity for ceremonies: a certificate from the deployment's CA whose subject CN
 * is `cosigner-<id>`, and its private key. Each cosigner signs its round-1 output (package and
 * transport key, bound to the ceremony's parameters) and checks every other participant's
 * signature before sending it a share, so the coordinator relaying the rounds cannot slip in a
 * transport key of its own and read shares meant for a cosigner.
 */
export class CosignerIdentity {
  readonly certPem: string;
  private readonly key: KeyObject;
  private readonly ca: X509Certificate;

  constructor(files: { certFile: string; keyFile: string }, caFile: string, cosignerId: number) {
    this.certPem = readFileSync(files.certFile, 'utf8');
    this.key = createPrivateKey(readFileSync(files.keyFile));
    this.ca = new X509Certificate(readFileSync(caFile));
    const problem = this.problem(this.certPem, cosignerId);
    if (problem) throw new Error(`cosigner.identity: ${problem}`);
  }

  sign(params: CeremonyParams, cosignerId: number, pkg: string, transportKey: Uint8Array): Buffer {
    return sign('sha256', signedBytes(params, cosignerId, pkg, transportKey), this.key);
  }

  /** Why `entry` is not cosigner `cosignerId`'s own round-1 output for this ceremony, or undefined. */
  check(params: CeremonyParams, entry: Round1Entry): string | undefined {
    const problem = this.problem(entry.identityCert, entry.cosignerId);
    if (problem) return problem;
    const cert = new X509Certificate(entry.identityCert);
    const ok = verify(
      'sha256',
      signedBytes(params, entry.cosignerId, entry.package, entry.transportKey),
      cert.publicKey,
      Buffer.from(entry.signature),
    );
    return ok ? undefined : 'round1 output not signed by its identity (altered in transit, or another ceremony)';
  }

  private problem(pem: string, cosignerId: number): string | undefined {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      return 'identity certificate does not parse';
    }
    if (!cert.verify(this.ca.publicKey) || !cert.checkIssued(this.ca))
      return 'identity certificate is not issued by the CA';
    const now = Date.now();
    if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo))
      return 'identity certificate is not valid now';
    if (!cert.subject.split('\n').includes(`CN=cosigner-${cosignerId}`))
      return `identity certificate is not for CN=cosigner-${cosignerId}`;
    return undefined;
  }
}

/** Everything a round-1 output means, so a signature cannot be moved to another context. */
function signedBytes(p: CeremonyParams, cosignerId: number, pkg: string, transportKey: Uint8Array): Buffer {
  const context = JSON.stringify([
    'hsm-signer/ceremony-round1/v1',
    p.sessionId,
    p.kind,
    p.keyId,
    p.version,
    p.algorithm,
    Buffer.from(p.groupId).toString('hex'),
    p.minSigners,
    p.participants,
    p.epoch,
    cosignerId,
    createHash('sha256').update(pkg).digest('hex'),
    Buffer.from(transportKey).toString('hex'),
  ]);
  return Buffer.from(context);
}
