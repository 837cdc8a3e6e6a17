// A raw WebSocket connection to the gateway (the `ws` package the reference client uses): every
// received frame is kept in order and handed to `onFrame` (the schema checker) before anyone
// waits on it, so no frame escapes validation.
import WebSocket from 'ws';

let nextId = 0;

export class RawConnection {
  constructor(url, { label = 'conn', onFrame = () => {}, onSend = () => {} } = {}) {
    this.label = label;
    this.frames = [];
    this.sent = [];
    this.pendingMethods = new Map(); // request id -> method
    this.waiters = [];
    this.closeInfo = null;
    this.onFrame = onFrame;
    this.onSend = onSend;
    this.ws = new WebSocket(url, { perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
        this.#wake();
      });
    });
    this.ws.on('error', () => {});
    this.ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString('utf8');
      let frame;
      try {
        frame = text === null ? { __binary: true } : JSON.parse(text);
      } catch {
        frame = { __unparsable: text };
      }
      const method = frame && frame.type === 'res' ? this.pendingMethods.get(frame.id) : undefined;
      const entry = { frame, method, at: Date.now(), index: this.frames.length };
      this.frames.push(entry);
      this.onFrame(entry, this);
      this.#wake();
    });
  }

  #wake() {
    for (const w of [...this.waiters]) w();
  }

  // meta.unchecked: a deliberately invalid frame, not to be checked against the schema.
  sendRaw(obj, meta = {}) {
    this.sent.push(obj);
    this.onSend(obj, this, meta);
    this.ws.send(JSON.stringify(obj));
  }

  // Sends a request frame; returns its id.
  send(method, params, { omitParams = false, unchecked = false } = {}) {
    const id = `${this.label}-${++nextId}`;
    const frame = { type: 'req', id, method };
    if (!omitParams) frame.params = params;
    this.pendingMethods.set(id, method);
    this.sendRaw(frame, { unchecked });
    return id;
  }

  // Resolves with the first frame (at or after index `from`) matching `pred`; rejects after
  // `timeoutMs`, or when the socket closes first.
  waitFor(pred, { timeoutMs = 5000, from = 0, what = 'a frame' } = {}) {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        for (let i = from; i < this.frames.length; i++) {
          if (pred(this.frames[i].frame)) {
            done();
            resolve(this.frames[i].frame);
            return;
          }
        }
        if (this.closeInfo) {
          done();
          reject(new Error(`${this.label}: socket closed (${JSON.stringify(this.closeInfo)}) before ${what}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: no ${what} within ${timeoutMs} ms; frames so far:\n` + this.dump()));
      }, timeoutMs);
      this.waiters.push(check);
      check();
    });
  }

  async request(method, params, opts = {}) {
    const id = this.send(method, params, opts);
    return this.waitFor((f) => f && f.type === 'res' && f.id === id, {
      timeoutMs: opts.timeoutMs ?? 5000,
      what: `the response to ${method} (${id})`,
    });
  }

  waitClose(timeoutMs = 5000) {
    return Promise.race([
      this.closed,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`${this.label}: socket not closed within ${timeoutMs} ms`)), timeoutMs).unref(),
      ),
    ]);
  }

  events(name) {
    return this.frames.filter((e) => e.frame?.type === 'event' && e.frame.event === name).map((e) => e.frame);
  }

  dump() {
    return this.frames.map((e) => '  ' + JSON.stringify(e.frame)).join('\n');
  }

  close() {
    if (!this.closeInfo) this.ws.close(1000);
  }

  terminate() {
    this.ws.terminate();
  }
}
