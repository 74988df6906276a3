#!/usr/bin/env bash
# Prepares a machine for running hsm-signer locally. Idempotent: a second run reuses everything.
#
#   scripts/dev-setup.sh          system packages + node_modules + .dev/ (SoftHSM token, PKI, config)
#   scripts/dev-setup.sh --test   system packages (and PostgreSQL) + node_modules only (tests make
#                                 their own tokens, certificates and database clusters in temp dirs
#                                 under .test/)
#
# Everything it creates lives in git-ignored .dev/. To start over: rm -rf .dev (destroys dev keys).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd -P)"

log() { printf 'dev-setup: %s\n' "$*" >&2; }
die() { printf 'dev-setup: error: %s\n' "$*" >&2; exit 1; }

MODE=dev
for arg in "$@"; do
  case "$arg" in
    --test) MODE=test ;;
    -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument: $arg (usage: scripts/dev-setup.sh [--test])" ;;
  esac
done

# ---------------------------------------------------------------------------------------------
# System packages: softhsm2 (PKCS#11 module + softhsm2-util) and openssl; for tests also the
# PostgreSQL server.

PACKAGES="softhsm2 and openssl"
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@" || die "'sudo -n $*' failed (passwordless sudo needed); install $PACKAGES yourself"
  else
    die "not root and no sudo: install $PACKAGES yourself, then rerun"
  fi
}

if ! command -v softhsm2-util >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 ||
    die "softhsm2-util or openssl is missing and apt-get is not available; install SoftHSM v2 and OpenSSL with your package manager"
  log "installing softhsm2 and openssl (apt-get)"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 openssl >&2
  command -v softhsm2-util >/dev/null 2>&1 || die "softhsm2-util still not found after installing softhsm2"
  command -v openssl >/dev/null 2>&1 || die "openssl still not found after installing openssl"
fi

# The store tests start throwaway PostgreSQL clusters (harness/postgres.ts) with the server
# binaries in /usr/lib/postgresql/<version>/bin. Installed here, once, before test files run in
# parallel (the helper can install it too, as a fallback). Not needed when the tests are pointed
# at an existing server with SIGNER_TEST_PG_URL.
have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
if [ "$MODE" = test ] && [ -z "${SIGNER_TEST_PG_URL:-}" ] && ! have_postgres; then
  command -v apt-get >/dev/null 2>&1 ||
    die "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) are missing and apt-get is not available; install PostgreSQL or set SIGNER_TEST_PG_URL"
  PACKAGES="postgresql"
  log "installing postgresql (apt-get)"
  mkdir -p .test
  if command -v flock >/dev/null 2>&1; then
    # The same lock as the test helper's fallback install.
    as_root flock .test/apt.lock sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql' >&2
  else
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  have_postgres || die "/usr/lib/postgresql/*/bin/initdb still not found after installing postgresql"
fi

# The Python example client's test (test/python-client.test.ts) runs examples/python on Debian's
# python3 with grpcio, protobuf and cryptography, and compiles its stubs with protoc and
# grpc_python_plugin (not python3-grpc-tools: its protoc is too old for proto3 `optional`;
# libprotobuf-dev brings google/protobuf/*.proto). PyPI is not needed.
have_python_grpc() {
  command -v protoc >/dev/null 2>&1 && [ -x /usr/bin/grpc_python_plugin ] &&
    [ -f /usr/include/google/protobuf/timestamp.proto ] &&
    /usr/bin/python3 -c 'import grpc, google.protobuf, cryptography' >/dev/null 2>&1
}
if [ "$MODE" = test ] && ! have_python_grpc; then
  command -v apt-get >/dev/null 2>&1 ||
    die "python3 with grpcio/protobuf/cryptography and protoc + grpc_python_plugin are missing and apt-get is not available"
  PACKAGES="python3-grpcio python3-protobuf python3-cryptography protobuf-compiler protobuf-compiler-grpc libprotobuf-dev"
  log "installing $PACKAGES (apt-get)"
  mkdir -p .test
  as_root flock .test/apt.lock sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES" >&2
  have_python_grpc || die "the Python client's packages are still missing after installing them"
fi

# ---------------------------------------------------------------------------------------------
# node_modules: (re)install when never installed or package.json / package-lock.json changed since.

command -v node >/dev/null 2>&1 || die "node is not installed (package.json engines: ^20.19.0, ^22.12.0 or 24 to 26)"

