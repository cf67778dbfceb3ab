'use strict';
// A Hugging Face-style hub on 127.0.0.1 for the download tests: the tree listing API (paged), file downloads
// with Range requests, redirects to a second server standing in for the CDN (another origin), 404s, and the
// misbehaviours a hostile or broken hub can show, set per file with `behaviour`:
//   'drop-after:N'  the first request sends N bytes of the announced body, then closes the connection
//   'longer'        announces and sends more bytes than the listing says the file has
//   'endless'       a chunked body that never ends
//   'stall'         sends part of the body, then nothing
//   'redirect-loop' redirects to itself forever
//   'ignore-range'  answers a Range request with the whole file (200)
const crypto = require('node:crypto');
const http = require('node:http');

const sha256 = (buffer) => crypto.createHash('sha256').update(buffer).digest('hex');

function listen(handler) {
  const server = http.createServer(handler);
  const sockets = new Set();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, sockets, url: `http://127.0.0.1:${server.address().port}` }));
  });
}

/**
 * repos: { 'owner/repo': { revision = 'main', files: { path: Buffer | { content, sha256, behaviour, redirect } },
 * extraEntries: [raw listing entries], pageSize, token (the hub answers 401 without it) } }. Files redirect to the CDN unless `redirect: false`.
 * Resolves to { url, cdnUrl, requests: [{ server, method, url, headers }], close() }.
 */
async function startFakeHub(repos) {
  const requests = [];
  const served = new Map(); // 'owner/repo/path' -> how many download requests reached it
  const timers = new Set();
  const cdn = await listen((req, res) => {
    requests.push({ server: 'cdn', method: req.method, url: req.url, headers: req.headers });
    const [, key] = /^\/blob\/(.+)$/.exec(req.url) ?? [];
    const found = key && lookup(decodeURIComponent(key));
    if (!found) return notFound(res);
    sendFile(req, res, found.file, decodeURIComponent(key));
  });
  const hub = await listen((req, res) => {
    requests.push({ server: 'hub', method: req.method, url: req.url, headers: req.headers });
    const url = new URL(req.url, 'http://hub');
    const tree = /^\/api\/models\/([^/]+)\/([^/]+)\/tree\/([^/]+)$/.exec(url.pathname);
    const gated = Object.entries(repos).find(([name, r]) => r.token && url.pathname.includes(`/${name}/`));
    if (gated && req.headers.authorization !== `Bearer ${gated[1].token}`) {
      res.writeHead(401, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error: 'Access to this model is restricted' }));
    }
    if (tree) return listing(res, decodeURIComponent(tree[1]), decodeURIComponent(tree[2]), decodeURIComponent(tree[3]), url);
    const resolve = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!resolve) return notFound(res);
    const [owner, repo, revision] = resolve.slice(1, 4).map(decodeURIComponent);
    const filePath = resolve[4].split('/').map(decodeURIComponent).join('/');
    const repoSpec = repos[`${owner}/${repo}`];
    if (!repoSpec || (repoSpec.revision ?? 'main') !== revision) return notFound(res);
    const key = `${owner}/${repo}/${filePath}`;
    const found = lookup(key);
    if (!found) return notFound(res);
    if (found.file.behaviour === 'redirect-loop') {
      res.writeHead(302, { location: req.url });
      return res.end();
    }
    if (found.file.redirect !== false) {
      res.writeHead(302, { location: `${cdn.url}/blob/${encodeURIComponent(key)}` });
      return res.end();
    }
    sendFile(req, res, found.file, key);
  });

  function lookup(key) {
    for (const [name, repoSpec] of Object.entries(repos)) {
      if (!key.startsWith(`${name}/`)) continue;
      const raw = repoSpec.files[key.slice(name.length + 1)];
      if (raw) return { file: Buffer.isBuffer(raw) ? { content: raw } : raw };
    }
    return null;
  }

  function listing(res, owner, repo, revision, url) {
    const repoSpec = repos[`${owner}/${repo}`];
    if (!repoSpec || (repoSpec.revision ?? 'main') !== revision) return notFound(res);
    const entries = [...(repoSpec.extraEntries ?? [])];
    const dirs = new Set();
    for (const [p, raw] of Object.entries(repoSpec.files)) {
      const file = Buffer.isBuffer(raw) ? { content: raw } : raw;
      for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) dirs.add(p.slice(0, i));
      entries.push({ type: 'file', oid: 'f'.repeat(40), size: file.content.length, path: p, lfs: { oid: file.sha256 ?? sha256(file.content), size: file.content.length, pointerSize: 134 } });
    }
    for (const d of dirs) entries.push({ type: 'directory', oid: 'd'.repeat(40), size: 0, path: d });
    const pageSize = repoSpec.pageSize ?? entries.length;
    const start = Number(url.searchParams.get('cursor') ?? 0);
    const headers = { 'content-type': 'application/json' };
    if (start + pageSize < entries.length) {
      headers.link = `<${hub.url}${url.pathname}?recursive=true&cursor=${start + pageSize}>; rel="next"`;
    }
    res.writeHead(200, headers);
    res.end(JSON.stringify(entries.slice(start, start + pageSize)));
  }

  function sendFile(req, res, file, key) {
    const count = (served.get(key) ?? 0) + 1;
    served.set(key, count);
    const { content, behaviour = '' } = file;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range && behaviour !== 'ignore-range' ? Number(range[1]) : 0;
    if (start > content.length) {
      res.writeHead(416, { 'content-range': `bytes */${content.length}` });
      return res.end();
    }
    const body = content.subarray(start);
    const headers = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
    if (start > 0) headers['content-range'] = `bytes ${start}-${content.length - 1}/${content.length}`;
    const status = start > 0 ? 206 : 200;
    if (behaviour === 'endless') {
      res.writeHead(200, headers);
      const chunk = Buffer.alloc(64 * 1024, 7);
      const timer = setInterval(() => res.write(chunk), 1);
      timers.add(timer);
      res.on('close', () => clearInterval(timer));
      return;
    }
    if (behaviour === 'longer') {
      const longer = Buffer.concat([body, Buffer.alloc(4096, 1)]);
      res.writeHead(status, { ...headers, 'content-length': longer.length });
      return res.end(longer);
    }
    res.writeHead(status, { ...headers, 'content-length': body.length });
    const dropAfter = /^drop-after:(\d+)$/.exec(behaviour);
    if (dropAfter && count === 1) {
      res.write(body.subarray(0, Number(dropAfter[1])), () => setTimeout(() => res.socket.destroy(), 20));
      return;
    }
    if (behaviour === 'stall') {
      res.write(body.subarray(0, Math.min(body.length, 100)));
      return; // and nothing more, ever
    }
    res.end(body);
  }

  return {
    url: hub.url,
    cdnUrl: cdn.url,
    requests,
    served,
    close: async () => {
      for (const timer of timers) clearInterval(timer);
      for (const { server, sockets } of [hub, cdn]) {
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  };
}

function notFound(res) {
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: 'Repository not found' }));
}

module.exports = { startFakeHub, sha256 };
