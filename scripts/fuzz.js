#!/usr/bin/env node
'use strict';
// npm run fuzz [-- seconds [target...]]: builds the libFuzzer targets with clang (ASan + UBSan), writes seed
// corpora (shared models' headers, generated GGUF files, texts, cache files, random bytes, grammars, the
// schema fixtures, model replies with tool calls) and runs each target (or the ones named) for a set time
// (default 120 s, or PAGEDLM_FUZZ_SECONDS), printing executions and any crash per target.
// Crashing inputs are kept in build-fuzz/crashes/<target>/ and should become regression tests.
const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { writeLlamaModel } = require('../test/support/gguf-writer');
const { sharedModel } = require('../test/support/models');

const root = path.join(__dirname, '..');
const build = path.join(root, 'build-fuzz');
const seconds = Number(process.argv[2] || process.env.PAGEDLM_FUZZ_SECONDS || 120);
const TARGETS = ['gguf', 'tokenizer', 'cache_file', 'sampler', 'gbnf', 'json_schema', 'tool_calls'];
const chosen = process.argv.length > 3 ? process.argv.slice(3) : TARGETS;
const unknown = chosen.find((t) => !TARGETS.includes(t));
if (unknown) throw new Error(`no fuzz target '${unknown}': one of ${TARGETS.join(', ')}`);

function run(cmd, args) {
  execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
}

function seedDir(target) {
  const dir = path.join(build, 'corpus', target);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

function writeSeeds() {
  const gguf = seedDir('gguf');
  const tiny = path.join(os.tmpdir(), 'pagedlm-fuzz-tiny.gguf');
  writeLlamaModel(tiny, { dim: 8, layers: 1, heads: 2, kvHeads: 1, ffn: 16, vocab: 300, context: 64, type: 'F32' });
  fs.copyFileSync(tiny, path.join(gguf, 'tiny.gguf'));
  for (const name of ['aidreams260K.gguf', 'stories260K.gguf', 'synth-tiny-f16.gguf']) {
    const file = sharedModel(name);
    if (file) fs.writeFileSync(path.join(gguf, `${name}.head`), fs.readFileSync(file).subarray(0, 64 * 1024));
  }
  const tokenizer = seedDir('tokenizer');
  const texts = ['Hello world', ' leading space and  two spaces', 'naïve café, 東京タワー 🗼!', 'def f(x):\n    return x**2\n', '<s>[INST] hi [/INST]</s>', '\u00ff\u0000\u0001 bytes'];
  texts.forEach((t, i) => fs.writeFileSync(path.join(tokenizer, `text${i}`), t));
  // A cache file of the fuzz target's identity: f16, block 4, 1 layer, 1 KV head of 4 (64 K/V bytes a block).
  const cache = seedDir('cache_file');
  const header = Buffer.alloc(8 + 4 + 16 + 20 + 8 + 8);
  header.write('PGLMKV01', 0);
  header.writeUInt32LE(1, 8);
  let o = 28;
  for (const v of [1, 4, 1, 1, 4]) o = header.writeUInt32LE(v, o);
  header.writeBigUInt64LE(64n, o);
  header.writeBigUInt64LE(2n, o + 8);
  const block = () => Buffer.concat([crypto.randomBytes(32), Buffer.from(new Int32Array([5, 6, 7, 8]).buffer), crypto.randomBytes(64)]);
  fs.writeFileSync(path.join(cache, 'two-blocks'), Buffer.concat([header, block(), block(), Buffer.alloc(8)]));
  const sampler = seedDir('sampler');
  for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(sampler, `random${i}`), crypto.randomBytes(64 + i * 32));
  // Grammars, each followed by a NUL and the bytes that choose tokens.
  const gbnf = seedDir('gbnf');
  const grammars = {
    json: 'root ::= value\nvalue ::= object | array | string | number | "true" | "false" | "null"\n' +
      'object ::= "{" ws ( string ws ":" ws value ( "," ws string ws ":" ws value )* )? "}"\n' +
      'array ::= "[" ws ( value ( "," ws value )* )? "]"\nstring ::= "\\"" [^"\\\\]* "\\""\n' +
      'number ::= "-"? [0-9]+ ( "." [0-9]+ )?\nws ::= [ \\t\\n]*\n',
    arithmetic: 'root ::= expr\nexpr ::= term ( [-+] term )*\nterm ::= factor ( [*/] factor )*\nfactor ::= [0-9]+ | "(" expr ")"\n',
    repetition: 'root ::= [a-c]{2,4} ("x" | "\\u00e9"){0,3} [^\\n]? # comment\n',
    unicode: 'root ::= [\\u00e0-\\u00ff]+ "\\xe2\\x82\\xac"? . [\\U0001F600-\\U0001F64F]*\n',
    'left-recursive': 'root ::= root "a" | "b"\n',
  };
  for (const [name, text] of Object.entries(grammars)) {
    fs.writeFileSync(path.join(gbnf, name), Buffer.concat([Buffer.from(text), Buffer.from([0]), crypto.randomBytes(24)]));
  }
  const schemas = seedDir('json_schema');
  const fixtures = path.join(root, 'test', 'fixtures', 'schemas');
  for (const file of fs.readdirSync(fixtures).filter((f) => f.endsWith('.json'))) {
    const { schema } = JSON.parse(fs.readFileSync(path.join(fixtures, file), 'utf8'));
    fs.writeFileSync(path.join(schemas, file), JSON.stringify(schema));
  }
  // Model replies, each after a byte that picks the parser: 0 generic, 1 llama3, 2 hermes, 3 mistral.
  const toolCalls = seedDir('tool_calls');
  const replies = [
    [0, '{"name": "f", "arguments": {"a": 1, "b": [true, null, "x"]}}'],
    [0, 'Here:\n```json\n{"tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\\"a\\":2}"}}]}\n```\nok'],
    [0, '[{"name": "f", "arguments": {}}, {"name": "g", "parameters": {"q": "\\u00e9"}}]'],
    [1, '{"name": "weather", "parameters": {"city": "Oslo"}}; {"name": "time", "parameters": {}}'],
    [1, 'Checking.<|python_tag|>{"name": "f", "parameters": {"x": 1.5e3}}'],
    [2, 'Let me look.\n<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n<tool_call>{"name": "t", "arguments": {}}</tool_call>'],
    [2, '<think>\nhm\n</think>\n\n<tool_call>\n{"name": "f", "arguments": "{\\"x\\": 1}"}\n'],
    [3, '[TOOL_CALLS][{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {"y": "]"}}]'],
    [3, 'Sure.[TOOL_CALLS]weather[ARGS]{"city": "Oslo"}[TOOL_CALLS]time[CALL_ID]abc123[ARGS]{}'],
  ];
  replies.forEach(([family, text], i) => fs.writeFileSync(path.join(toolCalls, `reply${i}`), Buffer.concat([Buffer.from([family]), Buffer.from(text)])));
}

