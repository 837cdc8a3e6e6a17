// The one client of bench/peer/compare.sh: speaks the OpenClaw gateway WebSocket protocol v4
// (token auth, no device identity) to either gateway, with Node's built-in WebSocket (Node 24,
// no packages). Every mode prints one JSON object on stdout and human lines on stderr.
//
//   node probe.mjs chat    --url ws://127.0.0.1:P --token T [--runs N] [--session S]
//        chat round trip: per run chat.send → the `chat` event with state "final" of its run
//        (the run id is the answer's runId), one connection, one session, one run at a time;
//        also the send → acknowledgement time. The first --warmup turns (default 1: the first
//        turn after a start loads code in some gateways) are reported apart, not counted.
//   node probe.mjs patch   --url … --token T --patch '{"a":{"b":VALUE}}' [--runs N] [--gap-ms MS]
//        hot reload: per run config.get (for baseHash), then config.patch with VALUE replaced
//        by --base + the run's index (default 1, 2, …), timed from the request to its answer: both gateways answer
//        a hot change only once it is applied. The answer's plan/changedPaths are kept.
//   node probe.mjs restart --port P --pid PID --signal SIGUSR2 [--runs N] [--settle-ms MS]
//        restart to ready: per run the signal, then GET /readyz polled (a fresh loopback
//        connection every 5 ms) until an answer other than 200 (or no answer) has been seen
//        and then a 200. For gateways whose restart is shorter than a poll use the gateway's
//        own probe instead (compare.sh uses drawbridge_restart_probe for drawbridge).
//   node probe.mjs load    --url … --token T [--sessions C] [--every-ms MS] [--duration S]
//        [--pid PID --signal SIG --restart-every S] [--grace S]
//        messages under restarts: C connections, one session each; each session sends a
//        message every MS ms, waiting for the final of the previous one first (so a session's
//        transcript alternates user / assistant). A connection that closes is opened again
//        (backoff 50 ms doubling to 1 s) and its unanswered message sent again with the same
//        idempotency key. The signal goes to PID every S seconds. At the end (after the grace)
//        every session's chat.history is read: a message whose user entry or reply is missing is
//        lost, one whose user entry or reply appears twice is duplicated.
//   node probe.mjs ready   --url … --token T   one connect (challenge → hello-ok), then close.
//
// Everything is bounded: each request has a timeout, each mode a deadline (--deadline-s).
import http from 'node:http';

const argv = process.argv.slice(2);
const mode = argv[0];
const opt = {};
for (let i = 1; i < argv.length; i++) {
  const k = argv[i];
  if (!k.startsWith('--')) continue;
  const v = argv[i + 1] !== undefined && !argv[i + 1].startsWith('--') ? argv[++i] : 'true';
  opt[k.slice(2)] = v;
}
const num = (k, d) => (opt[k] !== undefined ? Number(opt[k]) : d);
const log = (...a) => process.stderr.write(a.join(' ') + '\n');
const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const deadline = setTimeout(() => {
  log(`probe ${mode}: deadline of ${num('deadline-s', 600)} s reached`);
  process.stdout.write(JSON.stringify({ mode, error: 'deadline' }) + '\n');
  process.exit(3);
}, num('deadline-s', 600) * 1000);
deadline.unref();

export function stats(values) {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return { n: 0 };
  const q = (p) => {
    const r = p * (v.length - 1);
    const lo = Math.floor(r);
    const hi = Math.min(lo + 1, v.length - 1);
    return v[lo] + (v[hi] - v[lo]) * (r - lo);
  };
  const r3 = (x) => Math.round(x * 1000) / 1000;
  return { n: v.length, min: r3(v[0]), p50: r3(q(0.5)), p90: r3(q(0.9)), p99: r3(q(0.99)), max: r3(v[v.length - 1]), mean: r3(v.reduce((s, x) => s + x, 0) / v.length) };
}

const SCOPES = ['operator.admin', 'operator.read', 'operator.write'];
let nextId = 0;

