(function () {
  var root = document.documentElement;
  root.setAttribute("data-js-errors", "0");
  function bump() {
    root.setAttribute("data-js-errors", String(Number(root.getAttribute("data-js-errors")) + 1));
  }
  window.addEventListener("error", bump, true);
  window.addEventListener("unhandledrejection", bump);
  var original = console.error;
  console.error = function () { bump(); return original.apply(console, arguments); };
})();
