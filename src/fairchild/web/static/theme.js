/* Theme: follows prefers-color-scheme unless the user picked one (remembered in localStorage).
   Loaded synchronously in <head> so the page never flashes the wrong theme. */
(function () {
  "use strict";
  var KEY = "fairchild-theme";
  var saved = null;
  try { saved = window.localStorage.getItem(KEY); } catch (e) { saved = null; }
  if (saved === "light" || saved === "dark") {
    document.documentElement.setAttribute("data-theme", saved);
  }
  window.fairchildTheme = {
    current: function () {
      var forced = document.documentElement.getAttribute("data-theme");
      if (forced === "light" || forced === "dark") { return forced; }
      return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
    },
    set: function (theme) {
      document.documentElement.setAttribute("data-theme", theme);
      try { window.localStorage.setItem(KEY, theme); } catch (e) { /* private mode */ }
      document.dispatchEvent(new CustomEvent("fairchild:theme", { detail: theme }));
    },
    toggle: function () { this.set(this.current() === "dark" ? "light" : "dark"); }
  };
})();
