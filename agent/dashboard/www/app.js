// The Gantry fleet dashboard page (docs/dashboard.md).
// Everything shown comes from devices over MQTT and is hostile: it reaches the page only
// through textContent and attribute values, never as markup.
'use strict';

const PAGE_SIZE = 100;
const FINAL = new Set(['DONE', 'ERROR', 'WONTGO', 'CANCELLED']);

const app = {
  devices: new Map(),   // id -> summary
  rollouts: new Map(),  // name -> summary
  stats: {},
  broker: null,
  token: sessionStorage.getItem('gantry-token') || '',
  info: null,
  view: 'devices',      // devices | device | rollouts | rollout
  deviceId: null,
  rolloutName: null,
  devPage: 0,
  rdevPage: 0,
  source: null,
  renderPending: false,
  detailsPending: false,
  groups: new Set(),
  statuses: new Set(),
};

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function str(v) {
  if (v === null || v === undefined || v === '') return '–';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function age(tsMs) {
  if (typeof tsMs !== 'number') return '–';
  const s = Math.max(0, Math.round((Date.now() - tsMs) / 1000));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min';
  if (s < 86400) return Math.floor(s / 3600) + ' h';
  return Math.floor(s / 86400) + ' d';
}

function timeText(tsMs) {
  return typeof tsMs === 'number' ? new Date(tsMs).toLocaleString() : '–';
}

function isoMs(text) {
  const t = typeof text === 'string' ? Date.parse(text) : NaN;
  return Number.isNaN(t) ? null : t;
}

function pair(p) {
  return Array.isArray(p) && p.length === 2 ? p[0] + '/' + p[1] : '–';
}

function statusClass(status) {
  if (status === 'DONE' || status === 'SUCCEEDED') return 'ok';
  if (status === 'ERROR' || status === 'WONTGO' || status === 'FAILED' || status === 'TIMED_OUT') return 'bad';
  if (status === 'CANCELLED' || status === 'SKIPPED') return 'muted';
  return status ? 'busy' : '';
}

// ---- token -------------------------------------------------------------------------------

function takeTokenFromUrl() {
  // The dashboard prints its URL with #token=...; the fragment never reaches a server.
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return;
  app.token = decodeURIComponent(m[1]);
  sessionStorage.setItem('gantry-token', app.token);
  history.replaceState(null, '', location.pathname + location.search);
}

function askToken(why) {
  $('token-why').textContent = why;
  $('token-box').hidden = false;
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  app.token = $('token-input').value.trim();
  sessionStorage.setItem('gantry-token', app.token);
  $('token-input').value = '';
  $('token-box').hidden = true;
  connect();
});

function authHeaders() {
  return app.token ? { Authorization: 'Bearer ' + app.token } : {};
}

// ---- the event stream ----------------------------------------------------------------------

function connect() {
  if (app.source) app.source.close();
  const url = '/api/events' + (app.info && app.info.view_token ? '?token=' + encodeURIComponent(app.token) : '');
  const src = new EventSource(url);
  app.source = src;
  src.addEventListener('snapshot', (ev) => {
    const snap = JSON.parse(ev.data);
    app.devices.clear();
    app.rollouts.clear();
    applyChanges(snap);
  });
  src.addEventListener('delta', (ev) => applyChanges(JSON.parse(ev.data)));
  src.addEventListener('open', () => setConn());
  src.addEventListener('error', () => {
    setConn('dashboard unreachable, retrying…');
    if (src.readyState === EventSource.CLOSED && app.info && app.info.view_token) {
      askToken('The dashboard refused the stream: enter its token.');
    }
  });
}

function applyChanges(ch) {
  for (const d of ch.devices || []) {
    app.devices.set(d.id, d);
    for (const g of d.groups || []) app.groups.add(g);
    if (d.status) app.statuses.add(d.status);
  }
  for (const r of ch.rollouts || []) app.rollouts.set(r.name, r);
  if (ch.removed) {
    for (const id of ch.removed.devices || []) app.devices.delete(id);
    for (const n of ch.removed.rollouts || []) app.rollouts.delete(n);
  }
  if (ch.stats) app.stats = ch.stats;
  if (ch.broker) app.broker = ch.broker;
  if (app.view === 'device' && (ch.devices || []).some((d) => d.id === app.deviceId)) loadDetails();
  setConn();
  scheduleRender();
}

