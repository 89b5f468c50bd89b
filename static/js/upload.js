// Browser upload: ask the portal for a presigned POST, send the file straight to S3 with a
// progress bar (the file never passes through Django), then wait for intake to turn it into a
// build and open that build's page.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var fileInput = document.getElementById("upload-file");
  var progress = document.getElementById("upload-progress");
  var statusEl = document.getElementById("upload-status");
  var submit = document.getElementById("upload-submit");
  var errorLists = {
    file: document.getElementById("file-error"),
    algorithm: document.getElementById("algorithm-error"),
    target: document.getElementById("target-error")
  };
  var inputs = {file: fileInput, algorithm: document.getElementById("upload-algorithm"),
                target: document.getElementById("upload-target")};
  // Server field names -> the form field that shows the error.
  var fieldFor = {filename: "file", size: "file", file: "file", algorithm: "algorithm", target: "target"};

  function csrf() { return document.querySelector("meta[name=csrf-token]").content; }
  function say(text) { statusEl.textContent = text; }
  function clearErrors() {
    Object.keys(errorLists).forEach(function (name) {
      errorLists[name].textContent = "";
      inputs[name].removeAttribute("aria-invalid");
    });
  }
  function fieldError(name, message) {
    var li = document.createElement("li");
    li.textContent = message;
    errorLists[name].appendChild(li);
    inputs[name].setAttribute("aria-invalid", "true");
  }
  function busy(on) { submit.disabled = on; submit.setAttribute("aria-busy", on ? "true" : "false"); }

  fileInput.addEventListener("change", function () {
    clearErrors();
    var file = fileInput.files[0];
    var max = parseInt(fileInput.dataset.maxBytes || "0", 10);
    if (file && max && file.size > max) { fieldError("file", "This file is larger than your plan allows."); }
  });

  function waitForBuild(key, started) {
    fetch(form.dataset.statusUrl + "?key=" + encodeURIComponent(key), {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (res) {
        if (res.state === "build") {
          say("Build queued. Opening it…");
          window.location.href = res.url;
        } else if (res.state === "rejected") {
          busy(false);
          say("The upload did not start a build: " + res.reason);
        } else if (Date.now() - started > 60000) {
          busy(false);
          say("Uploaded. The build is taking a while to appear; it will show up in your build history.");
        } else {
          window.setTimeout(function () { waitForBuild(key, started); }, 1500);
        }
      })
      .catch(function () { window.setTimeout(function () { waitForBuild(key, started); }, 3000); });
  }

  form.addEventListener("submit", function (evt) {
    evt.preventDefault();
    clearErrors();
    var file = fileInput.files[0];
    if (!file) { fieldError("file", "Choose a CSV file."); fileInput.focus(); return; }
    if (!/\.csv$/i.test(file.name)) { fieldError("file", "Upload a .csv file."); return; }
    var body = new FormData();
    body.append("filename", file.name);
    body.append("size", String(file.size));
    body.append("algorithm", inputs.algorithm.value);
    body.append("target", inputs.target.value);
    busy(true);
    say("Preparing the upload…");
    fetch(form.dataset.sessionUrl, {method: "POST", body: body, headers: {"X-CSRFToken": csrf()}, credentials: "same-origin"})
      .then(function (r) { return r.json().then(function (j) { return {ok: r.ok, json: j}; }); })
      .then(function (res) {
        if (!res.ok) {
          var fields = res.json.fields || {};
          var placed = false;
          Object.keys(fields).forEach(function (name) {
            var target = fieldFor[name];
            if (target) { fields[name].forEach(function (m) { fieldError(target, m); }); placed = true; }
          });
          throw new Error(placed ? "Fix the marked fields and try again." : (res.json.message || "The upload was refused."));
        }
        var post = res.json, data = new FormData();
        Object.keys(post.fields).forEach(function (k) { data.append(k, post.fields[k]); });
        data.append("file", file);
        var xhr = new XMLHttpRequest();
        xhr.open("POST", post.url);
        progress.hidden = false;
        progress.value = 0;
        xhr.upload.onprogress = function (e) {
          if (e.lengthComputable) { progress.value = Math.round(100 * e.loaded / e.total); say("Uploading… " + progress.value + "%"); }
        };
        xhr.onload = function () {
          if (xhr.status >= 200 && xhr.status < 300) {
            progress.value = 100;
            form.dataset.uploadedKey = post.key;
            say("Uploaded. Waiting for the build to start…");
            waitForBuild(post.key, Date.now());
          } else {
            busy(false);
            say("Storage refused the upload (HTTP " + xhr.status + "). Nothing was stored; try again.");
          }
        };
        xhr.onerror = function () { busy(false); say("Network error during the upload; nothing was stored. Try again."); };
        xhr.send(data);
      })
      .catch(function (err) { busy(false); say(err.message); });
  });
})();
