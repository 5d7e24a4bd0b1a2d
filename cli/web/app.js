// gtask dashboard (issue 20): plain JavaScript, no libraries, no build step.
// Every piece of task data goes into the page through textContent (el()
// below), never as HTML: an argument "<script>" shows as text.
'use strict';

let session = null;        // {csrf, version, queues}
let timer = null;          // the current page's refresh
const main = document.getElementById('main');

// Which page is current: route() bumps it.  A page's fetch that completes
// after the user moved on must not draw over the new page.
let gen = 0;

// Replaces the page's content (null children are skipped) if page g is still
// the current one; false if it is not (the caller then draws nothing more).
function show(g, ...kids) {
  if (g !== gen) return false;
  main.replaceChildren(...kids.filter(k => k !== null && k !== undefined));
  return true;
}

// An element with text (never parsed as HTML) and children.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v; // CSSOM: allowed by the CSP, unlike a style attribute
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) {
    if (k === null || k === undefined) continue;
    e.appendChild(typeof k === 'string' || typeof k === 'number' ? document.createTextNode(String(k)) : k);
  }
  return e;
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({credentials: 'same-origin'}, opts || {}));
  const body = await r.json().catch(() => ({error: 'bad reply'}));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function post(path) {
  return api(path, {method: 'POST', headers: {'X-CSRF-Token': session.csrf}});
}

function ago(ms) {
  if (!ms) return '-';
  let d = Math.max(0, Date.now() - ms);
  if (d < 1000) return d + 'ms';
  d = Math.floor(d / 1000);
  if (d < 120) return d + 's';
  if (d < 7200) return Math.floor(d / 60) + 'm';
  if (d < 172800) return Math.floor(d / 3600) + 'h';
  return Math.floor(d / 86400) + 'd';
}

function argText(a) {
  return (a || []).map(v => typeof v === 'string' ? v : JSON.stringify(v)).join(' ');
}

function confirmThen(text, action) {
  const box = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  box.hidden = false;
  const yes = document.getElementById('confirm-yes'), no = document.getElementById('confirm-no');
  const done = () => { box.hidden = true; yes.onclick = no.onclick = null; };
  no.onclick = done;
  yes.onclick = async () => { done(); await action(); };
}

// A message above the page's table; set after the page is drawn again
// (drawing replaces it).
function flash(msg, isErr) {
  const f = document.getElementById('flash');
  if (f) { f.textContent = msg; f.className = isErr ? 'err' : 'muted'; }
}

// Statuses a task can still be cancelled in (gtask_client_cancel).
const CANCELLABLE = ['PENDING', 'STARTED', 'RETRY'];

// Asks, then cancels task id of queue; done() redraws the page.  A running
// task's worker is told to stop (within about a second).
function cancelTask(queue, id) {
  confirmThen('Cancel task ' + id + '? It will not run (a running one is told to stop).', async () => {
    try {
      const r = await post('/api/cancel?' + new URLSearchParams({queue, id}));
      await route();
      flash('cancelled ' + id + (r.running ? ' (running: its worker is told to stop)' : ''));
    } catch (e) { flash(e.message, true); }
  });
}

// A status as text with its colour (style.css: .st-pending ... .st-cancelled).
function statusBadge(status) {
  return el('span', {class: 'st st-' + String(status || 'none').toLowerCase()}, status || '-');
}

// ---------------------------------------------------------------- charts

const COLORS = ['#2e7d32', '#c62828', '#1565c0', '#ef6c00', '#6a1b9a', '#00838f', '#9e9d24', '#4e342e'];

