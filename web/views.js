// Which view is on screen, the router hook, and the refresh loop that reloads what the view shows.
import { productName } from './config.js';
import { $, noticeViewChanged, setText, show } from './dom.js';
import { currentSession } from './session.js';

const POLL_MS = 3000; // refresh cadence while the tab is visible

const VIEWS = [
  ['boot', 'boot-view'],
  ['config-error', 'config-error-view'],
  ['signin', 'signin-view'],
  ['devices', 'devices-view'],
  ['details', 'details-view'],
  ['account', 'account-view'],
];
const TITLES = { signin: 'Sign in', devices: 'My Devices', details: 'Device', account: 'Account' };

let view = null;
let router = () => {};
const loaders = new Map(); // view name -> async (gen) => void
let pollTimer = null;
let pollGen = 0; // bumped to discard answers that belong to an older view / session

export const currentView = () => view;

export function showView(name) {
  if (name !== view) noticeViewChanged(name);
  view = name;
  for (const [key, id] of VIEWS) show($(id), key === name);
  const session = currentSession();
  show($('account'), Boolean(session));
  setText($('user-email'), session ? session.email : '');
  document.title = TITLES[name] ? `${TITLES[name]} — ${productName()}` : productName();
}

/** The entry module installs the router; other modules call route() without importing it. */
export function setRouter(fn) {
  router = fn;
}

export function route() {
  router();
}

/** `load(gen)` runs on every refresh while `name` is on screen. */
export function registerLoader(name, load) {
  loaders.set(name, load);
}

/** False once the answer belongs to an older view or session. */
export function isCurrent(gen) {
  return gen === pollGen;
}

export function stopPolling() {
  clearTimeout(pollTimer);
  pollTimer = null;
  pollGen += 1;
}

/** Fetch what the current view shows now, then every POLL_MS while the tab is visible. */
export function restartPolling() {
  stopPolling();
  if (!currentSession() || document.visibilityState !== 'visible') return;
  tick(pollGen);
}

async function tick(gen) {
  try {
    const load = loaders.get(view);
    if (load) await load(gen);
  } catch (err) {
    console.error(err); // never let one bad answer stop the refresh loop
  } finally {
    if (gen === pollGen && currentSession() && document.visibilityState === 'visible') {
      pollTimer = setTimeout(() => tick(gen), POLL_MS);
    }
  }
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') restartPolling();
  else stopPolling();
});
