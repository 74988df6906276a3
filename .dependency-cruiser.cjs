// The layering of src/ (ARCHITECTURE: core <- infra <- signer | cosigner), checked by `npm run lint`.
// Type-only imports count too (tsPreCompilationDeps): a core type that names an infra type is
// the same coupling as a value import.

/** I/O packages: the pure core decides, it never talks to a wire, a database, an HSM or a clock. */
const IO_PACKAGES = [
  '@grpc/[^/]+',
  'pg',
  'pg-[^/]+',
  'better-sqlite3',
  'pkcs11js',
  'node-cron',
  'prom-client',
  'pino',
  'grpc-health-check',
];
/** Node built-ins that do I/O or run code elsewhere; node:crypto and node:util stay allowed. */
const IO_BUILTINS = [
  'fs',
  'fs/promises',
  'net',
  'http',
  'https',
  'http2',
  'tls',
  'dgram',
  'dns',
  'child_process',
  'cluster',
  'worker_threads',
  'timers',
  'timers/promises',
];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'core-imports-only-core',
      comment: 'src/core is the pure domain: it imports nothing from the layers built on it.',
      severity: 'error',
      from: { path: '^src/core/' },
      to: { path: '^src/(?!core/)' },
    },
    {
      name: 'core-no-io-packages',
      comment: 'src/core imports no gRPC, database, PKCS#11, scheduler, metrics or logging package.',
      severity: 'error',
      from: { path: '^src/core/' },
      to: { path: `(^|/)node_modules/(${IO_PACKAGES.join('|')})(/|$)` },
    },
    {
      name: 'core-no-io-builtins',
      comment: 'src/core imports no Node built-in that touches files, sockets, processes or timers.',
      severity: 'error',
      from: { path: '^src/core/' },
      to: { dependencyTypes: ['core'], path: `^(node:)?(${IO_BUILTINS.join('|')})$` },
    },
    {
      name: 'infra-imports-only-core',
      comment: 'src/infra (HSM, stores, config, gRPC plumbing) builds on core only, never on a program.',
      severity: 'error',
      from: { path: '^src/infra/' },
      to: { path: '^src/(?!core/|infra/)' },
    },
    {
      name: 'signer-not-cosigner',
      comment: 'The signer and the cosigner are separate programs; shared code lives in core or infra.',
      severity: 'error',
      from: { path: '^src/signer/' },
      to: { path: '^src/cosigner/' },
    },
    {
      name: 'cosigner-not-signer',
      comment: 'The signer and the cosigner are separate programs; shared code lives in core or infra.',
      severity: 'error',
      from: { path: '^src/cosigner/' },
      to: { path: '^src/signer/' },
    },
    {
      name: 'programs-not-each-other',
      comment:
        'The signer, the cosigner and the witness are separate programs; what two of them share (the witness role of every cosigner) lives in infra.',
      severity: 'error',
      from: { path: '^src/(signer|cosigner|witness)/' },
      to: { path: '^src/(signer|cosigner|witness)/', pathNot: '^src/$1/' },
    },
    {
      name: 'src-not-fixtures',
      comment: 'Shipped code never imports tests, harness fixtures, benchmarks or operator scripts.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|harness|bench|scripts)/' },
    },
    {
      name: 'src-no-cycles',
      comment: 'No import cycles in src/: a cycle means two modules are one concern or a layer leaks.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'src-no-dev-dependencies',
      comment: 'dist/ runs with production dependencies only (npm ci --omit=dev).',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'resolvable',
      comment: 'Every import resolves to a file or an installed package.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
  },
};
