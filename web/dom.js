// DOM helpers. Safety rule for every module of the page: strings that come from the API, Cognito or
// config.json reach the DOM only through textContent, Node.append(string) or setAttribute — never
// innerHTML / insertAdjacentHTML.

const NOTICE_MS = 6000;

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

let noticeTimer = null;

export function notice(text, kind = 'info') {
  const box = $('notice');
  box.textContent = text;
  box.dataset.kind = kind;
  show(box);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => show(box, false), NOTICE_MS);
}
