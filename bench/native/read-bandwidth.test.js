'use strict';
// The probe as the bench scripts use it: node --test bench/native (builds pagedlm_bench.node the first time).
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { ReadBandwidthProbe } = require('.');

test('a probe measures again and again, one measurement at a time, off the event loop', async () => {
  const probe = await ReadBandwidthProbe.open({ threads: 2, megabytes: 32 });
  assert.equal(probe.threads, 2);
  assert.equal(probe.bufferBytes, 32 * 2 ** 20);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const [a, b] = await Promise.all([probe.measure({ passes: 20 }), probe.measure()]);
  clearInterval(timer);
  assert.ok(ticks > 0);
  assert.deepEqual([a.passes, a.bufferBytes, a.threads], [20, 32 * 2 ** 20, 2]);
  assert.equal(b.passes, 5);
  for (const sample of [a, b]) {
    assert.ok(sample.medianBytesPerSecond > 1e8);
    assert.ok(sample.medianBytesPerSecond <= sample.bytesPerSecond);
  }
  const last = probe.measure({ passes: 2 });
  probe.close();
  assert.equal((await last).passes, 2);
  await assert.rejects(probe.measure(), { code: 'ERR_CLOSED' });
  assert.doesNotThrow(() => probe.close());
});

test('wrong options throw before anything is queued', () => {
  assert.throws(() => ReadBandwidthProbe.open({ megabytes: 2 ** 21 }), RangeError);
  assert.throws(() => ReadBandwidthProbe.open({ megabytes: 1 }), RangeError);
  assert.throws(() => ReadBandwidthProbe.open({ threads: 'two' }), TypeError);
  assert.throws(() => ReadBandwidthProbe.open(5), TypeError);
});

test('measure() checks its passes', async () => {
  const probe = await ReadBandwidthProbe.open({ threads: 1, megabytes: 16 });
  try {
    assert.throws(() => probe.measure({ passes: 'many' }), TypeError);
    assert.throws(() => probe.measure({ passes: 0 }), RangeError);
  } finally {
    probe.close();
  }
});
