#!/usr/bin/env node
'use strict';
// How far pagedlm's logits sit from llama.cpp's references, the figures the tolerances of
// test/js/llama-cpp-parity.test.js are set from: for each fixture (or the cases named as arguments) and each
// step, pagedlm's gap between its two best logits (found through min-p sampling, the public API having no
// logits) minus llama.cpp's, and whether the greedy tokens agree. Cases pagedlm cannot load are named.
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
    for (let i = 0; i < fixture.steps.length; i++) {
      const step = fixture.steps[i];
      const prompt = stepPrompt(fixture, i);
      const greedy = (await engine.generate(prompt, { maxTokens: 1, temperature: 0, ignoreEos: true })).tokens[0];
      if (greedy !== step.token) disagreements.push(`step ${i}: ${greedy} vs ${step.token} (margin ${step.margin})`);
      else errors.push((await topTwoGap(engine, prompt, step.margin + 1)) - step.margin);
    }
    return { errors, disagreements };
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
      console.log(`${fixture.case}: largest top-2 gap difference ${largest.toFixed(4)} over ${result.errors.length} steps; greedy disagreements: ${result.disagreements.join(', ') || 'none'}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
