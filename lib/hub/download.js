'use strict';

// One file from the hub into the cache: resumed from <dest>.incomplete with a Range request, never more than the
// listing's size accepted, checked against the listing's sha256, renamed into place only when it matches.

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { PagedlmError } = require('../errors');
const { open, networkError } = require('./http');
const { INCOMPLETE, LOCK } = require('./cache');

// dest -> the download in progress in this process, which a second caller waits on instead of racing it.
const inFlight = new Map();

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/**
 * Takes <dest>.lock for this process, so that two processes never append to the same partial file. A lock whose
 * process is gone (same host) is taken over. Returns the release function.
 */
function lock(dest) {
  const lockPath = dest + LOCK;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lockPath, `${process.pid}\n${os.hostname()}\n`, { flag: 'wx' });
      return () => fs.rmSync(lockPath, { force: true });
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    const [pid, host] = (fs.readFileSync(lockPath, 'utf8') || '').split('\n');
    const stale = host === os.hostname() && Number(pid) > 0 && !isAlive(Number(pid));
    if (!stale) {
      throw new PagedlmError(`another process (pid ${pid || '?'} on ${host || '?'}) is downloading ${dest}; wait for it to finish, or delete ${lockPath} if that process is gone`, 'ERR_HUB_BUSY');
    }
    fs.rmSync(lockPath, { force: true });
  }
  throw new PagedlmError(`could not take ${lockPath}: another process keeps taking it`, 'ERR_HUB_BUSY');
}

async function hashFile(file, hash) {
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk);
}

function protocolError(message) {
  return new PagedlmError(message, 'ERR_HUB_PROTOCOL');
}

// 'bytes 100-199/200' -> 100
function rangeStart(contentRange) {
  const match = /^bytes\s+(\d+)-\d+\/(?:\d+|\*)$/.exec(contentRange ?? '');
  return match ? Number(match[1]) : null;
}

/**
 * Opens the download for the bytes after `have`. Resolves to { response, offset }: offset is `have` when the
 * hub honoured the Range (206), 0 when it sent the whole file (200).
 */
async function openBody(url, have, size, httpOptions) {
  const headers = have > 0 ? { range: `bytes=${have}-` } : {};
  const response = await open(url, { ...httpOptions, headers, acceptStatus: have > 0 ? [416] : [] });
  if (response.statusCode === 416) {
    response.resume();
    return { response: null, offset: have };
  }
  const offset = response.statusCode === 206 ? rangeStart(response.headers['content-range']) : 0;
  if (offset === null || offset !== (response.statusCode === 206 ? have : 0)) {
    response.destroy();
    throw protocolError(`${url} answered a request for the bytes from ${have} with Content-Range ${JSON.stringify(response.headers['content-range'])}`);
  }
  const announced = response.headers['content-length'];
  if (announced !== undefined && offset + Number(announced) > size) {
    response.destroy();
    throw protocolError(`${url} announced ${offset + Number(announced)} bytes but the listing says the file has ${size}; refused`);
  }
  return { response, offset };
}

// Appends the response body to `fd` and `hash` until `size` bytes are in; more than that is refused.
function receive(response, { fd, hash, have, size, url, onChunk }) {
  return new Promise((resolve, reject) => {
    let done = have;
    let failed = false;
    const fail = (error) => {
      if (failed) return;
      failed = true;
      response.destroy();
      reject(error);
    };
    response.on('data', (chunk) => {
      if (failed) return;
      if (done + chunk.length > size) {
        fail(Object.assign(protocolError(`${url} sent more than the ${size} bytes the listing announces; stopped and refused`), { overflow: true }));
        return;
      }
      try {
        fs.writeSync(fd, chunk);
      } catch (error) {
        fail(error);
        return;
      }
      hash.update(chunk);
      done += chunk.length;
      onChunk(done);
    });
    const closed = (error) => {
      const why = response.hubError ?? (error instanceof PagedlmError ? error : null);
      fail(why ?? networkError(url, `the connection closed after ${done} of ${size} bytes${error ? ` (${error.message})` : ''}; run again to resume`, error));
    };
    response.once('aborted', () => closed());
    response.on('error', closed);
    response.once('end', () => {
      if (failed) return;
      if (done < size) fail(networkError(url, `the body ended after ${done} of ${size} bytes; run again to resume`));
      else resolve();
    });
  });
}

