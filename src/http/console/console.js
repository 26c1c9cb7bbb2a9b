// The console's page: a few views drawn from the HTTP API mounted beside it (api/v1.0), read
// again every two seconds. Every value from the store is written as text (textContent, or an
// attribute), never as markup.
'use strict';

(() => {
  // The path the console is mounted at (ending in `/`), which the server writes into the page.
  const API = `${document.body.dataset.base || '/'}api/v1.0`;
  const INSTANCES = `${API}/workflows/dapr`;
  const READ_ONLY = document.body.dataset.readOnly === 'true';
  const REFRESH_MS = 2000;
  const PAGE_SIZE = 25;
  const HISTORY_PAGE = 200;
  const STATUSES = ['PENDING', 'RUNNING', 'SUSPENDED', 'COMPLETED', 'FAILED', 'TERMINATED', 'CONTINUED_AS_NEW'];
  const TERMINAL = ['COMPLETED', 'FAILED', 'TERMINATED', 'CONTINUED_AS_NEW'];
  const main = document.getElementById('main');

  // ---- Building blocks --------------------------------------------------------------------

  /** An element with attributes (`on*` are listeners) and children (strings become text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** Calls the API; answers its JSON (or text), or throws an ApiError with its message. */
  async function api(method, path, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = body;
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      json = null;
    }
    if (!response.ok) {
      const message = json && json.message ? json.message : `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, json && json.errorCode, message);
    }
    return json === null ? text : json;
  }

  const instanceHref = (id) => `#/instance/${encodeURIComponent(id)}`;
  const instancePath = (id) => `${INSTANCES}/${encodeURIComponent(id)}`;
  const instanceLink = (id) => el('a', { href: instanceHref(id), class: 'id-link' }, id);
  const badge = (status) => el('span', { class: `badge ${status}`, 'data-status': status }, status);

  function time(iso) {
    if (!iso) return '';
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { hour12: false });
  }

  function age(iso) {
    if (!iso) return '';
    const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (seconds < 120) return `${seconds}s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
    return `${Math.round(seconds / 86400)}d`;
  }

  function duration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return '';
    if (ms < 1000) return `${ms} ms`;
    if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
    return `${(ms / 60000).toFixed(1)} min`;
  }

  /** A stored JSON text, indented when it parses. */
  function pretty(text) {
    if (text === null || text === undefined) return '';
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (_) {
      return String(text);
    }
  }

  function table(headers, rows, empty) {
    if (rows.length === 0) return el('p', { class: 'muted' }, empty);
    return el('table', {}, el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))), el('tbody', {}, rows));
  }

  let toastTimer = null;
  function toast(message) {
    const node = document.getElementById('toast');
    node.textContent = message;
    node.classList.add('shown');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => node.classList.remove('shown'), 2500);
  }

  // ---- Confirmation dialog ----------------------------------------------------------------

  const dialog = document.getElementById('dialog');
  let dialogAction = null;

  /**
   * Asks before acting: `body` holds the inputs, `valid()` says whether Confirm may be pressed,
   * `run()` acts (its error is shown in the dialog, which then stays open).
   */
  function confirmAction({ title, body, confirmLabel, danger, valid, run }) {
    document.getElementById('dialog-title').textContent = title;
    document.getElementById('dialog-body').replaceChildren(...(body || []));
    document.getElementById('dialog-error').textContent = '';
    const confirm = document.getElementById('dialog-confirm');
    confirm.textContent = confirmLabel;
    confirm.className = danger ? 'danger primary' : 'primary';
    const check = () => {
      confirm.disabled = valid ? !valid() : false;
    };
    dialog.oninput = check;
    check();
    dialogAction = run;
    dialog.showModal();
  }

  document.getElementById('dialog-cancel').addEventListener('click', () => dialog.close());
  document.getElementById('dialog-confirm').addEventListener('click', async () => {
    const confirm = document.getElementById('dialog-confirm');
    if (!dialogAction || confirm.disabled) return;
    confirm.disabled = true;
    try {
      const message = await dialogAction();
      dialog.close();
      if (message) toast(message);
      refresh();
    } catch (error) {
      document.getElementById('dialog-error').textContent = error.message;
    } finally {
      confirm.disabled = false;
    }
  });

  /** A JSON editor: a textarea and a line saying whether its text is JSON (empty is allowed). */
  function jsonEditor(id, placeholder) {
    const area = el('textarea', { id, placeholder, spellcheck: 'false' });
    const hint = el('div', { class: 'hint', id: `${id}-hint` }, 'Empty, or any JSON value.');
    const state = { area, hint, ok: true };
    area.addEventListener('input', () => {
      const text = area.value.trim();
      if (text === '') {
        state.ok = true;
        hint.textContent = 'Empty, or any JSON value.';
      } else {
        try {
          JSON.parse(text);
          state.ok = true;
          hint.textContent = 'Valid JSON.';
        } catch (error) {
          state.ok = false;
          hint.textContent = `Not JSON: ${error.message}`;
        }
      }
      hint.classList.toggle('bad', !state.ok);
    });
    return state;
  }

  // ---- Views ------------------------------------------------------------------------------

  /** The view on screen: `refresh()` reads again and redraws what it shows. */
  let view = null;

  function currentRoute() {
    const hash = location.hash.slice(1) || '/';
    const [path, query] = hash.split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(query || '');
    if (parts[0] === 'instance' && parts.length > 1) return { name: 'instance', id: parts.slice(1).join('/'), params };
    if (parts[0] === 'queues') return { name: 'queues', params };
    if (parts[0] === 'schedules') return { name: 'schedules', params };
    return { name: 'instances', params };
  }

  function show() {
    const route = currentRoute();
    for (const link of document.querySelectorAll('header nav a')) {
      link.classList.toggle('current', link.dataset.nav === (route.name === 'instance' ? 'instances' : route.name));
    }
    const views = { instances: instancesView, instance: instanceView, queues: queuesView, schedules: schedulesView };
    view = views[route.name](route);
    main.replaceChildren(...view.nodes);
    refresh();
  }

  let refreshing = false;
  async function refresh() {
    if (!view || refreshing || dialog.open) return;
    refreshing = true;
    const live = document.getElementById('live');
    try {
      await view.refresh();
      live.classList.remove('stale');
      live.textContent = 'live';
    } catch (error) {
      live.classList.add('stale');
      live.textContent = `cannot read: ${error.message}`;
    } finally {
      refreshing = false;
    }
  }

  // The instance list: counts per status, filters (kept in the address), newest first, paged.
  function instancesView(route) {
    const params = route.params;
    const counts = el('div', { class: 'counts', id: 'counts' });
    const status = el('select', { id: 'filter-status' }, el('option', { value: '' }, 'Any status'),
      STATUSES.map((s) => el('option', { value: s }, s)));
    status.value = params.get('status') || '';
    const workflow = el('input', { id: 'filter-workflow', placeholder: 'workflow name', value: params.get('workflow') || '' });
    const parent = el('input', { id: 'filter-parent', placeholder: 'parent instance id', value: params.get('parent') || '' });
    const after = el('input', { id: 'filter-after', type: 'datetime-local', value: params.get('after') || '' });
    const before = el('input', { id: 'filter-before', type: 'datetime-local', value: params.get('before') || '' });
    const apply = () => {
      const next = new URLSearchParams();
      for (const [key, input] of [['status', status], ['workflow', workflow], ['parent', parent], ['after', after], ['before', before]]) {
        if (input.value.trim()) next.set(key, input.value.trim());
      }
      location.hash = `#/?${next}`;
    };
    status.addEventListener('change', apply);
    for (const input of [workflow, parent]) input.addEventListener('keydown', (e) => { if (e.key === 'Enter') apply(); });
    const search = el('input', { id: 'search-id', placeholder: 'open an instance by id' });
    const open = () => { if (search.value.trim()) location.hash = instanceHref(search.value.trim()); };
    search.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });

    const filters = el('div', { class: 'filters' },
      el('label', {}, 'Status', status),
      el('label', {}, 'Workflow', workflow),
      el('label', {}, 'Created after', after),
      el('label', {}, 'Created before', before),
      el('label', {}, 'Parent', parent),
      el('button', { type: 'button', id: 'filter-apply', onclick: apply }, 'Filter'));
    const finder = el('div', { class: 'finder' }, search, el('button', { type: 'button', id: 'search-open', onclick: open }, 'Open'));
    const results = el('div', { id: 'instances' });
    const pager = el('div', { class: 'pager' });
    // Continuation tokens of the pages before this one, and this page's.
    const tokens = [];
    let token = null;

    const query = () => {
      const q = new URLSearchParams({ order: 'newest', pageSize: String(PAGE_SIZE), omitPayloads: 'true' });
      if (params.get('status')) q.set('runtimeStatus', params.get('status'));
      if (params.get('workflow')) q.set('workflowName', params.get('workflow'));
      if (params.get('parent')) q.set('parentInstanceID', params.get('parent'));
      for (const [key, name] of [['after', 'createdAfter'], ['before', 'createdBefore']]) {
        const at = params.get(key) ? new Date(params.get(key)).getTime() : NaN;
        if (!Number.isNaN(at)) q.set(name, String(at));
      }
      if (token) q.set('continuationToken', token);
      return q;
    };

    async function refreshList() {
      const [page, tally] = await Promise.all([
        api('GET', `${INSTANCES}?${query()}`),
        api('GET', `${API}/instanceCounts`),
      ]);
      counts.replaceChildren(...STATUSES.map((s) => {
        const n = tally.counts[s] || 0;
        const shown = n >= tally.atMost ? `${n}+` : String(n);
        return el('button', {
          type: 'button', class: params.get('status') === s ? 'on' : '', 'data-count': s,
          onclick: () => { status.value = params.get('status') === s ? '' : s; apply(); },
        }, s, el('b', {}, shown));
      }));
      const rows = page.instances.map((i) => el('tr', { 'data-instance': i.instanceID },
        el('td', { class: 'id' }, instanceLink(i.instanceID)),
        el('td', {}, i.workflowName),
        el('td', {}, badge(i.runtimeStatus)),
        el('td', {}, time(i.createdAt)),
        el('td', {}, time(i.lastUpdatedAt)),
        el('td', { class: 'num' }, i.priority),
        el('td', {}, i.parentInstanceID ? instanceLink(i.parentInstanceID) : ''),
        el('td', { class: 'muted' }, i.limits || '')));
      results.replaceChildren(table(['Instance', 'Workflow', 'Status', 'Created', 'Updated', 'Priority', 'Parent', 'Waits behind'],
        rows, 'No instances match.'));
      pager.replaceChildren(
        el('button', { type: 'button', id: 'page-newer', disabled: tokens.length === 0,
          onclick: () => { token = tokens.pop() || null; refresh(); } }, '← Newer'),
        el('button', { type: 'button', id: 'page-older', disabled: !page.continuationToken,
          onclick: () => { tokens.push(token); token = page.continuationToken; refresh(); } }, 'Older →'),
        el('span', { class: 'muted' }, `page ${tokens.length + 1}`));
    }

    return {
      nodes: [el('div', { class: 'title-row' }, el('h1', {}, 'Instances'), finder), counts, filters, results, pager],
      refresh: refreshList,
    };
  }

  // One instance: details, actions, payloads, diagram, children, queued calls, the timeline.
  function instanceView(route) {
    const id = route.id;
    const header = el('div', {});
    const actions = el('div', { class: 'actions', id: 'actions' });
    const details = el('div', { class: 'panel' });
    const payloads = el('div', { class: 'payloads' });
    const diagram = el('div', { class: 'panel diagram' });
    const children = el('div', {});
    const queued = el('div', {});
    const timeline = el('div', { id: 'timeline' });
    let shownVersion = null;
    let historyLimit = HISTORY_PAGE;
    let status = null;

    function drawActions() {
      if (READ_ONLY || !status) return actions.replaceChildren();
      const s = status.runtimeStatus;
      const terminal = TERMINAL.includes(s);
      const buttons = [];
      if (s === 'RUNNING' || s === 'PENDING') buttons.push(button('action-suspend', 'Suspend', false, suspend));
      if (s === 'SUSPENDED') buttons.push(button('action-resume', 'Resume', false, resume));
      if (!terminal) buttons.push(button('action-raise', 'Raise event…', false, raise));
      if (!terminal) buttons.push(button('action-terminate', 'Terminate…', true, terminate));
      if (terminal) buttons.push(button('action-rerun', 'Rerun…', false, rerun));
      if (terminal) buttons.push(button('action-purge', 'Purge…', true, purge));
      actions.replaceChildren(...buttons);
    }

    const button = (bid, label, danger, onclick) =>
      el('button', { type: 'button', id: bid, class: danger ? 'danger' : '', onclick }, label);

    function suspend() {
      confirmAction({ title: `Suspend ${id}?`, confirmLabel: 'Suspend',
        body: [el('p', {}, 'It stops at its next step and waits until resumed; events raised meanwhile are kept.')],
        run: async () => { await api('POST', `${instancePath(id)}/pause`); return 'Suspended'; } });
    }
    function resume() {
      confirmAction({ title: `Resume ${id}?`, confirmLabel: 'Resume', body: [],
        run: async () => { await api('POST', `${instancePath(id)}/resume`); return 'Resumed'; } });
    }
    function terminate() {
      const reason = el('input', { id: 'terminate-reason', placeholder: 'why (optional)' });
      confirmAction({ title: `Terminate ${id}?`, confirmLabel: 'Terminate', danger: true,
        body: [el('p', {}, 'It stops for good, and so do its running children.'), el('label', { for: 'terminate-reason' }, 'Reason'), reason],
        run: async () => {
          await api('POST', `${instancePath(id)}/terminate`, reason.value.trim() ? JSON.stringify(reason.value.trim()) : '');
          return 'Terminated';
        } });
    }
    function raise() {
      const name = el('input', { id: 'event-name', placeholder: 'event name' });
      const payload = jsonEditor('event-payload', '{"approved": true}');
      confirmAction({ title: `Raise an event for ${id}`, confirmLabel: 'Raise',
        body: [el('label', { for: 'event-name' }, 'Event name'), name, el('label', { for: 'event-payload' }, 'Payload (JSON)'), payload.area, payload.hint],
        valid: () => name.value.trim() !== '' && payload.ok,
        run: async () => {
          const body = payload.area.value.trim() || 'null';
          await api('POST', `${instancePath(id)}/raiseEvent/${encodeURIComponent(name.value.trim())}`, body);
          return `Raised ${name.value.trim()}`;
        } });
    }
    function rerun() {
      const from = el('input', { id: 'rerun-from', type: 'number', min: '0', value: '0' });
      const newId = el('input', { id: 'rerun-id', placeholder: 'new instance id (optional)' });
      const input = jsonEditor('rerun-input', 'new input (optional: the same input when empty)');
      confirmAction({ title: `Rerun ${id}`, confirmLabel: 'Rerun',
        body: [el('p', {}, 'A new instance replays the recorded steps before the chosen one and runs the rest.'),
          el('label', { for: 'rerun-from' }, 'From step (seq)'), from, el('label', { for: 'rerun-id' }, 'New id'), newId,
          el('label', { for: 'rerun-input' }, 'Input (JSON)'), input.area, input.hint],
        valid: () => /^\d+$/.test(from.value) && input.ok,
        run: async () => {
          const q = new URLSearchParams({ fromStep: from.value });
          if (newId.value.trim()) q.set('newInstanceID', newId.value.trim());
          const answer = await api('POST', `${instancePath(id)}/rerun?${q}`, input.area.value.trim());
          location.hash = instanceHref(answer.instanceID);
          return `Started ${answer.instanceID}`;
        } });
    }
    function purge() {
      confirmAction({ title: `Purge ${id}?`, confirmLabel: 'Purge', danger: true,
        body: [el('p', {}, 'Its record, history and events are deleted, with its children’s. This cannot be undone.')],
        run: async () => { await api('POST', `${instancePath(id)}/purge`); location.hash = '#/'; return `Purged ${id}`; } });
    }

    function drawDetails(s) {
      header.replaceChildren(el('h1', {}, id, ' ', el('span', { id: 'instance-status' }, badge(s.runtimeStatus))));
      const rows = [
        ['Workflow', s.workflowName],
        ['Created', time(s.createdAt)],
        ['Updated', time(s.lastUpdatedAt)],
        ['Priority', s.priority],
        ['Concurrency key', s.concurrencyKey || '—'],
        ['Parent', s.parentInstanceID ? instanceLink(s.parentInstanceID) : '—'],
      ];
      if (s.wakeAt) rows.push(['Due at', time(s.wakeAt)]);
      if (s.limits) rows.push(['Waits behind', s.limits]);
      if (s.nextStartAt) rows.push(['Next start', time(s.nextStartAt)]);
      details.replaceChildren(el('dl', { class: 'grid' }, rows.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])));
      const p = s.properties || {};
      const boxes = [['Input', p['dapr.workflow.input'], 'input']];
      if (p['dapr.workflow.output'] !== undefined) boxes.push(['Output', p['dapr.workflow.output'], 'output']);
      if (p['dapr.workflow.custom_status'] !== undefined) boxes.push(['Custom status', p['dapr.workflow.custom_status'], 'custom-status']);
      if (p['dapr.workflow.failure.error_message'] !== undefined) {
        boxes.push(['Error', `${p['dapr.workflow.failure.error_type'] || ''}: ${p['dapr.workflow.failure.error_message']}`, 'error']);
      }
      payloads.replaceChildren(...boxes.map(([label, text, key]) =>
        el('div', { class: 'panel' }, el('strong', {}, label), el('pre', { id: `payload-${key}` }, pretty(text)))));
    }

    async function drawTimeline() {
      const answer = await api('GET', `${instancePath(id)}/history?offset=0&limit=${Math.min(historyLimit, 1000)}`);
      const items = answer.history.filter((item) => item.type !== 'status');
      // Time since the latest item recorded before this one (a fan-out's branches finish in any
      // order, so not simply the row above).
      let latest = null;
      const rows = items.map((item) => {
        const at = item.type === 'step' ? item.recordedAt : item.at;
        const ms = at ? new Date(at).getTime() : null;
        const since = latest !== null && ms !== null ? Math.max(0, ms - latest) : null;
        if (ms !== null) latest = latest === null ? ms : Math.max(latest, ms);
        const detail = item.type === 'step' ? item.payload : item.input !== undefined ? item.input : item.payload;
        const what = item.type === 'step' ? item.kind : item.type === 'created' ? 'created' : 'event (waiting)';
        return el('tr', { 'data-kind': what },
          el('td', { class: 'num' }, item.type === 'step' ? item.seq : ''),
          el('td', {}, what),
          el('td', {}, item.type === 'step' || item.type === 'eventBuffered' ? item.name : item.workflowName),
          el('td', {}, item.type === 'step' ? badge(item.status) : ''),
          el('td', { class: 'num' }, item.type === 'step' && item.attempt > 1 ? item.attempt : ''),
          el('td', {}, time(at)),
          el('td', { class: 'num' }, since === null ? '' : `+${duration(since)}`),
          el('td', {}, detail ? el('details', {}, el('summary', {}, 'payload'), el('pre', {}, pretty(detail))) : ''));
      });
      const total = answer.total - 1;
      const more = answer.history.length < answer.total && historyLimit < 1000
        ? el('button', { type: 'button', id: 'timeline-more', onclick: () => { historyLimit += HISTORY_PAGE; drawTimeline(); } }, 'Show more')
        : null;
      timeline.replaceChildren(
        table(['Seq', 'What', 'Name', 'Status', 'Attempts', 'Recorded', 'Since previous', ''], rows, 'Nothing recorded yet.'),
        el('div', { class: 'pager' }, el('span', { class: 'muted' }, `${items.length} of ${total} shown`), more));
    }

    async function refreshInstance() {
      try {
        status = await api('GET', instancePath(id));
      } catch (error) {
        if (error.status === 404) {
          header.replaceChildren(el('h1', {}, id));
          details.replaceChildren(el('p', { class: 'error', id: 'not-found' }, error.message));
          for (const part of [actions, payloads, diagram, children, queued, timeline]) part.replaceChildren();
          status = null;
          return;
        }
        throw error;
      }
      drawDetails(status);
      drawActions();
      const version = `${status.lastUpdatedAt}|${status.runtimeStatus}`;
      const [kids, calls] = await Promise.all([
        api('GET', `${INSTANCES}?parentInstanceID=${encodeURIComponent(id)}&pageSize=100&omitPayloads=true`),
        api('GET', `${instancePath(id)}/activities`),
      ]);
      children.replaceChildren(...(kids.instances.length === 0 ? [] : [el('h2', {}, 'Children'),
        table(['Instance', 'Workflow', 'Status', 'Created'], kids.instances.map((k) => el('tr', {},
          el('td', { class: 'id' }, instanceLink(k.instanceID)), el('td', {}, k.workflowName),
          el('td', {}, badge(k.runtimeStatus)), el('td', {}, time(k.createdAt)))), '')]));
      queued.replaceChildren(...(calls.length === 0 ? [] : [el('h2', {}, 'Activity calls in the task queue'),
        table(['Seq', 'Activity', 'Attempt', 'Key', 'State', 'Queued', 'Waits behind'], calls.map((c) => el('tr', {},
          el('td', { class: 'num' }, c.seq), el('td', {}, c.activity), el('td', { class: 'num' }, c.attempt),
          el('td', {}, c.concurrencyKey), el('td', {}, c.state === 'RUNNING' ? `running on ${c.worker}` : c.state.toLowerCase()),
          el('td', {}, time(c.queuedAt)), el('td', { class: 'muted' }, c.limits || ''))), '')]));
      if (version !== shownVersion) {
        shownVersion = version;
        diagram.replaceChildren(el('img', { id: 'diagram', alt: `diagram of ${id}`,
          src: `${instancePath(id)}/diagram.svg?v=${encodeURIComponent(version)}` }));
        await drawTimeline();
      }
    }

    return {
      nodes: [header, actions, details, payloads, el('h2', {}, 'Diagram'), diagram, children, queued, el('h2', {}, 'History'), timeline],
      refresh: refreshInstance,
    };
  }

  // Queues: what waits, behind which key and limit.
  function queuesView() {
    const body = el('div', { id: 'queues' });
    async function refreshQueues() {
      const queues = await api('GET', `${API}/queues`);
      body.replaceChildren(table(['Kind', 'Name', 'Key', 'Waiting', 'Running', 'Oldest waiting', 'Limits', 'Next start'],
        queues.map((q) => el('tr', { 'data-queue': `${q.kind}:${q.name}:${q.concurrencyKey}` },
          el('td', {}, q.kind), el('td', {}, q.name), el('td', {}, q.concurrencyKey || '—'),
          el('td', { class: 'num' }, q.waiting), el('td', { class: 'num' }, q.running),
          el('td', {}, q.oldestWaitingSince ? `${age(q.oldestWaitingSince)} ago` : ''),
          el('td', { class: 'muted' }, q.limits || ''), el('td', {}, time(q.nextStartAt)))),
        'Nothing is queued: no activity call waits in the task queue and no instance is unfinished.'));
    }
    return {
      nodes: [el('h1', {}, 'Queues'),
        el('p', { class: 'muted' }, 'Activity calls in the task queue per activity and concurrency key, and unfinished instances per workflow and key.'),
        body],
      refresh: refreshQueues,
    };
  }

  // Schedules: their next and recent runs, with pause, resume and trigger.
  function schedulesView() {
    const body = el('div', { id: 'schedules' });
    function act(schedule, verb, label) {
      return el('button', { type: 'button', 'data-action': `${verb}:${schedule.scheduleID}`, onclick: () => confirmAction({
        title: `${label} schedule ${schedule.scheduleID}?`, confirmLabel: label, body: [],
        run: async () => {
          const answer = await api('POST', `${API}/schedules/${encodeURIComponent(schedule.scheduleID)}/${verb}`);
          return verb === 'trigger' && answer && answer.instanceID ? `Started ${answer.instanceID}` : `${label}d`;
        } }) }, label);
    }
    async function refreshSchedules() {
      const schedules = await api('GET', `${API}/schedules`);
      body.replaceChildren(table(['Schedule', 'Workflow', 'Cron', 'Time zone', 'Overlap', 'State', 'Next run', 'Recent runs', ''],
        schedules.map((s) => el('tr', { 'data-schedule': s.scheduleID },
          el('td', { class: 'id' }, s.scheduleID), el('td', {}, s.workflowName), el('td', { class: 'id' }, s.cron),
          el('td', {}, s.timeZone), el('td', {}, s.overlap), el('td', {}, s.paused ? 'paused' : 'active'),
          el('td', {}, time(s.nextRuns[0])),
          el('td', {}, s.recentRuns.slice(-3).reverse().map((r) => el('div', {}, time(r.tick), ' ',
            r.instanceID ? instanceLink(r.instanceID) : el('span', { class: 'muted' }, r.skipped || (r.buffered ? 'waiting' : ''))))),
          el('td', {}, READ_ONLY ? '' : [s.paused ? act(s, 'resume', 'Resume') : act(s, 'pause', 'Pause'), ' ', act(s, 'trigger', 'Trigger')]))),
        'No schedules.'));
    }
    return { nodes: [el('h1', {}, 'Schedules'), body], refresh: refreshSchedules };
  }

  window.addEventListener('hashchange', show);
  setInterval(refresh, REFRESH_MS);
  show();
})();
