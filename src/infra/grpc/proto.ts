import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

export const PROTO_DIR = fileURLToPath(new URL('../../../proto', import.meta.url));

/** Loader options shared by server and clients: 64-bit integers travel as decimal strings. */
export const LOADER_OPTIONS: protoLoader.Options = {
  includeDirs: [PROTO_DIR],
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export const packageDefinition = protoLoader.loadSync(
  ['signer/v1/signer.proto', 'signer/v1/cosigner.proto', 'signer/v1/witness.proto'],
  LOADER_OPTIONS,
);

interface SignerPackage {
  Signer: grpc.ServiceClientConstructor;
  KeyAdmin: grpc.ServiceClientConstructor;
  Audit: grpc.ServiceClientConstructor;
  Cosigner: grpc.ServiceClientConstructor;
  Witness: grpc.ServiceClientConstructor;
}

export const signerV1 = (grpc.loadPackageDefinition(packageDefinition) as unknown as { signer: { v1: SignerPackage } })
  .signer.v1;

const rpcRoot = protobuf.loadSync(`${PROTO_DIR}/google/rpc/status.proto`);
export const RpcStatus = rpcRoot.lookupType('google.rpc.Status');
export const ErrorInfo = rpcRoot.lookupType('google.rpc.ErrorInfo');
export const RetryInfo = rpcRoot.lookupType('google.rpc.RetryInfo');
