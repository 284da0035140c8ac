// jitgate console: live updates over Server-Sent Events, countdowns,
// confirmations and the ticket check as you type. Every page works
// without it: forms post, pages show the state when they were served.
(function () {
  'use strict';

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  // Countdowns: <time data-ends-at="RFC 3339">.
  function tick() {
    var now = Date.now();
    var clocks = document.querySelectorAll('[data-ends-at]');
    for (var i = 0; i < clocks.length; i++) {
      var end = Date.parse(clocks[i].getAttribute('data-ends-at'));
      if (isNaN(end)) { continue; }
      var left = Math.max(0, Math.floor((end - now) / 1000));
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      clocks[i].textContent = h > 0 ? h + ':' + pad(m) + ':' + pad(s) : m + ':' + pad(s);
    }
  }

  // Confirmations: a form or the button that submits it may carry
  // data-confirm.
  document.addEventListener('submit', function (e) {
    var by = e.submitter;
    var ask = (by && by.getAttribute('data-confirm')) || e.target.getAttribute('data-confirm');
    if (ask && !window.confirm(ask)) { e.preventDefault(); }
  });

  // The ticket is checked against the workflow's pattern as it is typed
  // (the server checks it again).
  document.addEventListener('input', function (e) {
    var el = e.target;
    if (!el.hasAttribute || !el.hasAttribute('data-mismatch')) { return; }
    el.setAttribute('data-touched', '');
    el.setCustomValidity('');
    if (el.value && !el.checkValidity()) { el.setCustomValidity(el.getAttribute('data-mismatch')); }
    el.reportValidity();
  });

  // The catalogue filters as you type.
  document.addEventListener('input', function (e) {
    var el = e.target;
    if (!el.getAttribute || !el.getAttribute('data-filter')) { return; }
    var q = el.value.trim().toLowerCase();
    var items = document.querySelectorAll(el.getAttribute('data-filter'));
    for (var i = 0; i < items.length; i++) {
      var text = (items[i].getAttribute('data-search') || '').toLowerCase();
      items[i].hidden = q !== '' && text.indexOf(q) < 0;
    }
  });

  // Live pages: <main data-live="requests grants"> is fetched again when
  // the broker says one of its topics changed. Not while the person is
  // typing in it: then once they leave the field.
  var main = document.getElementById('main');
  var topics = main ? (main.getAttribute('data-live') || '').split(' ').filter(Boolean) : [];
  var stale = false, fetching = false;

  function busy() {
    var a = document.activeElement;
    return a && main.contains(a) && (a.tagName === 'TEXTAREA' || (a.tagName === 'INPUT' && a.type !== 'submit')) && a.value !== '';
  }

  // What a page shows, but for the seconds a countdown has ticked.
  function shown(el) {
    var copy = el.cloneNode(true);
    var clocks = copy.querySelectorAll('[data-ends-at]');
    for (var i = 0; i < clocks.length; i++) { clocks[i].textContent = ''; }
    return copy.innerHTML;
  }

  function refresh() {
    if (fetching) { stale = true; return; }
    if (busy()) { stale = true; return; }
    stale = false;
    fetching = true;
    fetch(window.location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
      .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
      .then(function (html) {
        fetching = false;
        var fresh = html === null ? null : new DOMParser().parseFromString(html, 'text/html').getElementById('main');
        // Unchanged (but for the countdowns): leave the page as it is.
        if (fresh && shown(fresh) !== shown(main)) {
          main.innerHTML = fresh.innerHTML;
          tick();
          var status = document.getElementById('live-status');
          if (status) { status.textContent = status.getAttribute('data-updated'); }
        }
        // Something changed while this was on its way: once more.
        if (stale) { refresh(); }
      })
      .catch(function () { fetching = false; });
  }

  document.addEventListener('focusout', function () { if (stale) { window.setTimeout(refresh, 0); } });

  if (topics.length && window.EventSource) {
    var source = new EventSource('/console/events');
    source.addEventListener('changed', function (e) {
      if (topics.indexOf(e.data) >= 0) { refresh(); }
    });
    // Whatever changed between serving the page and listening (or while
    // the connection was down) is fetched once the stream is open.
    source.addEventListener('open', function () {
      document.documentElement.setAttribute('data-live', 'on');
      refresh();
    });
  }

  tick();
  window.setInterval(tick, 1000);
})();
