// A tiny OpenAI-compatible chat.completions server for bench/peer/compare.sh: both gateways'
// model turns end here, on 127.0.0.1 inside the benchmark's private network namespace.
//
//   node fake_openai.mjs --port P [--reply TEXT] [--chunks N] [--delay-ms MS]
//
// POST /v1/chat/completions: with "stream": true, answers the fixed reply as server-sent events
// in the chat.completions chunk format (a role chunk, the reply in N content chunks, a chunk
// with finish_reason "stop" and usage, then "data: [DONE]"); otherwise one JSON completion.
// Tools, images and the prompt are ignored: the reply is the same for every request, so a turn
// costs the gateway its own work plus this server's constant few hundred microseconds.
// GET /v1/models lists the one model, so a model discovery (if a gateway does one) succeeds.
// Counts requests; GET /stats answers {requests, streamed}. Stops on SIGTERM.
import http from 'node:http';

const args = new Map();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i], process.argv[i + 1]);
const port = Number(args.get('--port') ?? 0);
const reply = args.get('--reply') ?? 'pong from the fake model';
const chunks = Math.max(1, Number(args.get('--chunks') ?? 3));
const delayMs = Number(args.get('--delay-ms') ?? 0);
const model = args.get('--model') ?? 'fake-echo';

let requests = 0;
let streamed = 0;

function parts(text, n) {
  const size = Math.ceil(text.length / n);
  const out = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

function chunk(id, created, delta, finish = null, usage = undefined) {
  const c = { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] };
  if (usage) c.usage = usage;
  return `data: ${JSON.stringify(c)}\n\n`;
}

const usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 };

const server = http.createServer((req, res) => {
  const url = req.url.split('?')[0];
  if (req.method === 'GET' && url.endsWith('/models')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: model, object: 'model', created: 0, owned_by: 'fake' }] }));
    return;
  }
  if (req.method === 'GET' && url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ requests, streamed }));
    return;
  }
  if (req.method !== 'POST' || !url.endsWith('/chat/completions')) {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: `no route ${req.method} ${url}`, type: 'not_found' } }));
    return;
  }
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d) => {
    if (body.length < 8 * 1024 * 1024) body += d;
  });
  req.on('end', () => {
    requests++;
    let stream = false;
    try {
      stream = JSON.parse(body).stream === true;
    } catch {
      // not JSON: answer as a plain completion
    }
    const id = `chatcmpl-fake-${requests}`;
    const created = Math.floor(Date.now() / 1000);
    const answer = () => {
      if (!stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({
          id, object: 'chat.completion', created, model,
          choices: [{ index: 0, message: { role: 'assistant', content: reply }, finish_reason: 'stop' }],
          usage,
        }));
        return;
      }
      streamed++;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      let out = chunk(id, created, { role: 'assistant', content: '' });
      for (const p of parts(reply, chunks)) out += chunk(id, created, { content: p });
      out += chunk(id, created, {}, 'stop', usage);
      out += 'data: [DONE]\n\n';
      res.end(out);
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
});

server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`fake openai listening on 127.0.0.1:${server.address().port}\n`);
});
const stop = () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 500).unref();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
