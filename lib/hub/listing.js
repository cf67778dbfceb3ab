'use strict';

// A repository's file listing from the hub's API: GET {endpoint}/api/models/{owner}/{repo}/tree/{revision}?recursive=true,
// pages followed through the Link header. Each file: { path, size, sha256 } (sha256 from the LFS pointer; null for
// a file kept in git, which is checked by size alone).

const { PagedlmError } = require('../errors');
const { getJson } = require('./http');
const { unsafePathReason } = require('./spec');

const MAX_PAGES = 100;

const repoUrl = (endpoint, { owner, repo }) => `${endpoint}/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}`;

function treeUrl(endpoint, spec) {
  const { owner, repo, revision } = spec;
  return `${endpoint}/api/models/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}/tree/${encodeURIComponent(revision)}?recursive=true`;
}

/** Where one file of the repository is downloaded from. */
function resolveUrl(endpoint, spec, filePath) {
  return `${repoUrl(endpoint, spec)}/resolve/${encodeURIComponent(spec.revision)}/${filePath.split('/').map(encodeURIComponent).join('/')}`;
}

// Link: <https://hub/api/...&cursor=xyz>; rel="next"
function nextPage(link) {
  const match = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link ?? '');
  return match ? match[1] : null;
}

function checkEntry(entry, where) {
  const bad = (why) => new PagedlmError(`the listing of ${where} holds an entry that is refused: ${why}`, 'ERR_HUB_PROTOCOL');
  if (entry === null || typeof entry !== 'object') throw bad('not an object');
  if (entry.type !== 'file') return null;
  const reason = unsafePathReason(entry.path);
  if (reason) throw bad(`the path ${JSON.stringify(entry.path)} is unsafe: ${reason}`);
  const size = entry.lfs?.size ?? entry.size;
  if (!Number.isSafeInteger(size) || size < 0) throw bad(`${entry.path} has no valid size`);
  const sha256 = entry.lfs ? String(entry.lfs.oid ?? entry.lfs.sha256 ?? '').toLowerCase() : null;
  if (entry.lfs && !/^[0-9a-f]{64}$/.test(sha256)) throw bad(`${entry.path} has no valid sha256`);
  return { path: entry.path, size, sha256 };
}

/** The repository's files at the spec's revision: Map path -> { path, size, sha256 }. */
async function fetchListing(endpoint, spec, { token, timeoutMs }) {
  const where = `${spec.owner}/${spec.repo}@${spec.revision}`;
  const tokenOrigin = new URL(endpoint).origin;
  const files = new Map();
  let url = treeUrl(endpoint, spec);
  for (let page = 0; url; page++) {
    if (page >= MAX_PAGES) throw new PagedlmError(`the listing of ${where} has more than ${MAX_PAGES} pages; refused`, 'ERR_HUB_PROTOCOL');
    const { body, headers } = await getJson(url, { token, tokenOrigin, timeoutMs });
    if (!Array.isArray(body)) throw new PagedlmError(`the listing of ${where} is not an array of files`, 'ERR_HUB_PROTOCOL');
    for (const entry of body) {
      const file = checkEntry(entry, where);
      if (file) files.set(file.path, file);
    }
    const next = nextPage(headers.link);
    // A next page elsewhere would take the token along to a host that is not the hub.
    if (next && new URL(next, url).origin !== tokenOrigin) throw new PagedlmError(`the listing of ${where} points its next page at another host; refused`, 'ERR_HUB_PROTOCOL');
    url = next && new URL(next, url).href;
  }
  return files;
}

module.exports = { fetchListing, resolveUrl, treeUrl };
