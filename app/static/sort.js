// Sortable tables: a header cell with data-sort becomes a button; activating it orders the
// table's rows by that column (numbers as numbers), again to reverse. Without JS the table is
// in the server's order.
(function () {
  "use strict";
  function key(cell) {
    const text = (cell.dataset.value || cell.textContent).trim();
    const number = parseFloat(text.replace("\u2212", "-"));
    return isNaN(number) ? text.toLowerCase() : number;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    const header = table.rows[0];
    Array.from(header.cells).forEach(function (th, column) {
      if (!("sort" in th.dataset)) return;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = th.textContent;
      th.textContent = "";
      th.appendChild(button);
      th.setAttribute("aria-sort", "none");
      button.addEventListener("click", function () {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.from(header.cells).forEach(function (other) {
          if ("sort" in other.dataset) other.setAttribute("aria-sort", "none");
        });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const rows = Array.from(table.rows).slice(1);
        rows.sort(function (a, b) {
          const x = key(a.cells[column]), y = key(b.cells[column]);
          const order = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { row.parentNode.appendChild(row); });
      });
    });
  });
})();
