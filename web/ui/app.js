// corral-web's dashboard. Polls /api/status every 2 s and /api/history
// every 10 s (and whenever the set of queues, hosts or services changes);
// charts are uPlot, embedded in corral-web like this file. No inline script
// or style anywhere (the Content-Security-Policy forbids both); the DOM is
// built with textContent, never from HTML strings. docs/web.md.
'use strict';
(function () {
  const POLL_MS = 1000;
  const HISTORY_EVERY = 10; // polls
  const COLORS = { depth: '#2457c5', enqueued: '#2457c5', done: '#1a7f37', failed: '#c62828',
    dead: '#6a1b9a', p50: '#2457c5', p95: '#b35900', workers: '#2457c5', busy: '#1a7f37',
    desired: '#b35900', min: '#9aa0a6', max: '#6b7480', state: '#c62828' };

  let session = { authenticated: false, actions: false };
  let status = null;
  let history = null;
  let polls = 0;
  let lastKeys = '';
  const charts = []; // every uPlot, for resizing

  const $ = (sel, root) => (root || document).querySelector(sel);

  // el('div', {class: 'x', dataset: {queue: 'q'}}, child, 'text', ...)
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function pad(n) { return String(n).padStart(2, '0'); }
  // Local time as ISO 8601 without the zone, and the age beside it.
  function fmtTime(ms) {
    if (!ms) return '–';
    const d = new Date(ms);
    const iso = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return `${iso} (${fmtDur(Date.now() - ms)} ago)`;
  }
  function fmtDur(ms) {
    if (ms === null || ms === undefined || ms < 0) return '–';
    if (ms < 1000) return `${Math.round(ms)}ms`;
    const s = ms / 1000;
    if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${pad(Math.round(s % 60))}s`;
    return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  }
  function fmtRate(v) { return v === undefined ? '–' : Number(v).toFixed(v < 10 ? 2 : 1); }

  function say(text, isError) {
    const m = $('#message');
    m.textContent = text;
    m.className = isError ? 'error' : '';
    m.hidden = false;
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { m.hidden = true; }, 6000);
  }

  async function getJSON(url) {
    const r = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
    return body;
  }

  async function post(url, body) {
    const opts = { method: 'POST', credentials: 'same-origin', headers: {} };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(url, opts);
    const b = await r.json().catch(() => ({}));
    if (r.status === 401) await loadSession();
    if (!r.ok) throw new Error(b.error || `${r.status} ${r.statusText}`);
    return b;
  }

  // An operator action: POST, say what happened, redraw at once.
  async function act(url, body, what) {
    try {
      await post(url, body);
      say(what);
      await poll(true);
    } catch (e) {
      say(`${what}: ${e.message}`, true);
    }
  }

  const enc = encodeURIComponent;

  // --- charts -------------------------------------------------------------

  function chartWidth(div) { return Math.max(260, div.clientWidth || 300); }

  // Per-minute charts span the last hour up to now. Sampled ones (depth,
  // pool, breaker state) begin when corral-web did: they span from their
  // first sample (less two minutes) while that is within the hour.
  function lastHour() {
    const now = (history ? history.time_ms : Date.now()) / 1000;
    return [now - 3600, now];
  }
  function sampled(u) {
    const now = (history ? history.time_ms : Date.now()) / 1000;
    const first = u.data[0].length ? u.data[0][0] - 120 : now - 3600;
    return [Math.max(now - 3600, first), now];
  }

  // A sampled chart: its own x range and dots a sparse series can show.
  function sampledOpts(extra) {
    return Object.assign({ scales: { x: { time: true, range: sampled } } }, extra || {});
  }

  function makeChart(div, series, opts) {
    const o = Object.assign({
      width: chartWidth(div), height: 130,
      scales: { x: { time: true, range: lastHour } },
      axes: [{ size: 30 }, { size: 44 }],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      series: [{}].concat(series.map((s) => Object.assign({
        label: s.label, stroke: COLORS[s.key] || '#333', width: 1.5,
        points: { size: 5 },
      }, s.opts || {}))),
    }, opts || {});
    const plot = new uPlot(o, [[]].concat(series.map(() => [])), div);
    charts.push(plot);
    return plot;
  }

  window.addEventListener('resize', () => {
    for (const c of charts) {
      const w = chartWidth(c.root.parentNode);
      if (Math.abs(w - c.width) > 2) c.setSize({ width: w, height: c.height });
    }
  });

  function secs(ms) { return ms.map((t) => t / 1000); }

  // --- queues -------------------------------------------------------------

  const queueCards = new Map();

  function stat(label, key) {
    return el('div', {}, el('b', { dataset: { k: key }, text: '–' }), el('span', { text: label }));
  }

  function queueCard(name) {
    const pause = el('button', { type: 'button', class: 'op', dataset: { action: 'pause' },
      text: 'Pause' });
    const resume = el('button', { type: 'button', class: 'op', dataset: { action: 'resume' },
      text: 'Resume' });
    pause.addEventListener('click', () =>
      act(`/api/queues/${enc(name)}/pause`, undefined, `queue ${name} paused`));
    resume.addEventListener('click', () =>
      act(`/api/queues/${enc(name)}/resume`, undefined, `queue ${name} resumed`));
    const depthDiv = el('div', { class: 'chart' }, el('div', { class: 'title', text: 'depth' }));
    const flowDiv = el('div', { class: 'chart' },
      el('div', { class: 'title', text: 'jobs per minute' }));
    const procDiv = el('div', { class: 'chart' },
      el('div', { class: 'title', text: 'processing time (ms) per minute' }));
    const card = el('div', { class: 'card', dataset: { queue: name } },
      el('h3', {}, el('span', { class: 'name', text: name }),
        el('span', { class: 'badge paused', text: 'paused', hidden: '' }),
        el('span', { class: 'actions' }, pause, resume)),
      el('div', { class: 'stats' }, stat('depth', 'depth'), stat('running', 'inflight'),
        stat('scheduled', 'scheduled'), stat('dead', 'dead'), stat('in/s', 'enqueued_per_s'),
        stat('done/s', 'done_per_s'), stat('fail/s', 'failed_per_s'),
        stat('p50', 'proc_ms_p50'), stat('p95', 'proc_ms_p95'), stat('oldest wait', 'oldest')),
      el('div', { class: 'muted prio' }),
      depthDiv, flowDiv, procDiv);
    $('#queues').append(card);
    const c = { card, pause, resume, depthDiv, flowDiv, procDiv, plots: null };
    queueCards.set(name, c);
    return c;
  }

  function setStat(card, key, text) {
    const b = card.querySelector(`b[data-k="${key}"]`);
    if (b) b.textContent = text;
  }

  function renderQueues() {
    const seen = new Set();
    for (const q of status.queues) {
      seen.add(q.name);
      const c = queueCards.get(q.name) || queueCard(q.name);
      const card = c.card;
      card.dataset.paused = q.paused ? 'yes' : 'no';
      card.querySelector('.badge.paused').hidden = !q.paused;
      c.pause.hidden = q.paused;
      c.resume.hidden = !q.paused;
      for (const k of ['depth', 'inflight', 'scheduled', 'dead']) setStat(card, k, q[k]);
      for (const k of ['enqueued_per_s', 'done_per_s', 'failed_per_s']) {
        setStat(card, k, fmtRate(q[k]));
      }
      setStat(card, 'proc_ms_p50', fmtDur(q.proc_ms_p50));
      setStat(card, 'proc_ms_p95', fmtDur(q.proc_ms_p95));
      setStat(card, 'oldest', fmtDur(q.oldest_wait_ms));
      const prio = Object.entries(q.depth_by_priority || {}).map(([k, v]) => `${k} ${v}`);
      card.querySelector('.prio').textContent = prio.length ? `by priority: ${prio.join(', ')}` : '';
    }
    for (const [name, c] of queueCards) {
      if (!seen.has(name)) { c.card.remove(); queueCards.delete(name); }
    }
  }

  function chartQueues() {
    for (const [name, c] of queueCards) {
      const h = history.queues[name];
      if (!h) continue;
      if (!c.plots) {
        c.plots = {
          depth: makeChart(c.depthDiv, [{ label: 'depth', key: 'depth' }], sampledOpts()),
          flow: makeChart(c.flowDiv, [{ label: 'enqueued', key: 'enqueued' },
            { label: 'done', key: 'done' }, { label: 'failed', key: 'failed' },
            { label: 'dead', key: 'dead' }]),
          proc: makeChart(c.procDiv, [{ label: 'p50', key: 'p50' }, { label: 'p95', key: 'p95' }]),
        };
      }
      c.plots.depth.setData([secs(history.sample_ms), h.depth]);
      const mx = secs(history.minute_ms);
      c.plots.flow.setData([mx, h.enqueued, h.done, h.failed, h.dead]);
      c.plots.proc.setData([mx, h.p50_ms, h.p95_ms]);
    }
  }

  // --- hosts --------------------------------------------------------------

  const hostCards = new Map();

  function hostCard(name) {
    const chartDiv = el('div', { class: 'chart' },
      el('div', { class: 'title', text: 'workers beside desired, min and max' }));
    const card = el('div', { class: 'card', dataset: { host: name } },
      el('h3', {}, el('span', { class: 'name', text: name }),
        el('span', { class: 'badge stale', text: 'stale', hidden: '' })),
      el('div', { class: 'stats' }, stat('workers', 'workers'), stat('busy / slots', 'busy'),
        stat('min / desired / max', 'mdm'), stat('heartbeat', 'beat'), stat('version', 'version')),
      chartDiv,
      el('div', { class: 'muted', text: 'decisions, newest first' }),
      el('ol', { class: 'log decisions' }));
    $('#hosts').append(card);
    const c = { card, chartDiv, plot: null };
    hostCards.set(name, c);
    return c;
  }

  function renderHosts() {
    const seen = new Set();
    for (const h of status.hosts) {
      seen.add(h.host);
      const c = hostCards.get(h.host) || hostCard(h.host);
      c.card.querySelector('.badge.stale').hidden = !h.stale;
      setStat(c.card, 'workers', h.workers);
      setStat(c.card, 'busy', `${h.busy} / ${h.slots}`);
      setStat(c.card, 'mdm', `${h.min} / ${h.desired} / ${h.max}`);
      setStat(c.card, 'beat', `${fmtDur(h.heartbeat_age_ms)} ago`);
      setStat(c.card, 'version', h.version || '–');
      if (!history || !history.hosts[h.host] || !history.hosts[h.host].decisions.length) {
        const ol = c.card.querySelector('.decisions');
        if (!ol.children.length && h.last_decision) {
          ol.replaceChildren(el('li', { text: h.last_decision }));
        }
      }
    }
    for (const [name, c] of hostCards) {
      if (!seen.has(name)) { c.card.remove(); hostCards.delete(name); }
    }
  }

  function chartHosts() {
    for (const [name, c] of hostCards) {
      const h = history.hosts[name];
      if (!h) continue;
      if (!c.plot) {
        c.plot = makeChart(c.chartDiv, [{ label: 'workers', key: 'workers' },
          { label: 'busy', key: 'busy' }, { label: 'desired', key: 'desired' },
          { label: 'min', key: 'min', opts: { dash: [4, 4] } },
          { label: 'max', key: 'max', opts: { dash: [4, 4] } }], sampledOpts());
      }
      c.plot.setData([secs(history.sample_ms), h.workers, h.busy, h.desired, h.min, h.max]);
      const ol = c.card.querySelector('.decisions');
      ol.replaceChildren(...h.decisions.slice(0, 10).map((d) => {
        const when = d.t_ms || d.time_ms;
        const what = d.reason || (d.from !== undefined ? `${d.from} -> ${d.to}` : JSON.stringify(d));
        return el('li', {}, el('span', { class: 'muted', text: when ? `${fmtTime(when)} ` : '' }),
          what);
      }));
    }
  }

  // --- breakers -----------------------------------------------------------

  const breakerCards = new Map();
  const STATES = ['closed', 'half_open', 'open', 'throttled'];

  function breakerCard(name) {
    const reset = el('button', { type: 'button', class: 'op', dataset: { action: 'reset' },
      text: 'Reset' });
    reset.addEventListener('click', () =>
      act(`/api/breakers/${enc(name)}/reset`, undefined, `breaker ${name} reset`));
    const chartDiv = el('div', { class: 'chart' },
      el('div', { class: 'title', text: 'state: 0 closed, 1 half-open, 2 open, 3 throttled' }));
    const card = el('div', { class: 'card', dataset: { service: name } },
      el('h3', {}, el('span', { class: 'name', text: name }),
        el('span', { class: 'badge state', text: '' }), el('span', { class: 'actions' }, reset)),
      el('div', { class: 'stats' }, stat('failure rate', 'fr'), stat('calls', 'calls'),
        stat('in flight', 'inflight'), stat('rate used', 'rate'), stat('open for', 'left')),
      el('div', { class: 'muted reason' }),
      chartDiv,
      el('div', { class: 'muted', text: 'state changes seen by corral-web, newest first' }),
      el('ol', { class: 'log changes' }));
    $('#breakers').append(card);
    const c = { card, chartDiv, plot: null };
    breakerCards.set(name, c);
    return c;
  }

  function renderBreakers() {
    const seen = new Set();
    for (const b of status.breakers) {
      seen.add(b.service);
      const c = breakerCards.get(b.service) || breakerCard(b.service);
      const now = b.time_ms || status.time_ms;
      let st = b.state;
      let reason = b.reason;
      let left = '–';
      if (b.throttled_until_ms > now) {
        st = 'throttled';
        reason = b.throttle_reason;
        left = fmtDur(b.throttled_until_ms - now);
      } else if (b.open_until_ms > now) {
        left = fmtDur(b.open_until_ms - now);
      }
      const badge = c.card.querySelector('.badge.state');
      badge.textContent = st;
      badge.className = `badge state ${st}`;
      setStat(c.card, 'fr', `${(100 * (b.failure_rate || 0)).toFixed(1)}%`);
      setStat(c.card, 'calls', b.calls);
      setStat(c.card, 'inflight', b.inflight === undefined ? '–' : b.inflight);
      setStat(c.card, 'rate', b.rate_limit > 0 ? `${b.rate_used} / ${b.rate_limit}` : '–');
      setStat(c.card, 'left', left);
      c.card.querySelector('.reason').textContent = reason || '';
    }
    for (const [name, c] of breakerCards) {
      if (!seen.has(name)) { c.card.remove(); breakerCards.delete(name); }
    }
  }

  function chartBreakers() {
    for (const [name, c] of breakerCards) {
      const h = history.breakers[name];
      if (!h) continue;
      if (!c.plot) {
        c.plot = makeChart(c.chartDiv, [{ label: 'state', key: 'state',
          opts: { paths: uPlot.paths.stepped({ align: 1 }),
            value: (u, v) => (v === null ? '–' : STATES[v]) } }],
        { scales: { x: { time: true, range: sampled }, y: { range: [0, 3] } },
          axes: [{ size: 30 }, { size: 44, splits: () => [0, 1, 2, 3] }] });
      }
      c.plot.setData([secs(history.sample_ms), h.state]);
      c.card.querySelector('.changes').replaceChildren(...h.changes.map((ch) =>
        el('li', {}, el('span', { class: 'muted', text: `${fmtTime(ch.t_ms)} ` }),
          `${ch.from} → ${ch.to}${ch.reason ? `: ${ch.reason}` : ''}`)));
    }
  }

  // --- dead jobs ----------------------------------------------------------

  let deadShown = { queue: null, count: -1 };

  function renderDeadSelect() {
    const sel = $('#dead-queue');
    const want = status.queues.map((q) => `${q.name}\u0000${q.dead}`).join('\u0001');
    if (sel.dataset.key !== want) {
      const keep = sel.value;
      sel.replaceChildren(...status.queues.map((q) =>
        el('option', { value: q.name, text: `${q.name} (${q.dead})` })));
      const withDead = status.queues.find((q) => q.dead > 0);
      sel.value = status.queues.some((q) => q.name === keep) ? keep
        : (withDead ? withDead.name : (status.queues[0] || {}).name || '');
      sel.dataset.key = want;
    }
    const q = status.queues.find((x) => x.name === sel.value);
    if (q && (deadShown.queue !== q.name || deadShown.count !== q.dead)) loadDead(q.name, q.dead);
    if (!q) $('#dead').replaceChildren();
  }

  async function loadDead(queue, count) {
    deadShown = { queue, count };
    try {
      const d = await getJSON(`/api/queues/${enc(queue)}/dead`);
      if (!d.jobs.length) {
        $('#dead').replaceChildren(el('p', { class: 'muted', text: `no dead jobs in ${queue}` }));
        return;
      }
      const rows = d.jobs.map((j) => {
        const retry = el('button', { type: 'button', class: 'op', text: 'Retry' });
        retry.addEventListener('click', () => act(`/api/queues/${enc(queue)}/dead/retry`,
          { ids: [j.id] }, `job ${j.id} queued again`));
        const look = el('button', { type: 'button', text: j.id });
        look.addEventListener('click', () => lookup(queue, j.id));
        return el('tr', { dataset: { id: j.id } }, el('td', {}, look),
          el('td', { text: j.attempts === undefined ? '–' : `${j.attempts}/${j.max_attempts}` }),
          el('td', { class: 'err', text: j.error || '' }),
          el('td', { text: fmtTime(j.finished_ms) }), el('td', {}, retry));
      });
      $('#dead').replaceChildren(el('p', { class: 'muted',
        text: `${d.total} dead in ${queue}${d.total > d.jobs.length ? `, newest ${d.jobs.length} shown` : ''}` }),
      el('table', {}, el('thead', {}, el('tr', {}, el('th', { text: 'id' }),
        el('th', { text: 'attempts' }), el('th', { text: 'error' }), el('th', { text: 'ended' }),
        el('th', {}))), el('tbody', {}, ...rows)));
    } catch (e) {
      $('#dead').replaceChildren(el('p', { class: 'muted', text: e.message }));
    }
  }

  // --- job lookup ---------------------------------------------------------

  async function lookup(queue, id) {
    $('#job-queue').value = queue;
    $('#job-id').value = id;
    const out = $('#job');
    try {
      const j = await getJSON(`/api/jobs/${enc(queue)}/${enc(id)}`);
      const rows = [];
      const add = (k, v) => { if (v !== undefined && v !== null && v !== '') rows.push(el('dt', { text: k }), el('dd', {}, v)); };
      add('state', j.state);
      add('attempts', j.max_attempts ? `${j.attempts} of ${j.max_attempts}` : j.attempts);
      add('priority', j.priority);
      add('service', j.service);
      add('worker', j.worker);
      for (const k of ['created_ms', 'run_at_ms', 'started_ms', 'finished_ms']) {
        if (j[k]) add(k.replace('_ms', ''), `${fmtTime(j[k])} · ${j[k]} ms`);
      }
      if (j.started_ms && j.finished_ms) add('ran for', fmtDur(j.finished_ms - j.started_ms));
      add('deferrals', j.deferrals);
      add('error', j.error);
      const pretty = (s) => { try { return JSON.stringify(JSON.parse(s), null, 2); } catch (e) { return s; } };
      if (j.result !== undefined && j.result !== null) add('result', el('pre', { text: pretty(j.result) }));
      if (j.payload !== undefined) add('payload', el('pre', { text: pretty(j.payload) }));
      const parts = [el('dl', { class: 'job' }, ...rows)];
      // Every job that has not ended; the server says whether it could be
      // cancelled (a running one needs a library that can stop it: 409).
      if (['queued', 'scheduled', 'dead', 'active'].includes(j.state)) {
        const cancel = el('button', { type: 'button', class: 'op danger', text: 'Cancel job' });
        cancel.addEventListener('click', async () => {
          try {
            const b = await post(`/api/jobs/${enc(queue)}/${enc(id)}/cancel`);
            say(`job ${id}: ${b.state || 'cancelled'}`);
            await poll(true);
          } catch (e) {
            say(`job ${id}: ${e.message}`, true);
          }
          lookup(queue, id);
        });
        parts.push(cancel);
      }
      out.replaceChildren(...parts);
    } catch (e) {
      out.replaceChildren(el('p', { class: 'muted', text: e.message }));
    }
  }

  // --- session ------------------------------------------------------------

  async function loadSession() {
    try {
      session = await getJSON('/api/session');
    } catch (e) {
      session = { authenticated: false, actions: false };
    }
    document.body.classList.toggle('operator', session.authenticated);
    $('#login').hidden = session.authenticated || !session.actions;
    $('#who').hidden = !session.authenticated;
    $('#readonly').hidden = session.actions;
  }

  $('#login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const tok = $('#token');
    const r = await fetch('/login', { method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tok.value }).toString() });
    tok.value = '';
    if (!r.ok) {
      const b = await r.json().catch(() => ({}));
      say(`log in: ${b.error || r.status}`, true);
    }
    await loadSession();
  });

  $('#logout').addEventListener('click', async () => {
    await fetch('/logout', { method: 'POST', credentials: 'same-origin' });
    await loadSession();
  });

  $('#dead-queue').addEventListener('change', () => {
    const q = status && status.queues.find((x) => x.name === $('#dead-queue').value);
    if (q) loadDead(q.name, q.dead);
  });
  $('#dead-retry-all').addEventListener('click', () => {
    const q = $('#dead-queue').value;
    if (q) act(`/api/queues/${enc(q)}/dead/retry`, { all: true }, `dead jobs of ${q} queued again`);
  });
  $('#dead-purge').addEventListener('click', () => {
    const q = $('#dead-queue').value;
    if (q && window.confirm(`Delete every dead job of ${q}?`)) {
      act(`/api/queues/${enc(q)}/dead/purge`, undefined, `dead jobs of ${q} deleted`);
    }
  });
  $('#job-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    lookup($('#job-queue').value.trim(), $('#job-id').value.trim());
  });

  // --- the loop -----------------------------------------------------------

  async function poll(force) {
    try {
      status = await getJSON('/api/status');
      $('#state').textContent = `updated ${fmtTime(status.time_ms)}`;
      $('#state').className = 'muted';
    } catch (e) {
      $('#state').textContent = `no data: ${e.message}`;
      $('#state').className = 'badge stale';
      return;
    }
    renderQueues();
    renderHosts();
    renderBreakers();
    renderDeadSelect();
    const keys = [status.queues.map((q) => q.name), status.hosts.map((h) => h.host),
      status.breakers.map((b) => b.service)].join('|');
    if (force || !history || keys !== lastKeys || polls % HISTORY_EVERY === 0) {
      lastKeys = keys;
      try {
        history = await getJSON('/api/history');
        chartQueues();
        chartHosts();
        chartBreakers();
      } catch (e) {
        // the numbers above are still right; the charts wait for the next try
      }
    }
    polls++;
  }

  async function loop() {
    await poll(false);
    setTimeout(loop, POLL_MS);
  }

  loadSession().then(loop);
}());
