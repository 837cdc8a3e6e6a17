// Every frame drawbridge sends validates against protocol.schema.json
// (@openclaw/gateway-protocol@2026.9.1), the machine-readable contract of OpenClaw's gateway
// protocol v4.
//
// Raw WebSocket connections exercise the handshake, every method in scope, errors and the events
// (chat delta/final/aborted, tick, shutdown). Each received frame is validated against the
// top-level schema (oneOf RequestFrame/ResponseFrame/EventFrame), and its payload against the
// definition that exists for it: HelloOk, ChatEvent, TickEvent, ShutdownEvent, ErrorShape. The
// params this test sends are checked too (ChatSendParams, ...), so the test itself stays honest.
// Run through run-node.sh, which passes the binary in DRAWBRIDGE_BIN.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { startGateway } from './lib/gateway.mjs';
import { RawConnection } from './lib/raw-ws.mjs';
import { Checker } from './lib/schema.mjs';

const PROTOCOL = 4;
// Top-level error codes OpenClaw's gateway emits (ErrorCodes); there is no NOT_FOUND/UNAUTHORIZED.
const ERROR_CODES = new Set(['INVALID_REQUEST', 'UNAVAILABLE', 'FORBIDDEN', 'NOT_PAIRED', 'APPROVAL_NOT_FOUND']);
const SESSION = 'conformance-schema';
const SCOPES = ['operator.read', 'operator.write', 'operator.admin'];

const theirs = new Checker(); // frames drawbridge sent
const ours = new Checker(); // params this test sent
const conns = [];
let fast; // echo agent streaming 3-char deltas
let slow; // echo agent answering after 2 s, for chat.abort
let fastStartedAt = 0;
let main; // the connection most exercises use
let watcher; // stays connected, idle, until the gateway stops: sees tick and shutdown
let hello; // hello-ok payload of `main`

function describeFrame(f) {
  if (!f || typeof f !== 'object') return JSON.stringify(f);
  if (f.type === 'event') return `event ${f.event}`;
  if (f.type === 'res') return `res ${f.id} ok=${f.ok}`;
  return `type=${JSON.stringify(f.type)}`;
}

const EVENT_DEFS = { chat: 'ChatEvent', tick: 'TickEvent', shutdown: 'ShutdownEvent', health: 'Snapshot/properties/health' };

function onFrame(entry, conn) {
  const f = entry.frame;
  const ctx = `${conn.label} frame #${entry.index} (${describeFrame(f)}${entry.method ? ', answering ' + entry.method : ''})`;
  theirs.check('frame', f, ctx);
  if (f?.type === 'res') {
    if (f.ok === false) theirs.check('ErrorShape', f.error, `${ctx}: error`);
    if (f.ok === true && entry.method === 'connect') theirs.check('HelloOk', f.payload, `${ctx}: hello-ok payload`);
  } else if (f?.type === 'event' && EVENT_DEFS[f.event]) {
    theirs.check(EVENT_DEFS[f.event], f.payload, `${ctx}: ${f.event} payload`);
  }
}

const PARAM_DEFS = {
  connect: 'ConnectParams',
  'chat.send': 'ChatSendParams',
  'chat.history': 'ChatHistoryParams',
  'chat.abort': 'ChatAbortParams',
  send: 'SendParams',
};

function onSend(frame, conn, meta) {
  if (meta.unchecked) return;
  ours.check('frame', frame, `${conn.label} sent ${frame.method}`);
  const def = PARAM_DEFS[frame.method];
  if (def) ours.check(def, frame.params, `${conn.label} sent ${frame.method} params`);
}

function open(gw, label) {
  const c = new RawConnection(gw.url, { label, onFrame, onSend });
  conns.push(c);
  return c;
}

function connectParams({ token, minProtocol = PROTOCOL, maxProtocol = PROTOCOL } = {}) {
  return {
    minProtocol,
    maxProtocol,
    // The reference client's default identity: on loopback, OpenClaw keeps the scopes such a
    // device-less, token-authenticated client asks for.
    client: { id: 'gateway-client', version: '0.0.0-conformance', platform: process.platform, mode: 'backend' },
    role: 'operator',
    scopes: SCOPES,
    caps: [],
    auth: { token },
  };
}

