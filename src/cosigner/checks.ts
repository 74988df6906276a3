import { readFileSync } from 'node:fs';
import { loadAdmins } from '../infra/config/admins.js';
import type { Config } from '../infra/config/schema.js';
import { readCrlFile } from '../infra/grpc/crl.js';
import { caId, parseCertificates } from '../infra/grpc/peer-cert.js';
import { caFileFor } from '../infra/grpc/server-tls.js';
import type { Logger } from '../infra/log.js';
import { PolicyCheck } from './policy-check.js';
import { RequestCheck } from './request-check.js';
import type { ShareChecks } from './signing.js';
import type { CosignerStore } from './store.js';

/** The share checks of a cosigner, from its own config (section `cosigner`), and how they reload. */
export interface CosignerChecks extends ShareChecks {
  /** Applies a reloaded config's clients, admins and pinned policies. */
  apply(config: Config): void;
  /** Reads the CRL again (after a reload of the trust): client certificates are checked against it. */
  reloadCrl(): Promise<void>;
}

/**
 * Builds what a cosigner checks before releasing a share from its own config only: the client CA
 * (`cosigner.clientCaFile`, else `tls.clientCaFile`, else `tls.caFile`) and `tls.crlFile` for
 * clients' certificates, `cosigner.clients` for who may ask and their registered request keys,
 * the top-level `admins` (pinned here, as on the signer) and `cosigner.policies` for the policies
 * it trusts.
 */
export async function cosignerChecks(config: Config, store: CosignerStore, log: Logger): Promise<CosignerChecks> {
  const me = config.cosigner!;
  const clientCas = parseCertificates(readFileSync(me.clientCaFile ?? caFileFor(config.tls, 'client'), 'utf8'));
  // A CRL file may also hold the peer CA's CRL: every CA this node trusts may have signed one.
  const peerCas = parseCertificates(readFileSync(caFileFor(config.tls, 'peer'), 'utf8'));
  const cas = [...clientCas, ...peerCas.filter((p) => !clientCas.some((c) => caId(c) === caId(p)))];
  const requests = new RequestCheck(me.clients, clientCas, me.id);
  const policies = new PolicyCheck(me.id, store.records, loadAdmins(config.admins), me.policies);
  const crlFile = config.tls.crlFile;
  const reloadCrl = async () => {
    if (crlFile) requests.setRevocations(await readCrlFile(crlFile, cas));
  };
  await reloadCrl();
  if (Object.keys(me.clients).length === 0)
    log.warn('cosigner.clients is empty: this cosigner refuses every share (REQUEST_SIGNATURE_INVALID)');
  return {
    requests,
    policies,
    records: store.records,
    apply(c) {
      const next = c.cosigner!;
      requests.update(next.clients);
      policies.update(loadAdmins(c.admins), next.policies);
    },
    async reloadCrl() {
      try {
        await reloadCrl();
      } catch (e) {
        log.error({ err: e }, 'reading the CRL for client certificates failed; the previous one stays');
      }
    },
  };
}
