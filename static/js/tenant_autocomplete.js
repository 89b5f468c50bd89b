// Tenant pickers: an <input list="..." data-tenant-autocomplete> fills its <datalist> from the staff-only
// JSON endpoint (tenants:autocomplete, the datalist's data-source) as one types, instead of the page
// rendering every tenant. A static file: the Content Security Policy allows no inline script.
(function () {
  "use strict";
  var DELAY_MS = 150;
  document.querySelectorAll("input[data-tenant-autocomplete]").forEach(function (input) {
    var list = document.getElementById(input.getAttribute("list"));
    if (!list || !list.dataset.source) return;
    var timer = null, asked = null;
    function fill(results) {
      list.replaceChildren.apply(list, results.map(function (tenant) {
        var option = document.createElement("option");
        option.value = tenant.slug;
        option.label = tenant.name;
        return option;
      }));
    }
    function ask() {
      var query = input.value.trim();
      if (query === asked) return;
      asked = query;
      fetch(list.dataset.source + "?q=" + encodeURIComponent(query), {credentials: "same-origin",
                                                                   headers: {"Accept": "application/json"}})
        .then(function (response) { return response.ok ? response.json() : {results: []}; })
        .then(function (body) { if (asked === query) fill(body.results || []); })
        .catch(function () { /* suggestions are a convenience: typing a slug still filters */ });
    }
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(ask, DELAY_MS); });
    input.addEventListener("focus", ask);
  });
})();
