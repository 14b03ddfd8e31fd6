// Hookline console. Plain JavaScript, no dependencies, served from the binary.
//
// Everything shown comes from /api/v1 on this listener. The admin token is kept in
// sessionStorage (this tab only) and sent only in the Authorization header, never in a URL.
// Text from events (payloads, headers, errors) is only ever put into the page as text
// (textContent), never as HTML.
'use strict';

const TOKEN_KEY = 'hookline.admin-token';
/** Rows the events list keeps at most (live updates push the oldest out). */
const MAX_ROWS = 200;
/** Dead letters per page. */
const DL_PAGE = 100;
/** Seconds between two readings of the pipelines' counters. */
const PIPELINE_POLL_MS = 5000;
/** Live-tail reconnect backoff. */
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
/** The most a half-read tail entry may grow before it is dropped. */
const TAIL_BUFFER_MAX = 1 << 20;

/** After a tail entry, the second look at what it reported. */
const SETTLE_MS = 1500;

const OUTCOMES = ['delivered', 'dropped', 'retrying', 'paused', 'dead_lettered', 'in_flight', 'finished'];

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  loggedIn: false,
  /** Undone when the page changes (timers, listeners). */
  cleanup: [],
  /** The events page's filters, kept while moving between pages. */
  filters: { source: '', type: '', pipeline: '', outcome: '', since: '', until: '', q: '' },
  /** Last reading of each pipeline's counters: name -> { at, runs, failed }. */
  readings: new Map(),
};

// ---------- small helpers ----------

const $ = (sel, root = document) => root.querySelector(sel);

/** An element with attributes (`class`, `data-*`, properties for the rest) and children (nodes or text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-') || k === 'for' || k === 'role' || k.startsWith('aria-')) node.setAttribute(k, v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node[k] = v;
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function badge(text, kind) {
  return el('span', { class: 'badge ' + (kind || text) }, String(text).replace(/_/g, ' '));
}

function time(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toLocaleString();
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function showError(message) {
  const box = $('#error');
  box.textContent = message || '';
  box.hidden = !message;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders(token = state.token) {
  const h = new Headers();
  if (token) h.set('Authorization', 'Bearer ' + token);
  return h;
}

/** Calls the admin API; answers the parsed JSON (or null), throws ApiError with the server's message. */
async function api(path, { method = 'GET', token = state.token } = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: authHeaders(token),
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch (e) {
    throw new ApiError(0, 'the service cannot be reached (' + e.message + ')');
  }
  const text = await resp.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (!resp.ok) {
    const message = (body && body.error) || text || resp.statusText;
    if (resp.status === 401 && state.loggedIn) logout('The admin token was refused; log in again.');
    throw new ApiError(resp.status, message);
  }
  return body;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && String(v).trim() !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

// ---------- login ----------

async function boot() {
  $('#login-form').addEventListener('submit', onLogin);
  $('#logout').addEventListener('click', () => logout(''));
  window.addEventListener('hashchange', render);
  try {
    // Answers without a token when none is configured (loopback admin).
    await api('/api/v1/pipelines');
    enter();
  } catch (e) {
    if (e.status === 401) showLogin(state.token ? 'The stored token was refused; log in again.' : '');
    else showLogin('');
    if (e.status !== 401) showError(e.message);
  }
}

function showLogin(message) {
  state.loggedIn = false;
  $('#login').hidden = false;
  $('#page').hidden = true;
  $('#page').replaceChildren();
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#live').hidden = true;
  const err = $('#login-error');
  err.textContent = message;
  err.hidden = !message;
  $('#token').focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  const input = $('#token');
  const token = input.value.trim();
  showError('');
  try {
    await api('/api/v1/pipelines', { token });
  } catch (e) {
    input.value = '';
    showLogin(e.status === 401 ? 'That token was refused.' : e.message);
    return;
  }
  input.value = '';
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  enter();
}

function enter() {
  state.loggedIn = true;
  $('#login').hidden = true;
  $('#login-error').hidden = true;
  $('#page').hidden = false;
  $('#nav').hidden = false;
  $('#logout').hidden = !state.token;
  $('#live').hidden = false;
  tail.start();
  render();
}

function logout(message) {
  state.token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  tail.stop();
  leavePage();
  showLogin(message);
}

// ---------- live tail: fetch() and a stream reader (EventSource cannot send a header) ----------

const tail = {
  generation: 0,
  controller: null,
  listeners: new Set(),

  start() {
    this.stop();
    const gen = ++this.generation;
    this.run(gen);
  },

  stop() {
    this.generation++;
    if (this.controller) this.controller.abort();
    this.controller = null;
  },

  status(kind, text) {
    const live = $('#live');
    live.className = 'live ' + kind;
    live.textContent = text;
  },

  emit(entry) {
    for (const f of this.listeners) f(entry);
  },

  async run(gen) {
    let backoff = BACKOFF_MIN_MS;
    while (gen === this.generation) {
      const controller = new AbortController();
      this.controller = controller;
      try {
        const resp = await fetch('/api/v1/tail', {
          headers: authHeaders(),
          signal: controller.signal,
          cache: 'no-store',
          credentials: 'omit',
        });
        if (resp.status === 401) {
          logout('The admin token was refused; log in again.');
          return;
        }
        if (!resp.ok || !resp.body) throw new Error('tail answered ' + resp.status);
        this.status('on', 'live');
        backoff = BACKOFF_MIN_MS;
        // Whatever happened while not connected: let the pages catch up.
        this.emit({ kind: 'connected' });
        await this.read(resp.body.getReader());
      } catch (_) {
        // Reconnect below.
      }
      if (gen !== this.generation) return;
      this.status('retry', 'live: reconnecting');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  },

  async read(reader) {
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n');
        if (!data) continue; // a keep-alive comment
        try {
          this.emit(JSON.parse(data));
        } catch (_) {
          // Not JSON: skip it.
        }
      }
      if (buffer.length > TAIL_BUFFER_MAX) buffer = '';
    }
  },
};

