// The staff navigation's menu button on narrow screens (static file: the CSP
// allows no inline script). Without this script the button stays hidden and
// the navigation wraps onto several lines, so every link is still reachable.
(function () {
  "use strict";
  var toggle = document.querySelector(".menu-toggle");
  var nav = toggle && document.getElementById(toggle.getAttribute("aria-controls"));
  if (!toggle || !nav) {
    return;
  }
  // Mark the section being viewed: the link whose path is the longest prefix
  // of this page's. The dashboard (/staff/, a prefix of every page) only on itself.
  var here = window.location.pathname;
  var current = null;
  Array.prototype.forEach.call(nav.querySelectorAll("a[href]"), function (link) {
    var path = link.pathname;
    var deep = path.split("/").filter(Boolean).length > 1;
    var matches = here === path || (deep && here.indexOf(path) === 0);
    if (matches && (!current || path.length > current.pathname.length)) {
      current = link;
    }
  });
  if (current && !current.classList.contains("who")) {
    current.setAttribute("aria-current", "page");
  }
  document.documentElement.classList.add("js-menu");
  toggle.hidden = false;

  function setOpen(open) {
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    nav.classList.toggle("open", open);
  }

  toggle.addEventListener("click", function () {
    setOpen(toggle.getAttribute("aria-expanded") !== "true");
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") {
      setOpen(false);
      toggle.focus();
    }
  });
  document.addEventListener("click", function (event) {
    if (toggle.getAttribute("aria-expanded") === "true" && !nav.contains(event.target) && !toggle.contains(event.target)) {
      setOpen(false);
    }
  });
})();