// One protocol connection. connect() resolves with hello-ok's payload or rejects with the
// error (err.code: ECONNREFUSED, closed, or the gateway's error code such as UNAVAILABLE).
class Conn {
  constructor(url, token, label = 'c') {
    this.url = url;
    this.token = token;
    this.label = label;
    this.pending = new Map();
    this.listeners = new Set();
    this.closed = false;
    this.onclose = null;
  }

  connect(timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (code, message) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const e = new Error(message);
        e.code = code;
        try { this.ws.close(); } catch { /* already closed */ }
        reject(e);
      };
      const timer = setTimeout(() => fail('TIMEOUT', `no hello-ok within ${timeoutMs} ms`), timeoutMs);
      try {
        this.ws = new WebSocket(this.url);
      } catch (e) {
        fail('ERROR', String(e));
        return;
      }
      // Before the upgrade completed, an error on loopback means nothing listens (or the upgrade
      // was refused); after it, the gateway closed the connection.
      this.ws.onopen = () => { this.opened = true; };
      this.ws.onerror = (ev) => fail(this.opened ? 'WSERROR' : 'NO_LISTENER', `websocket error ${ev?.message ?? ''}`);
      this.ws.onclose = (ev) => {
        this.closed = true;
        this.closeCode = ev.code;
        for (const [, p] of this.pending) p.reject(Object.assign(new Error('closed'), { code: 'CLOSED' }));
        this.pending.clear();
        if (!settled) fail('CLOSED', `closed ${ev.code} ${ev.reason} before hello-ok`);
        else if (this.onclose) this.onclose(ev);
      };
      this.ws.onmessage = (ev) => {
        let f;
        try { f = JSON.parse(typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data).toString('utf8')); } catch { return; }
        if (f.type === 'event' && f.event === 'connect.challenge' && !settled && !this.sentConnect) {
          this.sentConnect = true;
          this.request('connect', {
            minProtocol: 4, maxProtocol: 4,
            client: { id: 'gateway-client', version: '0.0.0-drawbridge-bench', platform: process.platform, mode: 'backend' },
            role: 'operator', scopes: SCOPES, caps: [], auth: { token: this.token },
          }, timeoutMs).then((res) => {
            if (settled) return;
            if (res.ok) { settled = true; clearTimeout(timer); resolve(res.payload); }
            else fail(res.error?.code ?? 'REFUSED', `connect refused: ${JSON.stringify(res.error)}`);
          }, (e) => fail(e.code ?? 'ERROR', e.message));
          return;
        }
        if (f.type === 'res' && this.pending.has(f.id)) {
          const p = this.pending.get(f.id);
          this.pending.delete(f.id);
          p.resolve(f);
          return;
        }
        if (f.type === 'event') for (const l of this.listeners) l(f);
      };
    });
  }

  // Resolves with the whole response frame ({ok, payload} or {ok: false, error}).
  request(method, params, timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
      if (this.closed || !this.ws || this.ws.readyState !== 1) {
        reject(Object.assign(new Error('not open'), { code: 'CLOSED' }));
        return;
      }
      const id = `${this.label}-${++nextId}`;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(Object.assign(new Error(`${method}: no answer within ${timeoutMs} ms`), { code: 'TIMEOUT' }));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (f) => { clearTimeout(timer); resolve(f); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.ws.send(JSON.stringify({ type: 'req', id, method, params }));
    });
  }

  close() {
    try { this.ws?.close(); } catch { /* ignore */ }
  }
}

const finalOf = (f) => f.event === 'chat' && f.payload && ['final', 'error', 'aborted'].includes(f.payload.state);

