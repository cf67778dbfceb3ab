'use strict';

// `pagedlm pull | ls | rm`: the model cache from the command line. Each takes the parsed command line
// ({ values, positionals } from util.parseArgs, positionals[0] being the command) and writes to the given streams.

const hub = require('../hub');
const { formatBytes } = require('./common');

const hubOptionsFrom = (values) => (values['cache-dir'] === undefined ? {} : { cacheDir: values['cache-dir'] });

function specArgument(positionals, command) {
  if (positionals.length !== 2) throw new TypeError(`pagedlm ${command} takes one model spec, e.g. hf:owner/repo:Q4_K_M or hf:owner/repo/file.gguf`);
  return positionals[1];
}

// One progress line, rewritten in place on a terminal and printed every few seconds otherwise.
function progressLine(stderr) {
  let lastLine = 0;
  return ({ bytes, totalBytes, bytesPerSecond }) => {
    const done = bytes >= totalBytes;
    const now = Date.now();
    if (!stderr.isTTY && !done && now - lastLine < 2000) return;
    lastLine = now;
    const percent = totalBytes > 0 ? ((bytes / totalBytes) * 100).toFixed(1) : '100.0';
    const text = `downloading ${formatBytes(bytes)} of ${formatBytes(totalBytes)} (${percent}%) at ${formatBytes(bytesPerSecond)}/s`;
    stderr.write(stderr.isTTY ? `\r${text}\x1b[K${done ? '\n' : ''}` : `${text}\n`);
  };
}

/** pagedlm pull SPEC: downloads the model into the cache (or finds it there) and prints its local path on stdout. */
async function pull({ values, positionals }, { stdout = process.stdout, stderr = process.stderr } = {}) {
  const spec = specArgument(positionals, 'pull');
  const result = await hub.resolveModel(hub.isHubSpec(spec) ? spec : `hf:${spec}`, { ...hubOptionsFrom(values), onProgress: progressLine(stderr) });
  const parts = result.files.length > 1 ? ` (${result.files.length} parts)` : '';
  stderr.write(`${result.fromCache ? 'from the cache' : 'pulled'}: hf:${result.spec.owner}/${result.spec.repo}@${result.spec.revision}/${result.repoFiles[0]}${parts}\n`);
  if (result.alternatives.length) {
    stderr.write(`picked the shortest of ${result.alternatives.length + 1} matching file names; the others: ${result.alternatives.join(', ')}\n`);
  }
  stdout.write(`${result.path}\n`);
}

/** pagedlm ls: every cached model file with its size; downloads in progress are marked. */
async function ls({ values }, { stdout = process.stdout } = {}) {
  const { cacheDir, models } = hub.listModels(hubOptionsFrom(values));
  if (models.length === 0) {
    stdout.write(`no models in ${cacheDir}\n`);
    return;
  }
  let total = 0;
  for (const { owner, repo, revision, files } of models) {
    for (const file of files) {
      total += file.bytes;
      stdout.write(`${`hf:${owner}/${repo}@${revision}/${file.path}`.padEnd(60)} ${formatBytes(file.bytes).padStart(10)}${file.incomplete ? '  (incomplete download)' : ''}\n`);
    }
  }
  stdout.write(`${formatBytes(total)} in ${cacheDir}\n`);
}

/** pagedlm rm SPEC: removes the repository, revision, file or quantization SPEC names from the cache. */
async function rm({ values, positionals }, { stdout = process.stdout } = {}) {
  const spec = specArgument(positionals, 'rm');
  const { removed, bytes } = hub.removeModel(spec, hubOptionsFrom(values));
  for (const name of removed) stdout.write(`removed ${name}\n`);
  stdout.write(`freed ${formatBytes(bytes)}\n`);
}

module.exports = { pull, ls, rm };
