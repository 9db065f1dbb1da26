// DOM helpers. Safety rule for every module of the page: strings that come from the API, Cognito or
// config.json reach the DOM only through textContent, Node.append(string) or setAttribute — never
// innerHTML / insertAdjacentHTML.

const NOTICE_MS = 8000;

export const $ = (id) => document.getElementById(id);

/** Create an element. `attrs.text` sets textContent, `attrs.testid` data-testid, `on*` adds listeners. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'testid') node.dataset.testid = value;
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child)); // strings become text nodes
  }
  return node;
}

export function show(node, visible = true) {
  node.hidden = !visible;
}

export function setText(node, text) {
  const value = text === undefined || text === null ? '' : String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** Set an attribute only when it changes (a refresh that changes nothing touches nothing). */
export function setAttr(node, name, value) {
  if (value === null || value === undefined) {
    if (node.hasAttribute(name)) node.removeAttribute(name);
  } else if (node.getAttribute(name) !== String(value)) {
    node.setAttribute(name, String(value));
  }
}

/**
 * Make `parent`'s children match `items` in order, keeping the node of each key: a refresh updates
 * nodes in place instead of replacing them, so keyboard focus and text selection stay where they are.
 * When the node that had the focus goes away, the focus moves to `focusFallback`.
 */
export function reconcile(parent, items, { key, create, update, focusFallback = null }) {
  const existing = new Map();
  for (const child of parent.children) existing.set(child.dataset.key, child);
  const kept = new Set();
  items.forEach((item, index) => {
    const k = String(key(item));
    let node = existing.get(k);
    if (!node) {
      node = create(item);
      node.dataset.key = k;
    }
    update(node, item);
    if (parent.children[index] !== node) parent.insertBefore(node, parent.children[index] || null);
    kept.add(k);
  });
  for (const [k, node] of existing) {
    if (kept.has(k)) continue;
    const hadFocus = node.contains(document.activeElement);
    node.remove();
    if (hadFocus) focusOn(focusFallback); // e.g. the section's heading, rather than <body>
  }
}

/** Move keyboard focus to a heading, message or control (headings become focusable for this). */
export function focusOn(node) {
  if (!node || node.hidden) return;
  if (!node.matches('a[href], button, input, select, textarea, [tabindex]')) node.setAttribute('tabindex', '-1');
  node.focus();
}

/** Say a change to screen readers (a notice, a device that came online) without moving the focus. */
export function announce(text) {
  const region = $('live-region');
  if (!region || !text) return;
  // Re-setting the same text is not announced again: clear first, then write in the next frame.
  region.textContent = '';
  requestAnimationFrame(() => {
    region.textContent = text;
  });
}

let noticeTimer = null;
let noticeView = null;

/** A short confirmation under the header. It belongs to `view` and goes when the person leaves it. */
export function notice(text, kind = 'info', view = null) {
  const box = $('notice');
  setText($('notice-text'), text);
  announce(text);
  box.dataset.kind = kind;
  noticeView = view;
  show(box);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => show(box, false), NOTICE_MS);
}

/** Called on every view change: a notice meant for another view is dropped. */
export function noticeViewChanged(view) {
  if (noticeView !== null && noticeView === view) {
    noticeView = null; // shown on the view it was meant for; the next change drops it
    return;
  }
  clearTimeout(noticeTimer);
  noticeView = null;
  show($('notice'), false);
}

export function dismissNotice() {
  clearTimeout(noticeTimer);
  noticeView = null;
  show($('notice'), false);
}
