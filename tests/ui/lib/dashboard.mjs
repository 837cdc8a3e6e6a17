// Steps on OpenClaw's Control UI that the dashboard test repeats: waiting for a gateway
// answer seen by the browser, for the page to have rendered it, for text, and the checks that
// make a page "clean" (no error banner, no console error, no page error).
import { errorBanners, failedRequests, pageText } from './browser.mjs';
import { waitFor } from './common.mjs';

// The responses to `method` seen after `mark` (newest last).
export function responses(watch, mark, method) {
  return watch.since(mark).frames.filter((e) => e.dir === 'in' && e.frame.type === 'res' && e.method === method);
}

// The methods hello-ok advertised, from the last hello-ok the page received (null: none yet).
export function advertised(watch) {
  const hellos = watch.log.frames.filter((e) => e.dir === 'in' && e.frame.payload?.type === 'hello-ok');
  return hellos.length ? (hellos.at(-1).frame.payload.features?.methods ?? []) : null;
}

/**
 * Waits for the gateway's answer to `method` after `mark` and returns its payload. Throws,
 * saying which, when the answer is an error, or when the page never asked (and whether
 * hello-ok advertised the method: the UI skips some methods that are not advertised).
 */
export async function answered(watch, mark, method, { timeoutMs = 15000 } = {}) {
  try {
    await waitFor(`the answer to ${method}`, () => responses(watch, mark, method).length > 0, { timeoutMs });
  } catch {
    const asked = watch.since(mark).frames.some((e) => e.dir === 'out' && e.frame.method === method);
    const adv = advertised(watch);
    throw new Error(
      asked
        ? `${method}: asked, no answer within ${timeoutMs} ms`
        : `${method}: the page never asked for it within ${timeoutMs} ms ` +
            `(hello-ok advertises it: ${adv === null ? 'no hello-ok yet' : adv.includes(method) ? 'yes' : 'no'})`,
    );
  }
  const res = responses(watch, mark, method).at(-1).frame;
  if (!res.ok) throw new Error(`${method} failed: ${res.error?.message ?? JSON.stringify(res.error)}`);
  return res.payload;
}

// A connect answered with hello-ok after `mark` (the page is logged in to the gateway).
export async function connected(watch, mark, { timeoutMs = 15000 } = {}) {
  const hello = await answered(watch, mark, 'connect', { timeoutMs });
  if (hello?.type !== 'hello-ok') throw new Error(`connect answered without hello-ok: ${JSON.stringify(hello)}`);
  return hello;
}