// Longest input per target: tokenizer inputs beyond a few hundred bytes only slow the search down.
const MAX_LEN = { gguf: 65536, tokenizer: 512, cache_file: 4096, sampler: 4096, gbnf: 1024, json_schema: 4096, tool_calls: 4096 };
// Dictionaries of the format's words, where a target has one.
const DICT = { json_schema: path.join(root, 'test', 'fuzz', 'json_schema.dict') };

function fuzz(target) {
  const crashes = path.join(build, 'crashes', target);
  fs.mkdirSync(crashes, { recursive: true });
  const result = spawnSync(
    path.join(build, 'test', 'fuzz', `fuzz_${target}`),
    [path.join(build, 'corpus', target), `-max_total_time=${seconds}`, '-print_final_stats=1', '-rss_limit_mb=4096', '-timeout=10', `-max_len=${MAX_LEN[target]}`, `-artifact_prefix=${crashes}/`,
      ...(DICT[target] ? [`-dict=${DICT[target]}`] : [])],
    { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28 },
  );
  const output = `${result.stdout}${result.stderr}`;
  const executions = Number(/stat::number_of_executed_units:\s*(\d+)/.exec(output)?.[1] ?? 0);
  const failed = result.status !== 0;
  if (failed) process.stderr.write(output.split('\n').slice(-40).join('\n'));
  return { target, seconds, executions, 'exec/s': Math.round(executions / seconds), result: failed ? `FAILED (see ${crashes})` : 'no crash' };
}

execFileSync('clang++', ['--version'], { stdio: 'ignore' });
run('cmake', ['-S', '.', '-B', build, '-DCMAKE_C_COMPILER=clang', '-DCMAKE_CXX_COMPILER=clang++', '-DPAGEDLM_FUZZ=ON', '-DPAGEDLM_BUILD_TESTS=OFF', '-DPAGEDLM_CUDA=OFF', '-DCMAKE_BUILD_TYPE=RelWithDebInfo']);
run('cmake', ['--build', build, '-j', String(os.cpus().length), ...chosen.flatMap((t) => ['--target', `fuzz_${t}`])]);
writeSeeds();
const rows = chosen.map(fuzz);
console.table(rows);
if (rows.some((r) => r.result !== 'no crash')) process.exitCode = 1;