function setConn(problem) {
  const c = $('conn');
  if (problem) {
    c.textContent = problem;
    c.className = 'conn down';
  } else if (app.broker && !app.broker.connected) {
    c.textContent = 'broker ' + app.broker.uri + ' unreachable, retrying…';
    c.className = 'conn down';
  } else if (app.broker) {
    c.textContent = 'live from ' + app.broker.uri;
    c.className = 'conn up';
  }
  const s = app.stats;
  $('counts').textContent = s.devices === undefined ? '' :
    `${s.devices} devices, ${s.online} online, ${s.rollouts} rollouts` +
    (s.dropped ? `, ${s.dropped} bad messages ignored` : '');
}

// Changes arrive at most every batch interval; the page draws at most once per frame.
function scheduleRender() {
  if (app.renderPending) return;
  app.renderPending = true;
  requestAnimationFrame(() => {
    app.renderPending = false;
    render();
  });
}

function render() {
  $('devices-view').hidden = app.view !== 'devices';
  $('device-view').hidden = app.view !== 'device';
  $('rollouts-view').hidden = app.view !== 'rollouts';
  $('rollout-view').hidden = app.view !== 'rollout';
  $('tab-devices').classList.toggle('active', app.view === 'devices' || app.view === 'device');
  $('tab-rollouts').classList.toggle('active', app.view === 'rollouts' || app.view === 'rollout');
  if (app.view === 'devices') renderDevices();
  if (app.view === 'rollouts') renderRollouts();
  if (app.view === 'rollout') renderRollout();
}

function show(view) {
  app.view = view;
  render();
}

// ---- select boxes and pagers ---------------------------------------------------------------

function syncOptions(select, values) {
  const have = new Set(Array.from(select.options).map((o) => o.value));
  for (const v of Array.from(values).sort()) {
    if (have.has(v)) continue;
    const o = el('option', null, v);
    o.value = v;
    select.appendChild(o);
  }
}

function pager(box, page, total, onChange) {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  page = Math.min(page, pages - 1);
  box.querySelector('.page-text').textContent = `page ${page + 1} of ${pages}`;
  box.onclick = (ev) => {
    const what = ev.target.dataset && ev.target.dataset.page;
    if (!what) return;
    const next = { first: 0, prev: Math.max(0, page - 1), next: Math.min(pages - 1, page + 1), last: pages - 1 }[what];
    onChange(next);
  };
  return page;
}

// Rewrites a table body with exactly n rows, reusing the rows it has (cheap at 1,000 devices).
function sizeBody(tbody, n, cols) {
  while (tbody.rows.length > n) tbody.deleteRow(-1);
  while (tbody.rows.length < n) {
    const tr = tbody.insertRow();
    for (let i = 0; i < cols; ++i) tr.insertCell();
  }
  return tbody.rows;
}

function setCell(td, text, cls) {
  if (td.textContent !== text) td.textContent = text;
  const c = cls || '';
  if (td.className !== c) td.className = c;
}

// ---- devices -------------------------------------------------------------------------------

function filteredDevices() {
  const text = $('f-text').value.trim().toLowerCase();
  const group = $('f-group').value, status = $('f-status').value, online = $('f-online').value;
  const out = [];
  for (const d of app.devices.values()) {
    if (text && !d.id.toLowerCase().includes(text)) continue;
    if (group && !(d.groups || []).includes(group)) continue;
    if (status && d.status !== status) continue;
    if (online === 'online' && d.online !== true) continue;
    if (online === 'offline' && d.online === true) continue;
    out.push(d);
  }
  out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return out;
}

