// The Gantry dashboard: signs in (when the server needs a token), follows the live stream and draws
// the cluster, the queue, running and finished work, logs, explanations, costs and charts. Controls
// the caller's role may not use are removed (the API refuses them anyway).

import { ApiError, getJson, readStream, request, sendJson, setToken, token } from './api.js';
import { drawLine } from './charts.js';

const SPAN_MS = 5 * 60 * 1000;
const FINISHED = new Set(['succeeded', 'failed', 'cancelled']);

const ui = {
  me: null,
  snap: null,
  history: [],
  rendered: {},
  selected: null,
  selectedState: null,
  log: { offset: 0, attempt: 0, busy: false, done: false },
  started: false,
};

const $ = (sel) => document.querySelector(sel);

/** An element with properties (`class`, `text`, `data-*`, attributes) and children. */
function h(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') e.textContent = String(v);
    else if (k === 'class') e.className = v;
    else if (k === 'title') e.title = String(v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '');
const pct = (v) => (v === null || v === undefined ? '–' : Math.round(v) + '%');
const gib = (mib) => (mib / 1024).toFixed(mib >= 10240 ? 0 : 1);

// ---------------------------------------------------------------------------------------------
// Signing in
// ---------------------------------------------------------------------------------------------

function showLogin(message) {
  $('#login-error').textContent = message || '';
  const d = $('#login');
  if (!d.open) d.showModal();
  $('#token').focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const t = $('#token').value.trim();
  if (!t) {
    $('#login-error').textContent = 'Paste a token.';
    return;
  }
  setToken(t);
  $('#login').close();
  await start();
}

function applyRoles() {
  const me = ui.me;
  $('#who').textContent = me.auth ? `${me.name} · ${me.role}` : `${me.name} · ${me.role} (no auth)`;
  $('#signout').hidden = !me.auth;
  for (const e of document.querySelectorAll('[data-needs]')) {
    if (me.can[e.dataset.needs]) e.hidden = false;
    else e.remove();
  }
}

async function start() {
  try {
    ui.me = await getJson('/api/whoami');
  } catch (e) {
    if (e.status === 401) {
      setToken(null);
      showLogin(`Not accepted: ${e.message}`);
    } else {
      $('#conn').textContent = 'error: ' + e.message;
    }
    return;
  }
  applyRoles();
  if (ui.started) return;
  ui.started = true;
  streamLoop();
  loadStrategies();
  loadCosts();
  if (!ui.costTimer) ui.costTimer = setInterval(loadCosts, 30000);
  loadQueues();
  if (!ui.queueTimer) ui.queueTimer = setInterval(loadQueues, 5000);
}

// ---------------------------------------------------------------------------------------------
// The live stream
// ---------------------------------------------------------------------------------------------

function setConn(live, text) {
  const c = $('#conn');
  c.className = 'conn ' + (live ? 'live' : 'off');
  c.textContent = text || (live ? 'live' : 'reconnecting');
}

async function streamLoop() {
  for (;;) {
    const ctl = new AbortController();
    let watchdog = setTimeout(() => ctl.abort(), 8000);
    try {
      await readStream('/api/events/stream', ctl.signal, (name, data) => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => ctl.abort(), 8000);
        if (name === 'snapshot') {
          setConn(true);
          onSnapshot(JSON.parse(data));
        } else if (name === 'error') {
          setConn(false, 'server: ' + data);
        }
      });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        clearTimeout(watchdog);
        setToken(null);
        setConn(false, 'signed out');
        showLogin('The token is no longer accepted.');
        ui.started = false;
        return;
      }
    }
    clearTimeout(watchdog);
    setConn(false);
    await sleep(2000);
  }
}