// Draws lines (each {name, color, points: [[t, v], ...]}) on a canvas.
function drawLines(canvas, lines) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  let t0 = Infinity, t1 = -Infinity, vmax = 4;
  for (const l of lines) for (const [t, v] of l.points) { t0 = Math.min(t0, t); t1 = Math.max(t1, t); vmax = Math.max(vmax, v); }
  const L = 44, B = 18, T = 6;
  g.strokeStyle = '#dde1e8'; g.fillStyle = '#6b7385'; g.font = '11px sans-serif';
  for (let i = 0; i <= 4; i++) {
    const y = T + (h - T - B) * i / 4;
    g.beginPath(); g.moveTo(L, y); g.lineTo(w, y); g.stroke();
    const v = vmax * (4 - i) / 4;
    g.fillText(v >= 10 ? String(Math.round(v)) : String(Math.round(v * 10) / 10), 2, y + 4);
  }
  if (!isFinite(t0) || t1 <= t0) { g.fillText('collecting…', L + 8, h / 2); return; }
  g.fillText(Math.round((t1 - t0) / 1000) + ' s', w - 40, h - 4);
  for (const l of lines) {
    g.strokeStyle = l.color; g.lineWidth = 1.5; g.beginPath();
    l.points.forEach(([t, v], i) => {
      const x = L + (w - L) * (t - t0) / (t1 - t0), y = T + (h - T - B) * (1 - v / vmax);
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  }
}

function legend(lines) {
  return el('div', {class: 'legend'}, ...lines.map(l => el('span', {}, el('i', {style: 'background:' + l.color}), l.name)));
}

// ---------------------------------------------------------------- pages

// The counts of gtask stats, in its order.
const COUNTS = ['pending', 'active', 'scheduled', 'dead', 'succeeded', 'failed', 'cancelled'];

async function overview(g) {
  const o = await api('/api/overview');
  const s = o.samples;
  // Throughput: per-second differences of the finished counters, all queues.
  const sum = key => s.t.map((t, i) => Object.values(s.queues).reduce((a, q) => a + (q[key][i] || 0), 0));
  const rate = arr => arr.slice(1).map((v, i) => [s.t[i + 1], Math.max(0, (v - arr[i]) * 1000 / Math.max(1, s.t[i + 1] - s.t[i]))]);
  const thr = [
    {name: 'succeeded/s', color: COLORS[0], points: rate(sum('succeeded'))},
    {name: 'failed/s', color: COLORS[1], points: rate(sum('failed'))},
  ];
  const depth = Object.keys(s.queues).map((q, i) => ({
    name: q + ' pending', color: COLORS[(i + 2) % COLORS.length],
    points: s.t.map((t, k) => [t, s.queues[q].pending[k]]),
  }));
  const rows = o.queues.map(q => el('tr', {'data-queue': q.name},
    el('td', {}, el('a', {href: '#/queue/' + encodeURIComponent(q.name)}, q.name),
      q.paused ? el('span', {class: 'badge'}, 'paused') : null),
    ...COUNTS.map(k => el('td', {class: 'num', 'data-k': k}, q[k]))));
  const c1 = el('canvas', {id: 'chart-throughput'}), c2 = el('canvas', {id: 'chart-depth'});
  if (!show(g,
    el('h1', {}, 'Queues'),
    el('table', {id: 'queues'},
      el('thead', {}, el('tr', {}, el('th', {}, 'queue'), ...COUNTS.map(k => el('th', {class: 'num'}, k)))),
      el('tbody', {}, ...rows)),
    el('div', {class: 'charts'},
      el('div', {class: 'chart'}, el('h2', {}, 'Throughput (tasks per second)'), c1, legend(thr)),
      el('div', {class: 'chart'}, el('h2', {}, 'Queue depth (pending)'), c2, legend(depth))),
    el('p', {class: 'muted', id: 'samples', 'data-n': String(s.t.length)}, s.t.length + ' samples, one a second'))) return;
  drawLines(c1, thr);
  drawLines(c2, depth);
}

async function queuePage(g, name, state, after) {
  const q = new URLSearchParams({name, state, limit: '50'});
  if (after) q.set('after', after);
  const [page, ov] = await Promise.all([api('/api/queue?' + q), api('/api/overview')]);
  const info = ov.queues.find(x => x.name === name);
  const paused = !!(info && info.paused);
  const tabs = ['pending', 'active', 'scheduled', 'dead', 'failed'].map(s2 =>
    el('a', {href: '#/queue/' + encodeURIComponent(name) + '/' + s2, class: s2 === state ? 'on' : ''}, s2));
  // Queued, scheduled and leased tasks can be cancelled from their row.
  const cancellable = ['pending', 'scheduled', 'active'].includes(state);
  const rows = page.tasks.map(t => el('tr', {'data-id': t.task_id},
    el('td', {class: 'mono'}, el('a', {href: '#/task/' + encodeURIComponent(name) + '/' + t.task_id}, t.task_id)),
    el('td', {}, t.name === null ? '(malformed)' : t.name),
    el('td', {class: 'mono args'}, argText(t.args)),
    el('td', {class: 'num'}, t.attempts),
    el('td', {class: 'num'}, ago(t.created_ms)),
    el('td', {class: 'err'}, t.last_error || ''),
    el('td', {}, t.worker || (t.due_ms ? (t.state === 'failed' ? 'kept ' : 'due in ') + Math.max(0, Math.round((t.due_ms - Date.now()) / 1000)) + ' s' : '')),
    cancellable ? el('td', {}, el('button', {class: 'cancel danger', onclick: () => cancelTask(name, t.task_id)}, 'Cancel')) : null));
  const actions = state === 'dead' ? el('div', {class: 'actions'},
    el('button', {id: 'requeue-all', onclick: () => confirmThen('Requeue every dead task of ' + name + '?', async () => {
      try { const r = await post('/api/dead/requeue?' + new URLSearchParams({queue: name})); await route(); flash('requeued ' + r.requeued); }
      catch (e) { flash(e.message, true); }
    })}, 'Requeue all'),
    el('button', {id: 'purge', class: 'danger', onclick: () => confirmThen('Delete every dead task of ' + name + '?', async () => {
      try { const r = await post('/api/dead/purge?' + new URLSearchParams({queue: name})); await route(); flash('purged ' + r.purged); }
      catch (e) { flash(e.message, true); }
    })}, 'Purge')) : null;
  const act = paused ? 'resume' : 'pause';
  const pauseButton = el('button', {id: 'pause', onclick: () => confirmThen(
    (paused ? 'Resume' : 'Pause') + ' queue ' + name + ' for every worker?', async () => {
      try { await post('/api/queue/' + act + '?' + new URLSearchParams({queue: name})); await route(); flash(name + (paused ? ' resumed' : ' paused')); }
      catch (e) { flash(e.message, true); }
    })}, paused ? 'Resume queue' : 'Pause queue');
  show(g,
    el('h1', {}, 'Queue ', name, paused ? el('span', {class: 'badge'}, 'paused') : null),
    el('div', {class: 'actions'}, pauseButton),
    info ? el('p', {id: 'counts', class: 'muted'}, ...COUNTS.flatMap((k, i) =>
      [i ? ' · ' : '', k + ' ', el('b', {'data-k': k}, String(info[k]))])) : null,
    el('div', {class: 'tabs'}, ...tabs),
    el('div', {id: 'flash'}),
    actions,
    el('table', {id: 'tasks'},
      el('thead', {}, el('tr', {}, ...['id', 'name', 'arguments', 'attempts', 'age', 'last error', '', ...(cancellable ? [''] : [])].map(h => el('th', {}, h)))),
      el('tbody', {}, ...rows)),
    page.tasks.length ? null : el('p', {class: 'muted'}, 'No ' + state + ' tasks.'),
    page.next ? el('p', {}, el('a', {id: 'next', href: '#/queue/' + encodeURIComponent(name) + '/' + state + '/' + encodeURIComponent(page.next)}, 'Next page →')) : null);
}

async function taskPage(g, queue, id) {
  const t = await api('/api/task?' + new URLSearchParams({queue, id}));
  const m = t.message;
  const items = [
    ['id', t.task_id], ['queue', t.queue], ['status', statusBadge(t.status)], ['attempts', t.attempts],
    ['result', argText(t.values)], ['error', t.error || ''], ['error code', t.error_code || ''],
  ];
  if (m) items.push(['where', m.state], ['name', m.name === null ? '(malformed)' : m.name],
    ['arguments', argText(m.args)], ['runs before', m.attempts], ['lost', m.lost],
    ['retries allowed', m.retry_max], ['timeout', m.timeout_ms ? m.timeout_ms + ' ms' : 'none'],
    ['sent', m.created_ms ? new Date(m.created_ms).toISOString() + ' (' + ago(m.created_ms) + ' ago)' : '-'],
    ['due', m.due_ms ? new Date(m.due_ms).toISOString() : ''], ['last error', m.last_error || ''],
    ['worker', m.worker || '']);
  const actions = m && m.state === 'dead' ? el('div', {class: 'actions'},
    el('button', {id: 'requeue-one', onclick: () => confirmThen('Requeue task ' + id + '?', async () => {
      try { await post('/api/dead/requeue?' + new URLSearchParams({queue, id})); await route(); flash('requeued'); }
      catch (e) { flash(e.message, true); }
    })}, 'Requeue'))
    : t.status === 'FAILURE' ? el('div', {class: 'actions'},
    el('button', {id: 'rerun', onclick: () => confirmThen('Run task ' + id + ' again (same id, fresh attempts)?', async () => {
      try { await post('/api/rerun?' + new URLSearchParams({queue, id})); await route(); flash('rerun queued'); }
      catch (e) { flash(e.message, true); }
    })}, 'Rerun'))
    : CANCELLABLE.includes(t.status) ? el('div', {class: 'actions'},
    el('button', {id: 'cancel', class: 'danger', onclick: () => cancelTask(queue, id)}, 'Cancel task')) : null;
  show(g, el('h1', {}, 'Task'), el('div', {id: 'flash'}), actions,
    el('dl', {id: 'task'}, ...items.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {'data-k': k}, v instanceof Node ? v : String(v))])));
}

