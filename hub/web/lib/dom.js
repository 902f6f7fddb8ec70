// Tiny DOM builder. Text always goes in through textContent, never innerHTML, so data from the
// network (agency names, reasons, camera ids) can never become markup or script.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// A status line for screen readers and sighted users alike (role=status is announced politely).
export function notice(text, kind = "info") {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

// Move keyboard and screen-reader focus to a result message (after Approve, Revoke, Decline, a
// failed pairing): the owner hears what happened and carries on from there.
export function focusResult(el) {
  if (!el) return;
  el.setAttribute("tabindex", "-1");
  el.focus({ preventScroll: false });
}

// A table that turns into one card per row on a phone (style.css `table.cards`): each cell carries
// its column name, which the phone layout shows in front of the value.
export function cardTable(attrs, columns, rows) {
  return h("table", { ...attrs, class: `cards ${attrs.class || ""}`.trim() },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((row) => {
      const tr = row.tr || h("tr", row.attrs || {});
      row.cells.forEach((cell, i) => tr.appendChild(h("td", { "data-label": columns[i] }, cell)));
      return tr;
    })));
}

// A modal confirmation (<dialog>: the browser keeps focus inside it and Escape cancels). Resolves
// true when the owner confirms; `onConfirm` runs while the dialog is open so it can show progress.
export function confirmDialog({ title, body, confirm, danger = false }) {
  return new Promise((resolve) => {
    const id = `dlg-${Math.random().toString(36).slice(2)}`;
    const yes = h("button", { type: "button", class: danger ? "danger" : "" }, confirm);
    const no = h("button", { type: "button", class: "secondary", autofocus: true }, "Cancel");
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": id },
      h("h2", { id }, title), body, h("div", { class: "actions" }, yes, no));
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    yes.addEventListener("click", () => done(true));
    no.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (ev) => {
      ev.preventDefault();
      done(false);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    no.focus();
  });
}
