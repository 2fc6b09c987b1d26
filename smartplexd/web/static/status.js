// smartplexd status page: keeps the sync progress bars live from /api/events (Server-Sent Events).
// Read-only: it never sends anything but GET requests. The browser resumes with Last-Event-ID when the
// stream drops; if the EventSource gives up (closed), we open a new one after a growing pause.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var source = null;
  var retryDelay = 1000;
  var reloadTimer = null;
  var lastId = null;

  function setLive(on, text) {
    if (!live) return;
    live.dataset.live = on ? "on" : "off";
    live.textContent = text;
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "";
    var s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + (s % 60) + "s";
    return Math.floor(m / 60) + "h " + (m % 60) + "m";
  }

  function syncBox(server) {
    var boxes = document.querySelectorAll(".sync[data-server]");
    for (var i = 0; i < boxes.length; i++) {
      if (boxes[i].dataset.server === server) return boxes[i];
    }
    return null;
  }

  function onProgress(data) {
    var box = syncBox(data.server);
    if (!box) return;
    var bar = box.querySelector("progress");
    var text = box.querySelector(".sync-text");
    var total = Number(data.total) || 0;
    var done = Number(data.done) || 0;
    box.hidden = false;
    if (total > 0) {
      bar.max = total;
      bar.value = Math.min(done, total);
    } else {
      bar.removeAttribute("value"); // indeterminate until the total is known
    }
    var eta = data.eta_s !== undefined ? data.eta_s : data.eta;
    var label = total > 0 ? "syncing " + done.toLocaleString() + " / " + total.toLocaleString() : "syncing…";
    if (data.library) label += " · " + data.library;
    if (eta !== undefined && eta !== null) label += " · ETA " + formatDuration(eta);
    text.textContent = label;
  }

  function onFinished(data) {
    var box = syncBox(data.server);
    if (box) {
      var bar = box.querySelector("progress");
      if (bar.max) bar.value = bar.max;
      box.querySelector(".sync-text").textContent = "sync " + (data.status || "finished");
    }
    scheduleReload(1500);
  }

  // Everything but the progress bars is rendered by the server: after a change, fetch the page again.
  function scheduleReload(delay) {
    if (reloadTimer) return;
    reloadTimer = setTimeout(function () { window.location.reload(); }, delay);
  }

  function parse(event) {
    lastId = event.lastEventId || lastId;
    try {
      var payload = JSON.parse(event.data);
      return payload && payload.data ? payload.data : {};
    } catch (e) {
      return {};
    }
  }

  var handlers = {
    "sync.progress": onProgress,
    "sync.finished": onFinished,
    "sync.failed": onFinished,
  };
  // stream.reset: the server no longer has the events we missed, so the page may be stale.
  var reloadOn = [
    "deletion.done", "deletion.partial", "deletion.failed", "health.changed", "leaving_soon.changed",
    "plan.created", "stream.reset",
  ];

  function connect() {
    var url = "/api/events";
    if (lastId) url += "?lastEventId=" + encodeURIComponent(lastId);
    source = new EventSource(url);
    source.onopen = function () {
      retryDelay = 1000;
      setLive(true, "live");
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        setLive(false, "reconnecting…");
        source.close();
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      } else {
        setLive(false, "reconnecting…");
      }
    };
    Object.keys(handlers).forEach(function (type) {
      source.addEventListener(type, function (event) { handlers[type](parse(event)); });
    });
    reloadOn.forEach(function (type) {
      source.addEventListener(type, function (event) {
        parse(event);
        scheduleReload(1500);
      });
    });
  }

  if (window.EventSource) connect();
  else setLive(false, "no live updates in this browser");
})();
