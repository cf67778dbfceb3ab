'use strict';
// Speculative decoding side by side with plain decoding in one run (issue 28's targets), greedy:
//   copy    a copy-heavy request on a Llama-1B-shaped Q4_K model that copies (bench/copier-model.js): the prompt
//           holds a document with a few edits, an unrelated request, then the document's first tokens; the
//           model's continuation is the unedited document (target: n-gram speculation at least 2x plain)
//   repeat  the shared aidreams260K, whose greedy output repeats itself
//   random  random prompt tokens on the copier model: the continuation never occurs in the prompt, so the
//           proposer has nothing useful to offer (target: at most 3% slower than plain)
//   cached  the copy task's document sent first as a request of its own, then a prompt holding only the
//           unrelated request and the document's first tokens: what the proposer can find is in the prefix
//           cache's blocks, not in the request
// and, when Engine.load takes a `draft` model, the copy and random workloads with a draft model (the tiny
// copier, which agrees with the 1B copier on every token) and aidreams260K as its own draft (a correctness
// row: a draft as large as the target saves nothing).
// Every row checks that its output is the plain output, token for token. Each run starts from an empty prefix
// cache (and the cached workload's document request), so what a proposer finds is in the request itself or
// that document, never in an earlier run's tokens.
// On a build without speculative decoding the plain rows run and a line says what is missing.
const os = require('node:os');
const { Engine } = require('..');
const { ensureModel } = require('./models');
const { sharedModel } = require('../test/support/models');
const { COPIER_1B, COPIER_DRAFT, copierShape, copyTask, randomTokens } = require('./copier-model');

const quick = process.env.PAGEDLM_BENCH_QUICK === '1';
const threads = Number(process.env.PAGEDLM_BENCH_THREADS) || os.cpus().length;

const NGRAM_MODES = [4, 8].map((k) => ({ label: `n-gram, k = ${k}`, options: { speculative: { proposer: 'ngram', tokens: k } } }));
const DRAFT_TOKENS = 4;
const DRAFT_MODE = { label: `draft model, k = ${DRAFT_TOKENS}`, options: { speculative: { proposer: 'draft', tokens: DRAFT_TOKENS } } };

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// Why this build cannot run `options` (speculation settings), or null if it can.
async function unsupported(engine, prompt, options) {
  try {
    await engine.generate(prompt, { maxTokens: 2, temperature: 0, ...options });
    return null;
  } catch (error) {
    if (error instanceof TypeError && /speculative|proposer|draft/.test(error.message)) return error.message.split(': known options')[0];
    throw error;
  }
}

// Engine.load with a draft model, or { missing: why not } on a build whose load() does not take `draft`.
async function loadWithDraft(file, draftFile, options) {
  try {
    return { engine: await Engine.load(file, { ...options, draft: { model: draftFile, tokens: DRAFT_TOKENS } }) };
  } catch (error) {
    if (error instanceof TypeError && /draft/.test(error.message)) return { missing: error.message.split(': known options')[0] };
    throw error;
  }
}

// Decode tokens per second as the engine times them: the tokens after the first (the prefill's) over the time
// from the first to the last, whether each step gave one token or several. Timed on the engine's thread, not
// by when JavaScript hears of the tokens, which on a tiny model would measure the event loop.
async function decodeRun(engine, task, maxTokens, options) {
  await engine.cache.clear();
  if (task.cachedFirst) await engine.generate(task.cachedFirst, { maxTokens: 1, temperature: 0 });
  const result = await engine.generate(task.prompt, { ...options, maxTokens, temperature: 0, ignoreEos: true });
  return { result, tokensPerSecond: result.timings.tokensPerSecond };
}

// The first request after a load pays for page faults and thread start-up: not part of any measurement.
async function warmUp(engine) {
  await engine.generate([1, 300, 400], { maxTokens: 4, temperature: 0, ignoreEos: true });
}

const sameTokens = (a, b) => a.length === b.length && a.every((t, i) => t === b[i]);
const sum = (values) => values.reduce((a, b) => a + b, 0);

