'use strict';

// The download cache: <cache>/models/<owner>/<repo>/<revision>/<file path>, each file in place only once its
// sha256 matched (a download in progress is <file>.incomplete beside it, with <file>.lock naming its process). Every path is checked to stay inside.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { PagedlmError } = require('../errors');
const { unsafePathReason } = require('./spec');

const INCOMPLETE = '.incomplete';
const LOCK = '.lock';

/** The cache folder: the option, else PAGEDLM_CACHE_DIR, else $XDG_CACHE_HOME/pagedlm, else ~/.cache/pagedlm. */
function cacheDir(option, env = process.env) {
  if (option !== undefined) {
    if (typeof option !== 'string' || option.length === 0) throw new TypeError('hub.cacheDir must be a non-empty string');
    return path.resolve(option);
  }
  if (env.PAGEDLM_CACHE_DIR) return path.resolve(env.PAGEDLM_CACHE_DIR);
  // The XDG spec ignores a relative XDG_CACHE_HOME.
  const xdg = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(os.homedir(), '.cache');
  return path.join(xdg, 'pagedlm');
}

function unsafePathError(filePath, reason, where) {
  return new PagedlmError(`refused the file path ${JSON.stringify(filePath)} ${where}: ${reason}; nothing was written`, 'ERR_HUB_PROTOCOL');
}

// `relative` joined to `root`, refused unless the result lies strictly inside root.
function inside(root, relative, where) {
  const reason = unsafePathReason(relative);
  if (reason) throw unsafePathError(relative, reason, where);
  const joined = path.resolve(root, ...relative.split('/'));
  if (!joined.startsWith(root + path.sep)) throw unsafePathError(relative, 'it leads outside the cache folder', where);
  return joined;
}

const modelsRoot = (cache) => path.join(cache, 'models');

/** The folder of one repository revision in the cache. */
function revisionDir(cache, { owner, repo, revision }) {
  return inside(modelsRoot(cache), `${owner}/${repo}/${revision}`, 'in a model spec');
}

/** Where a repository file lands in the cache. */
function cachedFilePath(cache, spec, filePath) {
  return inside(revisionDir(cache, spec), filePath, `in the listing of ${spec.owner}/${spec.repo}`);
}

// Files under `dir` as repository-relative '/'-separated paths; symbolic links are not followed.
function walk(dir, prefix = '') {
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    if (error.code === 'ENOENT') return [];
    throw error;
  }
  const files = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) files.push(...walk(path.join(dir, entry.name), relative));
    else if (entry.isFile() && !entry.name.endsWith(LOCK)) files.push(relative);
  }
  return files;
}

/** The complete files cached for one revision, as repository paths. */
function cachedFiles(cache, spec) {
  return walk(revisionDir(cache, spec)).filter((f) => !f.endsWith(INCOMPLETE));
}

const subdirs = (dir) => {
  try {
    return fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch (error) {
    if (error.code === 'ENOENT') return [];
    throw error;
  }
};

/**
 * Everything in the cache: [{ owner, repo, revision, files: [{ path, bytes, incomplete }], bytes }], by name.
 */
function listCache(cache) {
  const root = modelsRoot(cache);
  const revisions = [];
  for (const owner of subdirs(root)) {
    for (const repo of subdirs(path.join(root, owner))) {
      for (const revision of subdirs(path.join(root, owner, repo))) {
        const dir = path.join(root, owner, repo, revision);
        const files = walk(dir).map((f) => {
          const incomplete = f.endsWith(INCOMPLETE);
          return { path: incomplete ? f.slice(0, -INCOMPLETE.length) : f, bytes: fs.statSync(path.join(dir, ...f.split('/'))).size, incomplete };
        });
        if (files.length) revisions.push({ owner, repo, revision, files, bytes: files.reduce((sum, f) => sum + f.bytes, 0) });
      }
    }
  }
  return revisions;
}

// Removes empty folders from `dir` up to (not including) `stop`.
function pruneEmpty(dir, stop) {
  for (let d = dir; d.startsWith(stop + path.sep); d = path.dirname(d)) {
    try {
      fs.rmdirSync(d);
    } catch {
      return;
    }
  }
}

/**
 * Removes cached files: the given repository paths of one revision (and their downloads in progress), or,
 * with `files` null, the revision (or every revision when `revision` is null). Returns the bytes freed.
 */
function removeCached(cache, { owner, repo, revision }, files) {
  const root = modelsRoot(cache);
  const repoDir = inside(root, `${owner}/${repo}`, 'in a model spec');
  const targets = [];
  if (files === null) {
    targets.push(revision === null ? repoDir : revisionDir(cache, { owner, repo, revision }));
  } else {
    for (const f of files) {
      const p = cachedFilePath(cache, { owner, repo, revision }, f);
      targets.push(p, p + INCOMPLETE, p + LOCK);
    }
  }
  let freed = 0;
  for (const target of targets) {
    const stat = fs.lstatSync(target, { throwIfNoEntry: false });
    if (!stat) continue;
    freed += stat.isDirectory() ? walk(target).reduce((sum, f) => sum + fs.lstatSync(path.join(target, ...f.split('/'))).size, 0) : stat.size;
    fs.rmSync(target, { recursive: true, force: true });
    pruneEmpty(path.dirname(target), root);
  }
  return freed;
}

module.exports = { cacheDir, revisionDir, cachedFilePath, cachedFiles, listCache, removeCached, INCOMPLETE, LOCK };