function renderDevices() {
  syncOptions($('f-group'), app.groups);
  syncOptions($('f-status'), app.statuses);
  const list = filteredDevices();
  app.devPage = pager($('dev-pager'), app.devPage, list.length, (p) => { app.devPage = p; renderDevices(); });
  const rows = list.slice(app.devPage * PAGE_SIZE, (app.devPage + 1) * PAGE_SIZE);
  $('dev-shown').textContent = `${list.length} of ${app.devices.size} devices`;
  const trs = sizeBody($('devices').tBodies[0], rows.length, 9);
  rows.forEach((d, i) => {
    const tr = trs[i];
    if (tr.dataset.device !== d.id) tr.dataset.device = d.id;
    const c = tr.cells;
    setCell(c[0], d.id, 'id link');
    setCell(c[1], d.online === true ? 'online' : d.online === false ? 'offline' : '–',
            d.online === true ? 'online' : 'offline');
    setCell(c[2], str(d.rev), 'rev');
    setCell(c[3], str(d.seq), 'seq');
    const st = d.status ? d.status + (typeof d.progress === 'number' ? ' ' + d.progress + '%' : '') : '–';
    setCell(c[4], st, 'status ' + statusClass(d.status));
    setCell(c[5], pair(d.containers), 'containers');
    setCell(c[6], pair(d.sensors), 'sensors');
    setCell(c[7], d.last ? str(d.last.text) : '–', 'last');
    setCell(c[8], d.last ? age(d.last.ts_ms) : '–', 'age');
  });
}

$('devices').tBodies[0].addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr');
  if (!tr || tr.dataset.device === undefined) return;
  app.deviceId = tr.dataset.device;
  $('device-title').textContent = app.deviceId;
  show('device');
  loadDetails();
});

for (const id of ['f-text', 'f-group', 'f-status', 'f-online']) {
  $(id).addEventListener('input', () => { app.devPage = 0; renderDevices(); });
}

// ---- one device ----------------------------------------------------------------------------

async function loadDetails() {
  // One request in flight; a change arriving meanwhile asks for one more afterwards.
  if (app.detailsPending) { app.detailsAgain = true; return; }
  app.detailsPending = true;
  const id = app.deviceId;
  try {
    const res = await fetch('/api/devices/' + encodeURIComponent(id), { headers: authHeaders() });
    if (res.ok && app.view === 'device' && app.deviceId === id) renderDevice(await res.json());
    else if (res.status === 404) renderDevice(null);
  } catch (e) {
    setConn('dashboard unreachable, retrying…');
  } finally {
    app.detailsPending = false;
    if (app.detailsAgain) { app.detailsAgain = false; loadDetails(); }
  }
}

function facts(dl, items) {
  dl.replaceChildren();
  for (const [k, v, cls] of items) {
    dl.appendChild(el('dt', null, k));
    dl.appendChild(el('dd', cls || null, v));
  }
}

function fillRows(tbody, rows) {
  tbody.replaceChildren();
  for (const cells of rows) {
    const tr = tbody.insertRow();
    for (const [text, cls] of cells) tr.appendChild(el('td', cls || null, text));
  }
}

function renderDevice(d) {
  if (!d) {
    facts($('device-facts'), [['gone', 'this device has no retained state any more']]);
    return;
  }
  const s = d.summary, st = d.state || {};
  facts($('device-facts'), [
    ['Presence', s.online === true ? 'online' : 'offline', s.online === true ? 'online' : 'offline'],
    ['Revision', str(s.rev) + ' (seq ' + str(s.seq) + ')'],
    ['Status', str(s.status), statusClass(s.status)],
    ['Groups', (s.groups || []).join(', ') || '–'],
    ['State published', str(st.ts)],
    ['Agent', st.agent ? str(st.agent.version) + ', started ' + str(st.agent.started_at) : '–'],
    ['Cache', st.cache ? str(st.cache.bytes) + ' bytes in ' + str(st.cache.blocks) + ' blocks' : '–'],
  ]);
  const containers = Array.isArray(st.containers) ? st.containers : [];
  fillRows($('device-containers').tBodies[0], containers.map((c) => [
    [str(c.name)], [str(c.group)], [str(c.state), c.state === 'RUNNING' ? 'ok' : c.state === 'FAILED' ? 'bad' : ''],
    [str(c.rev)], [str(c.restarts)]]));
  const sensors = Array.isArray(st.sensors) ? st.sensors : [];
  fillRows($('device-sensors').tBodies[0], sensors.map((x) => {
    const j = x && typeof x.job === 'object' && x.job ? x.job : {};
    const pct = j.size > 0 ? Math.floor((100 * (j.offset || 0)) / j.size) + '%' : '–';
    return [[str(x.id)], [str(x.model)], [str(x.version)], [str(x.seq)], [str(j.state), statusClass(j.state)],
            [pct], [str(j.reason)]];
  }));
  const events = Array.isArray(d.events) ? d.events.slice().reverse() : [];
  fillRows($('device-events').tBodies[0], events.map((e) => [
    [timeText(isoMs(e.ts) ?? e.received_ms)], [str(e.id)], [str(e.rev)], [str(e.status), statusClass(e.status)],
    [typeof e.progress === 'number' ? e.progress + '%' : '–'], [str(e.msg)]]));
}