// ---- chat round trip ------------------------------------------------------------------------
async function chatMode() {
  const c = new Conn(opt.url, opt.token, 'chat');
  await c.connect();
  const runs = num('runs', 20);
  const warmup = num('warmup', 1);
  const session = opt.session ?? 'bench-chat';
  const warm = [];
  const waiters = new Map();
  const early = new Map();
  c.listeners.add((f) => {
    if (!finalOf(f)) return;
    const w = waiters.get(f.payload.runId);
    if (w) w(f);
    else early.set(f.payload.runId, f);
  });
  const rtt = [];
  const ack = [];
  const states = {};
  let failures = 0;
  let sample = null;
  for (let i = 0; i < warmup + runs; i++) {
    const key = `chat-${process.pid}-${i}`;
    const t0 = now();
    let res;
    try {
      res = await c.request('chat.send', { sessionKey: session, message: `ping ${i}`, idempotencyKey: key }, 30000);
    } catch (e) {
      failures++;
      log(`chat ${i}: ${e.message}`);
      continue;
    }
    const t1 = now();
    if (!res.ok) {
      failures++;
      log(`chat ${i}: refused ${JSON.stringify(res.error)}`);
      continue;
    }
    const runId = res.payload?.runId ?? key;
    const fin = early.get(runId) ?? await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), 60000);
      waiters.set(runId, (f) => { clearTimeout(timer); resolve(f); });
    });
    waiters.delete(runId);
    if (!fin) { failures++; log(`chat ${i}: no final within 60 s`); continue; }
    const t2 = now();
    states[fin.payload.state] = (states[fin.payload.state] ?? 0) + 1;
    if (!sample) sample = fin.payload.message ?? fin.payload;
    if (i < warmup) { warm.push(Math.round((t2 - t0) * 1000) / 1000); continue; }
    ack.push(t1 - t0);
    rtt.push(t2 - t0);
  }
  c.close();
  const text = JSON.stringify(sample ?? '').slice(0, 300);
  log(`chat: ${rtt.length} of ${runs} finals; send → final ms ${JSON.stringify(stats(rtt))}; first reply ${text}`);
  log(`chat: warm-up turn(s), not counted: ${warm.join(', ')} ms`);
  return { mode: 'chat', runs, warmup, warmupMs: warm, finals: rtt.length, failures, states, sendToFinalMs: stats(rtt), sendToAckMs: stats(ack), sampleReply: text };
}

// ---- hot reload: config.patch ---------------------------------------------------------------
async function patchMode() {
  const c = new Conn(opt.url, opt.token, 'patch');
  await c.connect();
  const runs = num('runs', 10);
  const gap = num('gap-ms', 300);
  const template = opt.patch;
  const times = [];
  let failures = 0;
  let sample = null;
  for (let i = 0; i < runs; i++) {
    const got = await c.request('config.get', {}, 30000);
    if (!got.ok) { failures++; log(`patch ${i}: config.get ${JSON.stringify(got.error)}`); continue; }
    const raw = template.replace('VALUE', String(num('base', 1) + i));
    const t0 = now();
    let res;
    try {
      res = await c.request('config.patch', { raw, baseHash: got.payload.hash }, 60000);
    } catch (e) { failures++; log(`patch ${i}: ${e.message}`); continue; }
    const ms = now() - t0;
    if (!res.ok) { failures++; log(`patch ${i}: ${JSON.stringify(res.error).slice(0, 400)}`); continue; }
    times.push(ms);
    const p = res.payload ?? {};
    if (!sample) sample = { changedPaths: p.changedPaths, plan: p.plan ?? null, restart: p.restart ?? null, keys: Object.keys(p) };
    await sleep(gap);
  }
  c.close();
  log(`patch: ${times.length} of ${runs} applied; ms ${JSON.stringify(stats(times))}; first answer ${JSON.stringify(sample).slice(0, 400)}`);
  return { mode: 'patch', runs, applied: times.length, failures, patchMs: stats(times), sample };
}

// ---- restart to ready -----------------------------------------------------------------------
function readyz(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/readyz', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => { req.destroy(); resolve(0); });
    req.on('error', () => resolve(0));
  });
}

