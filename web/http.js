// fetch with a time limit and the page's request defaults, shared by the Cognito and owner API clients.

const REQUEST_TIMEOUT_MS = 15000;

export const NETWORK_MESSAGE = "Can't reach the service — check your connection and try again.";
export const TIMEOUT_MESSAGE = "The service didn't answer in time — try again.";
export const EXPIRED_MESSAGE = 'Your session has expired — please sign in again.';

export async function fetchWithTimeout(url, options = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  try {
    return await fetch(url, { ...options, signal: controller.signal, credentials: 'omit', cache: 'no-store' });
  } finally {
    clearTimeout(timer);
  }
}

export function isTimeout(err) {
  return Boolean(err && err.name === 'AbortError');
}