// Two animation frames: whatever the page rendered from the data it has is on screen.
export function settled(page) {
  return page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

export async function waitForText(page, text, { timeoutMs = 15000 } = {}) {
  await waitFor(`"${text}" on ${page.url()}`, async () => (await pageText(page)).includes(text), { timeoutMs });
}

/**
 * The page's problems since `mark`: visible error banners now, console errors, uncaught page
 * errors, failed HTTP requests; [] when clean. Each as one line for an assertion message.
 */
export async function problems(page, watch, mark) {
  const out = [];
  for (const b of await errorBanners(page)) out.push(`error banner (${b.selector}): ${b.text}`);
  const s = watch.since(mark);
  for (const c of s.console) out.push(`console error: ${c.text} (page ${c.url})`);
  for (const e of s.pageErrors) out.push(`page error: ${e.text}`);
  // net::ERR_ABORTED is a request the page itself cancelled (a navigation replacing another).
  for (const h of s.http.filter((h) => h.failure !== 'net::ERR_ABORTED')) out.push(`HTTP ${h.status ?? h.failure}: ${h.url}`);
  return out;
}

// For a failure message: which gateway requests failed since `mark`.
export function failedSince(watch, mark) {
  const f = failedRequests(watch.since(mark).frames);
  return f.length ? `; gateway errors meanwhile: ${f.map((r) => `${r.method}: ${r.message}`).join(' | ')}` : '';
}

// The chat events of run `runId` after `mark`.
export function chatEvents(watch, mark, runId) {
  return watch
    .since(mark)
    .frames.filter((e) => e.dir === 'in' && e.frame.type === 'event' && e.frame.event === 'chat')
    .map((e) => e.frame.payload)
    .filter((p) => p?.runId === runId);
}

// What keeps the page from sending, when it says so: the composer replaced by the model setup
// notice, or the queue held behind an unconfirmed message.
const blockers = [
  [/No AI provider configured/, 'the composer says "No AI provider configured" (the UI asks for one when agents.list gives the agent no model.primary)'],
  [/Queue paused/, 'the page queued the message behind an earlier one it still holds as unconfirmed ("Queue paused"; chat.history inputReceipts)'],
];

/**
 * The chat composer, once visible; throws at once when the login gate is shown instead (the
 * page has no token).
 */
export async function composer(page, { timeoutMs = 15000 } = {}) {
  const found = await page.waitForSelector('textarea[aria-label="Chat composer"], #login-gate-credential', {
    visible: true,
    timeout: timeoutMs,
  });
  if (await found.evaluate((el) => el.id === 'login-gate-credential')) {
    throw new Error('the login gate is shown instead of the chat: the page has no token');
  }
  return found;
}

/**
 * Types `text` in the chat composer and presses Enter; returns the chat.send answer
 * ({runId, status}). Throws when the page does not send it, saying why when the page shows it.
 */
export async function sendChat(page, watch, text, { timeoutMs = 15000 } = {}) {
  const box = await composer(page, { timeoutMs });
  const mark = watch.mark();
  await box.click();
  await box.type(text);
  await page.keyboard.press('Enter');
  let outcome;
  try {
    outcome = await waitFor(
      `chat.send of "${text}"`,
      async () => {
        if (watch.since(mark).frames.some((e) => e.dir === 'out' && e.frame.method === 'chat.send' && e.frame.params?.message === text)) return 'sent';
        const shown = await pageText(page);
        return blockers.find(([re]) => re.test(shown))?.[1] ?? false;
      },
      { timeoutMs },
    );
  } catch {
    outcome = `it did not within ${timeoutMs} ms`;
  }
  if (outcome !== 'sent') {
    const shown = (await pageText(page)).split('\n').filter(Boolean).slice(-12).join(' | ');
    throw new Error(`the page did not send "${text}": ${outcome}; the page shows: ${shown}${failedSince(watch, mark)}`);
  }
  return answered(watch, mark, 'chat.send', { timeoutMs });
}

/** How many chat bubbles of `role` ("user" or "assistant") contain `text`. */
export function bubbles(page, role, text) {
  return page.evaluate(
    (role, text) => [...document.querySelectorAll(`.chat-group.${role} .chat-bubble`)].filter((b) => b.innerText.includes(text)).length,
    role,
    text,
  );
}

/**
 * Sets logging.level to `level` in the config form: a segmented control (wa-radio), a select,
 * or a text field labelled "Level". Returns how it did it; throws with the form's labels when
 * there is no such field.
 */
export async function chooseLoggingLevel(page, level) {
  const how = await page.evaluate((level) => {
    const all = [];
    const walk = (root) => {
      for (const el of root.querySelectorAll('*')) {
        all.push(el);
        if (el.shadowRoot) walk(el.shadowRoot);
      }
    };
    walk(document);
    const radio = all.find((el) => el.tagName === 'WA-RADIO' && el.textContent.trim() === level);
    if (radio) {
      radio.scrollIntoView();
      return { kind: 'radio' };
    }
    const select = all.find((el) => el.tagName === 'SELECT' && [...el.options].some((o) => o.value === level || o.text === level));
    if (select) {
      const opt = [...select.options].find((o) => o.value === level || o.text === level);
      select.value = opt.value;
      select.dispatchEvent(new Event('input', { bubbles: true }));
      select.dispatchEvent(new Event('change', { bubbles: true }));
      return { kind: 'select' };
    }
    const labels = all
      .filter((el) => /settings-row__title|cfg-field__label|settings-row__label/.test(el.className ?? ''))
      .map((el) => el.textContent.trim())
      .slice(0, 40);
    return { kind: 'none', labels };
  }, level);
  if (how.kind === 'radio') {
    // A real click, as a user would: the radio group turns it into a change event.
    const handles = await page.$$('pierce/wa-radio');
    for (const h of handles) {
      if ((await h.evaluate((el) => el.textContent.trim())) === level) {
        await h.click();
        return 'radio';
      }
    }
    throw new Error(`the "${level}" option disappeared before it was clicked`);
  }
  if (how.kind === 'select') return 'select';
  throw new Error(`no logging level field with a "${level}" option in the config form; fields: ${how.labels.join(', ')}`);
}