function onSnapshot(s) {
  ui.snap = s;
  ui.history.push([s.atMs, s.summary.meanUtilization, s.summary.waiting]);
  while (ui.history.length && ui.history[0][0] < s.atMs - SPAN_MS) ui.history.shift();
  renderSummary(s);
  renderGpus(s);
  renderQueue(s);
  renderRunning(s);
  renderFinished(s);
  renderCharts();
  $('#strategy-current').textContent = s.summary.strategy;
  refreshDetail();
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

function renderSummary(s) {
  const m = s.summary;
  const chip = (label, value, title) => h('span', { class: 'chip', title }, label + ' ', h('b', { text: value }));
  const chips = [
    chip('GPUs', String(m.gpuTotal), `backend ${m.backend}`),
    chip('free', String(m.gpuFree)),
    chip('busy', String(m.gpuBusy)),
    m.gpuUnhealthy ? chip('unhealthy', String(m.gpuUnhealthy)) : null,
    chip('util', pct(m.meanUtilization)),
    chip('memory', `${gib(m.memoryUsedMib)}/${gib(m.memoryTotalMib)} GiB`),
    chip('waiting', String(m.waiting)),
    chip('running', String(m.running)),
    chip('finished', String(m.finished)),
    chip('strategy', m.strategy),
  ].filter(Boolean);
  $('#summary').replaceChildren(...chips);
}

function meter(cls, parts, title) {
  return h('div', { class: 'meter ' + cls, title }, ...parts.map((p) => {
    const s = h('span');
    s.style.width = Math.max(0, Math.min(100, p)) + '%';
    return s;
  }));
}

function renderGpus(s) {
  $('#gpu-note').textContent = s.gpus.note ? `(${s.gpus.backend}: ${s.gpus.note})` : `(${s.gpus.backend})`;
  const cards = s.gpus.gpus.map((g) => {
    const ok = g.health === 'ok';
    const held = g.allocations.reduce((a, x) => a + x.milli, 0);
    const memPct = g.memoryMib ? ((g.memoryUsedMib || 0) / g.memoryMib) * 100 : 0;
    return h('div', { class: 'gpu' + (ok ? '' : ' unhealthy'), 'data-index': g.index, 'data-uuid': g.uuid },
      h('div', { class: 'top' },
        h('strong', { text: `GPU ${g.index} · ${g.model}` }),
        h('span', { class: 'health', text: g.health })),
      h('div', { class: 'kv' }, h('span', { text: 'utilisation' }), h('span', { class: 'util-pct', text: pct(g.utilization) })),
      meter('util', [g.utilization || 0], 'utilisation'),
      h('div', { class: 'kv' }, h('span', { text: 'memory' }),
        h('span', { text: g.memoryUsedMib === null || g.memoryUsedMib === undefined ? '–' : `${gib(g.memoryUsedMib)} / ${gib(g.memoryMib)} GiB` })),
      meter('mem', [memPct], 'memory used'),
      h('div', { class: 'kv' }, h('span', { text: 'allocated' }), h('span', { text: (held / 1000).toFixed(held % 1000 ? 2 : 0) + ' GPU' })),
      meter('share', g.allocations.map((a) => a.milli / 10), 'held by workloads'),
      h('div', { class: 'kv' },
        h('span', { class: 'temp', text: g.temperatureC === null || g.temperatureC === undefined ? '–' : `${Math.round(g.temperatureC)} °C` }),
        h('span', { text: g.powerW === null || g.powerW === undefined ? '' : `${Math.round(g.powerW)} W` })),
      h('div', { class: 'holders' },
        ...(g.allocations.length
          ? g.allocations.map((a) => h('span', { class: 'holder', 'data-workload': a.workload, title: `owner ${a.owner}` },
            `${a.workload} (${a.owner})${a.milli < 1000 ? ' ' + (a.milli / 1000).toFixed(2) : ''}`))
          : [h('span', { class: 'empty', text: 'idle' })])));
  });
  $('#gpu-list').replaceChildren(...(cards.length ? cards : [h('p', { class: 'empty', text: 'No GPUs on this machine.' })]));
}

/** Replaces a table body only when what it shows changed (so clicks are never lost mid-update). */
function fillTable(name, key, tbody, rows, emptyText, columns) {
  if (ui.rendered[name] === key) return;
  ui.rendered[name] = key;
  if (!rows.length) {
    tbody.replaceChildren(h('tr', { class: 'none' }, h('td', { colspan: columns, class: 'empty', text: emptyText })));
    return;
  }
  tbody.replaceChildren(...rows);
  markSelected();
}

function actions(w, cancellable, why) {
  const cell = h('td', { class: 'actions' });
  if (why) cell.append(h('button', { type: 'button', class: 'link why-btn', 'data-action': 'explain', 'data-id': w.id, text: 'why?' }));
  if (cancellable && ui.me && ui.me.can.cancel) {
    cell.append(h('button', { type: 'button', class: 'danger cancel', 'data-action': 'cancel', 'data-id': w.id, text: 'Cancel' }));
  }
  return cell;
}

function renderQueue(s) {
  const key = JSON.stringify(s.queue.map((e) => [e.position, e.queuePosition, e.workload.id, e.workload.state, e.workload.reason]));
  $('#queue-count').textContent = `(${s.summary.waiting} waiting)`;
  const rows = s.queue.map((e) => {
    const w = e.workload;
    return h('tr', { 'data-id': w.id },
      h('td', { class: 'pos', title: 'overall / in its queue', text: `#${e.position} / ${e.queuePosition}` }),
      h('td', { text: w.id }), h('td', { text: w.name }), h('td', { text: w.owner }),
      h('td', { text: w.queue }), h('td', { text: w.priority }),
      h('td', { class: 'why', text: w.reason || '' }),
      actions(w, true, true));
  });
  fillTable('queue', key, $('#queue-table tbody'), rows, 'Nothing waits.', 8);
}

function gpuIndexes(w) {
  return w.gpus.map((g) => {
    const [index, , milli] = g.split(':');
    return milli ? `${index} (${(Number(milli) / 1000).toFixed(2)})` : index;
  }).join(', ');
}

function renderRunning(s) {
  const key = JSON.stringify(s.running.map((w) => [w.id, w.state, w.gpus, w.startedAt]));
  $('#running-count').textContent = `(${s.summary.running})`;
  const rows = s.running.map((w) => h('tr', { 'data-id': w.id },
    h('td', { text: w.id }), h('td', { text: w.name }), h('td', { text: w.owner }), h('td', { text: w.queue }),
    h('td', { text: gpuIndexes(w) || '–' }), h('td', { text: fmtTime(w.startedAt) }),
    actions(w, true)));
  fillTable('running', key, $('#running-table tbody'), rows, 'Nothing runs.', 7);
}

function renderFinished(s) {
  const key = JSON.stringify(s.finished.map((w) => [w.id, w.state, w.finishedAt]));
  const rows = s.finished.map((w) => h('tr', { 'data-id': w.id },
    h('td', { text: w.id }), h('td', { text: w.name }), h('td', { text: w.owner }), h('td', { text: w.queue }),
    h('td', {}, h('span', { class: 'state ' + w.state, text: w.state })),
    h('td', { text: w.exitCode === null || w.exitCode === undefined ? '' : w.exitCode }),
    h('td', { class: 'why', text: w.reason || '' }),
    h('td', { text: fmtTime(w.finishedAt) }),
    h('td')));
  fillTable('finished', key, $('#finished-table tbody'), rows, 'Nothing has finished yet.', 9);
}

function renderCharts() {
  const util = ui.history.map(([t, u]) => [t, u]);
  const queue = ui.history.map(([t, , q]) => [t, q]);
  drawLine($('#chart-util'), util, { spanMs: SPAN_MS, yMax: 100, unit: '%' });
  drawLine($('#chart-queue'), queue, { spanMs: SPAN_MS, yMax: null, cls: 'queue' });
}

// ---------------------------------------------------------------------------------------------
// One workload: explanation and live log
// ---------------------------------------------------------------------------------------------

function markSelected() {
  for (const tr of document.querySelectorAll('tbody tr[data-id]')) {
    tr.classList.toggle('selected', tr.dataset.id === ui.selected);
  }
}

function findWorkload(id) {
  const s = ui.snap;
  if (!s) return null;
  const q = s.queue.find((e) => e.workload.id === id);
  if (q) return q.workload;
  return s.running.find((w) => w.id === id) || s.finished.find((w) => w.id === id) || null;
}

function select(id) {
  ui.selected = id;
  ui.selectedState = null;
  ui.log = { offset: 0, attempt: 0, busy: false, done: false };
  $('#detail').hidden = false;
  $('#detail-title').textContent = id;
  $('#log').textContent = '';
  $('#log-state').textContent = '';
  $('#explain').textContent = 'Loading…';
  markSelected();
  refreshDetail();
}

async function refreshDetail() {
  const id = ui.selected;
  if (!id) return;
  let w = findWorkload(id);
  if (!w) {
    try {
      w = (await getJson(`/api/workloads/${encodeURIComponent(id)}/status`)).workload;
    } catch (e) {
      $('#explain').textContent = e.message;
      return;
    }
    if (id !== ui.selected) return;
  }
  if (w.state !== ui.selectedState) {
    ui.selectedState = w.state;
    loadExplain(id);
  }
  if (w.attempts > 0 && w.attempts !== ui.log.attempt) {
    ui.log = { offset: 0, attempt: w.attempts, busy: false, done: false };
    $('#log').textContent = '';
  }
  if (w.attempts > 0) pullLog(id);
  else $('#log-state').textContent = 'not started yet';
}

function describeExplain(x) {
  if (x.summary) return x.summary;
  const lines = [`${x.id}: ${x.state}${x.stage ? ' (' + x.stage + ')' : ''}`];
  for (const r of x.reasons || []) lines.push(`  ${r.filter || r.stage}: ${r.nodes} node(s): ${r.reason}`);
  if (x.position) lines.push(`Position: ${x.position.queue} in its queue, ${x.position.overall} overall`);
  if (x.estimatedStart) {
    const e = x.estimatedStart;
    lines.push(`Estimated start: ${e.inSeconds === null ? 'unknown' : 'in ' + e.inSeconds + ' s'} (${e.confidence}; ${e.basis})`);
  }
  if (x.placement) lines.push(`Placed on ${x.placement.node}: GPUs ${x.placement.gpus}`);
  return lines.join('\n');
}

async function loadExplain(id) {
  let text;
  try {
    text = describeExplain(await getJson(`/api/workloads/${encodeURIComponent(id)}/explain`));
  } catch (e) {
    text = e.status === 404 && e.message === 'no such route'
      ? 'This server does not explain placements yet.'
      : e.message;
  }
  if (id === ui.selected) $('#explain').textContent = text;
}

async function pullLog(id) {
  const l = ui.log;
  if (l.busy || l.done) return;
  l.busy = true;
  try {
    const stream = $('#log-stream').value;
    const resp = await request('GET',
      `/api/workloads/${encodeURIComponent(id)}/logs?stream=${stream}&attempt=${l.attempt}&offset=${l.offset}`);
    const text = await resp.text();
    if (id !== ui.selected || l !== ui.log) return;
    const next = Number(resp.headers.get('x-next-offset'));
    l.offset = Number.isFinite(next) && next >= l.offset ? next : l.offset + text.length;
    const state = resp.headers.get('x-workload-state') || '';
    $('#log-state').textContent = `attempt ${l.attempt} · ${state}`;
    if (text) {
      const pre = $('#log');
      pre.append(text);
      pre.scrollTop = pre.scrollHeight;
    } else if (FINISHED.has(state)) {
      l.done = true;
    }
  } catch (e) {
    if (id === ui.selected) $('#log-state').textContent = e.message;
  } finally {
    l.busy = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Actions: submit, cancel, strategy
// ---------------------------------------------------------------------------------------------

function clearErrors(form) {
  for (const p of form.querySelectorAll('.field-error')) p.textContent = '';
  for (const i of form.querySelectorAll('.invalid')) {
    i.classList.remove('invalid');
    i.removeAttribute('aria-invalid');
  }
}

/** Shows an API error at the field it names (or the nearest one), else under the form. */
function showError(form, e) {
  const field = e.field;
  const slots = [...form.querySelectorAll('.field-error[data-for]')];
  let slot = null;
  if (field) {
    slot = slots.find((s) => s.dataset.for === field)
      || slots.filter((s) => s.dataset.for !== '*' && (field.startsWith(s.dataset.for + '.') || field.startsWith(s.dataset.for + '[')))
        .sort((a, b) => b.dataset.for.length - a.dataset.for.length)[0]
      || null;
  }
  if (slot) {
    slot.textContent = e.message;
    const input = form.querySelector(`[data-field="${slot.dataset.for}"]`);
    if (input) {
      input.classList.add('invalid');
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  } else {
    const general = form.querySelector('.field-error[data-for="*"]');
    general.textContent = field ? `${field}: ${e.message}` : e.message;
    const area = form.querySelector('textarea');
    if (area) area.classList.add('invalid');
  }
}

function specFromForm() {
  const spec = { name: $('#f-name').value.trim(), run: { command: ['sh', '-c', $('#f-command').value] } };
  const gpus = $('#f-gpus').value.trim();
  if (gpus !== '' && Number(gpus) !== 0) spec.resources = { gpu: { count: Number(gpus) } };
  const queue = $('#f-queue').value.trim();
  if (queue) spec.queue = queue;
  const timeout = $('#f-timeout').value.trim();
  if (timeout) spec.timeout = timeout;
  return spec;
}

async function submitted(form, send) {
  clearErrors(form);
  $('#submit-result').textContent = 'Submitting…';
  try {
    const w = await send();
    $('#submit-result').textContent = `Submitted ${w.id} (${w.name}): ${w.state}`;
    select(w.id);
  } catch (e) {
    $('#submit-result').textContent = '';
    showError(form, e);
  }
}

function switchTab(yaml) {
  $('#tab-form').setAttribute('aria-selected', String(!yaml));
  $('#tab-yaml').setAttribute('aria-selected', String(yaml));
  $('#submit-form').hidden = yaml;
  $('#submit-yaml').hidden = !yaml;
}

async function cancel(id, button) {
  button.disabled = true;
  try {
    const w = await (await request('POST', `/api/workloads/${encodeURIComponent(id)}/cancel`)).json();
    $('#submit-result').textContent = `Cancel of ${id}: ${w.state}`;
  } catch (e) {
    button.disabled = false;
    button.title = e.message;
    $('#submit-result').textContent = `Cancel of ${id}: ${e.message}`;
  }
}

function onTableClick(ev) {
  const button = ev.target.closest('button[data-action]');
  if (button) {
    ev.stopPropagation();
    if (button.dataset.action === 'cancel') cancel(button.dataset.id, button);
    else if (button.dataset.action === 'explain') select(button.dataset.id);
    return;
  }
  const tr = ev.target.closest('tr[data-id]');
  if (tr) select(tr.dataset.id);
}

async function loadStrategies() {
  try {
    const v = await getJson('/api/scheduler/strategy');
    $('#strategy-current').textContent = v.strategy;
    const sel = $('#strategy-select');
    if (sel) sel.replaceChildren(...v.available.map((n) => h('option', { value: n, selected: n === v.strategy, text: n })));
  } catch (e) {
    $('#strategy-current').textContent = e.message;
  }
}

async function applyStrategy(ev) {
  ev.preventDefault();
  const name = $('#strategy-select').value;
  try {
    const v = await sendJson('PUT', '/api/scheduler/strategy', { strategy: name });
    $('#strategy-current').textContent = v.strategy;
    $('#strategy-result').textContent = `Switched to ${v.strategy}.`;
  } catch (e) {
    $('#strategy-result').textContent = e.message;
  }
}

// ---------------------------------------------------------------------------------------------
// Costs and findings
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------------------------

function amounts(q) {
  const parts = ['gpus', 'cpu', 'memory'].filter((k) => q && q[k] !== undefined).map((k) => `${k} ${q[k]}`);
  return parts.length ? parts.join(', ') : '—';
}

async function loadQueues() {
  const body = $('#queues-table tbody');
  try {
    const list = await getJson('/api/queues');
    const rows = list.map((q) => h('tr', { 'data-queue': q.name },
      h('td', { text: q.name }),
      h('td', { class: 'guaranteed', text: q.declared ? amounts(q.guaranteed) : 'unlimited (not declared)' }),
      h('td', { text: q.cohort ? `${q.cohort} · ${q.borrowingLimit ? amounts(q.borrowingLimit) : 'unlimited'}` : '—' }),
      h('td', { text: String(q.weight) }),
      h('td', { class: 'used', text: q.used.gpus.toFixed(2) }),
      h('td', { text: q.share.toFixed(3) }),
      h('td', { text: String(q.running) }),
      h('td', { text: String(q.pending) })));
    body.replaceChildren(...(rows.length ? rows
      : [h('tr', {}, h('td', { colspan: 8, class: 'empty', text: 'No queues: every queue is unlimited (declare one with gantry queue set).' }))]));
  } catch (e) {
    body.replaceChildren(h('tr', {}, h('td', { colspan: 8, class: 'error', text: e.message })));
  }
}

async function loadCosts() {
  try {
    const c = await getJson('/api/costs/analysis?window=7d&group_by=queue');
    const money = (v) => (v === null || v === undefined ? 'unpriced' : `${v} ${c.currency}`);
    const rows = c.groups.map((g) => h('tr', {},
      h('td', { text: g.key }), h('td', { text: money(g.cost) }), h('td', { text: money(g.idle_cost) }),
      h('td', { text: g.gpu_hours.toFixed(2) })));
    $('#cost-table tbody').replaceChildren(...(rows.length ? rows
      : [h('tr', {}, h('td', { colspan: 4, class: 'empty', text: 'No GPU time used in the window.' }))]));
    $('#cost-total').textContent = money(c.total);
    $('#cost-idle').textContent = money(c.idle_total);
    $('#cost-hours').textContent = c.gpu_hours.toFixed(2);
  } catch (e) {
    $('#cost-table tbody').replaceChildren(h('tr', {}, h('td', { colspan: 4, class: 'error', text: e.message })));
  }
  loadFindings();
}

async function loadFindings() {
  const box = $('#findings');
  let f;
  try {
    f = await getJson('/api/costs/findings?window=7d');
  } catch (e) {
    box.replaceChildren(h('p', { class: 'empty', text: e.status === 404 && e.message === 'no such route'
      ? 'This server does not report cost findings yet.' : e.message }));
    return;
  }
  const items = [];
  const cur = f.currency || '';
  for (const u of f.underusedGpus || []) {
    items.push(`GPU ${u.gpu} (${u.model}): mean utilisation ${pct(u.meanUtilization)} over ${Number(u.allocatedHours).toFixed(1)} allocated hours; idle cost ${u.idleCost} ${cur}, about ${u.monthlyWaste} ${cur} a month.`);
  }
  for (const r of f.rightSizing || []) items.push(r.message || `${(r.workloads || []).join(', ')}: ${r.from} → ${r.to}`);
  for (const s of f.spotCandidates || []) {
    items.push(`${s.workload} (${s.queue}) could run on spot: ${s.spotCost} instead of ${s.onDemandCost} ${cur}, saving ${s.savingPerMonth} ${cur} a month.`);
  }
  box.replaceChildren(...(items.length
    ? [h('ul', {}, ...items.map((t) => h('li', { class: 'finding', text: t })))]
    : [h('p', { class: 'empty', text: 'No findings: nothing looks wasteful in the window.' })]));
}

// ---------------------------------------------------------------------------------------------
// Wiring
// ---------------------------------------------------------------------------------------------

function wire() {
  $('#login-form').addEventListener('submit', signIn);
  $('#signout').addEventListener('click', () => {
    setToken(null);
    location.reload();
  });
  for (const t of ['#queue-table', '#running-table', '#finished-table']) {
    $(t + ' tbody').addEventListener('click', onTableClick);
  }
  $('#detail-close').addEventListener('click', () => {
    ui.selected = null;
    $('#detail').hidden = true;
    markSelected();
  });
  $('#log-stream').addEventListener('change', () => {
    ui.log = { offset: 0, attempt: ui.log.attempt, busy: false, done: false };
    $('#log').textContent = '';
    refreshDetail();
  });
  const form = $('#submit-form');
  if (form) {
    $('#tab-form').addEventListener('click', () => switchTab(false));
    $('#tab-yaml').addEventListener('click', () => switchTab(true));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submitted(form, () => sendJson('POST', '/api/workloads', specFromForm()));
    });
    const yaml = $('#submit-yaml');
    yaml.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submitted(yaml, async () => (await request('POST', '/api/workloads', $('#spec-yaml').value, 'application/yaml')).json());
    });
  }
  const strategy = $('#strategy-form');
  if (strategy) strategy.addEventListener('submit', applyStrategy);
}

wire();
if (document.querySelector('meta[name="gantry-auth"]').content === 'on' && !token()) {
  showLogin();
} else {
  start();
}