/** Calls `f` at most once per `ms`, the last call winning; one call in flight at a time. */
function debounced(f, ms) {
  let timer = null;
  let running = false;
  let again = false;
  const fire = async () => {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await f();
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (timer === null) timer = setTimeout(fire, ms);
  };
  schedule.cancel = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  };
  return schedule;
}

function onTail(f) {
  tail.listeners.add(f);
  state.cleanup.push(() => tail.listeners.delete(f));
}

/** An event with a pipeline run under way: what it shows will change without a tail entry. */
function inFlight(event) {
  return event.pipelines.some((p) => p.outcome === 'in_flight');
}

// ---------- pages ----------

function leavePage() {
  for (const undo of state.cleanup.splice(0)) undo();
}

function render() {
  if (!state.loggedIn) return;
  leavePage();
  showError('');
  const hash = location.hash || '#/events';
  const page = $('#page');
  page.replaceChildren();
  let name = 'events';
  const event = hash.match(/^#\/events\/([^/?#]+)$/);
  if (event) {
    renderEvent(page, decodeURIComponent(event[1]));
  } else if (hash === '#/dead-letters') {
    name = 'dead-letters';
    renderDeadLetters(page);
  } else if (hash === '#/pipelines') {
    name = 'pipelines';
    renderPipelines(page);
  } else {
    renderEvents(page);
  }
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === name);
  }
}

function failed(e) {
  showError(e.message);
}

// ----- events -----

