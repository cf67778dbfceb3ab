#!/usr/bin/env node
'use strict';
// How far pagedlm's logits sit from llama.cpp's references, the figures the tolerances of
// test/js/llama-cpp-parity.test.js are set from: for each fixture (or the cases named as arguments) and each
// step, pagedlm's gap between its two best logits (found through min-p sampling, the public API having no
// logits) minus llama.cpp's, and minus the exact answer's (llama.cpp on the decoded twin) for models with
// weights other than F32, and whether the greedy tokens agree. Cases pagedlm cannot load are named.
// Usage: node test/reference/pagedlm-gaps.js [case...]
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { loadFixtures, regenerateModel, loadEngine, stepPrompt, topTwoGap } = require('../support/llama-cpp-fixtures');

async function measure(fixture, dir) {
  const engine = await loadEngine(regenerateModel(fixture, dir), fixture);
  try {
    const errors = [];
    const disagreements = [];
    const exactErrors = [];
    for (let i = 0; i < fixture.steps.length; i++) {
      const step = fixture.steps[i];
      const prompt = stepPrompt(fixture, i);
      const greedy = (await engine.generate(prompt, { maxTokens: 1, temperature: 0, ignoreEos: true })).tokens[0];
      if (greedy !== step.token) disagreements.push(`step ${i}: ${greedy} vs ${step.token} (margin ${step.margin})`);
      else {
        const gap = await topTwoGap(engine, prompt, step.margin + 1);
        errors.push(gap - step.margin);
        // Against the decoded twin where it names the same two tokens.
        if (step.exact && step.exact.top[0][0] === step.token && step.exact.top[1][0] === step.top[1][0]) exactErrors.push(gap - step.exact.margin);
      }
    }
    return { errors, exactErrors, disagreements };
  } finally {
    await engine.close();
  }
}

async function main() {
  const chosen = process.argv.slice(2);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-gaps-'));
  try {
    for (const fixture of loadFixtures().filter((f) => chosen.length === 0 || chosen.includes(f.case))) {
      let result;
      try {
        result = await measure(fixture, dir);
      } catch (error) {
        console.log(`${fixture.case}: ${error.message}`);
        continue;
      }
      const largest = Math.max(...result.errors.map(Math.abs));
      if (process.env.VERBOSE) console.log(result.errors.map((e) => e.toFixed(3)).join(' '));
      const exact = result.exactErrors.length ? `, from the exact answer (llama.cpp on the decoded twin) ${Math.max(...result.exactErrors.map(Math.abs)).toFixed(4)} over ${result.exactErrors.length}` : '';
      console.log(`${fixture.case}: largest top-2 gap difference from llama.cpp ${largest.toFixed(4)} over ${result.errors.length} steps${exact}; greedy disagreements: ${result.disagreements.join(', ') || 'none'}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