/**
 * Downloads `url` to `dest` unless it is there already. `file`: { size, sha256 } from the listing.
 * onBytes(bytesOfThisFile) is called as bytes arrive (the resumed part counted from the start).
 * On a checksum mismatch or an over-long body the partial file is deleted; on a dropped connection it is kept.
 */
function downloadFile(url, dest, file, options) {
  if (isCached(dest, file, options)) return Promise.resolve({ downloaded: 0 });
  const running = inFlight.get(dest);
  if (running) return running.then(() => downloadFile(url, dest, file, options));
  const download = (async () => {
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const release = lock(dest);
    try {
      return await downloadUnlocked(url, dest, file, options);
    } finally {
      release();
    }
  })();
  const settled = download.then(() => {}, () => {});
  inFlight.set(dest, settled);
  settled.then(() => inFlight.delete(dest));
  return download;
}

// A file at its final name is whole (it was renamed there after its check): the listed size is enough.
function isCached(dest, file, { onBytes = () => {} }) {
  const existing = fs.statSync(dest, { throwIfNoEntry: false });
  if (!existing?.isFile() || existing.size !== file.size) return false;
  onBytes(file.size);
  return true;
}

async function downloadUnlocked(url, dest, file, { httpOptions, onBytes = () => {} }) {
  if (isCached(dest, file, { onBytes })) return { downloaded: 0 }; // another process finished it while we waited
  const partial = dest + INCOMPLETE;
  let have = fs.statSync(partial, { throwIfNoEntry: false })?.size ?? 0;
  if (have > file.size) {
    fs.rmSync(partial, { force: true });
    have = 0;
  }
  const hash = crypto.createHash('sha256');
  if (have > 0) await hashFile(partial, hash);
  if (file.size === 0) fs.closeSync(fs.openSync(partial, 'w'));
  const opened = have < file.size ? await openBody(url, have, file.size, httpOptions) : { response: null, offset: have };
  let fd = null;
  try {
    if (opened.response) {
      let resumed = hash;
      if (opened.offset === 0 && have > 0) resumed = crypto.createHash('sha256'); // the hub ignored the Range: start over
      fd = fs.openSync(partial, opened.offset === 0 ? 'w' : 'a');
      await receive(opened.response, { fd, hash: resumed, have: opened.offset, size: file.size, url, onChunk: onBytes });
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fd = null;
      return await finish(partial, dest, file, resumed, url, file.size - opened.offset);
    }
    return await finish(partial, dest, file, hash, url, 0);
  } catch (error) {
    if (error.overflow) fs.rmSync(partial, { force: true });
    throw error;
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

async function finish(partial, dest, file, hash, url, downloaded) {
  const size = fs.statSync(partial, { throwIfNoEntry: false })?.size ?? 0;
  if (size !== file.size) {
    fs.rmSync(partial, { force: true });
    throw protocolError(`${url}: the hub refused the range after ${size} bytes of ${file.size}; the partial file was deleted, run again`);
  }
  if (file.sha256) {
    const actual = hash.digest('hex');
    if (actual !== file.sha256) {
      fs.rmSync(partial, { force: true });
      throw new PagedlmError(`${url} has sha256 ${actual} but the hub's listing says ${file.sha256}; the download was deleted`, 'ERR_HUB_CHECKSUM');
    }
  }
  fs.renameSync(partial, dest);
  return { downloaded };
}

module.exports = { downloadFile };