async function restartMode() {
  const port = num('port');
  const pid = num('pid');
  const sig = opt.signal ?? 'SIGUSR2';
  const runs = num('runs', 3);
  const settle = num('settle-ms', 3000);
  const limit = num('timeout-s', 120) * 1000;
  const times = [];
  const downs = [];
  let failures = 0;
  for (let r = 0; r < runs; r++) {
    if (await readyz(port) !== 200) { failures++; log(`restart ${r}: not ready before the signal`); break; }
    const t0 = now();
    process.kill(pid, sig);
    let sawDown = null;
    let ready = null;
    while (now() - t0 < limit) {
      const s = await readyz(port);
      if (s !== 200 && sawDown === null) sawDown = now() - t0;
      if (s === 200 && sawDown !== null) { ready = now() - t0; break; }
      await sleep(5);
    }
    if (ready === null) { failures++; log(`restart ${r}: ${sawDown === null ? 'never left ready' : 'not ready again'} within ${limit} ms`); break; }
    times.push(ready);
    downs.push(sawDown);
    log(`restart ${r}: ${sig} → /readyz 200 again in ${ready.toFixed(1)} ms (first non-200 after ${sawDown.toFixed(1)} ms)`);
    await sleep(settle);
  }
  return { mode: 'restart', signal: sig, runs, failures, signalToReadyMs: stats(times), signalToFirstNot200Ms: stats(downs) };
}

// ---- messages under restarts ----------------------------------------------------------------
function textOf(m) {
  if (m == null) return '';
  if (typeof m === 'string') return m;
  if (typeof m.text === 'string') return m.text;
  if (typeof m.content === 'string') return m.content;
  if (Array.isArray(m.content)) return m.content.map((p) => (typeof p === 'string' ? p : p?.text ?? '')).join('');
  return '';
}