# True when package.json's dependency fields equal those recorded in package-lock.json, i.e. an
# edit of package.json (scripts, tap config, ...) did not touch dependencies and needs no install.
deps_match_lock() {
  [ -f package-lock.json ] || return 1
  node -e '
    const fs = require("fs");
    const pj = JSON.parse(fs.readFileSync("package.json", "utf8"));
    const root = (JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages || {})[""];
    if (!root || pj.overrides || pj.workspaces || pj.bundleDependencies || pj.bundledDependencies) process.exit(1);
    const norm = (o) => JSON.stringify(Object.entries(o || {}).sort(([a], [b]) => (a < b ? -1 : 1)));
    for (const k of ["dependencies", "devDependencies", "optionalDependencies", "peerDependencies"])
      if (norm(pj[k]) !== norm(root[k])) process.exit(1);
  ' 2>/dev/null
}

STAMP=node_modules/.package-lock.json
if [ -f "$STAMP" ] && [ package.json -nt "$STAMP" ] &&
  ! { [ -f package-lock.json ] && [ package-lock.json -nt "$STAMP" ]; } && deps_match_lock; then
  touch "$STAMP"
  log "package.json changed, but not its dependencies: node_modules is up to date"
fi
if [ ! -f "$STAMP" ] || [ package.json -nt "$STAMP" ] ||
  { [ -f package-lock.json ] && [ package-lock.json -nt "$STAMP" ]; }; then
  if [ -f package-lock.json ]; then
    npm_cmd=(npm ci --no-audit --no-fund)
  else
    npm_cmd=(npm install --no-audit --no-fund)
  fi
  log "installing node modules: ${npm_cmd[*]}"
  "${npm_cmd[@]}" >&2
  touch "$STAMP" # npm may write the lock files after it; don't reinstall on the next run
fi

if [ "$MODE" = test ]; then
  log "test prerequisites ready"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Dev environment in .dev/

DEV="$ROOT/.dev"
mkdir -p "$DEV"

# Serialise concurrent runs (e.g. `npm start` and `npm run bench` started together).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DEV/.setup.lock"
  flock 9
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

find_softhsm_module() {
  local c
  for c in "${SOFTHSM2_MODULE:-}" \
    /usr/lib/softhsm/libsofthsm2.so \
    /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
    /usr/lib/*-linux-gnu*/softhsm/libsofthsm2.so \
    /usr/local/lib/softhsm/libsofthsm2.so \
    /usr/lib64/pkcs11/libsofthsm2.so \
    /usr/lib/pkcs11/libsofthsm2.so; do
    if [ -n "$c" ] && [ -f "$c" ]; then
      printf '%s\n' "$c"
      return 0
    fi
  done
  return 1
}
MODULE="$(find_softhsm_module)" || die "libsofthsm2.so not found (set SOFTHSM2_MODULE to its path)"

# Writes a secret without it ever appearing in a command line (printf is a builtin).
write_secret() {
  local file=$1 value=$2
  (umask 077 && printf '%s' "$value" >"$file.tmp.$$")
  mv -f "$file.tmp.$$" "$file"
  chmod 600 "$file"
}

# --- SoftHSM configuration -------------------------------------------------------------------

CONF="$DEV/softhsm2.conf"
TOKENDIR="$DEV/tokens"
TEMPLATE="$ROOT/softhsm/softhsm2.conf.template"
[ -f "$TEMPLATE" ] || die "missing $TEMPLATE"
mkdir -p "$TOKENDIR"
chmod 700 "$TOKENDIR"
template="$(<"$TEMPLATE")"
rendered="${template//@TOKENDIR@/"$TOKENDIR"}"
if [ ! -f "$CONF" ] || [ "$(<"$CONF")" != "$rendered" ]; then
  printf '%s\n' "$rendered" >"$CONF"
  log "wrote .dev/softhsm2.conf"
fi

# --- token "signer" ----------------------------------------------------------------------------

LABEL=signer
PINS="$DEV/pins"
mkdir -p "$PINS"
chmod 700 "$PINS"