/**
 * Runs each task under plain decoding and each mode, in an order that rotates from task to task (drift in the
 * machine's speed falls on all alike). tasks: [{ prompt, expected?, cachedFirst? }] (expected: what plain decoding must give; cachedFirst: a
 * prompt run before each measured run, to be in the prefix cache). Returns table rows.
 */
async function compare(engine, workload, tasks, maxTokens, modes) {
  const runs = new Map([['plain', []], ...modes.map((m) => [m.label, []])]);
  const all = [{ label: 'plain', options: {} }, ...modes];
  for (const [i, task] of tasks.entries()) {
    // Each round starts with a different mode, so whatever the machine does over a round (a warming cache, a
    // neighbour's load) does not fall on one mode every time.
    const order = all.map((_, j) => all[(i + j) % all.length]);
    const results = new Map();
    for (const mode of order) results.set(mode.label, await decodeRun(engine, task, maxTokens, mode.options));
    const plain = results.get('plain');
    if (task.expected && !sameTokens(plain.result.tokens, task.expected.slice(0, maxTokens))) {
      throw new Error(`${workload}: plain decoding did not continue the document (got ${plain.result.tokens.slice(0, 8)}..., expected ${task.expected.slice(0, 8)}...)`);
    }
    for (const mode of all) {
      const run = results.get(mode.label);
      runs.get(mode.label).push({ ...run, identical: sameTokens(run.result.tokens, plain.result.tokens) });
    }
  }
  const plainSpeed = median(runs.get('plain').map((r) => r.tokensPerSecond));
  return [...runs].map(([label, list]) => {
    const speed = median(list.map((r) => r.tokensPerSecond));
    const stats = list.map((r) => r.result.speculation).filter(Boolean);
    const proposed = sum(stats.map((s) => s.proposed));
    const accepted = sum(stats.map((s) => s.accepted));
    return {
      workload,
      decoding: label,
      'decode tok/s': speed.toFixed(2),
      'vs plain': `${(speed / plainSpeed).toFixed(2)}x`,
      proposed: label === 'plain' ? '' : proposed,
      accepted: label === 'plain' ? '' : accepted,
      acceptance: proposed > 0 ? `${((100 * accepted) / proposed).toFixed(1)}%` : '',
      'tokens/step': stats.length ? median(stats.map((s) => s.tokensPerStep)).toFixed(2) : '',
      'identical to plain': list.every((r) => r.identical) ? 'yes' : `NO (${list.filter((r) => !r.identical).length} of ${list.length} runs)`,
    };
  });
}

// Rounds of each workload: each round a fresh document (or random prompt), so no run's tokens were seen before.
// The random workload gets three times the rounds: its target is a difference of a few percent, within the
// spread of single runs on a shared machine.
function copierTasks(vocab, rounds, length) {
  const copy = Array.from({ length: rounds }, (_, r) => copyTask(vocab, { start: 1000 + 5000 * r, length }));
  const random = Array.from({ length: 3 * rounds }, (_, r) => ({ prompt: [1, ...randomTokens(vocab, length, 100 + r)] }));
  // The copy task's last 20 tokens are the unrelated request and the document's first 4.
  const cached = Array.from({ length: rounds }, (_, r) => {
    const task = copyTask(vocab, { start: 3000 + 5000 * r, length });
    return { prompt: [1, ...task.prompt.slice(-20)], expected: task.expected, cachedFirst: task.prompt };
  });
  return { copy, random, cached };
}

function printTargets(rows) {
  const ratio = (workload, decoding) => {
    const row = rows.find((r) => r.workload === workload && r.decoding === decoding);
    return row && Number.parseFloat(row['vs plain']);
  };
  for (const { label } of NGRAM_MODES) {
    const copy = ratio('copy', label);
    const random = ratio('random', label);
    if (copy !== undefined) console.log(`target, copy, ${label}: ${copy.toFixed(2)}x plain (at least 2x): ${copy >= 2 ? 'met' : 'NOT met'}`);
    if (random !== undefined) console.log(`target, random, ${label}: ${random.toFixed(2)}x plain (at most 3% slower, 0.97x): ${random >= 0.97 ? 'met' : 'NOT met'}`);
  }
}

