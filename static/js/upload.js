// Browser upload: ask the portal for a presigned POST, then send the file
// straight to S3 with progress; the file never passes through Django.
(function () {
  var form = document.getElementById("upload-form");
  if (!form) return;
  var fileInput = document.getElementById("upload-file");
  var progress = document.getElementById("upload-progress");
  var statusEl = document.getElementById("upload-status");
  var fileError = document.getElementById("file-error");
  function csrf() { return document.querySelector("meta[name=csrf-token]").content; }
  function say(text) { statusEl.textContent = text; }
  form.addEventListener("submit", function (evt) {
    evt.preventDefault();
    fileError.textContent = "";
    var file = fileInput.files[0];
    if (!file) { fileError.textContent = "Choose a CSV file."; return; }
    var body = new FormData();
    body.append("filename", file.name);
    body.append("size", String(file.size));
    body.append("algorithm", document.getElementById("upload-algorithm").value);
    body.append("target", document.getElementById("upload-target").value);
    document.getElementById("upload-submit").disabled = true;
    say("Preparing upload…");
    fetch(form.dataset.sessionUrl, {method: "POST", body: body, headers: {"X-CSRFToken": csrf()}, credentials: "same-origin"})
      .then(function (r) { return r.json().then(function (j) { return {ok: r.ok, json: j}; }); })
      .then(function (res) {
        if (!res.ok) { throw new Error(res.json.message || "The upload was refused."); }
        var post = res.json, data = new FormData();
        Object.keys(post.fields).forEach(function (k) { data.append(k, post.fields[k]); });
        data.append("file", file);
        var xhr = new XMLHttpRequest();
        xhr.open("POST", post.url);
        progress.hidden = false;
        xhr.upload.onprogress = function (e) { if (e.lengthComputable) { progress.value = Math.round(100 * e.loaded / e.total); say("Uploading… " + progress.value + "%"); } };
        xhr.onload = function () {
          document.getElementById("upload-submit").disabled = false;
          if (xhr.status >= 200 && xhr.status < 300) {
            progress.value = 100;
            say("Uploaded. Your build is starting; it will appear in the build list.");
            form.dataset.uploadedKey = post.key;
            window.setTimeout(function () { window.location.href = "/builds/?uploaded=" + encodeURIComponent(post.key); }, 1500);
          } else { say("Storage refused the upload (HTTP " + xhr.status + ")."); }
        };
        xhr.onerror = function () { document.getElementById("upload-submit").disabled = false; say("Network error during upload; nothing was stored. Try again."); };
        xhr.send(data);
      })
      .catch(function (err) { document.getElementById("upload-submit").disabled = false; say(err.message); });
  });
})();