async function challengeOf(c) {
  await c.opened;
  return c.waitFor((f) => f?.type === 'event' && f.event === 'connect.challenge', { what: 'connect.challenge' });
}

async function connected(gw, label) {
  const c = open(gw, label);
  await challengeOf(c);
  const res = await c.request('connect', connectParams({ token: gw.token }));
  assert.equal(res.ok, true, `${label}: connect refused: ${JSON.stringify(res)}`);
  return { c, res };
}

function isChat(runId, state) {
  return (f) =>
    f?.type === 'event' && f.event === 'chat' && f.payload?.runId === runId && (!state || f.payload.state === state);
}

function textOf(message) {
  if (!message) return undefined;
  if (typeof message.content === 'string') return message.content;
  if (Array.isArray(message.content)) {
    return message.content.filter((p) => p?.type === 'text').map((p) => p.text).join('');
  }
  return message.text;
}

function assertError(res, code, what) {
  assert.equal(res.type, 'res', what);
  assert.equal(res.ok, false, `${what}: expected an error response, got ${JSON.stringify(res)}`);
  assert.equal(res.error?.code, code, `${what}: error code: ${JSON.stringify(res.error)}`);
  assert.ok(ERROR_CODES.has(res.error.code), `${what}: ${res.error.code} is not one of OpenClaw's error codes`);
  assert.equal('payload' in res, false, `${what}: an error response carries no payload`);
}

// Each exercise also fails on any schema violation recorded while it ran.
function exercise(name, fn, timeout = 20000) {
  test(name, { timeout }, async () => {
    const mark = theirs.violations.length;
    await fn();
    assert.equal(
      theirs.violations.length - mark,
      0,
      `drawbridge sent frames that violate protocol.schema.json:\n${theirs.report(mark)}`,
    );
  });
}

before(async () => {
  fastStartedAt = Date.now();
  [fast, slow] = await Promise.all([
    startGateway({ agents: { main: { type: 'echo', delayMs: 50, chunkChars: 3 } } }),
    startGateway({ agents: { main: { type: 'echo', delayMs: 2000 } } }),
  ]);
  ({ c: watcher } = await connected(fast, 'watcher'));
});

after(async () => {
  for (const c of conns) c.terminate();
  await Promise.all([fast?.stop(), slow?.stop()]);
});

exercise('handshake: connect.challenge first, then connect answers hello-ok', async () => {
  main = open(fast, 'main');
  const challenge = await challengeOf(main);
  assert.equal(main.frames[0].frame, challenge, 'connect.challenge is the first frame on a new socket');
  assert.equal('seq' in challenge, false, 'connect.challenge carries no seq');
  assert.equal(typeof challenge.payload?.nonce, 'string');
  assert.ok(challenge.payload.nonce.length > 0, 'nonce is not empty');
  assert.ok(Number.isInteger(challenge.payload.ts) && challenge.payload.ts >= 0, 'ts is a non-negative integer (ms)');
  assert.ok(Math.abs(challenge.payload.ts - Date.now()) < 60000, 'ts is a current wall-clock time in ms');

  const res = await main.request('connect', connectParams({ token: fast.token }));
  assert.equal(res.ok, true, JSON.stringify(res));
  hello = res.payload;
  assert.equal(hello.type, 'hello-ok');
  assert.equal(hello.protocol, PROTOCOL);
  for (const m of ['health', 'status', 'chat.send', 'chat.history', 'chat.abort', 'send']) {
    assert.ok(hello.features.methods.includes(m), `features.methods lists ${m}`);
  }
  for (const e of ['chat', 'tick', 'shutdown']) {
    assert.ok(hello.features.events.includes(e), `features.events lists ${e}`);
  }
  assert.deepEqual([...hello.auth.scopes].sort(), [...SCOPES].sort(), 'hello-ok grants the requested scopes');
});

