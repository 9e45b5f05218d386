// The console's own script: live updates (server-sent events → htmx re-fetches the open screen), Vega-Lite
// charts from the JSON the server embeds, sortable tables, and selects that submit their form.
(function () {
  "use strict";

  function drawCharts(root) {
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.dataset.drawn) return;
      var spec = document.getElementById(el.dataset.chart);
      if (!spec || typeof vegaEmbed === "undefined") return;
      vegaEmbed(el, JSON.parse(spec.textContent), { actions: false, renderer: "svg" })
        .then(function () { el.dataset.drawn = "yes"; })
        .catch(function (error) { el.textContent = "chart unavailable: " + error; });
    });
  }

  function sortable(root) {
    root.querySelectorAll("table.sortable thead tr").forEach(function (row) {
      if (row.dataset.sortable) return;        // prepared once, even when part of the page is swapped in
      row.dataset.sortable = "yes";
      Array.prototype.forEach.call(row.cells, function (th, column) {
      th.addEventListener("click", function () {
        var body = th.closest("table").tBodies[0];
        var ascending = th.dataset.order !== "asc";
        th.dataset.order = ascending ? "asc" : "desc";
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[column], y = b.cells[column];
          if (!x || !y) return 0;
          var u = x.dataset.sort !== undefined ? x.dataset.sort : x.textContent.trim();
          var v = y.dataset.sort !== undefined ? y.dataset.sort : y.textContent.trim();
          var nu = parseFloat(u), nv = parseFloat(v);
          var order = (!isNaN(nu) && !isNaN(nv)) ? nu - nv : u.localeCompare(v);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
      });
    });
  }

  function autosubmit(root) {
    root.querySelectorAll("select[data-autosubmit]:not([data-ready])").forEach(function (select) {
      select.dataset.ready = "yes";
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  function prepare(root) { drawCharts(root); sortable(root); autosubmit(root); }

  function live() {
    var source = document.body.dataset.live;
    if (!source || typeof EventSource === "undefined") return;
    var dot = document.getElementById("live");
    var pending = null;
    var events = new EventSource(source);
    events.onopen = function () { if (dot) dot.classList.add("on"); };
    events.onerror = function () { if (dot) dot.classList.remove("on"); };
    // a person writing in a form keeps what they wrote: while a field of the screen has focus or holds
    // text not yet sent, the refresh waits (checked again when it is due, not only when the news came)
    function writing() {
      var content = document.getElementById("content");
      if (!content) return false;
      if (document.activeElement && document.activeElement.closest("#content form")) return true;
      return Array.prototype.some.call(content.querySelectorAll("form input:not([type=hidden]), form textarea"),
        function (field) { return field.value !== field.defaultValue; });
    }
    function refreshWhenFree() {
      pending = setTimeout(function () {
        if (writing()) { refreshWhenFree(); return; }
        pending = null;
        document.body.dispatchEvent(new Event("mlbus-changed"));
      }, 250);
    }
    events.onmessage = function (message) {
      var content = document.getElementById("content");
      if (!content || content.dataset.changes === message.data || pending) return;
      refreshWhenFree();
    };
  }

  document.addEventListener("DOMContentLoaded", function () { prepare(document); live(); });
  document.addEventListener("htmx:afterSwap", function () {
    var content = document.getElementById("content");
    if (content) prepare(content);
  });
})();