$('device-back').addEventListener('click', () => show('devices'));

// ---- rollouts ------------------------------------------------------------------------------

function totals(r) {
  const t = { succeeded: 0, failed: 0, timed_out: 0, pending: 0 };
  for (const w of Array.isArray(r.waves) ? r.waves : []) {
    for (const k of Object.keys(t)) t[k] += typeof w[k] === 'number' ? w[k] : 0;
  }
  return t;
}

function renderRollouts() {
  const list = Array.from(app.rollouts.values()).sort((a, b) => (a.name < b.name ? -1 : 1));
  $('no-rollouts').hidden = list.length > 0;
  const trs = sizeBody($('rollouts').tBodies[0], list.length, 9);
  list.forEach((r, i) => {
    const tr = trs[i];
    tr.dataset.rollout = r.name;
    const t = totals(r);
    const waves = Array.isArray(r.waves) ? r.waves.length : 0;
    const c = tr.cells;
    setCell(c[0], r.name, 'id link');
    setCell(c[1], str(r.state), 'state ' + statusClass(r.state === 'DONE' ? 'DONE' : r.state === 'ABORTED' ? 'ERROR' : r.state));
    setCell(c[2], str(r.rev) + (r.seq !== undefined ? ' (seq ' + str(r.seq) + ')' : ''));
    setCell(c[3], str(r.wave) + ' of ' + waves);
    setCell(c[4], String(t.succeeded), 'ok');
    setCell(c[5], String(t.failed), t.failed ? 'bad' : '');
    setCell(c[6], String(t.timed_out), t.timed_out ? 'bad' : '');
    setCell(c[7], String(t.pending));
    setCell(c[8], age(isoMs(r.ts)));
  });
}

$('rollouts').tBodies[0].addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr');
  if (!tr || tr.dataset.rollout === undefined) return;
  app.rolloutName = tr.dataset.rollout;
  app.rdevPage = 0;
  $('action-result').textContent = '';
  show('rollout');
});

function renderRollout() {
  const r = app.rollouts.get(app.rolloutName);
  $('rollout-title').textContent = app.rolloutName;
  if (!r) {
    $('rollout-state').textContent = 'gone';
    return;
  }
  $('rollout-state').textContent = str(r.state);
  $('rollout-state').className = 'state ' + (r.state === 'DONE' ? 'ok' : r.state === 'ABORTED' ? 'bad' : 'busy');
  const running = r.state === 'RUNNING', paused = r.state === 'PAUSED';
  const can = app.info && app.info.actions;
  for (const b of document.querySelectorAll('#rollout-view .action')) {
    const a = b.dataset.action;
    b.disabled = !can || (a === 'pause' && !running) || (a === 'resume' && !paused) ||
                 (a === 'abort' && !(running || paused));
    b.title = can ? '' : 'this dashboard was started without rollout actions';
  }
  const t = totals(r);
  facts($('rollout-facts'), [
    ['Revision', str(r.rev) + ' (seq ' + str(r.seq) + ')'],
    ['Wave', str(r.wave) + ' of ' + (Array.isArray(r.waves) ? r.waves.length : 0)],
    ['Succeeded', String(t.succeeded), 'ok'],
    ['Failed', String(t.failed), t.failed ? 'bad' : ''],
    ['Timed out', String(t.timed_out), t.timed_out ? 'bad' : ''],
    ['Pending', String(t.pending)],
    ['Summary published', str(r.ts)],
  ]);
  renderWaves(r);
  renderRolloutDevices(r);
}

