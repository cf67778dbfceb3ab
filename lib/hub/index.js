'use strict';

// hf: model specs -> files on disk: the listing read from the hub, the chosen files downloaded into the cache
// (or found there when offline or when the hub cannot be reached), the local path of the file to load returned.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { PagedlmError } = require('../errors');
const { checkObject, checkKeys, checkBoolean, checkFunction } = require('../options');
const { isHubSpec, parseSpec, formatSpec, choose } = require('./spec');
const { cacheDir, cachedFilePath, cachedFiles, listCache, removeCached } = require('./cache');
const { fetchListing, resolveUrl } = require('./listing');
const { downloadFile } = require('./download');
const { DEFAULT_TIMEOUT_MS } = require('./http');

const HUB_KEYS = ['cacheDir', 'endpoint', 'token', 'offline', 'timeoutMs', 'onProgress'];
const DEFAULT_ENDPOINT = 'https://huggingface.co';

// huggingface_hub's reading of a boolean environment variable.
const isTrue = (value) => ['1', 'ON', 'YES', 'TRUE'].includes(String(value ?? '').toUpperCase());

// The token as Hugging Face's clients find it: HF_TOKEN, else the file `huggingface-cli login` writes.
function defaultToken(env) {
  if (env.HF_TOKEN) return env.HF_TOKEN;
  const hfHome = env.HF_HOME || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface');
  try {
    return fs.readFileSync(env.HF_TOKEN_PATH || path.join(hfHome, 'token'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** The `hub` options checked and completed from the environment (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, PAGEDLM_CACHE_DIR). */
function hubOptions(options, env = process.env) {
  const o = checkKeys(checkObject(options, 'hub'), HUB_KEYS, 'hub options');
  const endpoint = o.endpoint ?? env.HF_ENDPOINT ?? DEFAULT_ENDPOINT;
  let parsed;
  try {
    parsed = new URL(endpoint);
  } catch {
    throw new TypeError(`hub.endpoint (or HF_ENDPOINT) must be an http or https URL, got ${JSON.stringify(endpoint)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new TypeError(`hub.endpoint (or HF_ENDPOINT) must be an http or https URL, got ${JSON.stringify(endpoint)}`);
  if (o.token !== undefined && typeof o.token !== 'string') throw new TypeError('hub.token must be a string');
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new RangeError(`hub.timeoutMs must be a positive integer, got ${String(o.timeoutMs)}`);
  return {
    cacheDir: cacheDir(o.cacheDir, env),
    endpoint: endpoint.replace(/\/+$/, ''),
    token: o.token ?? defaultToken(env),
    offline: checkBoolean(o.offline, 'hub.offline') ?? isTrue(env.HF_HUB_OFFLINE),
    timeoutMs,
    onProgress: checkFunction(o.onProgress, 'hub.onProgress'),
  };
}

function fromCache(spec, cache, why) {
  const where = formatSpec(spec);
  const present = cachedFiles(cache, spec);
  let chosen;
  try {
    chosen = choose(spec, present);
  } catch (error) {
    if (!['ERR_HUB_NOT_FOUND', 'ERR_HUB_NO_MATCH'].includes(error.code)) throw error;
    const detail = present.length ? `; in the cache, ${error.message}` : '';
    const offline = new PagedlmError(`${where} is not in the cache (${cache}) and ${why}${detail}`, 'ERR_HUB_OFFLINE');
    offline.cause = error;
    throw offline;
  }
  return { ...chosen, spec, fromCache: true };
}

// Progress over every file of a model: bytes so far (cached files count as done), total, and this run's rate.
function progressReporter(onProgress, totalBytes) {
  const started = Date.now();
  let lastReport = 0;
  return (bytes, downloaded, final = false) => {
    if (!onProgress) return;
    const now = Date.now();
    if (!final && now - lastReport < 100) return;
    lastReport = now;
    const seconds = (now - started) / 1000;
    onProgress({ bytes, totalBytes, bytesPerSecond: seconds > 0 ? downloaded / seconds : 0 });
  };
}

/**
 * Resolves an hf: spec to local files, downloading what the cache lacks. Resolves to
 * { path (the file to load), files (local paths of every part), spec, alternatives, fromCache }.
 * `options` are Engine.load's `hub` options; onProgress({ bytes, totalBytes, bytesPerSecond }) follows the download.
 */
async function resolveModel(text, options) {
  const o = hubOptions(options);
  const spec = parseSpec(text);
  let result;
  if (o.offline) {
    result = fromCache(spec, o.cacheDir, 'the hub is offline (HF_HUB_OFFLINE or hub.offline)');
  } else {
    let listing;
    try {
      listing = await fetchListing(o.endpoint, spec, o);
    } catch (error) {
      if (error.code !== 'ERR_HUB_NETWORK') throw error;
      // Unreachable hub: what the cache holds serves, as with HF_HUB_OFFLINE.
      try {
        result = fromCache(spec, o.cacheDir, `the hub could not be reached (${error.message})`);
      } catch {
        throw error;
      }
    }
    if (!result) result = { ...(await download(spec, listing, o)), spec, fromCache: false };
  }
  const files = result.files.map((f) => cachedFilePath(o.cacheDir, spec, f));
  return { path: files[0], files, spec, repoFiles: result.files, alternatives: result.alternatives, fromCache: result.fromCache };
}

async function download(spec, listing, o) {
  const chosen = choose(spec, [...listing.keys()]);
  const entries = chosen.files.map((f) => listing.get(f));
  const totalBytes = entries.reduce((sum, e) => sum + e.size, 0);
  const report = progressReporter(o.onProgress, totalBytes);
  const httpOptions = { token: o.token, tokenOrigin: new URL(o.endpoint).origin, timeoutMs: o.timeoutMs };
  let before = 0;
  let downloaded = 0;
  report(0, 0, true);
  for (const entry of entries) {
    const dest = cachedFilePath(o.cacheDir, spec, entry.path);
    let startOfFile = null;
    await downloadFile(resolveUrl(o.endpoint, spec, entry.path), dest, entry, {
      httpOptions,
      onBytes: (bytes) => {
        startOfFile ??= bytes; // bytes already on disk from an earlier run are not this run's rate
        report(before + bytes, downloaded + bytes - startOfFile);
      },
    });
    downloaded += startOfFile === null ? 0 : entry.size - startOfFile;
    before += entry.size;
  }
  report(totalBytes, downloaded, true);
  return chosen;
}

/** Everything the cache holds (see cache.listCache), with the folder. */
function listModels(options) {
  const o = hubOptions(options);
  return { cacheDir: o.cacheDir, models: listCache(o.cacheDir) };
}

/**
 * Removes what a spec names from the cache: 'owner/repo' (every revision), 'owner/repo@rev' (that revision),
 * or a file or quantization of one revision. Resolves to { removed: [repository paths], bytes }.
 */
function removeModel(text, options) {
  const o = hubOptions(options);
  const spec = parseSpec(text, { requirePrefix: false });
  const named = formatSpec(spec);
  if (!spec.file && !spec.quant) {
    const revision = spec.explicitRevision ? spec.revision : null;
    const bytes = removeCached(o.cacheDir, { ...spec, revision }, null);
    if (bytes === 0) throw new PagedlmError(`${revision ? named : `hf:${spec.owner}/${spec.repo}`} is not in the cache (${o.cacheDir})`, 'ERR_HUB_NOT_CACHED');
    return { removed: [revision ? named : `hf:${spec.owner}/${spec.repo}`], bytes };
  }
  const present = cachedFiles(o.cacheDir, spec);
  let files;
  try {
    ({ files } = choose(spec, present));
  } catch (error) {
    // A download in progress has no complete file yet: its partial file is what there is to remove.
    if (!spec.file) throw new PagedlmError(`${named} is not in the cache (${o.cacheDir}): ${error.message}`, 'ERR_HUB_NOT_CACHED');
    files = [spec.file];
  }
  const bytes = removeCached(o.cacheDir, spec, files);
  if (bytes === 0) throw new PagedlmError(`${named} is not in the cache (${o.cacheDir})`, 'ERR_HUB_NOT_CACHED');
  return { removed: files.map((f) => formatSpec({ ...spec, quant: null, file: f })), bytes };
}

module.exports = { isHubSpec, resolveModel, listModels, removeModel, hubOptions };
