'use strict';
// Speculative sampling must draw from exactly the distribution plain sampling draws from (the rejection rule:
// accept a proposed token with min(1, p/q), else resample from max(0, p - q) normalized). Many seeded runs of
// each, on aidreams260K with a prompt that repeats itself (so the n-gram proposer proposes the repeat's
// continuation, which sampling sometimes follows and sometimes leaves: proposals are accepted and rejected),
// and chi-square two-sample tests on the first generated tokens.
//
// The tests: the token at each of the first TOKENS positions, and the first three as one tuple (five tests);
// outcomes seen fewer than 10 times in both samples together are merged (the chi-square approximation needs
// about 5 expected per cell); degrees of freedom = categories - 1 (at least 5, checked); two samples differ
// when any test gives p < P_REJECT. The seed sets are fixed (and disjoint between samples, which must be
// independent), so the verdict is the same on every run. The control test shows that the tests have the power
// to see a difference: plain sampling at temperature 0.7 against 1 is rejected.
const { Engine } = require('../..');
const { GENERATE_KEYS } = require('../../lib/options');
const { describeWithModels } = require('../support/models');
const { chiSquareTwoSample } = require('../support/chi-square');

const RUNS = 600;
const TOKENS = 4;
const P_REJECT = 0.001;
// Temperature 1 with no truncation: the model's own distribution.
const SAMPLING = { temperature: 1, topK: 0, topP: 1, minP: 0 };
const PROMPT = 'In the quiet hum of the servers, classification whispers secrets, as I settle into a tapestry of vectors. Classification whispers';

const speculationBuilt = GENERATE_KEYS.includes('speculative');
const testWithSpeculation = speculationBuilt ? test : test.skip;
if (!speculationBuilt) {
  test.skip('speculative sampling tests (skipped: this build has no `speculative` generate() option)', () => {});
}

// RUNS seeded runs from seed `firstSeed` on: { outcomes (each run's first TOKENS tokens), speculation (per run) }.
async function sample(engine, firstSeed, options) {
  const outcomes = [];
  const speculation = [];
  const concurrent = 16;
  for (let start = 0; start < RUNS; start += concurrent) {
    const batch = Array.from({ length: Math.min(concurrent, RUNS - start) }, (_, i) =>
      engine.generate(PROMPT, { ...SAMPLING, maxTokens: TOKENS, ignoreEos: true, seed: firstSeed + start + i, ...options }),
    );
    for (const r of await Promise.all(batch)) {
      outcomes.push(r.tokens);
      speculation.push(r.speculation);
    }
  }
  return { outcomes, speculation };
}

// The five tests of two samples' outcomes: { name, statistic, df, p, categories } each.
function compareSamples(a, b) {
  const tests = [];
  for (let position = 0; position < TOKENS; position++) {
    const at = (sample) => sample.outcomes.map((tokens) => tokens[position]);
    tests.push({ name: `token ${position + 1}`, ...chiSquareTwoSample(at(a), at(b)) });
  }
  const firstThree = (sample) => sample.outcomes.map((tokens) => tokens.slice(0, 3).join(' '));
  tests.push({ name: 'tokens 1-3', ...chiSquareTwoSample(firstThree(a), firstThree(b)) });
  return tests;
}

const rejected = (tests) => tests.filter((t) => t.p < P_REJECT);

function describeTests(tests) {
  return tests
    .map((t) => {
      const cells = t.categories.slice(0, 6).map((c) => `${c.outcome}: ${c.a}/${c.b}`).join(', ');
      return `${t.name}: chi-square ${t.statistic.toFixed(2)}, df ${t.df}, p ${t.p.toExponential(2)} (${cells}, ...)`;
    })
    .join('\n');
}

describeWithModels('speculative sampling draws from the plain distribution', ['aidreams260K.gguf'], (modelPath) => {
  let engine;
  let plain;

  beforeAll(async () => {
    engine = await Engine.load(modelPath, { threads: 2, contextLength: 128 });
    plain = await sample(engine, 1, {});
  });

  afterAll(async () => {
    await engine?.close();
  });

  test('control: plain against plain (other seeds) is accepted; temperature 0.7 against 1 is rejected', async () => {
    const again = await sample(engine, 10 * RUNS + 1, {});
    const same = compareSamples(plain, again);
    if (rejected(same).length > 0) throw new Error(`plain sampling differs from itself:\n${describeTests(same)}`);
    for (const t of same) expect(t.df).toBeGreaterThanOrEqual(5); // spread over enough outcomes to tell distributions apart

    const colder = compareSamples(plain, await sample(engine, 20 * RUNS + 1, { temperature: 0.7 }));
    if (rejected(colder).length === 0) throw new Error(`temperature 0.7 passed for 1:\n${describeTests(colder)}`);
  });

  // Both paths of the rule ran: some proposed tokens accepted, some rejected.
  function expectProposalsJudged(speculation) {
    const proposed = speculation.reduce((n, s) => n + s.proposed, 0);
    const accepted = speculation.reduce((n, s) => n + s.accepted, 0);
    expect(proposed).toBeGreaterThan(0);
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(proposed);
  }

  for (const tokens of [4, 8]) {
    testWithSpeculation(`n-gram speculation, k = ${tokens}: the same distribution, with tokens proposed`, async () => {
      const speculative = await sample(engine, (30 + tokens) * RUNS + 1, { speculative: { proposer: 'ngram', tokens } });
      expectProposalsJudged(speculative.speculation);
      const tests = compareSamples(plain, speculative);
      if (rejected(tests).length > 0) throw new Error(`speculative sampling differs from plain:\n${describeTests(tests)}`);
    });
  }

  // The rule must judge proposals by the distribution the sampler draws from after temperature, top-k, top-p
  // and min-p, not by the model's raw one.
  testWithSpeculation('n-gram speculation under the default sampling settings (truncated): the same distribution', async () => {
    const defaults = { temperature: undefined, topK: undefined, topP: undefined, minP: undefined };
    const plainDefaults = await sample(engine, 50 * RUNS + 1, defaults);
    const speculative = await sample(engine, 60 * RUNS + 1, { ...defaults, speculative: { proposer: 'ngram', tokens: 4 } });
    expectProposalsJudged(speculative.speculation);
    const tests = compareSamples(plainDefaults, speculative);
    if (rejected(tests).length > 0) throw new Error(`speculative sampling differs from plain:\n${describeTests(tests)}`);
  });
});