function renderWaves(r) {
  const box = $('waves');
  const waves = Array.isArray(r.waves) ? r.waves : [];
  while (box.children.length > waves.length) box.lastChild.remove();
  while (box.children.length < waves.length) {
    const w = el('div', 'wave');
    w.appendChild(el('span', 'wave-label'));
    const bar = el('div', 'bar');
    for (const k of ['succeeded', 'failed', 'timed_out', 'pending']) bar.appendChild(el('div', 'seg ' + k));
    w.appendChild(bar);
    w.appendChild(el('span', 'wave-counts'));
    box.appendChild(w);
  }
  waves.forEach((w, i) => {
    const row = box.children[i];
    const num = (k) => (typeof w[k] === 'number' ? w[k] : 0);
    const size = Math.max(num('size'), 1);
    const current = Number(r.wave) === i + 1;
    row.className = 'wave' + (current ? ' current' : '');
    row.dataset.wave = String(i + 1);
    row.children[0].textContent = `Wave ${i + 1} · ${num('size')} devices`;
    const segs = row.children[1].children;
    ['succeeded', 'failed', 'timed_out', 'pending'].forEach((k, j) => {
      segs[j].style.width = (100 * num(k)) / size + '%';
    });
    const done = num('succeeded') + num('failed') + num('timed_out');
    row.children[2].textContent =
      `${done}/${num('size')} final: ${num('succeeded')} succeeded, ${num('failed')} failed, ` +
      `${num('timed_out')} timed out, ${num('pending')} pending`;
  });
}

function renderRolloutDevices(r) {
  const devs = r.devices && typeof r.devices === 'object' ? r.devices : {};
  const outcomes = new Set();
  for (const v of Object.values(devs)) if (v && v.status) outcomes.add(String(v.status));
  syncOptions($('rf-status'), outcomes);
  const want = $('rf-status').value;
  const list = Object.keys(devs).sort().filter((id) => !want || (devs[id] && devs[id].status === want));
  $('rdev-shown').textContent = `${list.length} of ${Object.keys(devs).length} devices`;
  app.rdevPage = pager($('rdev-pager'), app.rdevPage, list.length, (p) => { app.rdevPage = p; renderRollout(); });
  const rows = list.slice(app.rdevPage * PAGE_SIZE, (app.rdevPage + 1) * PAGE_SIZE);
  const trs = sizeBody($('rollout-devices').tBodies[0], rows.length, 5);
  rows.forEach((id, i) => {
    const v = devs[id] || {};
    trs[i].dataset.device = id;
    const c = trs[i].cells;
    setCell(c[0], id, 'id');
    setCell(c[1], str(v.status), statusClass(v.status));
    setCell(c[2], str(v.attempt));
    setCell(c[3], str(v.reason), 'reason');
    setCell(c[4], age(isoMs(v.ts)));
  });
}

$('rf-status').addEventListener('input', () => { app.rdevPage = 0; renderRollout(); });
$('rollout-back').addEventListener('click', () => show('rollouts'));

for (const b of document.querySelectorAll('#rollout-view .action')) {
  b.addEventListener('click', () => act(b.dataset.action));
}

async function act(action) {
  const name = app.rolloutName;
  if (action === 'abort' && !confirm(`Abort rollout ${name}?`)) return;
  const out = $('action-result');
  out.textContent = action + '…';
  try {
    const res = await fetch(`/api/rollouts/${encodeURIComponent(name)}/${action}`,
                            { method: 'POST', headers: authHeaders() });
    const body = await res.json().catch(() => ({}));
    if (res.ok) {
      out.textContent = action + ' requested; the orchestrator applies it within a second or two';
    } else {
      out.textContent = action + ' refused: ' + str(body.error && body.error.message);
      if (res.status === 401) askToken('Rollout actions need the dashboard\'s token.');
    }
  } catch (e) {
    out.textContent = action + ' failed: dashboard unreachable';
  }
}

// ---- start ---------------------------------------------------------------------------------

$('tab-devices').addEventListener('click', () => show('devices'));
$('tab-rollouts').addEventListener('click', () => show('rollouts'));

// Ages move on even when nothing arrives.
setInterval(() => { if (app.view === 'devices' || app.view === 'rollouts') scheduleRender(); }, 1000);

async function start() {
  takeTokenFromUrl();
  try {
    const res = await fetch('/api/info');
    app.info = await res.json();
  } catch (e) {
    setConn('dashboard unreachable; reload the page');
    return;
  }
  if (app.info.view_token && !app.token) {
    askToken('This dashboard needs its token.');
    return;
  }
  render();
  connect();
}

start();