async function loadMode() {
  const sessions = num('sessions', 4);
  const every = num('every-ms', 1000);
  const duration = num('duration', 30) * 1000;
  const grace = num('grace', 20) * 1000;
  const pid = num('pid', 0);
  const sig = opt.signal ?? 'SIGUSR1';
  const restartEvery = num('restart-every', 0) * 1000;
  const prefix = opt.prefix ?? `load-${process.pid}`;
  const tally = { sent: 0, acked: 0, refusedSends: 0, sendErrors: {}, connectAttempts: 0, connectsRefused: 0, connectErrors: {}, finals: 0, duplicateFinals: 0, nonFinalEnds: 0, resent: 0, signals: 0, disconnects: 0 };
  const seenFinal = new Map(); // runId -> count
  const signalsAt = [];
  const disconnectsAt = [];
  const latencies = [];
  const messages = []; // {session, tag, key, ackOk, final}
  let sending = true;
  const t0 = now();
  const S = [];

  const bump = (o, k) => { o[k] = (o[k] ?? 0) + 1; };

  async function open(s) {
    let delay = 50;
    const downAt = now();
    while (now() - t0 < duration + grace) {
      const c = new Conn(opt.url, opt.token, `s${s.i}`);
      tally.connectAttempts++;
      try {
        await c.connect(10000);
        c.listeners.add((f) => {
          if (!finalOf(f)) return;
          const id = f.payload.runId;
          // A gateway may send every session's chat events to every operator connection:
          // only this session's runs count here.
          if (!s.byRun.has(id)) return;
          const n = (seenFinal.get(id) ?? 0) + 1;
          seenFinal.set(id, n);
          if (n > 1) { tally.duplicateFinals++; return; }
          tally.finals++;
          if (f.payload.state !== 'final') tally.nonFinalEnds++;
          const m = s.byRun.get(id);
          if (m && !m.final) { m.final = now(); latencies.push(m.final - m.firstSent); if (s.waiting === m) s.wake(); }
        });
        c.onclose = () => { tally.disconnects++; disconnectsAt.push(now()); s.conn = null; s.wake(); };
        s.conn = c;
        const down = now() - downAt;
        if (s.everConnected && down > s.longestDown) s.longestDown = down;
        s.everConnected = true;
        return c;
      } catch (e) {
        tally.connectsRefused++;
        bump(tally.connectErrors, e.code ?? 'ERROR');
        await sleep(delay);
        delay = Math.min(delay * 2, 1000);
      }
    }
    return null;
  }

  async function session(i) {
    const s = { i, key: `${prefix}-${i}`, conn: null, byRun: new Map(), longestDown: 0, everConnected: false, waiting: null, wake: () => {} };
    S.push(s);
    let seq = 0;
    let next = now();
    while (sending && now() - t0 < duration) {
      const m = { session: s.key, tag: `[${prefix}-${i}-${seq}]`, key: `${prefix}-${i}-${seq}`, firstSent: 0, ackOk: false, final: 0, tries: 0 };
      seq++;
      messages.push(m);
      s.byRun.set(m.key, m);
      // Send until acknowledged (a reconnect re-sends with the same key), then wait for its final.
      while (!m.final && now() - t0 < duration + grace) {
        if (!s.conn) { if (!(await open(s))) break; }
        if (!m.ackOk || s.resendNeeded) {
          m.tries++;
          if (m.tries > 1) tally.resent++;
          if (!m.firstSent) { m.firstSent = now(); tally.sent++; }
          let res;
          try {
            res = await s.conn.request('chat.send', { sessionKey: s.key, message: `${m.tag} hello`, idempotencyKey: m.key }, 15000);
          } catch (e) {
            bump(tally.sendErrors, e.code ?? 'ERROR');
            if (s.conn && !s.conn.closed) await sleep(100);
            continue; // closed or timed out: reconnect and send again
          }
          if (!res.ok) {
            tally.refusedSends++;
            bump(tally.sendErrors, res.error?.code ?? 'REFUSED');
            await sleep(res.error?.retryAfterMs ?? 200);
            continue;
          }
          if (!m.ackOk) tally.acked++;
          m.ackOk = true;
          s.resendNeeded = false;
          const runId = res.payload?.runId;
          if (runId && runId !== m.key) s.byRun.set(runId, m);
          if ((seenFinal.get(runId ?? m.key) ?? 0) > 0 && !m.final) { m.final = now(); latencies.push(m.final - m.firstSent); }
        }
        if (m.final) break;
        // Wait for the final, or for the connection to drop (then send again: same key).
        const conn = s.conn;
        await new Promise((resolve) => {
          s.waiting = m;
          const timer = setTimeout(resolve, 15000);
          s.wake = () => { clearTimeout(timer); resolve(); };
        });
        s.waiting = null;
        if (!m.final && s.conn !== conn) s.resendNeeded = true;
        else if (!m.final) break; // 15 s without a final on a live connection: leave it to the history check
      }
      next += every;
      const wait = next - now();
      if (wait > 0) await sleep(wait);
      else next = now();
    }
  }

  // The signals: at every multiple of --restart-every strictly inside the sending window.
  const timers = [];
  if (pid && restartEvery > 0) {
    for (let at = restartEvery; at < duration - 500; at += restartEvery) {
      timers.push(setTimeout(() => {
        try { process.kill(pid, sig); tally.signals++; signalsAt.push(now()); log(`load: ${sig} to ${pid} at ${((now() - t0) / 1000).toFixed(1)} s`); } catch (e) { log(`load: kill: ${e.message}`); }
      }, at));
    }
  }
  const workers = [];
  for (let i = 0; i < sessions; i++) workers.push(session(i));
  await sleep(duration);
  sending = false;
  for (const t of timers) clearTimeout(t);
  await Promise.all(workers);

  // The transcripts: one user entry and one reply per message.
  let lost = 0, lostAcked = 0, dupUser = 0, dupReply = 0, checked = 0, historyErrors = 0;
  let verifier = null;
  let vok = false;
  const vt0 = now();
  while (!vok && now() - vt0 < num('verify-wait-s', 180) * 1000) {
    verifier = new Conn(opt.url, opt.token, 'verify'); // a fresh one per attempt
    try { await verifier.connect(10000); vok = true; } catch { await sleep(500); }
  }
  if (!vok) log('load: could not connect to read the transcripts');
  for (const s of S) {
    let entries = null;
    if (vok) {
      try {
        const h = await verifier.request('chat.history', { sessionKey: s.key, limit: 1000 }, 30000);
        if (h.ok) entries = h.payload?.messages ?? h.payload?.entries ?? [];
        else { historyErrors++; log(`history ${s.key}: ${JSON.stringify(h.error).slice(0, 200)}`); }
      } catch (e) { historyErrors++; log(`history ${s.key}: ${e.message}`); }
    }
    if (!entries) continue;
    const mine = messages.filter((m) => m.session === s.key && m.firstSent);
    for (const m of mine) {
      checked++;
      let users = 0, replies = 0;
      for (let k = 0; k < entries.length; k++) {
        const e = entries[k];
        if (e.role === 'user' && textOf(e.message ?? e).includes(m.tag)) {
          users++;
          // The replies to it: assistant entries up to the next user entry.
          for (let j = k + 1; j < entries.length && entries[j].role !== 'user'; j++) if (entries[j].role === 'assistant' && textOf(entries[j].message ?? entries[j]).length > 0) replies++;
        }
      }
      if (users === 0 || replies === 0) { lost++; if (m.ackOk) lostAcked++; }
      if (users > 1) dupUser++;
      if (replies > users) dupReply++;
    }
  }
  verifier?.close();
  for (const s of S) s.conn?.close();
  const longestDown = Math.max(0, ...S.map((s) => s.longestDown));
  // When did each signal take effect for the clients: its first disconnect (before the next signal).
  const signalToDisconnectMs = signalsAt.map((t, k) => {
    const until = signalsAt[k + 1] ?? Infinity;
    const d = disconnectsAt.find((x) => x >= t && x < until);
    return d === undefined ? null : Math.round(d - t);
  });
  const unanswered = messages.filter((m) => m.firstSent && !m.final).length;
  const out = { mode: 'load', sessions, everyMs: every, durationS: duration / 1000, signal: sig, restartEveryS: restartEvery / 1000, ...tally, signalToDisconnectMs, signalsSeen: signalToDisconnectMs.filter((x) => x !== null).length, unansweredEvents: unanswered, verify: { checked, lost, lostAcked, duplicatedUserEntries: dupUser, duplicatedReplies: dupReply, historyErrors, sessionsRead: vok ? S.length - historyErrors : 0 }, longestDownMs: Math.round(longestDown), latencyMs: stats(latencies) };
  log(`load: sent ${tally.sent} acked ${tally.acked} finals ${tally.finals} (dup ${tally.duplicateFinals}); refused sends ${tally.refusedSends} ${JSON.stringify(tally.sendErrors)}; connects refused ${tally.connectsRefused} of ${tally.connectAttempts} ${JSON.stringify(tally.connectErrors)}; signals ${tally.signals}, clients disconnected after ${JSON.stringify(signalToDisconnectMs)} ms; history: checked ${checked} lost ${lost} dup user ${dupUser} dup reply ${dupReply}; longest down ${Math.round(longestDown)} ms`);
  return out;
}

async function readyMode() {
  const c = new Conn(opt.url, opt.token, 'ready');
  const t0 = now();
  const hello = await c.connect(num('timeout-ms', 15000));
  c.close();
  return { mode: 'ready', ms: now() - t0, protocol: hello?.protocol, server: hello?.server?.version ?? null, scopes: hello?.auth?.scopes ?? null };
}

const modes = { chat: chatMode, patch: patchMode, restart: restartMode, load: loadMode, ready: readyMode };
if (!modes[mode]) {
  log('usage: node probe.mjs chat|patch|restart|load|ready [--options]; see the header');
  process.exit(64);
}
modes[mode]().then((r) => {
  process.stdout.write(JSON.stringify(r) + '\n');
  process.exit(r.failures ? 1 : 0);
}, (e) => {
  log(`probe ${mode}: ${e.code ?? ''} ${e.message}`);
  process.stdout.write(JSON.stringify({ mode, error: `${e.code ?? ''} ${e.message}` }) + '\n');
  process.exit(2);
});
