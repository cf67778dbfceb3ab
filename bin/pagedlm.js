#!/usr/bin/env node
'use strict';
// pagedlm command line: the flags, the usage text, and which module under lib/cli runs each command.
// docs/cli.md documents every command and flag.
const { parseCommandLine, integer, decimal } = require('../lib/cli/args');
const { DEFAULT_MODEL } = require('../lib/cli/common');
const { KV_DTYPES } = require('../lib/options');
const { DEFAULT_SAMPLING: D } = require('../lib/sampling');

// Each command's implementation, loaded only when it runs (so --help and a bad flag load no addon).
const COMMANDS = {
  generate: () => require('../lib/cli/generate').generate,
  chat: () => require('../lib/cli/chat').chat,
  info: () => require('../lib/cli/info').info,
  inspect: () => require('../lib/cli/inspect').inspect,
  serve: () => require('../lib/cli/serve').serve,
  pull: () => modelCacheCommand('pull'),
  ls: () => modelCacheCommand('ls'),
  rm: () => modelCacheCommand('rm'),
};

// The model cache's commands (lib/cli/models.js) take the parsed command line as one object.
function modelCacheCommand(name) {
  const command = require('../lib/cli/models')[name];
  return (values, positionals) => command({ values, positionals });
}

const USAGE = `usage:
  pagedlm generate [--model PATH] --prompt TEXT [sampling] [engine]   stream a completion to stdout
  pagedlm chat [--model PATH] [--system TEXT] [sampling] [engine]     chat in the terminal
  pagedlm info [--model PATH] [--memory 8GiB] [engine]                what the loaded model is
  pagedlm inspect [--model PATH] [--memory SIZE] [--device D] [--sequences N] [--kv-dtype T] [--kv-k-type T] [--kv-v-type T] [--json]
                                                                      the memory plan, without loading
  pagedlm serve [--model PATH] [--port 8080] [--host 127.0.0.1]       OpenAI-compatible server + chat page
  pagedlm pull hf:owner/repo:Q4_K_M | ls | rm SPEC  [--cache-dir DIR]  models by name (docs/models.md)

sampling:
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
engine:
  --threads N  --context N  --kv-dtype ${KV_DTYPES.join('|')}  --device auto|cpu|cuda
  --kv-k-type T  --kv-v-type T   K and V apart (--kv-dtype sets both)
  --kv-offload-memory SIZE  --kv-offload-disk SIZE --kv-offload-path DIR
                          keep evicted cached prefixes in RAM, then on disk (docs/kv-offload.md)
chat: /reset forgets the conversation (--system stays), /exit or Ctrl-D quits, Ctrl-C stops an answer
info: --memory SIZE       longest context that fits SIZE of KV memory (default 4GiB)
inspect: --memory SIZE (default: the memory available)  --sequences N (default 1)  --json: the raw plan
serve: --port N (default 8080)  --host H (default 127.0.0.1: this machine only)
       --api-key KEY (or PAGEDLM_API_KEY)  --protect-metrics (require the key on /metrics too)
       --max-tokens-cap N (default 4096)  --max-prompt-tokens N
       --context-overflow truncate-oldest|error (default truncate-oldest: long chats drop their oldest turns)
Sampling defaults are the library's, for generate, chat and serve alike (docs/api.md, "Default sampling").
--model defaults to ${DEFAULT_MODEL} when that file exists.`;

const OPTIONS = {
  model: { type: 'string', short: 'm' },
  prompt: { type: 'string', short: 'p' },
  system: { type: 'string', short: 's' },
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
  'kv-k-type': { type: 'string' },
  'kv-v-type': { type: 'string' },
  'kv-offload-memory': { type: 'string' },
  'kv-offload-disk': { type: 'string' },
  'kv-offload-path': { type: 'string' },
  device: { type: 'string' },
  memory: { type: 'string' },
  sequences: { type: 'string' },
  json: { type: 'boolean' },
  'api-key': { type: 'string' },
  'max-tokens-cap': { type: 'string' },
  'max-prompt-tokens': { type: 'string' },
  'protect-metrics': { type: 'boolean' },
  'context-overflow': { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  'cache-dir': { type: 'string' },
};

// What each numeric flag holds: the ranges are the library's (lib/options.js), checked here so that the
// error names the flag.
const NUMERIC = {
  'max-tokens': integer(1),
  temperature: decimal(0, 100),
  'top-k': integer(0),
  'top-p': decimal(0, 1, { aboveMin: true }),
  'min-p': decimal(0, 1),
  'repeat-penalty': decimal(0, 100, { aboveMin: true }),
  'frequency-penalty': decimal(-100, 100),
  'presence-penalty': decimal(-100, 100),
  seed: integer(0),
  threads: integer(1, 1024),
  context: integer(1, 2 ** 24),
  memory: 'bytes',
  'kv-offload-memory': 'bytes',
  'kv-offload-disk': 'bytes',
  sequences: integer(1, 2 ** 20),
  'max-tokens-cap': integer(1),
  'max-prompt-tokens': integer(1),
  port: integer(0, 65535),
};

const CHOICES = {
  'kv-dtype': KV_DTYPES,
  'kv-k-type': KV_DTYPES,
  'kv-v-type': KV_DTYPES,
  device: ['auto', 'cpu', 'cuda'],
  'context-overflow': ['truncate-oldest', 'error'],
};

async function main() {
  const { values, positionals } = parseCommandLine(process.argv.slice(2), { options: OPTIONS, numeric: NUMERIC, choices: CHOICES });
  const command = positionals[0];
  if (values.help || !command) {
    console.log(USAGE);
    return;
  }
  if (!Object.hasOwn(COMMANDS, command)) throw new Error(`unknown command '${command}'\n${USAGE}`);
  await COMMANDS[command]()(values, positionals);
}

main().catch((error) => {
  process.stderr.write(`pagedlm: ${error.message}${error.code ? ` (${error.code})` : ''}\n`);
  process.exitCode = 1;
});
