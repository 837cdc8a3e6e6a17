// Starts the real drawbridge binary for a conformance test: a free loopback port, a fresh data
// folder, a known token in a config file. Every gateway started here is stopped when the test
// process exits, whatever happens.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const running = new Set();

process.on('exit', () => {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(130));
}

export function drawbridgeBinary() {
  const bin = process.env.DRAWBRIDGE_BIN;
  if (!bin) throw new Error('DRAWBRIDGE_BIN is not set: run this test through tests/conformance/run-node.sh');
  if (!fs.existsSync(bin)) throw new Error(`DRAWBRIDGE_BIN=${bin} does not exist`);
  return bin;
}

// A port nothing listens on right now: bind port 0 on loopback, read it, close.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function getStatus(url, timeoutMs) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const res = await fetch(url, { signal: ctl.signal });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts drawbridge. `agents` is the config's "agents" section (default: a fast echo agent that
 * streams deltas). Returns {port, url, httpUrl, token, dataDir, configPath, child, stderr(), stop()}.
 */
export async function startGateway({
  token = 'conformance-token-' + process.pid,
  agents = { main: { type: 'echo', delayMs: 50, chunkChars: 3 } },
  extraConfig = {},
  readyTimeoutMs = 10000,
} = {}) {
  const bin = drawbridgeBinary();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drawbridge-conf-'));
  const configPath = path.join(dataDir, 'config.json');
  const config = { ...extraConfig, gateway: { ...(extraConfig.gateway ?? {}), auth: { token } }, agents };
  fs.writeFileSync(configPath, JSON.stringify(config, null, 2));

  let lastError = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    // --config is an option of the program (before the subcommand), the rest of `run`.
    const child = spawn(bin, ['--config', configPath, 'run', '--port', String(port), '--data-dir', dataDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { DRAWBRIDGE_TICK_INTERVAL_MS: '500', ...process.env, DRAWBRIDGE_GATEWAY_TOKEN: token },
    });
    running.add(child);
    let log = '';
    const keep = (chunk) => {
      log += chunk.toString();
      if (log.length > 200000) log = log.slice(-100000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        running.delete(child);
        resolve({ code, signal });
      });
    });
    let exitInfo = null;
    exited.then((info) => {
      exitInfo = info;
    });

    const httpUrl = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + readyTimeoutMs;
    let ready = false;
    while (Date.now() < deadline && !exitInfo) {
      if ((await getStatus(`${httpUrl}/readyz`, 1000)) === 200) {
        ready = true;
        break;
      }
      await sleep(20);
    }
    if (!ready) {
      if (!exitInfo) {
        child.kill('SIGKILL');
        await exited;
      }
      lastError = new Error(
        `drawbridge did not become ready on port ${port} within ${readyTimeoutMs} ms ` +
          `(exit ${JSON.stringify(exitInfo)}); its log:\n${log}`,
      );
      // A port taken in between by someone else: try another one.
      if (/address already in use|in use|bind/i.test(log)) continue;
      throw lastError;
    }

    let stopping = null;
    const stop = async ({ timeoutMs = 5000 } = {}) => {
      if (!stopping) {
        stopping = (async () => {
          if (!exitInfo) {
            child.kill('SIGTERM');
            const timer = setTimeout(() => {
              if (!exitInfo) child.kill('SIGKILL');
            }, timeoutMs);
            await exited;
            clearTimeout(timer);
          }
          fs.rmSync(dataDir, { recursive: true, force: true });
          return exitInfo;
        })();
      }
      return stopping;
    };
    return {
      port,
      url: `ws://127.0.0.1:${port}`,
      httpUrl,
      token,
      dataDir,
      configPath,
      child,
      exited,
      stderr: () => log,
      stop,
    };
  }
  throw lastError;
}
