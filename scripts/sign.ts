import { randomUUID } from 'node:crypto';
import { call, nowTimestamp } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

const program = command('sign', 'Sign with a key (Signer.Sign): the dev client of the payment engine', 'payment-engine')
  .argument('<key-id>', 'key to sign with')
  .option('--digest <hex>', '32-byte digest (ECDSA and FROST_SECP256K1_TR keys)')
  .option('--message <text>', 'UTF-8 message (Ed25519 and FROST_ED25519 keys)')
  .option(
    '--chain-id <n>',
    'with --account-nonce: the chain a digest or message spends on (one payload per chain and nonce)',
  )
  .option('--account-nonce <n>', 'with --chain-id: the account nonce or sequence the payload uses')
  .option('--evm-tx <hex>', 'unsigned EVM transaction, EIP-1559 or legacy EIP-155 (secp256k1 keys)')
  .option('--request-id <id>', 'idempotency id; a retry must reuse it', randomUUID())
  .option('--key-version <n>', 'sign with this version (a retired EVM version signs only sweeps: sweep-plan)', '0')
  .option(
    '--request-key <file>',
    'PEM private key registered for this client (clients.<name>.requestKeys) to sign the request with; ' +
      'default: the client certificate key (--key)',
  )
  .parse();
const opts = program.opts();
const hex = (s: string) => Buffer.from(s.replace(/^0x/, ''), 'hex');
const payload = opts.digest
  ? { digest: hex(opts.digest) }
  : opts.message !== undefined
    ? { message: Buffer.from(opts.message, 'utf8') }
    : opts.evmTx
      ? { evmTransaction: { unsignedTx: hex(opts.evmTx) } }
      : program.error('one of --digest, --message or --evm-tx is required');
if ((opts.chainId === undefined) !== (opts.accountNonce === undefined))
  program.error('--chain-id and --account-nonce go together');
const scope =
  opts.chainId !== undefined
    ? { replayScope: { chainId: String(opts.chainId), accountNonce: String(opts.accountNonce) } }
    : {};
await runWithClients(opts, async (clients) => {
  const res = await call<Record<string, any>>(clients.signer, 'Sign', {
    keyId: program.args[0],
    keyVersion: Number(opts.keyVersion),
    requestId: opts.requestId,
    clientTime: nowTimestamp(),
    ...payload,
    ...scope,
  });
  if (opts.json) console.log(toJson(res));
  else {
    console.log(`signature ${Buffer.from(res.signature).toString('hex')}`);
    if (res.recoveryId !== undefined && res.recoveryId !== null) console.log(`recovery_id ${res.recoveryId}`);
    if (res.evm) {
      console.log(`from ${res.evm.from}\nchain ${res.evm.chainId} nonce ${res.evm.nonce}`);
      console.log(
        `tx_hash 0x${Buffer.from(res.evm.txHash).toString('hex')}\nsigned_tx 0x${Buffer.from(res.evm.signedTx).toString('hex')}`,
      );
    }
  }
});