function renderEvents(page) {
  const f = state.filters;
  const input = (name, label, attrs = {}) =>
    el('label', { class: attrs.wide ? 'wide' : '' }, label, el('input', { name, value: f[name], ...attrs, wide: undefined }));
  const outcome = el(
    'select',
    { name: 'outcome' },
    el('option', { value: '' }, 'any'),
    OUTCOMES.map((o) => el('option', { value: o, selected: f.outcome === o }, o.replace(/_/g, ' '))),
  );
  const form = el(
    'form',
    { class: 'filters', id: 'event-filters' },
    input('source', 'source', { size: 10 }),
    input('type', 'type', { size: 12 }),
    input('pipeline', 'pipeline', { size: 10 }),
    el('label', {}, 'outcome', outcome),
    input('since', 'since', { size: 8, placeholder: '1h' }),
    input('until', 'until', { size: 8 }),
    input('q', 'CEL search', { id: 'q', wide: true, placeholder: 'payload.data.lead.email.endsWith("@acme.com")' }),
    el('button', { type: 'submit' }, 'Search'),
  );
  const tbody = el('tbody', { id: 'events-body' });
  const table = el(
    'table',
    { class: 'stack', id: 'events' },
    el('thead', {}, el('tr', {}, ['received', 'type', 'source', 'pipelines', 'id'].map((h) => el('th', {}, h)))),
    tbody,
  );
  const status = el('p', { class: 'note', id: 'events-status' });
  const older = el('button', { type: 'button', class: 'secondary', id: 'events-older', hidden: true }, 'Older');
  page.append(el('h1', {}, 'Events'), form, status, table, el('div', { class: 'actions' }, older));

  let rows = []; // event summaries, newest first
  let cursor = null;
  let capped = false;

  const draw = (fresh = new Set()) => {
    tbody.replaceChildren(
      ...rows.map((e) =>
        el(
          'tr',
          { class: 'event-row' + (fresh.has(e.id) ? ' new' : ''), 'data-id': e.id },
          el('td', { 'data-label': 'received' }, time(e.received_at)),
          el('td', { 'data-label': 'type' }, e.type),
          el('td', { 'data-label': 'source' }, e.source),
          el('td', { 'data-label': 'pipelines' }, e.pipelines.map((p) => badge(p.pipeline + ': ' + p.outcome.replace(/_/g, ' '), p.outcome))),
          el('td', { 'data-label': 'id', class: 'mono' }, el('a', { href: '#/events/' + encodeURIComponent(e.id) }, e.id)),
        ),
      ),
    );
    status.textContent = rows.length
      ? rows.length + ' event(s) shown' + (capped ? '; the list keeps the newest ' + MAX_ROWS + ', narrow the filters to see older ones' : '')
      : 'No events match.';
    older.hidden = !cursor || capped;
  };

  const params = () => ({ ...state.filters, limit: 50 });

  const load = async () => {
    try {
      const pageData = await api('/api/v1/events' + query(params()));
      rows = pageData.items.slice(0, MAX_ROWS);
      cursor = pageData.next;
      capped = false;
      draw();
    } catch (e) {
      rows = [];
      cursor = null;
      draw();
      failed(e);
    }
  };

  // Live: on any tail entry, read the first page again and merge it in (new events on top,
  // known ones updated in place), keeping at most MAX_ROWS.
  const refresh = debounced(async () => {
    try {
      const first = await api('/api/v1/events' + query(params()));
      const known = new Map(rows.map((e) => [e.id, e]));
      const fresh = new Set();
      for (const e of first.items) {
        if (!known.has(e.id)) fresh.add(e.id);
        known.set(e.id, e);
      }
      const firstIds = new Set(first.items.map((e) => e.id));
      const rest = rows.filter((e) => !firstIds.has(e.id)).map((e) => known.get(e.id));
      let merged = first.items.concat(rest);
      if (merged.length > MAX_ROWS) {
        merged = merged.slice(0, MAX_ROWS);
        capped = true;
      }
      rows = merged;
      if (rows.length <= first.items.length) cursor = first.next;
      draw(fresh);
      if (rows.some(inFlight)) settle();
    } catch (e) {
      failed(e);
    }
  }, 300);
  // A tail entry can come a moment before the journal has committed what it reports: read
  // once more a little later, and again while a run is still in flight.
  const settle = debounced(() => refresh(), SETTLE_MS);
  state.cleanup.push(refresh.cancel, settle.cancel);
  onTail(() => {
    refresh();
    settle();
  });

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    showError('');
    for (const k of Object.keys(state.filters)) state.filters[k] = form.elements[k].value.trim();
    load();
  });
  older.addEventListener('click', async () => {
    try {
      const next = await api('/api/v1/events' + query({ ...params(), cursor }));
      const have = new Set(rows.map((e) => e.id));
      rows = rows.concat(next.items.filter((e) => !have.has(e.id)));
      if (rows.length > MAX_ROWS) {
        rows = rows.slice(0, MAX_ROWS);
        capped = true;
      }
      cursor = next.next;
      draw();
    } catch (e) {
      failed(e);
    }
  });
  load();
}

// ----- one event -----

