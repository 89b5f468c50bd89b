// Sends the browser's time zone so pages show times in the user's zone.
(function () {
  try {
    var tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (tz && document.cookie.indexOf("tz=" + tz) === -1) {
      document.cookie = "tz=" + tz + "; path=/; SameSite=Lax";
    }
  } catch (e) { /* keep UTC */ }
  // htmx requests carry the CSRF token.
  document.addEventListener("htmx:configRequest", function (evt) {
    var el = document.querySelector("meta[name=csrf-token]");
    if (el) { evt.detail.headers["X-CSRFToken"] = el.content; }
  });
})();
