import pg from 'pg';
const url = 'postgres://postgres@127.0.0.1:54401/postgres';
for (const pipeline of [false, true]) {
  const c = new pg.Client({ connectionString: url, pipeline } as any); await c.connect();
  await c.query('CREATE TABLE IF NOT EXISTS t (x int)');
  const time = async (name: string, f: () => Promise<unknown>, n = 300) => {
    const l: number[] = [];
    for (let i = 0; i < n; i++) { const a = performance.now(); await f(); l.push(performance.now() - a); }
    l.sort((a, b) => a - b);
    console.log(`pipeline=${pipeline} ${name}: p50=${l[n >> 1]!.toFixed(3)} p90=${l[Math.floor(n * 0.9)]!.toFixed(3)}`);
  };
  await time('select1', () => c.query('SELECT 1'));
  await time('select1 param', () => c.query({ text: 'SELECT $1::int', values: [1] }));
  await time('insert autocommit', () => c.query({ text: 'INSERT INTO t VALUES ($1)', values: [1] }));
  await time('begin+insert+commit seq', async () => { await c.query('BEGIN'); await c.query({ text: 'INSERT INTO t VALUES ($1)', values: [1] }); await c.query('COMMIT'); });
  await time('begin+insert+commit par', () => Promise.all([c.query('BEGIN'), c.query({ text: 'INSERT INTO t VALUES ($1)', values: [1] }), c.query('COMMIT')]));
  await c.end();
}