async function renderEvent(page, id) {
  page.append(el('p', { class: 'note' }, el('a', { href: '#/events' }, '← events')), el('h1', {}, 'Event ', el('span', { class: 'mono' }, id)));
  const body = el('div', { id: 'event-detail' });
  page.append(body);

  let pipelines = [];
  const load = async () => {
    const [event, all] = await Promise.all([
      api('/api/v1/events/' + encodeURIComponent(id)),
      api('/api/v1/pipelines'),
    ]);
    pipelines = all.items;
    drawEvent(body, event, pipelines);
    if (inFlight(event)) settle();
  };
  const refresh = debounced(() => load().catch(failed), 300);
  // As on the list: once more a little later, and while a run is in flight.
  const settle = debounced(() => refresh(), SETTLE_MS);
  state.cleanup.push(refresh.cancel, settle.cancel);
  onTail((entry) => {
    if (entry.kind === 'connected' || entry.event_id === id) {
      refresh();
      settle();
    }
  });
  try {
    await load();
  } catch (e) {
    failed(e);
  }
}

function drawEvent(body, event, pipelines) {
  const meta = el(
    'dl',
    { class: 'meta' },
    el('dt', {}, 'source'), el('dd', {}, event.source),
    el('dt', {}, 'type'), el('dd', {}, event.type),
    el('dt', {}, 'received'), el('dd', {}, time(event.received_at)),
    el('dt', {}, 'dead letters'), el('dd', {}, event.dead_letters.length ? event.dead_letters.join(', ') : 'none'),
  );

  // Replay: into any pipeline of the event's source, from the start or the failed stage.
  const own = pipelines.filter((p) => p.source === event.source);
  const select = el('select', { id: 'replay-pipeline', 'aria-label': 'pipeline' }, own.map((p) => el('option', { value: p.name }, p.name)));
  const result = el('span', { id: 'replay-result', class: 'note', role: 'status' });
  const replay = async (from) => {
    result.textContent = '';
    try {
      const r = await api(
        '/api/v1/events/' + encodeURIComponent(event.id) + '/replay' + query({ pipeline: select.value, from }),
        { method: 'POST' },
      );
      result.className = 'ok';
      result.textContent = 'Queued for ' + r.pipeline + ' (delivery ' + r.delivery_id + ').';
    } catch (e) {
      result.className = 'error';
      result.textContent = e.message;
    }
  };
  const replayBox = el(
    'div',
    { class: 'actions', id: 'replay' },
    el('label', { for: 'replay-pipeline' }, 'Replay into'),
    select,
    el('button', { type: 'button', id: 'replay-start', onclick: () => replay('start') }, 'from the start'),
    el('button', { type: 'button', id: 'replay-failed', class: 'secondary', onclick: () => replay('failed') }, 'from the failed stage'),
    result,
  );

  const timelines = event.pipelines.map((p) => timeline(p, event.attempts.filter((a) => a.pipeline === p.pipeline), pipelines.find((x) => x.name === p.pipeline)));

  const headers = el(
    'table',
    { class: 'stack', id: 'headers' },
    el('tbody', {}, event.headers.map(([k, v]) => el('tr', {}, el('td', { class: 'mono' }, k), el('td', { class: 'mono' }, v)))),
  );

  body.replaceChildren(
    meta,
    el('h2', {}, 'Replay'),
    own.length ? replayBox : el('p', { class: 'note' }, 'No pipeline of source ' + event.source + ' is configured.'),
    el('h2', {}, 'Pipelines'),
    el('div', { id: 'timelines' }, timelines.length ? timelines : el('p', { class: 'note' }, 'Routed to no pipeline.')),
    el('h2', {}, 'Headers'),
    event.headers.length ? headers : el('p', { class: 'note' }, 'none stored'),
    el('h2', {}, 'Payload'),
    el('pre', { id: 'payload' }, JSON.stringify(event.payload, null, 2)),
  );
}

