(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("#timeline tbody tr"));
  function related(source, target) {
    return rows.filter(function (row) {
      var agent = row.getAttribute("data-agent"), peer = row.getAttribute("data-peer");
      if (target === null) { return agent === source || peer === source; }
      return agent === source && peer === target;
    });
  }
  function hover(element, matches) {
    element.addEventListener("mouseenter", function () {
      element.classList.add("hl");
      matches.forEach(function (row) { row.classList.add("hl"); });
    });
    element.addEventListener("mouseleave", function () {
      element.classList.remove("hl");
      matches.forEach(function (row) { row.classList.remove("hl"); });
    });
  }
  document.querySelectorAll("#delegation-graph .edge").forEach(function (edge) {
    hover(edge, related(edge.getAttribute("data-source"), edge.getAttribute("data-target")));
  });
  document.querySelectorAll("#delegation-graph .node").forEach(function (node) {
    hover(node, related(node.getAttribute("data-id"), null));
  });
  document.documentElement.setAttribute("data-report-ready", "yes");
})();
