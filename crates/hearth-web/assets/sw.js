// Hearth's patient app service worker (scope /app): the shell is kept so the app opens offline,
// and the last answer of each API read is kept so it can be read offline. Writes are never
// queued here (the sync API is not there yet). Signing out deletes the data cache.
'use strict';
const SHELL = 'hearth-shell-v1';
const DATA = 'hearth-data';
const SHELL_FILES = ['/app', '/web/app.css', '/web/web.js', '/web/icon.svg', '/app/manifest.webmanifest'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(SHELL_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL && k !== DATA).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('message', (event) => {
  if (event.data === 'sign-out') {
    event.waitUntil(caches.delete(DATA));
  }
});

// Network first; the cache only when the network fails.
async function networkFirst(request, cacheName) {
  try {
    const answer = await fetch(request);
    if (answer.ok) {
      const cache = await caches.open(cacheName);
      await cache.put(request, answer.clone());
    }
    return answer;
  } catch (e) {
    const cached = await caches.match(request);
    if (cached) {
      const headers = new Headers(cached.headers);
      headers.set('X-Hearth-Offline', '1');
      return new Response(await cached.blob(), { status: cached.status, headers });
    }
    throw e;
  }
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) {
    return;
  }
  if (url.pathname.startsWith('/api/v1/auth/')) {
    return;
  }
  if (url.pathname.startsWith('/api/') || url.pathname.startsWith('/fhir/')) {
    event.respondWith(networkFirst(request, DATA));
  } else if (SHELL_FILES.includes(url.pathname) || request.mode === 'navigate') {
    event.respondWith(networkFirst(request, SHELL));
  }
});