/** One pipeline of an event: its stages (how far the event got) and every attempt. */
function timeline(state_, attempts, pipeline) {
  const at = state_.stage;
  const stages = (pipeline ? pipeline.stages : []).map((s) => {
    let kind = '';
    if (state_.outcome === 'delivered') kind = 'passed';
    else if (at !== undefined && s.index < at) kind = 'passed';
    else if (at !== undefined && s.index === at) {
      kind = { dropped: 'dropped', dead_lettered: 'failed', retrying: 'failed', paused: 'waiting' }[state_.outcome] || '';
    }
    return el('span', { class: 'stage ' + kind, title: s.kind + ' ' + s.plugin }, s.index + ': ' + s.name);
  });
  const list = el(
    'ol',
    { class: 'attempts' },
    attempts.map((a) =>
      el(
        'li',
        {},
        time(a.at) + ' ',
        badge(a.result),
        ' at ' + a.stage + ':' + a.stage_name + ', ' + (a.duration_us / 1000).toFixed(1) + ' ms',
        a.error ? el('div', { class: 'mono' }, a.error) : null,
      ),
    ),
  );
  return el(
    'div',
    { class: 'timeline', 'data-pipeline': state_.pipeline },
    el('strong', {}, state_.pipeline), ' ', badge(state_.outcome),
    at !== undefined ? el('span', { class: 'note' }, ' at stage ' + at + (state_.stage_name ? ':' + state_.stage_name : '')) : null,
    state_.next_attempt_at ? el('span', { class: 'note' }, ', next attempt ' + time(state_.next_attempt_at)) : null,
    pipeline ? el('div', { class: 'stages' }, stages) : el('p', { class: 'note' }, 'This pipeline is no longer configured.'),
    state_.error ? el('div', { class: 'mono error' }, state_.error) : null,
    attempts.length ? list : el('p', { class: 'note' }, 'No attempt recorded yet.'),
  );
}

// ----- dead letters -----