exercise('health and status answer ok', async () => {
  const health = await main.request('health', {});
  assert.equal(health.ok, true, JSON.stringify(health));
  assert.equal(typeof health.payload, 'object');
  // The health RPC answers OpenClaw's health snapshot: the object hello-ok carries as
  // snapshot.health and the `health` event carries as payload. Its shape is in the schema there.
  theirs.check('Snapshot/properties/health', health.payload, 'health result (the health snapshot)');
  const status = await main.request('status', {});
  assert.equal(status.ok, true, JSON.stringify(status));
  assert.equal(typeof status.payload, 'object');
});

const chatText = 'schema conformance: hello, drawbridge!';
let chatKey;

exercise('chat.send: ack with runId = idempotencyKey, then chat deltas and a final', async () => {
  chatKey = randomUUID();
  const from = main.frames.length;
  const ack = await main.request('chat.send', { sessionKey: SESSION, message: chatText, idempotencyKey: chatKey });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.equal(ack.payload.runId, chatKey, 'runId is the idempotencyKey');
  assert.equal(ack.payload.status, 'started');
  const final = await main.waitFor(isChat(chatKey, 'final'), { from, timeoutMs: 10000, what: 'the final chat event' });

  const events = main.frames.slice(from).map((e) => e.frame).filter(isChat(chatKey));
  const deltas = events.filter((f) => f.payload.state === 'delta');
  assert.ok(deltas.length >= 2, `chunkChars 3 streams several deltas (got ${deltas.length})`);
  assert.equal(events.at(-1), final, 'final is the last chat event of the run');
  let acc = '';
  for (const d of deltas) {
    assert.equal(d.payload.sessionKey, SESSION);
    acc = d.payload.replace ? d.payload.deltaText : acc + d.payload.deltaText;
    if (d.payload.message !== undefined) {
      assert.equal(textOf(d.payload.message), acc, 'a delta message carries the text so far');
    }
  }
  assert.equal(acc, chatText, 'the deltas add up to the reply');
  const seqs = events.map((f) => f.payload.seq);
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `chat seq increases within a run: ${seqs}`);
  assert.equal(final.payload.sessionKey, SESSION);
  assert.equal(final.payload.message?.role, 'assistant');
  assert.equal(textOf(final.payload.message), chatText, 'the echo agent replies with the same text');
  assert.ok(Number.isInteger(final.payload.message.timestamp), 'final message has a timestamp');
});

exercise('chat.history returns the user message and the reply', async () => {
  const res = await main.request('chat.history', { sessionKey: SESSION });
  assert.equal(res.ok, true, JSON.stringify(res));
  assert.ok(Array.isArray(res.payload.messages), 'payload.messages is an array');
  const users = res.payload.messages.filter((m) => m.role === 'user' && textOf(m) === chatText);
  const replies = res.payload.messages.filter((m) => m.role === 'assistant' && textOf(m) === chatText);
  assert.equal(users.length, 1, `one user message: ${JSON.stringify(res.payload.messages)}`);
  assert.equal(replies.length, 1, `one assistant message: ${JSON.stringify(res.payload.messages)}`);
});

exercise('chat.abort of a running turn answers aborted and emits a chat aborted event', async () => {
  const { c } = await connected(slow, 'slow');
  const key = randomUUID();
  const from = c.frames.length;
  const ack = await c.request('chat.send', { sessionKey: SESSION, message: 'never answered', idempotencyKey: key });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.equal(ack.payload.runId, key);
  const res = await c.request('chat.abort', { sessionKey: SESSION, runId: key });
  assert.equal(res.ok, true, JSON.stringify(res));
  assert.equal(res.payload.ok, true);
  assert.equal(res.payload.aborted, true);
  assert.deepEqual(res.payload.runIds, [key]);
  const aborted = await c.waitFor(isChat(key, 'aborted'), { from, timeoutMs: 5000, what: 'the aborted chat event' });
  assert.equal(aborted.payload.sessionKey, SESSION);
  // The same idempotencyKey again: the first run's outcome, never a second turn (OpenClaw
  // answers an aborted run's key with status "timeout", summary "aborted").
  const again = await c.request('chat.send', { sessionKey: SESSION, message: 'never answered', idempotencyKey: key });
  assert.equal(again.ok, true, JSON.stringify(again));
  assert.equal(again.payload.runId, key);
  assert.equal(again.payload.status, 'timeout', JSON.stringify(again.payload));
  assert.equal(again.payload.summary, 'aborted', JSON.stringify(again.payload));
  const none = await c.request('chat.abort', { sessionKey: SESSION });
  assert.equal(none.ok, true, JSON.stringify(none));
  assert.equal(none.payload.aborted, false, 'nothing left to abort');
  assert.deepEqual(none.payload.runIds, []);
  // The turn must not complete after all.
  assert.equal(c.frames.some((e) => isChat(key, 'final')(e.frame)), false, 'no final for an aborted run');
});

