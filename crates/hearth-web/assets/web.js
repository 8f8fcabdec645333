// Hearth's screens: sign-in, the clinic's day, a patient's chart and the patient's app.
// Hand-written, no dependencies. Pages are rendered by the server without data; this script signs
// in through the app API's browser mode (refresh token in an HttpOnly cookie, CSRF double submit)
// and fills the page from the same app API every client uses. Texts come from the page's
// #hearth-strings block (Fluent, English or Hindi). Data is only ever put in the page as text
// (textContent), never as HTML.
'use strict';
(function () {
  const STRINGS = JSON.parse(document.getElementById('hearth-strings').textContent || '{}');
  const t = (key) => STRINGS[key] || key;
  const page = document.body.dataset.page;
  const SESSION = 'hearth.session';
  const CSRF_COOKIE = '__Host-hearth-csrf';

  // ---- session ----------------------------------------------------------------------------
  function cookie(name) {
    for (const part of document.cookie.split(';')) {
      const i = part.indexOf('=');
      if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
    }
    return null;
  }
  function saveTokens(answer) {
    const expires = Date.now() + Math.max(0, (answer.expires_in || 0) - 30) * 1000;
    sessionStorage.setItem(SESSION, JSON.stringify({ token: answer.access_token, expires }));
  }
  function accessToken() {
    try {
      const s = JSON.parse(sessionStorage.getItem(SESSION) || 'null');
      return s && s.expires > Date.now() ? s.token : null;
    } catch (e) {
      return null;
    }
  }
  // A new access token from the refresh cookie (rotated by the server); false when the session is over.
  async function refresh() {
    const csrf = cookie(CSRF_COOKIE);
    if (!csrf) return false;
    const r = await fetch('/api/v1/auth/refresh', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ cookie: true }),
    });
    if (!r.ok) return false;
    saveTokens(await r.json());
    return true;
  }
  function toSignIn(expired) {
    sessionStorage.removeItem(SESSION);
    const next = location.pathname + location.search;
    location.assign('/signin?next=' + encodeURIComponent(next) + (expired ? '&expired=1' : ''));
  }
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message || code || String(status));
      this.status = status;
      this.code = code;
    }
  }
  // A call of the app API with the access token; renews it once on 401, else back to sign-in.
  async function api(method, path, body) {
    const send = (token) => fetch(path, {
      method,
      credentials: 'same-origin',
      headers: Object.assign({ Authorization: 'Bearer ' + token, Accept: 'application/json' },
        body === undefined ? {} : { 'Content-Type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let token = accessToken();
    if (!token && (await refresh())) token = accessToken();
    if (!token) {
      toSignIn(true);
      throw new ApiError(401, 'signed_out');
    }
    let r = await send(token);
    if (r.status === 401) {
      if (await refresh()) {
        r = await send(accessToken());
      } else {
        toSignIn(true);
        throw new ApiError(401, 'signed_out');
      }
    }
    if (r.headers.get('X-Hearth-Offline')) {
      const offline = document.getElementById('offline');
      if (offline) offline.hidden = false;
    }
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (e) {
      json = null;
    }
    if (!r.ok) {
      const err = (json && json.error) || {};
      throw new ApiError(r.status, err.code, err.message);
    }
    return json;
  }
  async function signOut() {
    const csrf = cookie(CSRF_COOKIE);
    const token = accessToken();
    const headers = { 'Content-Type': 'application/json' };
    if (csrf) headers['X-CSRF-Token'] = csrf;
    if (token) headers.Authorization = 'Bearer ' + token;
    try {
      await fetch('/api/v1/auth/logout', { method: 'POST', credentials: 'same-origin', headers, body: '{}' });
    } catch (e) {
      // Offline: the local session is still ended below.
    }
    sessionStorage.removeItem(SESSION);
    if (navigator.serviceWorker && navigator.serviceWorker.controller) {
      navigator.serviceWorker.controller.postMessage('sign-out');
    }
    if (window.caches) await caches.delete('hearth-data');
    location.assign('/signin' + (page === 'app' ? '?next=%2Fapp' : ''));
  }

  // ---- DOM helpers ------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function fill(list, items, empty) {
    list.replaceChildren(...(items.length ? items : [el('li', {}, empty)]));
  }
  function notice(text) {
    const n = document.getElementById('notice');
    n.textContent = text;
    n.hidden = false;
  }
  function failed(list, e) {
    if (e && e.code === 'signed_out') return;
    fill(list, [], e && e.status === 403 ? t('not-available') : t('error-generic'));
  }
  const locale = () => (document.documentElement.lang === 'hi' ? 'hi-IN' : 'en-GB');
  const time = (iso) => new Date(iso).toLocaleTimeString(locale(), { hour: '2-digit', minute: '2-digit' });
  const day = (iso) => new Date(iso).toLocaleDateString(locale(), { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });
  const localDate = (d) => d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0');
  const statusText = (s) => t('status-' + s) !== 'status-' + s ? t('status-' + s) : s;
  function humanName(resource) {
    const n = (resource && resource.name && resource.name[0]) || {};
    if (n.text) return n.text;
    return [(n.prefix || []).join(' '), (n.given || []).join(' '), n.family].filter(Boolean).join(' ') || '—';
  }
  function codeText(cc) {
    if (!cc) return '—';
    if (cc.text) return cc.text;
    const c = (cc.coding || [])[0] || {};
    return c.display || c.code || '—';
  }
  async function fhirSearch(path) {
    const bundle = await api('GET', path);
    return ((bundle && bundle.entry) || []).map((e) => e.resource).filter(Boolean);
  }
  async function practitioners() {
    return fhirSearch('/fhir/Practitioner?_count=100&_sort=family');
  }
  async function patientNames(ids) {
    const unique = [...new Set(ids.filter(Boolean))];
    if (!unique.length) return {};
    const found = await fhirSearch('/fhir/Patient?_id=' + unique.map(encodeURIComponent).join(',') + '&_count=' + unique.length);
    return Object.fromEntries(found.map((p) => [p.id, humanName(p)]));
  }

  // ---- sign-in ----------------------------------------------------------------------------
  function signInPage() {
    const form = document.getElementById('signin-form');
    const error = document.getElementById('signin-error');
    const codeStep = document.getElementById('code-step');
    const params = new URLSearchParams(location.search);
    const next = params.get('next');
    // Only a path of this site: never an open redirect.
    const target = next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
    if (params.get('expired')) notice(t('session-expired'));
    const show = (key) => {
      error.textContent = t(key);
      error.hidden = false;
    };
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      const body = { email: form.email.value.trim(), password: form.password.value, cookie: true };
      if (!codeStep.hidden) body.code = form.code.value.trim();
      const button = document.getElementById('signin-submit');
      button.disabled = true;
      try {
        const r = await fetch('/api/v1/auth/login', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        });
        const answer = await r.json().catch(() => ({}));
        if (r.ok && answer.mfa_enrollment_required) {
          show('signin-mfa-setup');
        } else if (r.ok) {
          saveTokens(answer);
          location.assign(target);
          return;
        } else {
          const code = (answer.error || {}).code;
          if (code === 'mfa_required') {
            codeStep.hidden = false;
            document.getElementById('password-step').hidden = true;
            button.textContent = t('signin-continue');
            form.code.focus();
          } else if (code === 'totp_invalid') {
            show('signin-code-failed');
            form.code.select();
          } else if (r.status === 429) {
            show('signin-locked');
          } else if (r.status === 401) {
            show('signin-failed');
          } else {
            show('error-generic');
          }
        }
      } catch (e) {
        show('error-generic');
      }
      button.disabled = false;
    });
  }

  // ---- the clinic's day ---------------------------------------------------------------------
  async function clinicPage() {
    const select = document.getElementById('practitioner');
    const list = document.getElementById('appointments');
    const queue = document.getElementById('queue');
    let me;
    try {
      me = await api('GET', '/api/v1/auth/me');
    } catch (e) {
      return failed(list, e);
    }
    const own = me.fhirUser && me.fhirUser.startsWith('Practitioner/') ? me.fhirUser.slice('Practitioner/'.length) : null;
    try {
      const all = await practitioners();
      select.replaceChildren(...all.map((p) => el('option', { value: p.id, selected: p.id === own }, humanName(p))));
      if (!own && all.length) notice(t('no-practitioner'));
    } catch (e) {
      failed(list, e);
    }
    async function schedule() {
      if (!select.value) return fill(list, [], t('no-appointments'));
      try {
        const answer = await api('GET', '/api/v1/appointments?practitioner=' + encodeURIComponent(select.value));
        const today = localDate(new Date());
        const todays = (answer.appointments || []).filter((a) => a.start && localDate(new Date(a.start)) === today);
        const names = await patientNames(todays.map((a) => a.patient));
        fill(list, todays.map((a) => appointmentRow(a, names[a.patient])), t('no-appointments'));
      } catch (e) {
        failed(list, e);
      }
    }
    function appointmentRow(a, name) {
      const status = el('span', { class: 'status' }, statusText(a.status));
      const who = a.patient ? el('a', { href: '/patients/' + encodeURIComponent(a.patient) }, name || a.patient) : '—';
      const row = el('li', { 'data-appointment': a.id }, el('span', {}, el('strong', {}, time(a.start)), ' ', who), status);
      if (a.status === 'booked') {
        const button = el('button', {
          type: 'button',
          class: 'check-in',
          'aria-label': t('check-in') + ': ' + (name || '') + ' ' + time(a.start),
          onclick: async () => {
            button.disabled = true;
            try {
              const done = await api('POST', '/api/v1/appointments/' + encodeURIComponent(a.id) + '/check-in');
              status.textContent = statusText(done.appointment.status);
              button.replaceWith(el('span', { class: 'tag routine' }, t('checked-in')));
            } catch (e) {
              button.disabled = false;
              notice(e.message || t('error-generic'));
            }
          },
        }, t('check-in'));
        row.append(button);
      }
      return row;
    }
    select.addEventListener('change', schedule);
    await schedule();
    try {
      const answer = await api('GET', '/api/v1/intake/queue');
      const sessions = answer.sessions || [];
      // The API orders by urgency; red flags go first whatever their urgency label.
      sessions.sort((x, y) => Number((y.red_flags || []).length > 0) - Number((x.red_flags || []).length > 0));
      const names = await patientNames(sessions.map((s) => s.patient));
      fill(queue, sessions.map((s) => {
        const flags = s.red_flags || [];
        return el('li', { 'data-session': s.id, class: flags.length ? 'flagged' : undefined },
          el('span', {}, el('span', { class: 'tag ' + s.urgency }, t('urgency-' + s.urgency)), ' ',
            el('a', { href: '/patients/' + encodeURIComponent(s.patient) }, names[s.patient] || s.patient)),
          flags.length ? el('span', { class: 'flags' }, t('red-flags') + ': ' + flags.join(', ')) : null);
      }), t('queue-empty'));
    } catch (e) {
      failed(queue, e);
    }
  }

  // ---- a patient's chart ------------------------------------------------------------------
  async function chartPage() {
    const id = document.body.dataset.patient;
    const q = encodeURIComponent(id);
    const demo = document.getElementById('demographics');
    try {
      const p = await api('GET', '/api/v1/patients/' + q + '/demographics');
      document.querySelector('h1').textContent = p.name || t('chart-title');
      const rows = [[t('born'), p.birthDate], [t('gender'), p.gender], [t('phone'), p.phone], [t('email'), p.email]];
      demo.replaceChildren(...rows.filter((r) => r[1]).flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    } catch (e) {
      if (e.code !== 'signed_out') demo.replaceChildren(el('dt', {}, t('demographics')), el('dd', {}, t('not-available')));
    }
    const sections = [
      ['problems', '/fhir/Condition?patient=' + q + '&_count=50', (r) => codeText(r.code)],
      ['medications', '/fhir/MedicationRequest?patient=' + q + '&_count=50', (r) => codeText(r.medicationCodeableConcept) + (r.status ? ' (' + r.status + ')' : '')],
      ['allergies', '/fhir/AllergyIntolerance?patient=' + q + '&_count=50', (r) => codeText(r.code)],
      ['vitals', '/fhir/Observation?patient=' + q + '&category=vital-signs&_sort=-date&_count=10', (r) => {
        const v = r.valueQuantity ? r.valueQuantity.value + ' ' + (r.valueQuantity.unit || '') : (r.component || []).map((c) => c.valueQuantity ? c.valueQuantity.value : '').join('/');
        return codeText(r.code) + ': ' + v + (r.effectiveDateTime ? ' — ' + day(r.effectiveDateTime) : '');
      }],
    ];
    await Promise.all(sections.map(async ([listId, path, show]) => {
      const list = document.getElementById(listId);
      try {
        const found = await fhirSearch(path);
        fill(list, found.map((r) => el('li', {}, show(r))), t('none-recorded'));
      } catch (e) {
        failed(list, e);
      }
    }));
    const docs = document.getElementById('documents');
    try {
      const answer = await api('GET', '/api/v1/documents?patient=' + q);
      fill(docs, (answer.documents || []).map((d) => el('li', {}, d.title || d.filename || d.id, d.date ? ' — ' + day(d.date) : '')), t('none-recorded'));
    } catch (e) {
      failed(docs, e);
    }
  }

  // ---- the patient's app ------------------------------------------------------------------
  async function appPage() {
    if (navigator.serviceWorker) {
      navigator.serviceWorker.register('/app/sw.js', { scope: '/app' }).catch(() => {});
    }
    const mine = document.getElementById('my-appointments');
    const letters = document.getElementById('letters');
    let me;
    try {
      me = await api('GET', '/api/v1/auth/me');
    } catch (e) {
      failed(mine, e);
      return failed(letters, e);
    }
    const patient = me.fhirUser && me.fhirUser.startsWith('Patient/') ? me.fhirUser.slice('Patient/'.length) : null;
    let doctors = {};
    async function appointments() {
      try {
        const answer = await api('GET', '/api/v1/appointments');
        // From today on (by date: which slots are past is the server's to say).
        const today = localDate(new Date());
        const upcoming = (answer.appointments || []).filter((a) => a.end && localDate(new Date(a.end)) >= today);
        fill(mine, upcoming.map((a) => el('li', { 'data-appointment': a.id },
          el('span', {}, el('strong', {}, day(a.start) + ' ' + time(a.start)), ' ', doctors[a.practitioner] || ''),
          el('span', { class: 'status' }, statusText(a.status)))), t('no-appointments'));
      } catch (e) {
        failed(mine, e);
      }
    }
    const select = document.getElementById('book-practitioner');
    try {
      const all = await practitioners();
      doctors = Object.fromEntries(all.map((p) => [p.id, humanName(p)]));
      select.replaceChildren(...all.map((p) => el('option', { value: p.id }, humanName(p))));
    } catch (e) {
      // The booking form stays empty; appointments and letters still load.
    }
    await appointments();
    const dayInput = document.getElementById('book-day');
    dayInput.value = localDate(new Date());
    const slots = document.getElementById('slots');
    document.getElementById('book-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!select.value || !dayInput.value) return;
      const from = new Date(dayInput.value + 'T00:00:00');
      const to = new Date(from.getTime() + 24 * 3600 * 1000);
      // The whole day: the server leaves out what is past or too soon by its own clock.
      const start = from;
      try {
        const answer = await api('GET', '/api/v1/appointments/slots/available?practitioner=' + encodeURIComponent(select.value) +
          '&from=' + encodeURIComponent(start.toISOString()) + '&to=' + encodeURIComponent(to.toISOString()) + '&type=ROUTINE');
        fill(slots, (answer.slots || []).map((s) => el('li', {}, el('button', {
          type: 'button',
          class: 'secondary slot',
          'data-start': s.start,
          onclick: async (e) => {
            e.target.disabled = true;
            try {
              await api('POST', '/api/v1/appointments', { practitioner: select.value, start: s.start, type: 'ROUTINE' });
              slots.replaceChildren(el('li', {}, t('booked-ok')));
              await appointments();
            } catch (err) {
              e.target.disabled = false;
              notice(err.message || t('error-generic'));
            }
          },
        }, time(s.start)))), t('no-slots'));
      } catch (e) {
        failed(slots, e);
      }
    });
    if (!patient) return fill(letters, [], t('not-available'));
    try {
      const answer = await api('GET', '/api/patients/' + encodeURIComponent(patient) + '/letters');
      const shown = (answer.letters || []).filter((l) => l.status !== 'draft');
      const view = document.getElementById('letter');
      fill(letters, shown.map((l) => el('li', {},
        el('span', {}, el('strong', {}, l.title || '—'), l.date ? ' — ' + day(l.date) : ''),
        el('button', { type: 'button', class: 'secondary', onclick: () => {
          view.replaceChildren(el('h3', {}, l.title || ''), el('p', {}, l.text || ''));
          view.hidden = false;
          view.focus();
        } }, t('read-letter')))), t('no-letters'));
    } catch (e) {
      failed(letters, e);
    }
  }

  const signOutButton = document.getElementById('sign-out');
  if (signOutButton) signOutButton.addEventListener('click', signOut);
  const run = { signin: signInPage, clinic: clinicPage, chart: chartPage, app: appPage }[page];
  if (run) run();
})();
