'use strict';
// pagedlm against llama.cpp on synthetic models of every architecture and weight type, from the references in
// test/fixtures/llama-cpp (how they are made and regenerated: docs/testing.md). Each step of a case asks
// pagedlm about the prompt llama.cpp saw at that step (the fixture's prompt and llama.cpp's greedy tokens so
// far), so one disagreement does not hide the steps after it. Per step, against llama.cpp's answer and, for
// weights other than F32, against the exact answer (llama.cpp on the same weights decoded to F32):
// - the greedy token is the reference's, unless the reference's top-1/top-2 margin is below the tolerance;
// - logit gaps: at distances t placed at least the tolerance away from every gap in the reference's top
//   logits, the tokens pagedlm keeps within t of its best logit are the reference's. The public API has no
//   logits, so min-p sampling shows that set (test/support/llama-cpp-fixtures.js).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { CASES } = require('../reference/cases');
const { loadFixtures, regenerateModel, decodedTwinSha256, loadEngine, stepPrompt, tokensWithin } = require('../support/llama-cpp-fixtures');

// Tolerances on logit differences (the logits span a few units), each well above what
// test/reference/pagedlm-gaps.js measures; docs/testing.md gives the measurements and why.
// Against llama.cpp on the same file, both engines' rounding counts:
// - weights both engines read exactly (F32, F16): llama.cpp rounds queries and attention weights (and for F16
//   weights the activations) to f16, pagedlm keeps them in f32;
// - BF16: llama.cpp rounds the activations to bf16 for its dot products;
// - quantized weights: both engines quantize the activations to int8, each in its own way, and each lands
//   about as far from the exact answer as the other.
// Against the exact answer (llama.cpp on the same weights decoded to F32), only pagedlm's own: none beyond
// f32 rounding for F16 and BF16 weights, the int8 activations of its quantized kernels.
const TOLERANCE = {
  llamaCpp: { exact: 0.03, bf16: 0.25, quantized: 0.6 },
  decoded: { exact: 0.03, bf16: 0.03, quantized: 0.5 },
};

function weightClass(type) {
  if (type === 'F32' || type === 'F16') return 'exact';
  return type === 'BF16' ? 'bf16' : 'quantized';
}

// Distances at which to compare the kept tokens: midway between consecutive gaps of the reference's top logits
// that are more than twice the tolerance apart, keeping at most 4 tokens; the first two such per step.
function probeDistances(step, tolerance) {
  const best = step.top[0][1];
  const gaps = step.top.map(([, logit]) => best - logit);
  const distances = [];
  for (let k = 1; k < gaps.length && k <= 4 && distances.length < 2; k++) {
    if (gaps[k] - gaps[k - 1] > 2 * tolerance) distances.push({ distance: (gaps[k - 1] + gaps[k]) / 2, kept: step.top.slice(0, k).map(([id]) => id) });
  }
  return distances;
}

// The tokens pagedlm keeps within `distance`; a kept token that no draw showed gets more draws (other seeds).
async function keptTokens(engine, prompt, distance, expected) {
  const seen = await tokensWithin(engine, prompt, distance, 1);
  for (let seed = 2; seed <= 4 && expected.some((id) => !seen.has(id)); seed++) {
    for (const id of await tokensWithin(engine, prompt, distance, seed)) seen.add(id);
  }
  return [...seen].sort((a, b) => a - b);
}

// The references of one step: llama.cpp on the case's file, and on its decoded twin where there is one.
function references(fixture, step) {
  const kind = weightClass(fixture.shape.type);
  const refs = [{ name: 'llama.cpp', answer: step, tolerance: TOLERANCE.llamaCpp[kind] }];
  if (step.exact) refs.push({ name: 'the exact answer', answer: step.exact, tolerance: TOLERANCE.decoded[kind] });
  return refs;
}

async function compareCase(fixture, dir) {
  const engine = await loadEngine(regenerateModel(fixture, dir), fixture);
  const problems = [];
  let greedyChecked = 0;
  let distancesChecked = 0;
  try {
    for (let i = 0; i < fixture.steps.length; i++) {
      const prompt = stepPrompt(fixture, i);
      const [greedy] = (await engine.generate(prompt, { maxTokens: 1, temperature: 0, ignoreEos: true })).tokens;
      for (const { name, answer, tolerance } of references(fixture, fixture.steps[i])) {
        if (answer.margin >= tolerance) {
          greedyChecked++;
          if (greedy !== answer.token) problems.push(`step ${i}: greedy token ${greedy}, ${name} ${answer.token} (its margin ${answer.margin})`);
        }
        for (const { distance, kept } of probeDistances(answer, tolerance)) {
          const expected = [...kept].sort((a, b) => a - b);
          const actual = await keptTokens(engine, prompt, distance, expected);
          distancesChecked++;
          if (actual.join() !== expected.join()) {
            problems.push(`step ${i}: tokens within ${distance.toFixed(3)} of the best logit: pagedlm [${actual}], ${name} [${expected}] (its top: ${JSON.stringify(answer.top.slice(0, 6))})`);
          }
        }
      }
    }
  } finally {
    await engine.close();
  }
  return { problems, greedyChecked, distancesChecked };
}

describe('pagedlm against llama.cpp (test/fixtures/llama-cpp)', () => {
  const fixtures = loadFixtures();
  let dir;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-parity-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('every case of test/reference/cases.js has its reference, made from the same writer parameters', () => {
    const byName = new Map(fixtures.map((f) => [f.case, f]));
    expect(CASES.map((c) => c.name).filter((name) => !byName.has(name))).toEqual([]);
    for (const c of CASES) expect(byName.get(c.name).shape).toEqual(c.shape);
  });

  test('the writer still writes the models and decoded twins the references were made from', () => {
    const stale = [];
    for (const fixture of fixtures) {
      try {
        regenerateModel(fixture, dir);
      } catch (error) {
        stale.push(error.message);
      }
      if (fixture.decodedSha256 && decodedTwinSha256(fixture, dir) !== fixture.decodedSha256) stale.push(`${fixture.case}: the decoded twin differs`);
    }
    if (stale.length > 0) throw new Error(`regenerate the references with \`npm run reference:models\`:\n${stale.join('\n')}`);
  });

  for (const fixture of fixtures) {
    const kind = weightClass(fixture.shape.type);
    const exact = fixture.decodedSha256 ? ` and the exact answer's within ${TOLERANCE.decoded[kind]}` : '';
    test(`${fixture.case}: greedy tokens and logit gaps as llama.cpp's within ${TOLERANCE.llamaCpp[kind]}${exact}`, async () => {
      const { problems, greedyChecked, distancesChecked } = await compareCase(fixture, dir);
      if (problems.length > 0) throw new Error(`${fixture.case} differs from llama.cpp:\n${problems.join('\n')}`);
      // A case whose margins are all within the tolerance would compare nothing.
      expect(greedyChecked).toBeGreaterThanOrEqual(4);
      expect(distancesChecked).toBeGreaterThan(0);
    });
  }
});
