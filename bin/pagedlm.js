#!/usr/bin/env node
'use strict';
// pagedlm command line:
//   pagedlm generate [--model PATH] --prompt TEXT [sampling flags]   stream a completion to stdout
//   pagedlm info [--model PATH] [--memory BYTES]                     print what the model is
//   pagedlm serve [--model PATH] [--port 8080] [--host 127.0.0.1]     OpenAI-compatible server + chat page
//   pagedlm pull SPEC | ls | rm SPEC                                  the model cache (lib/cli/models.js)
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { DEFAULT_SAMPLING: D } = require('../lib/sampling');

const DEFAULT_MODEL = path.join(__dirname, '..', '..', 'shared', 'models', 'aidreams260K.gguf');

const USAGE = `usage:
  pagedlm generate [--model PATH] --prompt TEXT [options]
  pagedlm info [--model PATH] [--memory 8GiB]
  pagedlm serve [--model PATH] [--port 8080] [--host 127.0.0.1]
  pagedlm pull hf:owner/repo:Q4_K_M | ls | rm SPEC   [--cache-dir DIR]   models by name (docs/models.md)

generate options:
  --max-tokens N          tokens to generate (default ${D.maxTokens})
  --temperature T         0 = greedy (default ${D.temperature})
  --top-k K               (default ${D.topK}; 0 = off)
  --top-p P               (default ${D.topP}; 1 = off)
  --min-p P               (default ${D.minP}; 0 = off)
  --repeat-penalty R      (default ${D.repetitionPenalty} = off)
  --frequency-penalty F   --presence-penalty P (default ${D.frequencyPenalty} = off)
  --seed S                same seed, same output
  --stop TEXT             stop before TEXT (repeatable)
  --ignore-eos            keep going past end-of-sequence
engine options:
  --threads N  --context N  --kv-dtype f32|f16|bf16|int8|fp8
info: --memory SIZE       longest context that fits SIZE of KV memory (default 4GiB)
serve: --port N (default 8080)  --host H (default 127.0.0.1: this machine only)
       --api-key KEY (or PAGEDLM_API_KEY)  --protect-metrics (require the key on /metrics too)
       --max-tokens-cap N (default 4096)  --max-prompt-tokens N
Sampling defaults are the library's, for generate and for serve alike (docs/api.md, "Default sampling").
--model defaults to ${DEFAULT_MODEL} when that file exists.`;

