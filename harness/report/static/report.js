/* reuse-bench report: draw packed table bodies when opened; sort and filter the data table,
   download the rows shown as CSV. No network, no libraries: the page must work opened from disk.
   Cells carry their raw value in data-v, so numbers sort as numbers and the CSV holds full
   precision rather than "1.2 ms". */
(function () {
  "use strict";

  /* ---- packed table bodies (harness/report/packed.py) ----------------------------------------
     A long table's rows travel as gzip'ed JSON in base64 in its tbody's data-packed attribute:
     [[row class, [text, {attribute: value}], ...], ...]. They are drawn the first time the
     <details> holding them opens, as text and attributes (never parsed as markup). */
  function gunzip(base64) {
    var bytes = Uint8Array.from(atob(base64), function (ch) { return ch.charCodeAt(0); });
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text();
  }

  function drawRows(tbody, rows) {
    var fragment = document.createDocumentFragment();
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      if (row[0]) { tr.className = row[0]; }
      for (var i = 1; i < row.length; i += 1) {
        var td = document.createElement("td"), attrs = row[i][1] || {};
        Object.keys(attrs).forEach(function (name) { td.setAttribute(name, attrs[name]); });
        td.textContent = row[i][0];
        tr.appendChild(td);
      }
      fragment.appendChild(tr);
    });
    tbody.appendChild(fragment);
  }

  function say(tbody, text) {
    var tr = document.createElement("tr"), td = document.createElement("td");
    td.colSpan = 99;
    td.className = "note";
    td.textContent = text;
    tr.appendChild(td);
    tbody.appendChild(tr);
  }

  function unpack(tbody) {
    var packed = tbody.getAttribute("data-packed");
    tbody.removeAttribute("data-packed");
    if (typeof DecompressionStream === "undefined") {
      say(tbody, "This browser cannot unpack the rows stored in this page (it lacks DecompressionStream); " +
          "open the report in a current browser, or export them: harness export RUN --format csv.");
      return;
    }
    gunzip(packed).then(function (text) {
      drawRows(tbody, JSON.parse(text));
      tbody.dispatchEvent(new CustomEvent("rows-drawn", { bubbles: true }));
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("tbody[data-packed]"), function (tbody) {
    var box = tbody.closest("details");
    function opened() { if ((!box || box.open) && tbody.hasAttribute("data-packed")) { unpack(tbody); } }
    if (box) { box.addEventListener("toggle", opened); }
    opened();
  });

  /* ---- the data table: sort, filter, CSV -------------------------------------------------- */
  var table = document.getElementById("data");
  if (!table) { return; }
  var tbody = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var allRows = [];
  var filter = document.getElementById("data-filter");
  var shown = document.getElementById("data-shown");
  var csvLink = document.getElementById("data-csv");

  function rawValue(row, col) { return row.cells[col].getAttribute("data-v"); }

  function compare(col, numeric, direction) {
    return function (a, b) {
      var x = rawValue(a, col), y = rawValue(b, col);
      // Empty values (not measured) always sort last, whichever the direction.
      if (x === "" && y === "") { return 0; }
      if (x === "") { return 1; }
      if (y === "") { return -1; }
      var d = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y, undefined, { numeric: true });
      return d * direction;
    };
  }

  headers.forEach(function (th, col) {
    var button = th.querySelector("button");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var direction = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(tbody.rows);
      rows.sort(compare(col, th.getAttribute("data-numeric") === "1", direction));
      rows.forEach(function (r) { tbody.appendChild(r); });
    });
  });

  function applyFilter() {
    var terms = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    var count = 0;
    allRows.forEach(function (row) {
      var text = row.textContent.toLowerCase();
      var keep = terms.every(function (t) { return text.indexOf(t) !== -1; });
      row.hidden = !keep;
      if (keep) { count += 1; }
    });
    shown.textContent = count + " of " + allRows.length + " rows";
  }

  function rowsReady() {
    allRows = Array.prototype.slice.call(tbody.rows);
    if (filter) { applyFilter(); }
  }
  if (filter) { filter.addEventListener("input", applyFilter); }
  // A packed body has no rows until drawn; the filter then covers the drawn rows.
  table.addEventListener("rows-drawn", rowsReady);
  rowsReady();

  function csvField(value) {
    // A text cell starting with = + - @ would run as a formula in a spreadsheet; numbers are safe.
    if (/^[=+\-@]/.test(value) && isNaN(Number(value))) { value = "'" + value; }
    return /[",\r\n]/.test(value) ? '"' + value.replace(/"/g, '""') + '"' : value;
  }

  function csvText() {
    var lines = [headers.map(function (th) { return csvField(th.getAttribute("data-key")); }).join(",")];
    Array.prototype.forEach.call(tbody.rows, function (row) {
      if (row.hidden) { return; }
      var cells = [];
      for (var c = 0; c < headers.length; c += 1) { cells.push(csvField(rawValue(row, c) || "")); }
      lines.push(cells.join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }

  if (csvLink) {
    csvLink.addEventListener("click", function () {
      // A Blob built here, in the page: the download needs no server and no network.
      var blob = new Blob([csvText()], { type: "text/csv;charset=utf-8" });
      if (csvLink.href && csvLink.href.indexOf("blob:") === 0) { URL.revokeObjectURL(csvLink.href); }
      csvLink.href = URL.createObjectURL(blob);
    });
  }
})();
