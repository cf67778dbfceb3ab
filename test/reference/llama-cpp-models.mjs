#!/usr/bin/env node
// npm run reference:models: llama.cpp's answers on synthetic models, kept as fixtures in
// test/fixtures/llama-cpp/ so that test/js/llama-cpp-parity.test.js compares pagedlm with llama.cpp without
// llama.cpp installed. For each case: writes the model (test/support/gguf-writer.js, seeded, so the test
// regenerates the same bytes), runs its prompt of token ids through llama.cpp (node-llama-cpp, CPU, installed
// into a scratch folder as bench:compare does), then picks greedy tokens step by step and records each step's
// token, its top-1/top-2 logit margin, the top logits and the log-sum-exp of all logits.
// Arguments: case names to run (default: all). Environment: PAGEDLM_COMPARE_DIR (scratch folder, default
// <tmp>/pagedlm-compare), PAGEDLM_REFERENCE_THREADS.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const { writeModel } = require('../support/gguf-writer.js');
const { CASES, promptFor, STEPS, CONTEXT } = require('./cases.js');

const LLAMA_CPP_VERSION = '3.22.1';
const TOP_LOGITS = 8;
const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'fixtures', 'llama-cpp');
const scratch = process.env.PAGEDLM_COMPARE_DIR || path.join(os.tmpdir(), 'pagedlm-compare');
const threads = Number(process.env.PAGEDLM_REFERENCE_THREADS) || os.availableParallelism();

// node-llama-cpp with only this platform's CPU binary, never in pagedlm's own dependencies.
async function loadLlamaCpp() {
  const dir = path.join(scratch, 'node-llama-cpp');
  const entry = path.join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
  if (!fs.existsSync(entry)) {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'pagedlm-compare-scratch', private: true }));
    const platform = `@node-llama-cpp/${process.platform}-${process.arch}@${LLAMA_CPP_VERSION}`;
    process.stderr.write(`installing node-llama-cpp ${LLAMA_CPP_VERSION} into ${dir} ...\n`);
    const npm = ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--omit=optional', `node-llama-cpp@${LLAMA_CPP_VERSION}`, platform];
    execFileSync('npm', npm, { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const lib = await import(pathToFileURL(entry).href);
  return lib.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
}

// One step's record from llama.cpp's logits (a Map of every token): greedy = the largest logit, the lowest id
// among equals.
function stepRecord(logits) {
  if ([...logits.values()].some((v) => !Number.isFinite(v))) throw new Error('llama.cpp gave a logit that is not finite: the model is broken');
  const entries = [...logits.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  const max = entries[0][1];
  const logSumExp = max + Math.log(entries.reduce((sum, [, v]) => sum + Math.exp(v - max), 0));
  return {
    token: entries[0][0],
    margin: round(entries[0][1] - entries[1][1]),
    logSumExp: round(logSumExp),
    top: entries.slice(0, TOP_LOGITS).map(([id, v]) => [id, round(v)]),
  };
}

const round = (v) => Math.round(v * 1e5) / 1e5;

// Evaluates `prompt`, then STEPS steps, recording each step's logits. The token fed after each step is the
// greedy one, or forced[i] when given (the decoded twin follows the quantized model's path).
async function evaluateSteps(llama, file, prompt, forced) {
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  // Flash attention off: llama.cpp's classic attention path, the one every architecture takes.
  const context = await model.createContext({ contextSize: CONTEXT, sequences: 1, threads, batchSize: CONTEXT, flashAttention: false });
  try {
    const sequence = context.getSequence();
    const wantLogits = (token) => [token, { generateNext: { logits: true } }];
    let [answer] = (await sequence.controlledEvaluate([...prompt.slice(0, -1), wantLogits(prompt[prompt.length - 1])])).slice(-1);
    const steps = [];
    for (let i = 0; i < STEPS; i++) {
      const step = stepRecord(answer.next.logits);
      steps.push(step);
      if (i + 1 < STEPS) [answer] = await sequence.controlledEvaluate([wantLogits(forced ? forced[i] : step.token)]);
    }
    return steps;
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

// The case's model, and for a model with weights other than F32 its decoded twin (the same weights in F32,
// test/support/gguf-writer.js's own decoding): llama.cpp on the twin is the exact answer, free of the rounding
// and activation quantization of its quantized kernels. Each step keeps the twin's answer as `exact`.
async function runCase(llama, c, dir) {
  const file = path.join(dir, `${c.name}.gguf`);
  writeModel(file, c.shape);
  const prompt = promptFor(c);
  const steps = await evaluateSteps(llama, file, prompt);
  const record = { modelSha256: sha256(file), prompt, steps };
  if (c.shape.type !== 'F32') {
    const twin = path.join(dir, `${c.name}-decoded.gguf`);
    writeModel(twin, { ...c.shape, decoded: true });
    const exact = await evaluateSteps(llama, twin, prompt, steps.map((s) => s.token));
    steps.forEach((s, i) => (s.exact = { token: exact[i].token, margin: exact[i].margin, top: exact[i].top }));
    record.decodedSha256 = sha256(twin);
  }
  return record;
}

// How far llama.cpp's quantized answer is from the exact one: the largest difference of the top-1/top-2 gap
// over the steps where both name the same two tokens. A wrong decoding in the writer shows as whole logits.
function distanceFromExact(steps) {
  let largest = 0;
  for (const s of steps) {
    if (s.exact.top[0][0] !== s.top[0][0] || s.exact.top[1][0] !== s.top[1][0]) continue;
    largest = Math.max(largest, Math.abs(s.margin - s.exact.margin));
  }
  return largest;
}

// One field a line and one step a line: reviewable diffs when the references are regenerated.
function formatFixture(fixture) {
  const { steps, ...fields } = fixture;
  const lines = Object.entries(fields).map(([key, value]) => `  ${JSON.stringify(key)}: ${JSON.stringify(value)},`);
  return `{\n${lines.join('\n')}\n  "steps": [\n${steps.map((s) => `    ${JSON.stringify(s)}`).join(',\n')}\n  ]\n}\n`;
}

async function main() {
  const chosen = process.argv.slice(2);
  for (const name of chosen) if (!CASES.some((c) => c.name === name)) throw new Error(`unknown case '${name}' (cases: ${CASES.map((c) => c.name).join(', ')})`);
  const llama = await loadLlamaCpp();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pagedlm-reference-'));
  fs.mkdirSync(fixtures, { recursive: true });
  try {
    for (const c of CASES.filter((x) => chosen.length === 0 || chosen.includes(x.name))) {
      const { steps, ...record } = await runCase(llama, c, dir);
      const fixture = { case: c.name, generator: 'test/reference/llama-cpp-models.mjs', llamaCpp: `node-llama-cpp ${LLAMA_CPP_VERSION} (llama.cpp ${llama.llamaCppRelease.release}), CPU, KV f16, flash attention off`, contextSize: CONTEXT, shape: c.shape, ...record, steps };
      fs.writeFileSync(path.join(fixtures, `${c.name}.json`), formatFixture(fixture));
      const margins = steps.map((s) => s.margin);
      const exact = steps[0].exact ? `; largest top-2 gap difference from the decoded twin ${distanceFromExact(steps).toFixed(4)}` : '';
      process.stderr.write(`${c.name}: ${steps.map((s) => s.token).join(' ')} (smallest margin ${Math.min(...margins).toFixed(4)}${exact})\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await llama.dispose();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