exercise('send delivers a message: runId = idempotencyKey', async () => {
  const key = randomUUID();
  const res = await main.request('send', { to: 'conformance-peer', message: 'hello from send', idempotencyKey: key });
  assert.equal(res.ok, true, JSON.stringify(res));
  assert.equal(typeof res.payload.messageId, 'string');
  assert.equal(typeof res.payload.channel, 'string');
  // OpenClaw's delivery result: {runId: <idempotencyKey>, messageId, channel, ...}
  assert.equal(res.payload.runId, key, `send answers runId = idempotencyKey: ${JSON.stringify(res.payload)}`);
});

// What OpenClaw's dashboard, TUI and CLI call about the gateway itself (rpc_ops): each answer
// validates against its result definition where the protocol schema has one.
const OPS_RESULTS = {
  'logs.tail': 'LogsTailResult',
  'config.schema': 'ConfigSchemaResponse',
  'system.info': 'SystemInfoResult',
  'channels.status': 'ChannelsStatusResult',
  'channels.pairing.list': 'ChannelsPairingListResult',
};
const OPS_PARAMS = {
  'logs.tail': ['LogsTailParams', { limit: 5, maxBytes: 250000 }],
  'config.schema': ['ConfigSchemaParams', {}],
  'system.info': ['SystemInfoParams', {}],
  'channels.status': ['ChannelsStatusParams', { probe: false, timeoutMs: 10000 }],
  'channels.pairing.list': ['ChannelsPairingListParams', {}],
};

