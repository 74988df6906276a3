#!/usr/bin/env python3
"""Example payment-engine client for hsm-signer in Python: signs its requests (grpcio + cryptography).

Every Sign and SignBatch carries the client's signature over the canonical request bytes,
format "hsm-signer/sign-request/v1" (specified in proto/signer/v1/signer.proto, above
SignRequest). This file rebuilds those bytes with string formatting and hashlib, independently of
the TypeScript implementation, to show that the encoding is language-neutral.

The gRPC stubs are generated, never committed (see README.md):

    protoc -I proto --python_out=$STUBS --grpc_python_out=$STUBS \
      --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin proto/signer/v1/signer.proto
    PYTHONPATH=$STUBS python3 examples/python/hsm_signer_client.py sign --key-id hot-1 --digest 00..00

Commands (each prints one JSON object):
    vectors FILE       canonical bytes and signatures of test/vectors/sign-request/vectors.json
    sign               one Sign request (--digest, --message or --evm-tx; --chain-id/--account-nonce)
    batch              one SignBatch request of --digest values (repeat the option)
"""
import argparse
import hashlib
import json
import sys
import time
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

FORMAT = "hsm-signer/sign-request/v1"


def _text(field, value):
    if not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{field} must be non-empty and free of control characters")
    return value


def canonical_request(kind, client, key_id, key_version, request_id, client_time_ms, payloads):
    """The bytes a client signs. payloads: (payload kind, payload bytes, (chain_id, nonce) or None)."""
    if kind not in ("sign", "batch") or not payloads or client_time_ms < 0 or key_version < 0:
        raise ValueError("not a request the format can carry")
    lines = [
        FORMAT,
        f"kind {kind}",
        f"client {_text('client', client)}",
        f"key {_text('key', key_id)}",
        f"version {key_version}",
        f"id {_text('id', request_id)}",
        f"time {client_time_ms}",
        f"payloads {len(payloads)}",
    ]
    for payload_kind, data, scope in payloads:
        if payload_kind not in ("digest", "message", "evm_transaction"):
            raise ValueError("payload kind")
        scope_text = "-" if scope is None else f"{scope[0]}/{scope[1]}"
        lines.append(f"{payload_kind} {scope_text} {hashlib.sha256(data).hexdigest()}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def signing_key_id(public_key):
    """spki-sha256:<hex> of the key's DER SubjectPublicKeyInfo: how request_signing_key names it."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "spki-sha256:" + hashlib.sha256(der).hexdigest()


def sign_bytes(private_key, data):
    """ECDSA P-256/SHA-256 (DER) for EC keys, Ed25519 for Ed25519 keys."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("request-signing EC keys are P-256")
        return private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(data)
    raise ValueError("request-signing keys are P-256 or Ed25519")


def verify_bytes(public_key, signature, data):
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            public_key.verify(signature, data)
        return True
    except Exception:  # noqa: BLE001 - any failure is "does not verify"
        return False


def cmd_vectors(args):
    doc = json.load(open(args.file, encoding="utf-8"))
    keys = {
        name: serialization.load_pem_public_key(k["publicKeyPem"].encode())
        for name, k in doc["keys"].items()
    }
    out = {"vectors": [], "invalid": [], "fingerprints": {n: signing_key_id(k) for n, k in keys.items()}}
    for v in doc["vectors"]:
        r = v["request"]
        ms = int(r["clientTime"]["seconds"]) * 1000 + r["clientTime"]["nanos"] // 1_000_000
        payloads = [
            (p["kind"], bytes.fromhex(p["hex"]), None if p["scope"] is None else (p["scope"]["chainId"], p["scope"]["nonce"]))
            for p in r["payloads"]
        ]
        data = canonical_request(r["kind"], r["client"], r["keyId"], r["keyVersion"], r["id"], ms, payloads)
        out["vectors"].append({
            "name": v["name"],
            "text": data.decode("utf-8"),
            "verifies": {n: verify_bytes(keys[n], bytes.fromhex(v["signatures"][n]), data) for n in keys},
        })
    for v in doc["invalid"]:
        r = v["request"]
        try:
            ms = int(r["clientTime"]["seconds"]) * 1000 + r["clientTime"]["nanos"] // 1_000_000
            payloads = [(p["kind"], bytes.fromhex(p["hex"]), None) for p in r["payloads"]]
            canonical_request(r["kind"], r["client"], r["keyId"], r["keyVersion"], r["id"], ms, payloads)
            out["invalid"].append({"name": v["name"], "refused": False})
        except ValueError:
            out["invalid"].append({"name": v["name"], "refused": True})
    print(json.dumps(out))


def _connect(args):
    import grpc  # the generated stubs need grpcio; the vectors command does not

    from signer.v1 import signer_pb2_grpc

    cert = open(args.cert, "rb").read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(args.ca, "rb").read(), private_key=open(args.key, "rb").read(), certificate_chain=cert
    )
    options = [("grpc.ssl_target_name_override", args.server_name), ("grpc.default_authority", args.server_name)]
    channel = grpc.secure_channel(args.address, creds, options=options)
    client = x509.load_pem_x509_certificate(cert).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    key_file = args.request_key or args.key
    private_key = serialization.load_pem_private_key(open(key_file, "rb").read(), password=None)
    return channel, signer_pb2_grpc.SignerStub(channel), client, private_key


def _now():
    ms = time.time_ns() // 1_000_000
    return ms


