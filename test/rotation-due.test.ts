import t from 'tap';
import { lastFireAtOrBefore, rotationDue, timezoneProblem } from '../src/core/rotation/due.js';
import { cronProblem } from '../src/infra/config/cron.js';

const at = (iso: string) => new Date(iso);
const DAILY_3AM = '0 3 * * *';
const EVERY_2S = '*/2 * * * * *';

// Rule: rotate when the schedule fired (at or before now) after the active version was created,
// and the active version is at least minAgeSeconds old.
const cases: Array<{
  rule: string;
  cron: string;
  minAgeSeconds?: number;
  timezone?: string;
  created: string;
  now: string;
  due: boolean;
}> = [
  {
    rule: 'fired since the version was created: due',
    cron: DAILY_3AM,
    created: '2026-03-01T02:00:00Z',
    now: '2026-03-01T03:00:05Z',
    due: true,
  },
  {
    rule: 'a fire exactly at now counts',
    cron: DAILY_3AM,
    created: '2026-03-01T02:00:00Z',
    now: '2026-03-01T03:00:00Z',
    due: true,
  },
  {
    rule: 'not fired since the version was created: not due',
    cron: DAILY_3AM,
    created: '2026-03-01T03:00:01Z',
    now: '2026-03-01T20:00:00Z',
    due: false,
  },
  {
    rule: 'the version created at the fire itself served it',
    cron: DAILY_3AM,
    created: '2026-03-01T03:00:00Z',
    now: '2026-03-01T03:00:10Z',
    due: false,
  },
  {
    rule: 'missed while down (several fires): caught up, once',
    cron: DAILY_3AM,
    created: '2026-02-20T12:00:00Z',
    now: '2026-03-01T09:00:00Z',
    due: true,
  },
  {
    rule: 'after the catch-up rotation, the same missed fire is not repeated',
    cron: DAILY_3AM,
    created: '2026-03-01T09:00:00Z',
    now: '2026-03-01T09:00:30Z',
    due: false,
  },
  {
    rule: 'another replica served the fire (newer version): not repeated',
    cron: EVERY_2S,
    created: '2026-03-01T00:00:04.020Z',
    now: '2026-03-01T00:00:04.050Z',
    due: false,
  },
  {
    rule: 'seconds schedules: the next fire is due again',
    cron: EVERY_2S,
    created: '2026-03-01T00:00:04.020Z',
    now: '2026-03-01T00:00:06.001Z',
    due: true,
  },
  {
    rule: 'fired, but the version is younger than minAgeSeconds: not due',
    cron: EVERY_2S,
    minAgeSeconds: 5,
    created: '2026-03-01T00:00:01Z',
    now: '2026-03-01T00:00:04Z',
    due: false,
  },
  {
    rule: 'fired and exactly minAgeSeconds old: due',
    cron: EVERY_2S,
    minAgeSeconds: 5,
    created: '2026-03-01T00:00:01Z',
    now: '2026-03-01T00:00:06Z',
    due: true,
  },
  {
    rule: 'old enough but not fired since: not due',
    cron: DAILY_3AM,
    minAgeSeconds: 60,
    created: '2026-03-01T04:00:00Z',
    now: '2026-03-01T23:00:00Z',
    due: false,
  },
  {
    rule: 'the zone moves the fire: 03:00 Berlin is 02:00 UTC in winter',
    cron: DAILY_3AM,
    timezone: 'Europe/Berlin',
    created: '2026-03-01T01:00:00Z',
    now: '2026-03-01T02:30:00Z',
    due: true,
  },
  {
    rule: 'without a zone the expression is UTC',
    cron: DAILY_3AM,
    created: '2026-03-01T01:00:00Z',
    now: '2026-03-01T02:30:00Z',
    due: false,
  },
];

for (const c of cases) {
  t.equal(
    rotationDue({
      cron: c.cron,
      minAgeSeconds: c.minAgeSeconds ?? 0,
      timezone: c.timezone,
      activeCreatedAt: at(c.created),
      now: at(c.now),
    }),
    c.due,
    c.rule,
  );
}

t.test('the last fire at or before a time', async (t) => {
  t.same(lastFireAtOrBefore(DAILY_3AM, at('2026-03-01T03:00:00Z')), at('2026-03-01T03:00:00Z'), 'inclusive');
  t.same(lastFireAtOrBefore(DAILY_3AM, at('2026-03-01T02:59:59.999Z')), at('2026-02-28T03:00:00Z'));
  t.same(lastFireAtOrBefore(EVERY_2S, at('2026-03-01T00:00:05.500Z')), at('2026-03-01T00:00:04Z'));
});

t.test('expressions and zones are checked before they run', async (t) => {
  t.equal(cronProblem(EVERY_2S), undefined);
  t.equal(cronProblem('0 3 * * MON'), undefined);
  t.match(cronProblem('61 * * * *'), /invalid cron expression/);
  t.match(cronProblem('every day'), /invalid cron expression/);
  t.equal(timezoneProblem('Europe/Berlin'), undefined);
  t.match(timezoneProblem('Mars/Olympus'), /unknown time zone/);
});
