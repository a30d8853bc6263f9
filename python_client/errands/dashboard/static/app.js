// Errands dashboard: our own small script. Live refresh of the overview (it
// fetches the page again and swaps #overview-data; ?refresh=0 turns it off).
(function () {
  "use strict";
  var main = document.getElementById("page-overview");
  var seconds = main ? parseInt(main.getAttribute("data-refresh") || "0", 10) : 0;
  if (main && seconds > 0) {
    setInterval(function () {
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("overview-data");
          var old = document.getElementById("overview-data");
          if (fresh && old) { old.replaceWith(fresh); }
        })
        .catch(function () { /* keep the last data; try again next time */ });
    }, seconds * 1000);
  }
})();