# Capture first: `softhsm2-util | grep -q` could die of SIGPIPE and, with pipefail, read as "absent".
slots="$(SOFTHSM2_CONF="$CONF" softhsm2-util --show-slots 2>&1)" || {
  printf '%s\n' "$slots" >&2
  die "softhsm2-util --show-slots failed"
}
if grep -Eq "^[[:space:]]*Label:[[:space:]]+${LABEL}[[:space:]]*\$" <<<"$slots"; then
  [ -s "$PINS/user.pin" ] ||
    die "token '$LABEL' exists but .dev/pins/user.pin is missing; rm -rf .dev/tokens (destroys the dev keys) and rerun"
  log "token '$LABEL' exists, reusing it"
else
  so_pin="$(openssl rand -hex 16)"
  user_pin="$(openssl rand -hex 16)"
  # softhsm2-util only accepts PINs as arguments, so they are visible in `ps` for the moment it
  # runs. Acceptable for a throwaway dev token on a dev machine; never do this with a real HSM.
  if ! out="$(SOFTHSM2_CONF="$CONF" softhsm2-util --init-token --free --label "$LABEL" \
    --so-pin "$so_pin" --pin "$user_pin" 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "could not initialise token '$LABEL'"
  fi
  write_secret "$PINS/so.pin" "$so_pin"
  write_secret "$PINS/user.pin" "$user_pin"
  unset so_pin user_pin
  log "initialised token '$LABEL' (PINs in .dev/pins/)"
