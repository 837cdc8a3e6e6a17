// Headless system Chromium through puppeteer-core, and what a test reads from a page: console
// errors, page errors, failed requests, the gateway frames (which request failed with what),
// visible error banners, and the page's text including the shadow roots of its components.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

// The Control UI's ways of showing an error (classes from its bundle, dist/control-ui/assets):
// callouts and banners on every page, the chat's error strip, per-page error lines.
export const errorSelectors = [
  '.callout.danger',
  '.oc-banner-error',
  '.chat-error',
  '.chat-history-error',
  '[role="alert"][class*="error"]',
  '[role="alert"][class*="failure"]',
  '.cron-error-banner',
  '.sessions-error',
  '.settings-status--error',
  '.systems-callout--error',
  '.sw-error',
];

// Chromium process groups started here, ended when the test process exits, whatever happens.
const groups = new Set();
process.on('exit', () => {
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Starts Chromium (CHROMIUM or /usr/bin/chromium) with a fresh profile; returns {browser, pid, close}. */
export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'drawbridge-ui-chromium-'));
  const args = [
    `--user-data-dir=${profile}`,
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-dev-shm-usage',
    '--disable-gpu',
    '--disable-extensions',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--metrics-recording-only',
    '--password-store=basic',
    '--use-mock-keychain',
    '--window-size=1440,900',
  ];
  // Chromium refuses to run as root with its sandbox on; in a container there is none to keep.
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    args,
    defaultViewport: { width: 1440, height: 900 },
    protocolTimeout: 30000,
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  const pid = browser.process()?.pid;
  if (pid) groups.add(pid);
  const close = async () => {
    try {
      await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
    } catch {
      // killed below
    }
    // puppeteer starts Chromium as a process group leader: end the group we started, by its id.
    if (pid) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
      groups.delete(pid);
    }
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { browser, pid, close };
}

/**
 * Watches a page: console errors, uncaught page errors, failed or 4xx/5xx requests, and every
 * gateway frame over its WebSockets (through the DevTools protocol, as the browser sees them).
 * `mark()` returns a position; `since(position)` what happened after it.
 */
export async function watchPage(page) {
  const log = { console: [], pageErrors: [], http: [], frames: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error') log.console.push({ text: msg.text(), url: page.url(), at: Date.now() });
  });
  page.on('pageerror', (err) => log.pageErrors.push({ text: String(err?.message ?? err), url: page.url(), at: Date.now() }));
  page.on('requestfailed', (req) => {
    log.http.push({ url: req.url(), failure: req.failure()?.errorText ?? 'failed', at: Date.now() });
  });
  page.on('response', (res) => {
    if (res.status() >= 400) log.http.push({ url: res.url(), status: res.status(), at: Date.now() });
  });

  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  const methods = new Map(); // request id -> method, per socket
  const onFrame = (dir) => (e) => {
    let f;
    try {
      f = JSON.parse(e.response.payloadData);
    } catch {
      return;
    }
    const key = `${e.requestId}/${f.id}`;
    if (dir === 'out' && f.type === 'req') methods.set(key, f.method);
    const entry = { dir, at: Date.now(), frame: f };
    if (f.type === 'res') entry.method = methods.get(key);
    log.frames.push(entry);
  };
  cdp.on('Network.webSocketFrameSent', onFrame('out'));
  cdp.on('Network.webSocketFrameReceived', onFrame('in'));

  const mark = () => ({
    console: log.console.length,
    pageErrors: log.pageErrors.length,
    http: log.http.length,
    frames: log.frames.length,
  });
  const since = (m = { console: 0, pageErrors: 0, http: 0, frames: 0 }) => ({
    console: log.console.slice(m.console),
    pageErrors: log.pageErrors.slice(m.pageErrors),
    http: log.http.slice(m.http),
    frames: log.frames.slice(m.frames),
  });
  return { log, mark, since };
}

// The requests the gateway answered with an error: [{method, message}], one per method+message.
export function failedRequests(frames) {
  const seen = new Map();
  for (const e of frames) {
    const f = e.frame;
    if (e.dir !== 'in' || f.type !== 'res' || f.ok !== false) continue;
    const message = f.error?.message ?? JSON.stringify(f.error);
    const k = `${e.method} ${message}`;
    if (!seen.has(k)) seen.set(k, { method: e.method ?? '?', message });
  }
  return [...seen.values()];
}

// The methods the gateway does not know, from its errors ("unknown method: x").
export function unknownMethods(frames) {
  return [...new Set(failedRequests(frames).filter((r) => /unknown method/i.test(r.message)).map((r) => r.method))].sort();
}

// In the page: every element under `root`, through open shadow roots.
function deepElementsSource() {
  return `function deepAll(root, sel) {
    const out = [];
    const walk = (node) => {
      if (node.querySelectorAll) out.push(...node.querySelectorAll(sel));
      const all = node.querySelectorAll ? node.querySelectorAll('*') : [];
      for (const el of all) if (el.shadowRoot) walk(el.shadowRoot);
    };
    walk(root);
    return [...new Set(out)];
  }
  function visible(el) {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
  }`;
}

/** The visible error banners on the page now: [{selector, text}]. */
export async function errorBanners(page) {
  return page.evaluate(
    (src, selectors) => {
      // eslint-disable-next-line no-new-func
      const { deepAll, visible } = new Function(`${src}; return { deepAll, visible };`)();
      const out = [];
      for (const sel of selectors) {
        for (const el of deepAll(document, sel)) {
          if (visible(el)) out.push({ selector: sel, text: (el.innerText || el.textContent || '').trim().slice(0, 300) });
        }
      }
      return out;
    },
    deepElementsSource(),
    errorSelectors,
  );
}

/** The page's visible text, shadow roots included. */
export async function pageText(page) {
  return page.evaluate((src) => {
    // eslint-disable-next-line no-new-func
    const { deepAll, visible } = new Function(`${src}; return { deepAll, visible };`)();
    const parts = [document.body?.innerText ?? ''];
    for (const host of deepAll(document, '*')) {
      if (host.shadowRoot) {
        for (const n of host.shadowRoot.children) {
          if (n.innerText && visible(n)) parts.push(n.innerText);
        }
      }
    }
    return parts.join('\n');
  }, deepElementsSource());
}