exercise('operator methods answer in the shapes of their result definitions', async () => {
  for (const m of [...Object.keys(OPS_RESULTS), 'diagnostics.lanes', 'last-heartbeat', 'system-presence']) {
    assert.ok(hello.features.methods.includes(m), `features.methods lists ${m}`);
  }
  for (const [method, def] of Object.entries(OPS_RESULTS)) {
    const [paramsDef, params] = OPS_PARAMS[method];
    ours.check(paramsDef, params, `params of ${method}`);
    const res = await main.request(method, params);
    assert.equal(res.ok, true, `${method}: ${JSON.stringify(res.error)}`);
    assert.ok(theirs.check(def, res.payload, `${method} result`), `${method} result is a ${def}: ${theirs.report()}`);
  }
  // logs.tail: the gateway's own log, read on from a cursor.
  const first = await main.request('logs.tail', { maxBytes: 250000 });
  assert.ok(first.payload.lines.length > 0, 'the log has lines (the start-up ones at least)');
  assert.match(first.payload.file, /^memory:drawbridge\//);
  const line = JSON.parse(first.payload.lines.at(-1));
  assert.equal(typeof line.message, 'string');
  assert.equal(first.payload.lines.some((l) => l.includes(fast.token)), false, 'no token in the log tail');
  const next = await main.request('logs.tail', { cursor: first.payload.cursor });
  assert.ok(next.payload.cursor >= first.payload.cursor);
  assert.equal(next.payload.reset, false);
  const gone = await main.request('logs.tail', { cursor: first.payload.size + 1000000 });
  assert.equal(gone.payload.reset, true, 'a cursor past the end resets');

  // config.schema is a JSON Schema that the config itself satisfies.
  const schema = (await main.request('config.schema', {})).payload;
  const validate = theirs.proto.ajv.compile(schema.schema);
  assert.ok(schema.uiHints['gateway.auth.token']?.sensitive, 'the token is sensitive');
  const got = (await main.request('config.get', {})).payload;
  assert.ok(got.sourceConfig && typeof got.sourceConfig === 'object', 'config.get has sourceConfig');
  assert.equal(got.sourceConfig.store, undefined, 'sourceConfig is the file, without defaults');
  assert.equal(got.sourceConfig.gateway.auth.token, '__DRAWBRIDGE_REDACTED__', 'its secrets are redacted');
  // Only the file's copy: the effective `config` writes an unset channel agent as "" (not a
  // valid value of the key), one reason a form edits sourceConfig.
  assert.ok(validate(got.sourceConfig), `sourceConfig validates against config.schema: ${JSON.stringify(validate.errors)}`);

  const info = (await main.request('system.info', {})).payload;
  assert.equal(info.platform, 'linux');
  assert.match(info.nodeVersion, /drawbridge/);
  const presence = await main.request('system-presence', {});
  assert.equal(presence.ok, true);
  for (const [i, entry] of presence.payload.entries()) theirs.check('PresenceEntry', entry, `system-presence[${i}]`);
  assert.equal(presence.payload[0].mode, 'gateway');
  const lanes = await main.request('diagnostics.lanes', {});
  assert.equal(lanes.ok, true);
  assert.ok(Array.isArray(lanes.payload.lanes));
  const heartbeat = await main.request('last-heartbeat', {});
  assert.equal(heartbeat.ok, true);
  assert.equal(heartbeat.payload, null);
  const channels = (await main.request('channels.status', { probe: false })).payload;
  assert.deepEqual(channels.channelOrder, ['local']);
  assert.equal(channels.channelAccounts.local[0].accountId, 'default');
});

exercise('an unknown method is a clear INVALID_REQUEST error, and the socket stays usable', async () => {
  const res = await main.request('conformance.no-such-method', {});
  assertError(res, 'INVALID_REQUEST', 'unknown method');
  assert.match(res.error.message, /unknown method/i);
  const health = await main.request('health', {});
  assert.equal(health.ok, true);
});

exercise('connect again after hello-ok is an INVALID_REQUEST error; the socket stays open', async () => {
  const res = await main.request('connect', connectParams({ token: fast.token }));
  assertError(res, 'INVALID_REQUEST', 'a second connect');
  const health = await main.request('health', {});
  assert.equal(health.ok, true);
});

exercise('a first request other than connect is refused and the socket closed with 1008', async () => {
  const c = open(fast, 'no-connect');
  await challengeOf(c);
  const res = await c.request('health', {});
  assertError(res, 'INVALID_REQUEST', 'health before connect');
  const { code } = await c.waitClose();
  assert.equal(code, 1008);
});

exercise('a request missing its params is an INVALID_REQUEST error', async () => {
  const res = await main.request('chat.send', undefined, { omitParams: true, unchecked: true });
  assertError(res, 'INVALID_REQUEST', 'chat.send without params');
  const history = await main.request('chat.history', {}, { unchecked: true });
  assertError(history, 'INVALID_REQUEST', 'chat.history without sessionKey');
});

exercise('a wrong token is refused with AUTH_TOKEN_MISMATCH and close 1008', async () => {
  const c = open(fast, 'wrong-token');
  await challengeOf(c);
  const res = await c.request('connect', connectParams({ token: fast.token + '-wrong' }));
  assertError(res, 'INVALID_REQUEST', 'connect with a wrong token');
  assert.equal(res.error.details?.code, 'AUTH_TOKEN_MISMATCH', JSON.stringify(res.error));
  const { code } = await c.waitClose();
  assert.equal(code, 1008);
});

exercise('a protocol range without v4 is refused with PROTOCOL_MISMATCH and close 1002', async () => {
  const c = open(fast, 'mismatch');
  await challengeOf(c);
  const res = await c.request('connect', connectParams({ token: fast.token, minProtocol: 5, maxProtocol: 6 }));
  assertError(res, 'INVALID_REQUEST', 'connect with protocol 5..6');
  assert.equal(res.error.details?.code, 'PROTOCOL_MISMATCH', JSON.stringify(res.error));
  assert.equal(res.error.details?.expectedProtocol, PROTOCOL);
  const { code } = await c.waitClose();
  assert.equal(code, 1002);
});

exercise(
  'tick arrives within policy.tickIntervalMs',
  async () => {
    assert.ok(hello, 'hello-ok seen');
    const interval = hello.policy.tickIntervalMs;
    assert.ok(Number.isInteger(interval) && interval > 0 && interval <= 30000, `tickIntervalMs ${interval}`);
    const left = fastStartedAt + interval + 5000 - Date.now();
    const tick = await watcher.waitFor((f) => f?.type === 'event' && f.event === 'tick', {
      timeoutMs: Math.max(left, 1000),
      what: 'a tick event',
    });
    assert.ok(Number.isInteger(tick.seq) && tick.seq >= 1, 'tick carries a seq');
    // Every other tick refreshes the health snapshot and broadcasts it with stateVersion.
    const health = await watcher.waitFor((f) => f?.type === 'event' && f.event === 'health', {
      timeoutMs: Math.max(fastStartedAt + 3 * interval + 5000 - Date.now(), 1000),
      what: 'a health event',
    });
    assert.ok(Number.isInteger(health.stateVersion?.health) && health.stateVersion.health >= 1, 'health carries stateVersion');
  },
  45000,
);

exercise('stopping the gateway sends shutdown, then closes sockets with 1012', async () => {
  const live = conns.filter((c) => !c.closeInfo && c.frames.some((e) => e.method === 'connect' && e.frame.ok === true));
  assert.ok(live.includes(watcher) && live.includes(main));
  const marks = new Map(live.map((c) => [c, c.frames.length]));
  const [fastExit, slowExit] = await Promise.all([fast.stop(), slow.stop()]);
  assert.deepEqual(fastExit, { code: 0, signal: null }, 'SIGTERM: exit 0');
  assert.deepEqual(slowExit, { code: 0, signal: null }, 'SIGTERM: exit 0');
  for (const c of live) {
    const { code } = await c.waitClose();
    assert.equal(code, 1012, `${c.label}: close code`);
    const shutdowns = c.frames.slice(marks.get(c)).map((e) => e.frame).filter((f) => f?.type === 'event' && f.event === 'shutdown');
    assert.equal(shutdowns.length, 1, `${c.label}: one shutdown event before the close`);
    assert.equal(typeof shutdowns[0].payload.reason, 'string');
    assert.equal('restartExpectedMs' in shutdowns[0].payload, false, 'a plain stop expects no restart');
  }
});

test('event seq is per connection: 1, 2, 3, ... without gaps', () => {
  for (const c of conns) {
    const seqs = c.frames.map((e) => e.frame).filter((f) => f?.type === 'event' && 'seq' in f).map((f) => f.seq);
    seqs.forEach((s, i) => assert.equal(s, i + 1, `${c.label}: event seqs ${JSON.stringify(seqs)}`));
  }
});

test('the params this test sent are valid (sanity of the test itself)', () => {
  assert.equal(ours.violations.length, 0, ours.report());
  for (const kind of ['frame', 'ConnectParams', 'ChatSendParams', 'ChatHistoryParams', 'ChatAbortParams', 'SendParams']) {
    assert.ok(ours.count(kind) > 0, `checked at least one ${kind} we sent`);
  }
});

test('every frame drawbridge sent validates against protocol.schema.json', () => {
  const kinds = ['frame', 'HelloOk', 'ChatEvent', 'TickEvent', 'ShutdownEvent', 'ErrorShape', 'Snapshot/properties/health'];
  const summary = kinds.map((k) => `${k}=${theirs.count(k)}`).join(' ');
  console.log(`validated: ${summary}; violations: ${theirs.violations.length}`);
  assert.equal(theirs.violations.length, 0, `violations:\n${theirs.report()}`);
  for (const kind of kinds) assert.ok(theirs.count(kind) > 0, `validated at least one ${kind} (${summary})`);
});
