// Portal-wide behaviour: the user's time zone, CSRF for htmx, and live fragments that keep their state.
(function () {
  "use strict";
  var browserTz = "";
  try { browserTz = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* keep UTC */ }

  // The server renders times in the zone of the `tz` cookie (UserTimezoneMiddleware). Send it, and on a
  // first visit (no cookie yet, page rendered in UTC) re-render the page's <time> elements locally.
  var serverTz = (document.querySelector("meta[name=portal-tz]") || {}).content || "UTC";
  if (browserTz && document.cookie.indexOf("tz=" + browserTz) === -1) {
    document.cookie = "tz=" + browserTz + "; path=/; max-age=31536000; SameSite=Lax";
  }
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function localize(root) {
    if (!browserTz || browserTz === serverTz) return;
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      var text = el.textContent.trim();
      var date = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
      var time = pad(d.getHours()) + ":" + pad(d.getMinutes());
      if (/^\d{2}:\d{2}:\d{2}$/.test(text)) { el.textContent = time + ":" + pad(d.getSeconds()); }
      else if (/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(text)) { el.textContent = date + " " + time + ":" + pad(d.getSeconds()); }
      else if (/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$/.test(text)) { el.textContent = date + " " + time; }
      else if (/^\d{4}-\d{2}-\d{2}$/.test(text)) { el.textContent = date; }
      else if (/^[A-Z][a-z]{2} \d{1,2}, \d{2}:\d{2}$/.test(text)) { el.textContent = MONTHS[d.getMonth()] + " " + d.getDate() + ", " + time; }
    });
    var name = document.getElementById("portal-tz-name");
    if (name) { name.textContent = browserTz; }
  }
  document.addEventListener("DOMContentLoaded", function () { localize(document); });

  // <select data-autosubmit> submits its form when changed (no inline onchange: the CSP allows no inline code).
  document.addEventListener("change", function (evt) {
    var el = evt.target;
    if (el && el.matches && el.matches("select[data-autosubmit]") && el.form) { el.form.submit(); }
  });

  // htmx requests carry the CSRF token.
  document.addEventListener("htmx:configRequest", function (evt) {
    var el = document.querySelector("meta[name=csrf-token]");
    if (el) { evt.detail.headers["X-CSRFToken"] = el.content; }
  });

  // Polled fragments are replaced every few seconds: keep open <details> (step logs) open and their
  // scroll position where the reader left it.
  var kept = {};
  document.addEventListener("htmx:beforeSwap", function (evt) {
    kept = {};
    evt.detail.target.querySelectorAll("details[id]").forEach(function (d) {
      var pre = d.querySelector("pre");
      kept[d.id] = {open: d.open, scroll: pre ? pre.scrollTop : 0,
                    atBottom: pre ? pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4 : false};
    });
  });
  document.addEventListener("htmx:afterSettle", function (evt) {
    Object.keys(kept).forEach(function (id) {
      var d = document.getElementById(id);
      if (!d) return;
      d.open = kept[id].open;
      var pre = d.querySelector("pre");
      if (pre) { pre.scrollTop = kept[id].atBottom ? pre.scrollHeight : kept[id].scroll; }
    });
    kept = {};
    localize(evt.detail.elt && evt.detail.elt.parentNode ? evt.detail.elt.parentNode : document);
  });
})();
