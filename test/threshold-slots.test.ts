import t from 'tap';
import { type Lane, Slots } from '../src/signer/threshold/slots.js';

/** Lets every settled promise's callbacks run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

t.test('at most `size` holders; the rest wait', async (t) => {
  const slots = new Slots(2);
  const got: number[] = [];
  for (let i = 0; i < 4; i++) void slots.acquire('hot').then(() => got.push(i));
  await settle();
  t.same(got, [0, 1]);
  t.equal(slots.inUse, 2);
  t.equal(slots.waiting('hot'), 2);
  slots.release();
  await settle();
  t.same(got, [0, 1, 2], 'a release hands the slot to one waiter');
  t.equal(slots.inUse, 2);
});

t.test('a released slot goes to hot waiters first, each lane in arrival order', async (t) => {
  const slots = new Slots(1);
  await slots.acquire('batch');
  const order: string[] = [];
  const wait = (lane: Lane, name: string) => void slots.acquire(lane).then(() => order.push(name));
  wait('batch', 'b1');
  wait('hot', 'h1');
  wait('batch', 'b2');
  wait('hot', 'h2');
  for (let i = 0; i < 4; i++) {
    slots.release();
    await settle();
  }
  t.same(order, ['h1', 'h2', 'b1', 'b2']);
  slots.release();
  t.equal(slots.inUse, 0);
});

t.test('misuse fails loudly', async (t) => {
  t.throws(() => new Slots(0), RangeError);
  t.throws(() => new Slots(1.5), RangeError);
  const slots = new Slots(1);
  t.throws(() => slots.release(), /release without a matching acquire/);
  await slots.acquire('hot');
  slots.release();
  t.throws(() => slots.release(), /release without a matching acquire/);
});