async function workersPage(g) {
  const w = await api('/api/workers');
  const rows = w.workers.map(x => el('tr', {},
    el('td', {class: 'mono'}, x.name), el('td', {}, x.host), el('td', {class: 'num pid'}, x.pid),
    el('td', {}, x.queues.join(', ')), el('td', {class: 'num'}, x.concurrency), el('td', {}, x.pool),
    el('td', {class: 'num'}, x.succeeded), el('td', {class: 'num'}, x.failed), el('td', {}, ago(x.started_ms)),
    el('td', {}, ...x.busy.map(b => el('div', {class: 'mono'}, b.name + ' ' + b.id + ' (' + ago(b.since_ms) + ')')))));
  show(g, el('h1', {}, 'Workers'),
    el('table', {id: 'workers'},
      el('thead', {}, el('tr', {}, ...['name', 'host', 'pid', 'queues', 'concurrency', 'pool', 'succeeded', 'failed', 'up', 'running now'].map(h => el('th', {}, h)))),
      el('tbody', {}, ...rows)),
    w.workers.length ? null : el('p', {class: 'muted'}, 'No live workers.'));
}

// ---------------------------------------------------------------- routing

async function route() {
  clearInterval(timer);
  const g = ++gen;
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  let page, live = false;
  if (parts[0] === 'queue' && parts[1]) page = () => queuePage(g, parts[1], parts[2] || 'pending', parts[3] || '');
  else if (parts[0] === 'task' && parts[1] && parts[2]) page = () => taskPage(g, parts[1], parts[2]);
  else if (parts[0] === 'workers') page = () => workersPage(g), live = true;
  else page = () => overview(g), live = true;
  const run = async () => {
    try { await page(); } catch (e) { show(g, el('p', {class: 'err'}, e.message)); }
  };
  await run();
  if (live && g === gen) timer = setInterval(run, 1000);
}

async function start() {
  session = await api('/api/session');
  document.getElementById('version').textContent = 'gtask ' + session.version;
  const sel = document.getElementById('search-queue');
  sel.replaceChildren(...session.queues.map(q => el('option', {value: q}, q)));
  document.getElementById('search').addEventListener('submit', ev => {
    ev.preventDefault();
    const id = document.getElementById('search-id').value.trim();
    if (id) location.hash = '#/task/' + encodeURIComponent(sel.value) + '/' + encodeURIComponent(id);
  });
  window.addEventListener('hashchange', route);
  await route();
}

start().catch(e => show(gen, el('p', {class: 'err'}, e.message)));
