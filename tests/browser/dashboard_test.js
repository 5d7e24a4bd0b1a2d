// dashboard_test.js -- the gtask dashboard in a real browser (issue 20):
// Debian's chromium, headless, driven by puppeteer-core.  run.sh starts
// redis, a worker and the dashboard, and passes their addresses here:
//   GTASK  the gtask binary   URL  the dashboard   REDIS_URL  for `gtask stats`
//   WORKER_PID  the worker's pid   XSS_ID  a pending task whose argument is
//   <script>...</script>   FAILED_ID  a task of default that ended FAILURE
//   SHOTS  where screenshots go
// Each check prints "ok N - what" or "not ok N - what: why"; the last line is
// "N passed, N failed".
'use strict';
const puppeteer = require('puppeteer-core');
const {execFileSync} = require('child_process');

const env = process.env;
let passed = 0, failed = 0;
function check(what, cond, why) {
  if (cond) { passed++; console.log(`ok ${passed + failed} - ${what}`); }
  else { failed++; console.log(`not ok ${passed + failed} - ${what}: ${why || ''}`); }
}

function gtask(...args) {
  return execFileSync(env.GTASK, ['--redis', env.REDIS_URL, ...args], {encoding: 'utf8'});
}

function stats(queue) {
  return JSON.parse(gtask('--json', 'stats', queue).trim());
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

async function waitFor(page, fn, arg, ms) {
  await page.waitForFunction(fn, {timeout: ms || 30000, polling: 100}, arg);
}

// A hash change keeps the old page's DOM until the new page's data has come:
// until then a selector the two pages share (#pause, #cancel, #task dd)
// finds the old one -- read, or clicked, in place of the new.  So after each
// goto, wait for the page asked for, then for what is on it.
async function onQueuePage(page, queue, state) {
  await waitFor(page, ([q, st]) => {
    const h = document.querySelector('h1'), on = document.querySelector('.tabs a.on');
    return !!h && h.firstChild?.textContent === 'Queue ' && h.childNodes[1]?.textContent === q &&
           !!on && on.textContent === st;
  }, [queue, state]);
}

async function onTaskPage(page, id) {
  await waitFor(page, i => document.querySelector('#task dd[data-k="id"]')?.textContent === i, id);
}

// Clicks the element sel names as the page has it now: found and clicked in
// one evaluation inside the page.  page.click() finds the node, then moves
// the mouse to it in a second step, and a page refresh that re-renders in
// between leaves it "detached from document" (seen under load).
async function click(page, sel) {
  await waitFor(page, s => {
    const el = document.querySelector(s);
    if (!el) return false;
    el.click();
    return true;
  }, sel);
}

// Polls cond (a function of nothing) every 100 ms for up to ms: true once it holds.
async function until(cond, ms) {
  for (const end = Date.now() + (ms || 30000); Date.now() < end; await sleep(100)) if (cond()) return true;
  return cond();
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage();
  await page.setViewport({width: 1280, height: 860});
  const errors = [];
  page.on('pageerror', e => errors.push(String(e)));
  // A dialog would mean injected script ran (alert in the XSS argument).
  let dialogs = 0;
  page.on('dialog', async d => { dialogs++; await d.dismiss(); });

  try {
    // ---- overview: the numbers are gtask stats'.
    await page.goto(env.URL + '/', {waitUntil: 'networkidle0'});
    await waitFor(page, () => document.querySelector('#queues tr[data-queue="default"]'));
    // The workload has finished (run.sh waited): the counts are stable.
    for (const q of ['default', 'xss']) {
      const want = stats(q);
      await waitFor(page, ([q2, w]) => {
        const row = document.querySelector(`#queues tr[data-queue="${q2}"]`);
        if (!row) return false;
        return ['pending', 'active', 'scheduled', 'dead', 'succeeded', 'failed', 'cancelled'].every(
          k => row.querySelector(`td[data-k="${k}"]`).textContent === String(w[k]));
      }, [q, want]);
      check(`overview numbers of ${q} match gtask stats`, true);
    }
    // ---- the charts advance: more samples a few seconds later, and the
    // throughput canvas drawn differently once tasks finish.
    // (Waited for, not slept on: the page redraws every second, the samples
    // come one a second, and a loaded machine stretches both.)
    const n0 = await page.$eval('#samples', e => +e.dataset.n);
    const c0 = await page.$eval('#chart-throughput', c => c.toDataURL());
    gtask('send', 'add', '1', '2', '--count', '50');
    await waitFor(page, ([n, c]) => +document.querySelector('#samples')?.dataset.n >= n + 2 &&
                                    document.querySelector('#chart-throughput')?.toDataURL() !== c, [n0, c0]);
    const n1 = await page.$eval('#samples', e => +e.dataset.n);
    const c1 = await page.$eval('#chart-throughput', c => c.toDataURL());
    check('the charts advance (samples ' + n0 + ' -> ' + n1 + ')', n1 > n0);
    check('the throughput chart changes as tasks finish', c0 !== c1);
    await page.screenshot({path: env.SHOTS + '/overview.png'});

    // ---- queue page: the XSS argument is text, and inert.
    await page.goto(env.URL + '/#/queue/xss/pending', {waitUntil: 'networkidle0'});
    await onQueuePage(page, 'xss', 'pending');
    await waitFor(page, () => document.querySelector('#tasks tbody tr'));
    const args = await page.$eval('#tasks tbody td.args', e => e.textContent);
    check('a <script> argument shows as text', args.includes('<script>window.__xss=1;alert(1)</script>'), args);
    const injected = await page.evaluate(() => ({
      flag: window.__xss === undefined, scripts: document.querySelectorAll('main script').length,
    }));
    check('the <script> argument did not run', injected.flag && injected.scripts === 0 && dialogs === 0,
          JSON.stringify(injected) + ' dialogs ' + dialogs);
    await page.screenshot({path: env.SHOTS + '/queue.png'});

    // ---- search by id -> task page.
    await page.select('#search-queue', 'xss');
    await page.type('#search-id', env.XSS_ID);
    await click(page, '#search button');
    await onTaskPage(page, env.XSS_ID);
    await waitFor(page, () => document.querySelector('#task dd[data-k="arguments"]'));
    const targ = await page.$eval('#task dd[data-k="arguments"]', e => e.textContent);
    const tstatus = await page.$eval('#task dd[data-k="status"]', e => e.textContent);
    check('search by id opens the task page', targ.includes('<script>') && tstatus === 'PENDING', targ + ' ' + tstatus);
    await page.screenshot({path: env.SHOTS + '/task.png'});

    // ---- workers page: the worker with its pid.
    await page.goto(env.URL + '/#/workers', {waitUntil: 'networkidle0'});
    await waitFor(page, pid => [...document.querySelectorAll('#workers td.pid')].some(td => td.textContent === pid),
                  env.WORKER_PID);
    check('the workers page lists the worker with its pid', true);
    await page.screenshot({path: env.SHOTS + '/workers.png'});

    // ---- an action: requeue the dead task of xss, behind a confirmation.
    const before = stats('xss');
    await page.goto(env.URL + '/#/queue/xss/dead', {waitUntil: 'networkidle0'});
    await onQueuePage(page, 'xss', 'dead');
    await waitFor(page, () => document.querySelector('#requeue-all') && document.querySelector('#tasks tbody tr'));
    await click(page, '#requeue-all');
    await waitFor(page, () => !document.getElementById('confirm').hidden);
    check('the action asks for confirmation first', stats('xss').dead === before.dead);
    await click(page, '#confirm-yes');
    await waitFor(page, () => /requeued 1/.test(document.getElementById('flash')?.textContent || ''));
    const after = stats('xss');
    check('requeue moved the dead task back', after.dead === before.dead - 1 && after.pending === before.pending + 1,
          JSON.stringify([before, after]));

    // ---- pause and resume a queue, behind a confirmation.
    await page.goto(env.URL + '/#/queue/xss/pending', {waitUntil: 'networkidle0'});
    await onQueuePage(page, 'xss', 'pending'); // (the dead tab has a #pause too)
    await waitFor(page, () => /Pause queue/.test(document.querySelector('#pause')?.textContent || ''));
    await click(page, '#pause');
    await waitFor(page, () => !document.getElementById('confirm').hidden);
    await click(page, '#confirm-yes');
    await waitFor(page, () => /Resume queue/.test(document.querySelector('#pause')?.textContent || ''));
    check('pause: gtask stats says paused', stats('xss').paused === true);
    await page.screenshot({path: env.SHOTS + '/paused.png'});
    await click(page, '#pause');
    await waitFor(page, () => !document.getElementById('confirm').hidden);
    await click(page, '#confirm-yes');
    await waitFor(page, () => /Pause queue/.test(document.querySelector('#pause')?.textContent || ''));
    check('resume: gtask stats says not paused', stats('xss').paused === false);

    // ---- rerun a failed task from its page (the failed list links to it).
    const failedBefore = stats('default').failed;
    await page.goto(env.URL + '/#/queue/default/failed', {waitUntil: 'networkidle0'});
    await onQueuePage(page, 'default', 'failed');
    await waitFor(page, id => [...document.querySelectorAll('#tasks a')].some(a => a.textContent === id), env.FAILED_ID);
    await click(page, `#tasks a[href$="${env.FAILED_ID}"]`);
    await onTaskPage(page, env.FAILED_ID);
    await waitFor(page, () => document.querySelector('#rerun'));
    await click(page, '#rerun');
    await waitFor(page, () => !document.getElementById('confirm').hidden);
    await click(page, '#confirm-yes');
    await waitFor(page, () => /rerun queued/.test(document.getElementById('flash')?.textContent || ''));
    await until(() => stats('default').failed !== failedBefore);
    check('rerun ran the failed task again (failed ' + failedBefore + ' -> ' + stats('default').failed + ')',
          stats('default').failed === failedBefore + 1);

    // ---- cancel a running task from its page, behind a confirmation; the
    // page then shows CANCELLED, and so does `gtask status`.
    // The first line: a running task that reported progress gets a second,
    // "progress D/T (P%) ..." (the sleep task reports within 300 ms), so a
    // comparison of the whole output passed or failed with the timing.
    const status = id => gtask('status', id).split('\n')[0].trim();
    const sleepId = gtask('send', 'sleep', '60000', '--timeout', '2m').trim();
    await until(() => status(sleepId) === 'STARTED');
    // From the rerun task's page, which offers a Cancel of its own.
    await page.goto(env.URL + '/#/task/default/' + sleepId, {waitUntil: 'networkidle0'});
    await onTaskPage(page, sleepId);
    await waitFor(page, () => document.querySelector('#cancel'));
    const shown = await page.$eval('#task dd[data-k="status"]', e => e.textContent);
    check('a running task offers Cancel', shown === 'STARTED', shown);
    await click(page, '#cancel');
    await waitFor(page, () => !document.getElementById('confirm').hidden);
    const asked = status(sleepId);
    check('cancel asks for confirmation first', asked === 'STARTED', asked);
    await click(page, '#confirm-yes');
    await waitFor(page, () => document.querySelector('#task dd[data-k="status"]')?.textContent === 'CANCELLED');
    const after2 = await page.evaluate(() => ({
      flash: document.getElementById('flash')?.textContent || '', button: !!document.querySelector('#cancel'),
      colour: document.querySelector('#task dd[data-k="status"] .st-cancelled') !== null,
    }));
    check('the task page shows CANCELLED, no Cancel button, the worker told',
          !after2.button && after2.colour && /running: its worker is told to stop/.test(after2.flash), JSON.stringify(after2));
    check('cancel from the task page: gtask status says CANCELLED', status(sleepId) === 'CANCELLED', status(sleepId));
    await page.screenshot({path: env.SHOTS + '/cancelled.png'});

    // ---- cancel a delayed task from its row on the queue page.
    const delayedId = gtask('send', 'echo', 'later', '--delay', '10m').trim();
    await page.goto(env.URL + '/#/queue/default/scheduled', {waitUntil: 'networkidle0'});
    await onQueuePage(page, 'default', 'scheduled');
    await waitFor(page, id => document.querySelector(`#tasks tr[data-id="${id}"] button.cancel`), delayedId);
    await click(page, `#tasks tr[data-id="${delayedId}"] button.cancel`);
    await waitFor(page, () => !document.getElementById('confirm').hidden);
    await click(page, '#confirm-yes');
    await waitFor(page, id => /cancelled/.test(document.getElementById('flash')?.textContent || '') &&
                              !document.querySelector(`#tasks tr[data-id="${id}"]`), delayedId);
    check('cancel from a queue row: gtask status says CANCELLED, the row is gone',
          status(delayedId) === 'CANCELLED' && stats('default').scheduled === 0, status(delayedId));
    // The queue page counts the two cancels, as gtask stats does.
    await page.goto(env.URL + '/#/queue/default/pending', {waitUntil: 'networkidle0'});
    const cancelled = stats('default').cancelled;
    await waitFor(page, n => document.querySelector('#counts b[data-k="cancelled"]')?.textContent === String(n), cancelled);
    check('the queue page shows the cancelled count of gtask stats (2)', cancelled === 2, String(cancelled));

    // ---- without the CSRF header, a POST is refused and changes nothing.
    const refused = await page.evaluate(async id => [
      (await fetch('/api/dead/purge?queue=xss', {method: 'POST'})).status,
      (await fetch('/api/cancel?' + new URLSearchParams({queue: 'xss', id}), {method: 'POST'})).status,
    ], env.XSS_ID);
    check('a POST without the CSRF token is refused (403)', refused[0] === 403 && refused[1] === 403, String(refused));
    const xssStatus = gtask('--queue', 'xss', 'status', env.XSS_ID).trim();
    check('the refused cancel changed nothing', xssStatus === 'PENDING', xssStatus);
    check('no page errors', errors.length === 0, errors.join('; '));
  } catch (e) {
    check('the test ran to the end', false, e.stack);
  } finally {
    await browser.close();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