def _timestamp(ms):
    from google.protobuf.timestamp_pb2 import Timestamp

    return Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def _refusal(e):
    """A gRPC error as JSON: status and google.rpc.ErrorInfo reason from grpc-status-details-bin."""
    reason = None
    for key, value in e.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            # google.rpc.Status { details: [Any { type_url, value: ErrorInfo { reason = 1 } }] }; read
            # with the generic protobuf decoder to avoid generating google/rpc stubs for an example.
            from google.protobuf import any_pb2
            from google.protobuf.internal.decoder import _DecodeVarint

            reason = _error_info_reason(value, any_pb2, _DecodeVarint)
    return {"error": {"code": e.code().name, "reason": reason, "message": e.details()}}


def _fields(buf, decode_varint):
    i = 0
    while i < len(buf):
        tag, i = decode_varint(buf, i)
        if tag & 7 == 2:
            n, i = decode_varint(buf, i)
            yield tag >> 3, buf[i : i + n]
            i += n
        elif tag & 7 == 0:
            _, i = decode_varint(buf, i)
        else:
            return


def _error_info_reason(status_bytes, any_pb2, decode_varint):
    for field, detail in _fields(status_bytes, decode_varint):
        if field != 3:
            continue
        any_msg = any_pb2.Any.FromString(detail)
        if any_msg.type_url.endswith("google.rpc.ErrorInfo"):
            for f, v in _fields(any_msg.value, decode_varint):
                if f == 1:
                    return v.decode("utf-8")
    return None


def cmd_sign(args):
    import grpc

    from signer.v1 import signer_pb2

    channel, stub, client, private_key = _connect(args)
    ms = _now()
    scope = None
    if args.chain_id is not None:
        scope = (args.chain_id, args.account_nonce)
    fields = {}
    if args.digest:
        kind, data = "digest", bytes.fromhex(args.digest)
        fields["digest"] = data
    elif args.message is not None:
        kind, data = "message", args.message.encode("utf-8")
        fields["message"] = data
    else:
        kind, data = "evm_transaction", bytes.fromhex(args.evm_tx.removeprefix("0x"))
        fields["evm_transaction"] = signer_pb2.EvmTransaction(unsigned_tx=data)
    if scope:
        fields["replay_scope"] = signer_pb2.ReplayScope(chain_id=int(scope[0]), account_nonce=int(scope[1]))
    request_id = args.request_id or str(uuid.uuid4())
    message = canonical_request("sign", client, args.key_id, args.key_version, request_id, ms, [(kind, data, scope)])
    signature = sign_bytes(private_key, message)
    request = signer_pb2.SignRequest(
        key_id=args.key_id,
        request_id=request_id,
        key_version=args.key_version,
        client_time=_timestamp(ms),
        request_signature=signature,
        request_signing_key=signing_key_id(private_key.public_key()),
        **fields,
    )
    out = {"client": client, "requestId": request_id, "canonical": message.hex(), "requestSignature": signature.hex(),
           "requestSigningKey": request.request_signing_key}
    try:
        res = stub.Sign(request, timeout=30)
        out["signature"] = res.signature.hex()
        out["keyVersion"] = res.key_version
        if res.HasField("recovery_id"):
            out["recoveryId"] = res.recovery_id
    except grpc.RpcError as e:
        out.update(_refusal(e))
    channel.close()
    print(json.dumps(out))


def cmd_batch(args):
    import grpc

    from signer.v1 import signer_pb2

    channel, stub, client, private_key = _connect(args)
    ms = _now()
    digests = [bytes.fromhex(d) for d in args.digest]
    batch_id = args.batch_id or str(uuid.uuid4())
    message = canonical_request("batch", client, args.key_id, 0, batch_id, ms, [("digest", d, None) for d in digests])
    signature = sign_bytes(private_key, message)
    request = signer_pb2.SignBatchRequest(
        batch_id=batch_id,
        key_id=args.key_id,
        client_time=_timestamp(ms),
        items=[signer_pb2.BatchItem(digest=d) for d in digests],
        request_signature=signature,
        request_signing_key=signing_key_id(private_key.public_key()),
    )
    out = {"client": client, "batchId": batch_id, "canonical": message.hex(), "requestSignature": signature.hex()}
    try:
        res = stub.SignBatch(request, timeout=30)
        out["signatures"] = [r.signed.signature.hex() if r.HasField("signed") else None for r in res.results]
    except grpc.RpcError as e:
        out.update(_refusal(e))
    channel.close()
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("vectors", help="check the canonical bytes against the test vectors")
    v.add_argument("file")
    v.set_defaults(run=cmd_vectors)
    for name, run in (("sign", cmd_sign), ("batch", cmd_batch)):
        c = sub.add_parser(name)
        c.add_argument("--address", default="127.0.0.1:50051")
        c.add_argument("--server-name", default="localhost")
        c.add_argument("--ca", default=".dev/pki/ca.crt")
        c.add_argument("--cert", default=".dev/pki/payment-engine.crt")
        c.add_argument("--key", default=".dev/pki/payment-engine.key")
        c.add_argument("--request-key", help="PEM private key registered for this client (default: --key)")
        c.add_argument("--key-id", required=True)
        c.set_defaults(run=run)
        if name == "sign":
            c.add_argument("--key-version", type=int, default=0)
            c.add_argument("--request-id")
            g = c.add_mutually_exclusive_group(required=True)
            g.add_argument("--digest", help="32-byte digest, hex")
            g.add_argument("--message", help="UTF-8 message")
            g.add_argument("--evm-tx", help="unsigned EVM transaction, hex")
            c.add_argument("--chain-id")
            c.add_argument("--account-nonce")
        else:
            c.add_argument("--batch-id")
            c.add_argument("--digest", action="append", required=True, help="32-byte digest, hex; repeat")
    args = p.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