fi
chmod 600 "$PINS"/*.pin

# --- dev PKI -----------------------------------------------------------------------------------

PKI="$DEV/pki"
mkdir -p "$PKI"
chmod 700 "$PKI"
DAYS=825

cat >"$WORK/openssl.cnf" <<'EOF'
[req]
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
EOF

serial() { printf '0x1%s' "$(openssl rand -hex 15)"; }

ca_new=0
if [ -s "$PKI/ca.crt" ] && [ -s "$PKI/ca.key" ]; then
  log "dev CA exists, reusing it"
else
  (umask 077 && openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$WORK/ca.key" -out "$WORK/ca.crt" -subj "/CN=hsm-signer dev CA" -days "$DAYS" -sha256 \
    -config "$WORK/openssl.cnf" -extensions ca_ext -set_serial "$(serial)" 2>"$WORK/err") ||
    { cat "$WORK/err" >&2; die "could not create the dev CA"; }
  mv -f "$WORK/ca.key" "$PKI/ca.key"
  mv -f "$WORK/ca.crt" "$PKI/ca.crt"
  ca_new=1
  log "created dev CA .dev/pki/ca.crt"
fi
chmod 600 "$PKI/ca.key"
chmod 644 "$PKI/ca.crt"

# issue <file stem> <CN> <extension section>; skipped when a valid pair from this CA exists.
issue() {
  local name=$1 cn=$2 ext=$3
  if [ "$ca_new" = 0 ] && [ -s "$PKI/$name.crt" ] && [ -s "$PKI/$name.key" ] &&
    openssl verify -CAfile "$PKI/ca.crt" "$PKI/$name.crt" >/dev/null 2>&1; then
    return 0
  fi
  (umask 077 && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$WORK/$name.key" -out "$WORK/$name.csr" -subj "/CN=$cn" \
    -config "$WORK/openssl.cnf" 2>"$WORK/err") ||
    { cat "$WORK/err" >&2; die "could not create a key and CSR for $cn"; }
  openssl x509 -req -in "$WORK/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "$(serial)" -days "$DAYS" -sha256 -extfile "$WORK/openssl.cnf" -extensions "$ext" \
    -out "$WORK/$name.crt" 2>"$WORK/err" ||
    { cat "$WORK/err" >&2; die "could not sign the certificate for $cn"; }
  mv -f "$WORK/$name.key" "$PKI/$name.key"
  mv -f "$WORK/$name.crt" "$PKI/$name.crt"
  chmod 600 "$PKI/$name.key"
  chmod 644 "$PKI/$name.crt"
  log "issued .dev/pki/$name.crt (CN=$cn)"
}

issue server hsm-signer server_ext
# admin-alice, admin-bob, admin-carol: the admin quorum (2 of 3) signs with these certificates' keys.
for cn in payment-engine security-admin auditor admin-alice admin-bob admin-carol; do
  issue "$cn" "$cn" client_ext
done

# --- signer config -----------------------------------------------------------------------------

if [ -f "$DEV/signer.json" ]; then
  log ".dev/signer.json exists, leaving it alone"
else
  # Absolute paths everywhere: the loader resolves tls/store paths against the config's directory,
  # and the PKCS#11 URI and module environment are used as they are.
  DEV="$DEV" MODULE="$MODULE" CONF="$CONF" node --input-type=module -e '
    const { DEV, MODULE, CONF } = process.env;
    // RFC 7512: percent-encode anything outside unreserved characters and the path separators.
    const pct = (s) =>
      s.replace(/[^A-Za-z0-9\-._~\/:]/gu, (c) =>
        [...Buffer.from(c, "utf8")].map((b) => "%" + b.toString(16).toUpperCase().padStart(2, "0")).join(""));
    const config = {
      listen: "127.0.0.1:50051",
      tls: { caFile: `${DEV}/pki/ca.crt`, certFile: `${DEV}/pki/server.crt`, keyFile: `${DEV}/pki/server.key` },
      hsm: {
        uri: `pkcs11:token=signer?module-path=${pct(MODULE)}&pin-source=file:${pct(`${DEV}/pins/user.pin`)}`,
        sessions: 8,
        moduleEnv: { SOFTHSM2_CONF: CONF },
      },
      store: { sqlite: { path: `${DEV}/signer.db` } },
      clients: {
        "payment-engine": { roles: ["signer"] },
        "security-admin": { roles: ["admin"] },
        auditor: { roles: ["auditor"] },
        "admin-alice": { roles: ["admin"] },
        "admin-bob": { roles: ["admin"] },
        "admin-carol": { roles: ["admin"] },
      },
      // Policy changes, destroys and unfreezes need 2 of these 3 admins (README "Admin quorum");
      // a loosening waits a minute here (a day by default).
      admins: {
        quorum: 2,
        policyDelaySeconds: 60,
        members: {
          alice: { certificateFile: `${DEV}/pki/admin-alice.crt` },
          bob: { certificateFile: `${DEV}/pki/admin-bob.crt` },
          carol: { certificateFile: `${DEV}/pki/admin-carol.crt` },
        },
      },
      keyAccess: { "*": ["payment-engine"] },
      // Every Sign and SignBatch carries a request signature by its client (README "How a payment
      // engine signs its requests"); scripts/sign.ts signs with the key of the client certificate.
      requireSignedRequests: true,
      // The demo keys sign everything a demo needs; real policies are narrower (README "Policies").
      policies: {
        "dev-hot": {
          keys: ["hot-*"],
          traffic: "both",
          payloadKinds: ["evm", "digest", "message"],
          freshness: { maxSkewSeconds: 120 },
          evm: {
            chains: ["1", "8453", "11155111"],
            maxValue: "1000000000000000000",
            destinations: { any: true },
            maxFeePerGas: "500000000000",
            maxGas: "1000000",
          },
          velocity: [{ scope: "key", windowSeconds: 3600, maxCount: 100000 }],
          batch: { maxItems: 1000, maxTotalValue: "100000000000000000000" },
        },
      },
      metrics: { listen: "127.0.0.1:9464" },
    };
    process.stdout.write(JSON.stringify(config, null, 2) + "\n");
  ' >"$WORK/signer.json"
  mv -f "$WORK/signer.json" "$DEV/signer.json"
  log "wrote .dev/signer.json"
fi

# --- demo keys ---------------------------------------------------------------------------------

if [ -f scripts/dev-demo-keys.ts ]; then
  log "ensuring demo keys (scripts/dev-demo-keys.ts)"
  npx tsx scripts/dev-demo-keys.ts --config .dev/signer.json >&2
fi

cat >&2 <<EOF

hsm-signer dev environment (all of it in .dev/, git-ignored; rm -rf .dev to start over)
  config        .dev/signer.json
  HSM token     'signer' in .dev/tokens (SoftHSM2, conf .dev/softhsm2.conf; PINs in .dev/pins/, mode 0600)
  certificates  .dev/pki/: ca, server, payment-engine (signer), security-admin (admin), auditor,
                admin-alice, admin-bob, admin-carol (the admin quorum, 2 of 3)
  store         .dev/signer.db (SQLite)
  gRPC (mTLS)   127.0.0.1:50051      metrics  http://127.0.0.1:9464/metrics
  demo keys     hot-secp256k1, hot-p256, hot-ed25519

Once it has started, sign something from another terminal:
  npx tsx scripts/sign.ts hot-secp256k1 --digest \$(openssl rand -hex 32)

EOF
