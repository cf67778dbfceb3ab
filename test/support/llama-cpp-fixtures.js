'use strict';
// The llama.cpp references in test/fixtures/llama-cpp (written by test/reference/llama-cpp-models.mjs) and
// what it takes to ask pagedlm the same questions: the model regenerated from the fixture's writer
// parameters, the prompt of each step, and which tokens pagedlm keeps within a logit distance of its best.
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { Engine } = require('../..');
const { writeModel } = require('./gguf-writer');

const FIXTURE_DIR = path.join(__dirname, '..', 'fixtures', 'llama-cpp');

// Sampling temperature of the probe: high enough that the tokens min-p keeps are drawn about equally often.
const PROBE_TEMPERATURE = 100;
const PROBE_DRAWS = 48;

function loadFixtures() {
  return fs
    .readdirSync(FIXTURE_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(fs.readFileSync(path.join(FIXTURE_DIR, f), 'utf8')));
}

/** Writes the fixture's model into `dir`; throws when the writer no longer reproduces the bytes llama.cpp ran. */
function regenerateModel(fixture, dir) {
  const file = path.join(dir, `${fixture.case}.gguf`);
  writeModel(file, fixture.shape);
  const sha256 = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  if (sha256 !== fixture.modelSha256) {
    throw new Error(
      `${fixture.case}: test/support/gguf-writer.js no longer writes the model llama.cpp ran (sha256 ${sha256}, fixture ${fixture.modelSha256}): ` +
        'regenerate the references with `npm run reference:models`',
    );
  }
  return file;
}

/** The SHA-256 of the fixture's decoded twin (its weights decoded to F32), written into `dir`. */
function decodedTwinSha256(fixture, dir) {
  const file = path.join(dir, `${fixture.case}-decoded.gguf`);
  writeModel(file, { ...fixture.shape, decoded: true });
  const sha256 = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  fs.rmSync(file);
  return sha256;
}

function loadEngine(file, fixture) {
  // Room for the prompt's blocks and one copied block per probe completion.
  return Engine.load(file, { device: 'cpu', threads: 2, contextLength: fixture.contextSize, kvCache: { dtype: 'f16', blocks: PROBE_DRAWS + 64 }, prefault: false });
}

/** The prompt llama.cpp saw before step i: the fixture's prompt and its own greedy tokens so far. */
function stepPrompt(fixture, i) {
  return fixture.prompt.concat(fixture.steps.slice(0, i).map((s) => s.token));
}

/**
 * The tokens pagedlm keeps within `distance` of its largest logit: min-p at `PROBE_TEMPERATURE` keeps token j
 * exactly when (best - logit_j) / T <= -ln(minP), and `PROBE_DRAWS` draws among the few kept ones show each.
 */
async function tokensWithin(engine, prompt, distance, seed = 1) {
  const result = await engine.generate(prompt, {
    maxTokens: 1,
    n: PROBE_DRAWS,
    seed,
    temperature: PROBE_TEMPERATURE,
    topK: 0,
    topP: 1,
    minP: Math.exp(-distance / PROBE_TEMPERATURE),
    ignoreEos: true,
  });
  return new Set(result.choices.map((c) => c.tokens[0]));
}

/** pagedlm's gap between its best and second-best logit, found by bisection to within `precision`. */
async function topTwoGap(engine, prompt, upper, precision = 1e-4) {
  let low = 0;
  let high = upper;
  while (high - low > precision) {
    const mid = (low + high) / 2;
    if ((await tokensWithin(engine, prompt, mid)).size >= 2) high = mid;
    else low = mid;
  }
  return (low + high) / 2;
}

module.exports = { FIXTURE_DIR, PROBE_DRAWS, loadFixtures, regenerateModel, decodedTwinSha256, loadEngine, stepPrompt, tokensWithin, topTwoGap };
