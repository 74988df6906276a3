import {
  BaseError,
  decodeFunctionData,
  encodeFunctionData,
  erc20Abi,
  getAbiItem,
  getAddress,
  toFunctionSelector,
} from 'viem';
import { SignerError } from '../errors.js';

/** An ERC-20 call that moves or authorises tokens, as the policy sees it. */
export interface Erc20Call {
  method: 'transfer' | 'transferFrom' | 'approve';
  /** EIP-55 checksummed: `to` for transfer and transferFrom, `spender` for approve. */
  recipient: `0x${string}`;
  /** Token amount in the token's smallest unit (no decimals applied). */
  amount: bigint;
}

type Method = Erc20Call['method'];
const METHODS: readonly Method[] = ['transfer', 'transferFrom', 'approve'];

/** Selector (lowercase, 0x + 8 hex) → method, for the three calls the policy understands. */
const SELECTORS = new Map<string, Method>(
  METHODS.map((name) => [toFunctionSelector(getAbiItem({ abi: erc20Abi, name })), name]),
);

const HEX_BYTES = /^0x(?:[0-9a-fA-F]{2})*$/;

function refuse(message: string): never {
  throw new SignerError('PAYLOAD_INVALID', message);
}

/**
 * Recognises ERC-20 `transfer(to, amount)`, `transferFrom(from, to, amount)` and
 * `approve(spender, amount)` calldata.
 *
 * Returns null when `data` is empty, shorter than a selector, or starts with any other selector:
 * such calldata is not a token movement the policy can reason about, and the caller MUST treat
 * it as an opaque contract call (allowed only to listed contracts).
 *
 * Throws INVALID_ARGUMENT / PAYLOAD_INVALID when the selector is one of the three but the
 * arguments are not the exact canonical ABI encoding (truncated, trailing bytes, dirty address
 * padding): the token contract might read such bytes differently from us, so the policy must
 * not pass judgement on them. No viem error escapes.
 */
export function decodeErc20Call(data: `0x${string}`): Erc20Call | null {
  if (!HEX_BYTES.test(data)) refuse('calldata is not an even-length hex string');
  if (data.length < 10) return null;
  const method = SELECTORS.get(data.slice(0, 10).toLowerCase());
  if (!method) return null;

  let call: Erc20Call;
  let reencoded: string;
  try {
    const decoded = decodeFunctionData({ abi: erc20Abi, data });
    switch (decoded.functionName) {
      case 'transfer':
      case 'approve': {
        const [recipient, amount] = decoded.args;
        call = { method: decoded.functionName, recipient: getAddress(recipient), amount };
        reencoded = encodeFunctionData({
          abi: erc20Abi,
          functionName: decoded.functionName,
          args: decoded.args,
        });
        break;
      }
      case 'transferFrom': {
        const [, recipient, amount] = decoded.args;
        call = { method: 'transferFrom', recipient: getAddress(recipient), amount };
        reencoded = encodeFunctionData({
          abi: erc20Abi,
          functionName: 'transferFrom',
          args: decoded.args,
        });
        break;
      }
      default:
        // Unreachable: SELECTORS holds only the three methods above.
        throw new Error('unexpected ERC-20 method');
    }
  } catch (e) {
    const detail = e instanceof BaseError ? e.name : 'decoding failed';
    refuse(`ERC-20 ${method} calldata is malformed (${detail})`);
  }
  // viem ignores trailing bytes and the upper 12 bytes of an address word; either would let the
  // bytes we judge differ from the bytes the token contract executes.
  if (reencoded.toLowerCase() !== data.toLowerCase()) {
    refuse(`ERC-20 ${method} calldata is not canonically ABI-encoded`);
  }
  return call;
}