function renderDeadLetters(page) {
  const form = el(
    'form',
    { class: 'filters', id: 'dl-filters' },
    el('label', {}, 'pipeline', el('input', { name: 'pipeline', size: 10 })),
    el('label', {}, 'stage', el('input', { name: 'stage', size: 10 })),
    el('label', { class: 'wide' }, 'error contains', el('input', { name: 'reason' })),
    el('label', {}, 'since', el('input', { name: 'since', size: 8, placeholder: '1h' })),
    el('label', {}, el('span', {}, 'replayed too'), el('input', { name: 'include_replayed', type: 'checkbox', id: 'dl-include-replayed' })),
    el('button', { type: 'submit' }, 'Filter'),
  );
  const all = el('input', { type: 'checkbox', id: 'dl-select-all', 'aria-label': 'select all' });
  const fromStart = el('input', { type: 'checkbox', id: 'dl-from-start' });
  const replayBtn = el('button', { type: 'button', id: 'dl-replay', disabled: true }, 'Replay selected');
  const purgeBtn = el('button', { type: 'button', id: 'dl-purge', class: 'danger', disabled: true }, 'Purge selected…');
  const result = el('p', { id: 'dl-result', role: 'status', class: 'note' });
  const confirmBox = el('div', { class: 'confirm', id: 'dl-confirm', hidden: true });
  const tbody = el('tbody', { id: 'dl-body' });
  const more = el('button', { type: 'button', class: 'secondary', id: 'dl-more', hidden: true }, 'More');
  page.append(
    el('h1', {}, 'Dead letters'),
    form,
    el('div', { class: 'actions' }, replayBtn, el('label', {}, fromStart, ' from the first stage'), purgeBtn),
    confirmBox,
    result,
    el(
      'table',
      { class: 'stack', id: 'dead-letters' },
      el('thead', {}, el('tr', {}, el('th', {}, all), ['failed', 'pipeline / stage', 'error', 'attempts', 'state', 'event'].map((h) => el('th', {}, h)))),
      tbody,
    ),
    el('div', { class: 'actions' }, more),
  );

  let items = [];
  let nextOffset = null;
  const selected = new Set();

  const filterParams = () => ({
    pipeline: form.elements.pipeline.value.trim(),
    stage: form.elements.stage.value.trim(),
    reason: form.elements.reason.value.trim(),
    since: form.elements.since.value.trim(),
    include_replayed: form.elements.include_replayed.checked ? 'true' : '',
  });

  const sync = () => {
    replayBtn.disabled = purgeBtn.disabled = selected.size === 0;
    purgeBtn.textContent = 'Purge selected' + (selected.size ? ' (' + selected.size + ')' : '') + '…';
    replayBtn.textContent = 'Replay selected' + (selected.size ? ' (' + selected.size + ')' : '');
    all.checked = items.length > 0 && items.every((d) => selected.has(d.id));
  };

  const draw = () => {
    tbody.replaceChildren(
      ...items.map((d) => {
        const box = el('input', { type: 'checkbox', class: 'dl-select', 'data-id': d.id, 'aria-label': 'select', checked: selected.has(d.id) });
        box.addEventListener('change', () => {
          if (box.checked) selected.add(d.id);
          else selected.delete(d.id);
          sync();
        });
        return el(
          'tr',
          { class: 'dl-row', 'data-id': d.id, 'data-state': d.state },
          el('td', {}, box),
          el('td', { 'data-label': 'failed' }, time(d.last_failed_at)),
          el('td', { 'data-label': 'pipeline' }, (d.pipeline || '(ingest)') + (d.stage_name ? ' / ' + d.stage_index + ':' + d.stage_name : '')),
          el('td', { 'data-label': 'error', class: 'mono' }, d.error),
          el('td', { 'data-label': 'attempts' }, String(d.attempts)),
          el('td', { 'data-label': 'state' }, badge(d.state)),
          el('td', { 'data-label': 'event', class: 'mono' }, d.has_event ? el('a', { href: '#/events/' + encodeURIComponent(d.event_id) }, d.event_id) : d.event_id),
        );
      }),
    );
    if (!items.length) tbody.append(el('tr', {}, el('td', { colSpan: 7, class: 'note' }, 'No dead letters match.')));
    more.hidden = nextOffset === null || nextOffset === undefined;
    sync();
  };

  const load = async (offset = 0) => {
    try {
      const pageData = await api('/api/v1/dead-letters' + query({ ...filterParams(), offset, limit: DL_PAGE }));
      items = offset ? items.concat(pageData.items) : pageData.items;
      nextOffset = pageData.next_offset;
      const ids = new Set(items.map((d) => d.id));
      for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
      draw();
    } catch (e) {
      failed(e);
    }
  };

  /** Runs `call` on each selected letter; reports how many went through. */
  const each = async (verb, call) => {
    const ids = [...selected];
    let ok = 0;
    const errors = [];
    for (const id of ids) {
      try {
        await call(id);
        ok++;
      } catch (e) {
        errors.push(id + ': ' + e.message);
      }
    }
    result.className = errors.length ? 'error' : 'ok';
    result.textContent = verb + ' ' + ok + ' of ' + ids.length + '.' + (errors.length ? ' ' + errors.join('; ') : '');
    selected.clear();
    await load();
  };

  all.addEventListener('change', () => {
    for (const d of items) {
      if (all.checked) selected.add(d.id);
      else selected.delete(d.id);
    }
    draw();
  });
  replayBtn.addEventListener('click', () =>
    each('Replayed', (id) =>
      api('/api/v1/dead-letters/' + encodeURIComponent(id) + '/replay' + query({ from_start: fromStart.checked ? 'true' : '' }), { method: 'POST' }),
    ),
  );
  purgeBtn.addEventListener('click', () => {
    const n = selected.size;
    confirmBox.replaceChildren(
      el('p', {}, 'Purge ' + n + ' dead letter(s) for good? Their events stay in the history; the letters cannot be replayed afterwards.'),
      el('div', { class: 'actions' },
        el('button', { type: 'button', class: 'danger', id: 'dl-confirm-purge', onclick: async () => {
          confirmBox.hidden = true;
          await each('Purged', (id) => api('/api/v1/dead-letters/' + encodeURIComponent(id), { method: 'DELETE' }));
        } }, 'Yes, purge ' + n),
        el('button', { type: 'button', class: 'secondary', id: 'dl-cancel', onclick: () => { confirmBox.hidden = true; } }, 'Cancel'),
      ),
    );
    confirmBox.hidden = false;
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    showError('');
    selected.clear();
    load();
  });
  more.addEventListener('click', () => load(nextOffset));
  load();
}

// ----- pipelines -----

/**
 * Rate and error rate come from two readings of each stage's `runs` counters (the admin API's
 * copy of hookline_stage_outcomes_total) taken PIPELINE_POLL_MS apart: the rate is the first
 * stage's runs per second (events entering the pipeline, replays and retries included), the
 * error rate the share of all its stage runs that failed in that window.
 */
