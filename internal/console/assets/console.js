// Nimbus console: times in the viewer's time zone, charts (uPlot), the
// live log tail (Server-Sent Events) and the banner shown while the node
// does not answer. Pages work without it; htmx does the partial updates.
(function () {
  'use strict';

  var timeFmt = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit'
  });

  // localize rewrites <time datetime> elements in the viewer's time zone.
  function localize(root) {
    root.querySelectorAll('time[datetime]:not([data-local])').forEach(function (el) {
      var d = new Date(el.getAttribute('datetime'));
      if (isNaN(d)) return;
      el.title = el.getAttribute('datetime');
      el.textContent = timeFmt.format(d);
      el.dataset.local = '1';
    });
  }

  var palette = ['#2563eb', '#dc2626', '#d97706', '#059669', '#7c3aed'];
  var plots = [];

  function fmtNum(v) {
    if (v === 0) return '0';
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (a >= 1e3) return (v / 1e3).toFixed(1) + 'k';
    if (a < 0.01) return v.toExponential(0);
    if (a < 10) return String(Math.round(v * 100) / 100);
    return String(Math.round(v));
  }

  // drawCharts draws every chart not drawn yet.
  function drawCharts() {
    plots = plots.filter(function (p) {
      if (document.body.contains(p.fig)) return true;
      p.plot.destroy();
      return false;
    });
    if (!window.uPlot) return;
    document.querySelectorAll('figure[data-chart]:not([data-drawn])').forEach(function (fig) {
      var spec;
      try { spec = JSON.parse(fig.dataset.chart); } catch (e) { return; }
      var box = fig.querySelector('.plot');
      box.textContent = '';
      var data = spec.data.map(function (a) { return a || []; });
      var series = [{}];
      spec.labels.forEach(function (label, i) {
        var color = palette[i % palette.length];
        series.push({ label: label, stroke: color, width: 1.5, points: { show: false },
          fill: i === 0 ? color + '1f' : undefined,
          value: function (u, v) { return v == null ? '–' : fmtNum(v) + (spec.unit ? ' ' + spec.unit : ''); } });
      });
      var opts = {
        width: Math.max(220, box.clientWidth || fig.clientWidth || 300), height: 150,
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
        axes: [{ stroke: '#555' }, { stroke: '#555', size: 48, values: function (u, vals) { return vals.map(fmtNum); } }],
        series: series, legend: { show: true, live: window.innerWidth > 700 }
      };
      plots.push({ fig: fig, plot: new uPlot(opts, data, box) });
      fig.dataset.drawn = '1';
    });
  }

  var resizing;
  window.addEventListener('resize', function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      plots.forEach(function (p) {
        var box = p.fig.querySelector('.plot');
        p.plot.setSize({ width: Math.max(220, box.clientWidth), height: 150 });
      });
    }, 150);
  });

  // The banner: shown while /console/ping fails; when the node answers
  // again, "reconnected" makes the live sections reload (hx-trigger).
  var down = false, pingTimer;
  function setDown(d) {
    if (d === down) return;
    down = d;
    document.getElementById('conn-banner').hidden = !d;
    document.body.classList.toggle('offline', d);
    if (!d) document.body.dispatchEvent(new CustomEvent('reconnected'));
    schedulePing();
  }
  function ping() {
    fetch('/console/ping', { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      if (r.status === 401) {
        location.href = '/console/login?next=' + encodeURIComponent(location.pathname + location.search);
        return;
      }
      setDown(!r.ok);
    }, function () { setDown(true); });
  }
  function schedulePing() {
    clearTimeout(pingTimer);
    pingTimer = setTimeout(function () { ping(); schedulePing(); }, down ? 1500 : 5000);
  }

  // tail follows a function's log: EventSource reconnects by itself
  // (sending the last line's time), and lines seen twice are skipped.
  function tail(el) {
    var seen = new Set(), started = false, max = 500;
    var es = new EventSource(el.dataset.stream);
    function start() {
      if (started) return;
      started = true;
      el.textContent = '';
      var p = document.createElement('p');
      p.className = 'muted waiting';
      p.textContent = 'Waiting for log lines…';
      el.appendChild(p);
    }
    es.onopen = start;
    es.onmessage = function (ev) {
      start();
      var rec;
      try { rec = JSON.parse(ev.data); } catch (e) { return; }
      var key = ev.lastEventId + '|' + (rec.requestId || '') + '|' + rec.line;
      if (seen.has(key)) return;
      seen.add(key);
      var w = el.querySelector('.waiting');
      if (w) w.remove();
      var atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
      var line = document.createElement('div');
      line.className = 'line';
      line.dataset.key = key;
      var t = document.createElement('time');
      t.setAttribute('datetime', rec.time);
      t.className = 't';
      var l = document.createElement('span');
      l.className = 'l';
      l.textContent = rec.line;
      line.appendChild(t);
      line.appendChild(document.createTextNode(' '));
      line.appendChild(l);
      el.appendChild(line);
      localize(line);
      while (el.querySelectorAll('.line').length > max) {
        var first = el.querySelector('.line');
        seen.delete(first.dataset.key); // the set stays as small as the tail
        first.remove();
      }
      if (atBottom) el.scrollTop = el.scrollHeight;
    };
    es.onerror = function () { ping(); };
  }

  function init(root) {
    localize(root);
    drawCharts();
  }

  document.body.addEventListener('htmx:afterSettle', function (e) { init(e.detail.elt || document); });
  document.body.addEventListener('htmx:sendError', function () { setDown(true); });
  document.body.addEventListener('htmx:afterRequest', function (e) {
    if (e.detail.successful || (e.detail.xhr && e.detail.xhr.status > 0)) setDown(false);
  });
  init(document);
  document.querySelectorAll('[data-stream]').forEach(tail);
  schedulePing();
})();