async function speculativeSection() {
  const rounds = quick ? 1 : 3;
  const repeatRounds = quick ? 5 : 9; // aidreams260K's runs take milliseconds, and vary more
  const documentTokens = quick ? 64 : 128;
  const maxTokens = quick ? 32 : 64;
  const copierFile = ensureModel(copierShape(COPIER_1B));
  const loadOptions = { device: 'cpu', threads, contextLength: 1024 };
  const rows = [];
  const notes = [];

  const engine = await Engine.load(copierFile, loadOptions);
  let missing;
  try {
    await warmUp(engine);
    const vocab = engine.info().vocabSize;
    const tasks = copierTasks(vocab, rounds, documentTokens);
    missing = await unsupported(engine, tasks.copy[0].prompt, NGRAM_MODES[0].options);
    if (missing) notes.push(`speculative decoding: not available in this build (generate() says: ${missing}); plain decoding only`);
    const modes = missing ? [] : NGRAM_MODES;
    rows.push(...(await compare(engine, 'copy', tasks.copy, maxTokens, modes)));
    rows.push(...(await compare(engine, 'random', tasks.random, maxTokens, modes)));
    rows.push(...(await compare(engine, 'cached', tasks.cached, maxTokens, modes)));
    if (!missing) notes.push(`engine.stats().speculation after the copier runs: ${JSON.stringify(engine.stats().speculation)}`);
  } finally {
    await engine.close();
  }

  const aidreams = sharedModel('aidreams260K.gguf');
  if (aidreams) {
    // One thread: a step of this model is a fraction of a millisecond, and with more, every step waits for the
    // last of its threads to be scheduled, which on a busy machine is most of the time measured.
    const small = await Engine.load(aidreams, { device: 'cpu', threads: 1, contextLength: 128 });
    try {
      await warmUp(small);
      const prompt = small.tokenize('In the quiet hum of the servers');
      rows.push(...(await compare(small, 'repeat', Array.from({ length: repeatRounds }, () => ({ prompt })), 96, missing ? [] : NGRAM_MODES)));
    } finally {
      await small.close();
    }
  } else {
    notes.push('repeat workload skipped: ../shared/models/aidreams260K.gguf not found');
  }

  if (!missing) await draftRows(copierFile, aidreams, { loadOptions, rounds, repeatRounds, documentTokens, maxTokens, rows, notes });

  console.log(`\nspeculative decoding: greedy, ${os.cpus()[0].model}, ${threads} threads (1 for repeat), ${maxTokens} tokens per run (96 for repeat), median of ${rounds} runs (${3 * rounds} for random, ${repeatRounds} for repeat)`);
  console.table(rows);
  for (const note of notes) console.log(note);
  printTargets(rows);
}

async function draftRows(copierFile, aidreams, { loadOptions, rounds, repeatRounds, documentTokens, maxTokens, rows, notes }) {
  const draftFile = ensureModel(copierShape(COPIER_DRAFT));
  const loaded = await loadWithDraft(copierFile, draftFile, loadOptions);
  if (loaded.missing) {
    notes.push(`draft-model rows: not available in this build (Engine.load says: ${loaded.missing})`);
    return;
  }
  try {
    await warmUp(loaded.engine);
    const tasks = copierTasks(loaded.engine.info().vocabSize, rounds, documentTokens);
    rows.push(...(await compare(loaded.engine, 'copy', tasks.copy, maxTokens, [DRAFT_MODE])).slice(1));
    rows.push(...(await compare(loaded.engine, 'random', tasks.random, maxTokens, [DRAFT_MODE])).slice(1));
  } finally {
    await loaded.engine.close();
  }
  if (!aidreams) return;
  const self = await loadWithDraft(aidreams, aidreams, { ...loadOptions, threads: 1, contextLength: 128 });
  try {
    await warmUp(self.engine);
    const prompt = self.engine.tokenize('In the quiet hum of the servers');
    rows.push(...(await compare(self.engine, 'repeat (own draft)', Array.from({ length: repeatRounds }, () => ({ prompt })), 96, [DRAFT_MODE])).slice(1));
  } finally {
    await self.engine.close();
  }
}

module.exports = { speculativeSection };
