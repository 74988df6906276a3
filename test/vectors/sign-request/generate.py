# Writes vectors.json in the current directory (run it from test/vectors/sign-request/).
import hashlib, json
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives import serialization, hashes

def spki_fp(pub):
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return 'spki-sha256:' + hashlib.sha256(der).hexdigest()
def pem_pub(k):
    return k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
# The keys are derived from public seeds, so the file stores no key material (tests derive them too).
P256_SEED = 'hsm-signer sign-request vector p256'
ED25519_SEED = 'hsm-signer sign-request vector ed25519'
p256 = ec.derive_private_key(int.from_bytes(hashlib.sha256(P256_SEED.encode()).digest(),'big') % N, ec.SECP256R1())
edk = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(ED25519_SEED.encode()).digest())

def text(r):
    ms = int(r['clientTime']['seconds'])*1000 + r['clientTime']['nanos']//1000000
    lines = ['hsm-signer/sign-request/v1', 'kind '+r['kind'], 'client '+r['client'], 'key '+r['keyId'],
             'version %d' % r['keyVersion'], 'id '+r['id'], 'time %d' % ms, 'payloads %d' % len(r['payloads'])]
    for p in r['payloads']:
        scope = '-' if p['scope'] is None else '%s/%s' % (p['scope']['chainId'], p['scope']['nonce'])
        lines.append('%s %s %s' % (p['kind'], scope, hashlib.sha256(bytes.fromhex(p['hex'])).hexdigest()))
    return '\n'.join(lines) + '\n'

# Arbitrary bytes in the EVM slot: the encoder hashes the payload bytes, it does not decode them.
evm = '02' + 'e1' * 20 + 'c0'
reqs = [
 {'name':'digest, active version, no scope','request':{'kind':'sign','client':'payment-engine','keyId':'hot-1','keyVersion':0,'id':'7b1c2f9e-0d7a-4a43-9d6e-2f3f1c1a9b10','clientTime':{'seconds':'1767225600','nanos':0},'payloads':[{'kind':'digest','hex':'00'*32,'scope':None}]}},
 {'name':'message with replay scope, version 3, nanos truncated to ms','request':{'kind':'sign','client':'payment-engine','keyId':'sol-hot','keyVersion':3,'id':'payout-000042','clientTime':{'seconds':'1767225600','nanos':999999999},'payloads':[{'kind':'message','hex':'68656c6c6f20776f726c64','scope':{'chainId':'101','nonce':'18446744073709551615'}}]}},
 {'name':'EVM transaction','request':{'kind':'sign','client':'payment-engine','keyId':'hot-eth','keyVersion':0,'id':'tx/2026-01-01/1','clientTime':{'seconds':'1767225601','nanos':123456789},'payloads':[{'kind':'evm_transaction','hex':evm,'scope':None}]}},
 {'name':'batch of three mixed items','request':{'kind':'batch','client':'payment-engine','keyId':'hot-1','keyVersion':0,'id':'batch-2026-01-01-a','clientTime':{'seconds':'1767225602','nanos':5000000},'payloads':[
     {'kind':'digest','hex':'11'*32,'scope':{'chainId':'1','nonce':'0'}},
     {'kind':'digest','hex':'22'*32,'scope':{'chainId':'1','nonce':'1'}},
     {'kind':'evm_transaction','hex':evm,'scope':None}]}},
 {'name':'non-ASCII client CN and spaces in values (UTF-8, rest of the line), empty message','request':{'kind':'sign','client':'Zahlungs-Maschine \u00dc 1','keyId':'hot key 1','keyVersion':0,'id':'id with spaces','clientTime':{'seconds':'0','nanos':0},'payloads':[{'kind':'message','hex':'','scope':None}]}},
]
out = {'format':'hsm-signer/sign-request/v1',
 'comment':'Written with Python hashlib and cryptography, independently of src/core/request-signing. Test keys only, derived from their seed (no key material is stored): P-256 private scalar = SHA-256(seed) mod n; Ed25519 private key = SHA-256(seed). p256 signatures: DER ECDSA/SHA-256 with random k (check by verifying); ed25519: RFC 8032, deterministic.',
 'keys':{'p256':{'seed':P256_SEED,'publicKeyPem':pem_pub(p256),'fingerprint':spki_fp(p256.public_key())},
         'ed25519':{'seed':ED25519_SEED,'publicKeyPem':pem_pub(edk),'fingerprint':spki_fp(edk.public_key())}},
 'vectors':[], 'invalid':[]}
for r in reqs:
    t = text(r['request']).encode()
    out['vectors'].append({**r, 'text': t.decode(), 'sha256': hashlib.sha256(t).hexdigest(),
        'signatures': {'p256': p256.sign(t, ec.ECDSA(hashes.SHA256())).hex(), 'ed25519': edk.sign(t).hex()}})
base = reqs[0]['request']
out['invalid'] = [
 {'name':'LF in the request id','request':{**base,'id':'a\nkey other'}},
 {'name':'empty key id','request':{**base,'keyId':''}},
 {'name':'DEL in the client CN','request':{**base,'client':'engine\u007f'}},
 {'name':'no payloads','request':{**base,'payloads':[]}},
 {'name':'negative client time','request':{**base,'clientTime':{'seconds':'-1','nanos':0}}},
]
with open('vectors.json','w') as f:
    json.dump(out, f, indent=2, ensure_ascii=False)
    f.write('\n')
print(out['vectors'][1]['text'])