function figures(p, now) {
  const runs = p.stages.length ? total(p.stages[0].runs) : 0;
  const all = p.stages.reduce((n, s) => n + total(s.runs), 0);
  const failedRuns = p.stages.reduce((n, s) => n + ((s.runs && s.runs.failed) || 0), 0);
  const before = state.readings.get(p.name);
  state.readings.set(p.name, { at: now, runs, all, failed: failedRuns });
  if (!before || now <= before.at || runs < before.runs) return null;
  const seconds = (now - before.at) / 1000;
  const dAll = all - before.all;
  return {
    rate: (runs - before.runs) / seconds,
    errorRate: dAll > 0 ? (failedRuns - before.failed) / dAll : 0,
    seconds,
  };
}

function total(runs) {
  return runs ? runs.passed + runs.dropped + runs.failed : 0;
}

function renderPipelines(page) {
  const cards = el('div', { class: 'cards', id: 'pipelines' });
  page.append(
    el('h1', {}, 'Pipelines'),
    el('p', { class: 'note' }, 'Rate: runs of the first stage per second; error rate: failed stage runs over all stage runs — both over the last ' + PIPELINE_POLL_MS / 1000 + ' s, from the counters in /api/v1/pipelines.'),
    cards,
  );
  const load = async () => {
    try {
      const data = await api('/api/v1/pipelines');
      const now = Date.now();
      cards.replaceChildren(...data.items.map((p) => card(p, figures(p, now), load)));
    } catch (e) {
      failed(e);
    }
  };
  const timer = setInterval(load, PIPELINE_POLL_MS);
  state.cleanup.push(() => clearInterval(timer));
  load();
}

function card(p, fig, reload) {
  const toggle = el('button', { type: 'button', class: p.paused ? '' : 'secondary', 'data-action': p.paused ? 'resume' : 'pause' }, p.paused ? 'Resume' : 'Pause');
  toggle.addEventListener('click', async () => {
    toggle.disabled = true;
    try {
      await api('/api/v1/pipelines/' + encodeURIComponent(p.name) + '/' + (p.paused ? 'resume' : 'pause'), { method: 'POST' });
    } catch (e) {
      failed(e);
    }
    await reload();
  });
  const stat = (label, value) => el('div', {}, el('b', {}, value), el('span', { class: 'note' }, label));
  const stages = el(
    'table',
    { class: 'stack' },
    el('thead', {}, el('tr', {}, ['stage', 'kind', 'runs (passed / dropped / failed)', 'circuit'].map((h) => el('th', {}, h)))),
    el(
      'tbody',
      {},
      p.stages.map((s) =>
        el(
          'tr',
          {},
          el('td', { 'data-label': 'stage' }, s.index + ': ' + s.name),
          el('td', { 'data-label': 'kind' }, s.kind + ' ' + s.plugin, s.rate ? ' · rate ' + s.rate : '', s.concurrency ? ' · concurrency ' + s.concurrency : ''),
          el('td', { 'data-label': 'runs' }, s.runs ? s.runs.passed + ' / ' + s.runs.dropped + ' / ' + s.runs.failed : ''),
          el(
            'td',
            { 'data-label': 'circuit' },
            s.circuit ? [badge(s.circuit.state), s.circuit.failures ? ' ' + s.circuit.failures + ' failure(s) in a row' : '', s.circuit.last_error ? el('div', { class: 'mono' }, s.circuit.last_error) : ''] : '—',
          ),
        ),
      ),
    ),
  );
  return el(
    'div',
    { class: 'card pipeline', 'data-name': p.name },
    el('h2', {}, p.name, p.paused ? badge('paused') : badge('running', 'delivered'), toggle),
    el('p', { class: 'note' }, 'source ' + p.source + (p.events && p.events.length && p.events.join() !== '*' ? ' · events ' + p.events.join(', ') : '') + (p.order_key ? ' · ordered by ' + p.order_key : '')),
    el(
      'div',
      { class: 'figures' },
      stat('events/s', fig ? fig.rate.toFixed(2) : '…'),
      stat('error rate', fig ? (fig.errorRate * 100).toFixed(1) + ' %' : '…'),
    ),
    stages,
  );
}

document.addEventListener('DOMContentLoaded', boot);
