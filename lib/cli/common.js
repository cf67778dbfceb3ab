'use strict';
// What the commands share: the model they run, the engine options and sampling settings their flags give,
// and how sizes and summaries are printed.

const fs = require('node:fs');
const path = require('node:path');

const DEFAULT_MODEL = path.join(__dirname, '..', '..', '..', 'shared', 'models', 'aidreams260K.gguf');

// Without --model, the repository's own test model, which exists only in a checkout that has ../shared/models
// beside it: anywhere else the user is told what to pass.
function modelPath(values, positionals) {
  const chosen = values.model ?? positionals[1];
  if (chosen !== undefined) return chosen;
  if (fs.existsSync(DEFAULT_MODEL)) return DEFAULT_MODEL;
  throw new Error(`no model: pass --model PATH/TO/MODEL.gguf (the default, ${DEFAULT_MODEL}, exists only beside a pagedlm checkout)`);
}

// A model named hf:... is downloaded first: the bar runs once for the download and once for the load.
function progressBar(fraction, detail) {
  const width = 30;
  const filled = Math.round(fraction * width);
  const label = detail?.phase === 'download' ? 'download' : 'loading';
  process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%${fraction >= 1 ? '\n' : ''}`);
}

/** --kv-dtype, --kv-k-type and --kv-v-type as kvCache's dtype, kType and vType (undefined when none is given). */
function kvCacheTypes(values) {
  const types = { dtype: values['kv-dtype'], kType: values['kv-k-type'], vType: values['kv-v-type'] };
  return Object.values(types).some((t) => t !== undefined) ? types : undefined;
}

/** --kv-offload-memory, --kv-offload-disk and --kv-offload-path as kvCache.offload (undefined when none is given). */
function kvOffload(values) {
  const offload = { memory: values['kv-offload-memory'], disk: values['kv-offload-disk'], path: values['kv-offload-path'] };
  return Object.values(offload).some((v) => v !== undefined) ? offload : undefined;
}

function engineOptions(values) {
  const offload = kvOffload(values);
  return {
    device: values.device,
    threads: values.threads,
    contextLength: values.context,
    kvCache: offload ? { ...kvCacheTypes(values), offload } : kvCacheTypes(values),
    onProgress: process.stderr.isTTY ? progressBar : undefined,
    hub: values['cache-dir'] ? { cacheDir: values['cache-dir'] } : undefined,
  };
}

/** The engine for the command's model and flags (a progress bar on a terminal while it loads). */
async function loadEngine(values, positionals, extra = {}) {
  const model = modelPath(values, positionals);
  const { Engine } = require('..');
  return Engine.load(model, { ...engineOptions(values), ...extra });
}

/** The sampling flags as generate()/chat() options; flags left out take the library's defaults. */
function samplingOptions(values) {
  return {
    maxTokens: values['max-tokens'],
    temperature: values.temperature,
    topK: values['top-k'],
    topP: values['top-p'],
    minP: values['min-p'],
    repetitionPenalty: values['repeat-penalty'],
    frequencyPenalty: values['frequency-penalty'],
    presencePenalty: values['presence-penalty'],
    seed: values.seed,
    stop: values.stop,
    ignoreEos: values['ignore-eos'],
  };
}

/** 1536 -> "1.5 KiB": binary units, three significant figures. */
function formatBytes(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toPrecision(3)} ${units[unit]}`;
}

const count = (n) => n.toLocaleString('en-US');

/** The stderr line after an answer: tokens, finish reason, speed. */
function usageLine(result) {
  const { promptTokens, completionTokens } = result.usage;
  return (
    `[${promptTokens} prompt + ${completionTokens} generated tokens, finish: ${result.finishReason}, ` +
    `first token ${result.timings.ttftMs.toFixed(1)} ms, ${result.timings.tokensPerSecond.toFixed(1)} tokens/s]`
  );
}

module.exports = { DEFAULT_MODEL, modelPath, loadEngine, samplingOptions, formatBytes, count, usageLine, kvCacheTypes };
