// Upload with a progress bar. Enhances the plain multipart form of the imports page: without
// JavaScript the form posts as it is (its first field carries the CSRF token); with it, the same
// request goes through XMLHttpRequest, which reports how much of the file has been sent, and the
// CSRF token travels in the X-CSRF-Token header. No external code, no inline script (CSP).
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) {
    return;
  }
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var button = form.querySelector("button[type=submit]");

  function fail(text) {
    status.textContent = text;
    button.disabled = false;
    bar.hidden = true;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("X-CSRF-Token", form.getAttribute("data-csrf") || "");
    request.upload.addEventListener("progress", function (progress) {
      if (progress.lengthComputable && progress.total > 0) {
        bar.max = progress.total;
        bar.value = progress.loaded;
        status.textContent = Math.floor((progress.loaded * 100) / progress.total) + "% uploaded";
      }
    });
    request.addEventListener("load", function () {
      if (request.status >= 200 && request.status < 300) {
        // The server answered with a redirect to the import's page, which XHR followed.
        window.location.assign(request.responseURL);
        return;
      }
      var page = new DOMParser().parseFromString(request.responseText, "text/html");
      var main = page.querySelector("main");
      fail("Upload failed (" + request.status + "): " + (main ? main.textContent.trim() : ""));
    });
    request.addEventListener("error", function () {
      fail("The upload was interrupted. Nothing was imported; try again.");
    });
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Uploading…";
    request.send(new FormData(form));
  });
})();
