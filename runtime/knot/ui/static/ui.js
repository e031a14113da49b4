// knot dashboard: keyboard shortcuts and a bounded live tail. No framework beyond htmx.
(function () {
  "use strict";
  var MAX_ROWS = 200; // the live tail keeps this many rows; older ones are on the next pages
  var pending = false;
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    if (e.key === "/") {
      var first = document.querySelector("form.filters input, form.filters select");
      if (first) { e.preventDefault(); first.focus(); }
      return;
    }
    if (pending) {
      pending = false;
      var link = document.querySelector('nav a[data-key="' + e.key + '"]');
      if (link) { e.preventDefault(); window.location.href = link.getAttribute("href"); }
      return;
    }
    if (e.key === "g") { pending = true; setTimeout(function () { pending = false; }, 1500); }
  });
  document.addEventListener("htmx:afterSettle", function () {
    var rows = document.querySelectorAll("#event-rows > tr");
    for (var i = MAX_ROWS; i < rows.length; i++) rows[i].remove();
  });
})();
