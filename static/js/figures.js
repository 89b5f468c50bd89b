// Draws server-built Plotly figures (billing and model pages): <div class="chart" data-figure="ID-data"> + <script
// type="application/json" id="ID-data">. No mode bar: plotly.js would inject its colours as an inline <style> per
// chart, which the CSP refuses.
(function () {
  function draw() {
    if (!window.Plotly) { return; }
    document.querySelectorAll("div.chart[data-figure]").forEach(function (el) {
      var source = document.getElementById(el.dataset.figure);
      if (!source) { return; }
      var figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(el, figure.data, figure.layout, {responsive: true, displaylogo: false, displayModeBar: false});
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