const OPTIONS = {
  model: { type: 'string', short: 'm' },
  prompt: { type: 'string', short: 'p' },
  'max-tokens': { type: 'string', short: 'n' },
  temperature: { type: 'string', short: 't' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'min-p': { type: 'string' },
  'repeat-penalty': { type: 'string' },
  'frequency-penalty': { type: 'string' },
  'presence-penalty': { type: 'string' },
  seed: { type: 'string' },
  stop: { type: 'string', multiple: true },
  'ignore-eos': { type: 'boolean' },
  threads: { type: 'string' },
  context: { type: 'string' },
  'kv-dtype': { type: 'string' },
  memory: { type: 'string' },
  'api-key': { type: 'string' },
  'max-tokens-cap': { type: 'string' },
  'max-prompt-tokens': { type: 'string' },
  'protect-metrics': { type: 'boolean' },
  port: { type: 'string' },
  host: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  'cache-dir': { type: 'string' },
};

const number = (value) => (value === undefined ? undefined : Number(value));

// Without --model, the repository's own test model, which exists only in a checkout that has ../shared/models
// beside it: anywhere else the user is told what to pass.
function modelPath(values, positionals) {
  const chosen = values.model ?? positionals[0];
  if (chosen !== undefined) return chosen;
  if (fs.existsSync(DEFAULT_MODEL)) return DEFAULT_MODEL;
  throw new Error(`no model: pass --model PATH/TO/MODEL.gguf (the default, ${DEFAULT_MODEL}, exists only beside a pagedlm checkout)`);
}

// "8GiB", "512MB", "1e9" -> bytes
function parseBytes(text) {
  const match = /^([\d.e+]+)\s*(k|m|g|t)?(i)?b?$/i.exec(String(text).trim());
  if (!match) throw new Error(`cannot read '${text}' as a size (e.g. 8GiB, 512MB)`);
  const power = { k: 1, m: 2, g: 3, t: 4 }[(match[2] || '').toLowerCase()] ?? 0;
  return Math.floor(Number(match[1]) * (match[3] ? 1024 : 1000) ** power);
}

function progressBar(fraction) {
  const width = 30;
  const filled = Math.round(fraction * width);
  process.stderr.write(`\rloading [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%${fraction >= 1 ? '\n' : ''}`);
}

function engineOptions(values) {
  return {
    threads: number(values.threads),
    contextLength: number(values.context),
    kvCache: values['kv-dtype'] ? { dtype: values['kv-dtype'] } : undefined,
    onProgress: process.stderr.isTTY ? progressBar : undefined,
  };
}

async function generate(values, positionals) {
  if (values.prompt === undefined) throw new Error('pass --prompt TEXT');
  const model = modelPath(values, positionals.slice(1));
  const { Engine } = require('../lib');
  const engine = await Engine.load(model, engineOptions(values));
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  try {
    let echoed = false; // the prompt is echoed once generation has started, not before a bad flag is caught
    const echoPrompt = () => {
      if (!echoed) process.stdout.write(values.prompt);
      echoed = true;
    };
    const result = await engine.generate(values.prompt, {
      maxTokens: number(values['max-tokens']),
      temperature: number(values.temperature),
      topK: number(values['top-k']),
      topP: number(values['top-p']),
      minP: number(values['min-p']),
      repetitionPenalty: number(values['repeat-penalty']),
      frequencyPenalty: number(values['frequency-penalty']),
      presencePenalty: number(values['presence-penalty']),
      seed: number(values.seed),
      stop: values.stop,
      ignoreEos: values['ignore-eos'],
      signal: controller.signal,
      onToken: (t) => {
        echoPrompt();
        process.stdout.write(t.text);
      },
    });
    echoPrompt();
    const { completionTokens, promptTokens } = result.usage;
    process.stdout.write('\n');
    process.stderr.write(
      `[${promptTokens} prompt + ${completionTokens} generated tokens, finish: ${result.finishReason}, ` +
        `first token ${result.timings.ttftMs.toFixed(1)} ms, ${result.timings.tokensPerSecond.toFixed(1)} tokens/s]\n`,
    );
  } finally {
    await engine.close();
  }
}

async function info(values, positionals) {
  const model = modelPath(values, positionals.slice(1));
  const { Engine } = require('../lib');
  const engine = await Engine.load(model, { ...engineOptions(values), prefault: false });
  try {
    const i = engine.info();
    const lines = [
      ['model', `${i.name || '(unnamed)'} (${i.architecture})`],
      ['parameters', `${(i.parameters / 1e6).toFixed(2)} M, ${i.tensorType}, ${(i.weightBytes / 2 ** 20).toFixed(1)} MiB`],
      ['shape', `${i.layers} layers, dim ${i.embeddingLength}, ${i.heads} heads / ${i.kvHeads} KV heads of ${i.headDim}, ffn ${i.feedForwardLength}`],
      ['vocabulary', `${i.vocabSize} tokens (${i.tokenizer})`],
      ['context', `${i.trainedContextLength} trained, ${i.contextLength} loaded`],
      ['KV cache', `${i.kvBytesPerToken} bytes/token (${i.kvDtype}), ${i.kvBlocks} blocks of ${i.kvBlockSize} = ${(i.kvPoolBytes / 2 ** 20).toFixed(1)} MiB`],
      ['backend', `${i.backend} (${i.cpuKernels} kernels, ${i.threads} threads)`],
      ['chat', i.chatTemplate ? 'template from the file' : 'no template in the file (ChatML fallback)'],
    ];
    const memory = parseBytes(values.memory ?? '4GiB');
    const fits = Math.floor(memory / i.kvBytesPerToken);
    lines.push(['fits', `${fits.toLocaleString('en-US')} tokens of ${i.kvDtype} KV in ${values.memory ?? '4GiB'} (longest context ${Math.min(fits, i.trainedContextLength).toLocaleString('en-US')} of the trained ${i.trainedContextLength.toLocaleString('en-US')})`]);
    for (const [k, v] of lines) console.log(`${k.padEnd(12)}${v}`);
  } finally {
    await engine.close();
  }
}

async function serve(values, positionals) {
  const model = modelPath(values, positionals.slice(1));
  const express = require('express');
  const { Engine } = require('../lib');
  const { createRouter } = require('../lib/express');
  const engine = await Engine.load(model, engineOptions(values));
  const app = express();
  const apiKey = values['api-key'] ?? process.env.PAGEDLM_API_KEY;
  app.use(
    createRouter(engine, {
      ui: true,
      apiKey,
      protectMetrics: values['protect-metrics'],
      maxTokens: number(values['max-tokens-cap']),
      maxPromptTokens: number(values['max-prompt-tokens']),
    }),
  );
  const host = values.host ?? '127.0.0.1';
  if (host !== '127.0.0.1' && host !== 'localhost' && host !== '::1' && !apiKey) {
    process.stderr.write(`warning: serving on ${host} without --api-key: anyone who can reach this port can use the model\n`);
  }
  const port = number(values.port) ?? 8080;
  const server = app.listen(port, host, () => {
    const address = server.address();
    process.stderr.write(`pagedlm serving ${engine.info().name || 'model'} at http://${host}:${address.port}/ (OpenAI API under /v1)\n`);
  });
  const shutdown = () => {
    server.close();
    engine.close().then(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

async function main() {
  const { values, positionals } = parseArgs({ options: OPTIONS, allowPositionals: true });
  const command = positionals[0];
  if (values.help || !command) {
    console.log(USAGE);
    return;
  }
  if (command === 'generate') return generate(values, positionals);
  if (command === 'info') return info(values, positionals);
  if (command === 'serve') return serve(values, positionals);
  if (['pull', 'ls', 'rm'].includes(command)) return require('../lib/cli/models')[command]({ values, positionals });
  throw new Error(`unknown command '${command}'\n${USAGE}`);
}

main().catch((error) => {
  process.stderr.write(`pagedlm: ${error.message}${error.code ? ` (${error.code})` : ''}\n`);
  process.exitCode = 1;
});
