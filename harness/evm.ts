import { getBytes, Transaction } from 'ethers';

export const ALICE = '0x000000000000000000000000000000000000a11c';
export const BOB = '0x0000000000000000000000000000000000000b0b';
export const GWEI = 10n ** 9n;
export const ETH = 10n ** 18n;

/** An unsigned EIP-1559 transfer built by ethers, as the payment engine would send it. */
export function transfer(
  over: Partial<{
    chainId: bigint;
    nonce: number;
    to: string;
    value: bigint;
    maxFeePerGas: bigint;
    maxPriorityFeePerGas: bigint;
    gasLimit: bigint;
    data: string;
  }> = {},
) {
  const tx = Transaction.from({
    type: 2,
    chainId: over.chainId ?? 1n,
    nonce: over.nonce ?? 0,
    to: over.to ?? ALICE,
    value: over.value ?? 10n ** 15n,
    gasLimit: over.gasLimit ?? 21000n,
    maxFeePerGas: over.maxFeePerGas ?? 30n * GWEI,
    maxPriorityFeePerGas: over.maxPriorityFeePerGas ?? GWEI,
    data: over.data ?? '0x',
  });
  return { tx, payload: { evmTransaction: { unsignedTx: Buffer.from(getBytes(tx.unsignedSerialized)) } } };
}
