// The owner API client: bearer token, one renewal on 401, errors as ApiError with the API's message.
import { config } from './config.js';
import { EXPIRED_MESSAGE, NETWORK_MESSAGE, TIMEOUT_MESSAGE, fetchWithTimeout, isTimeout } from './http.js';
import { currentSession, refreshSession, signOut } from './session.js';

const REFRESH_MARGIN_MS = 60000; // refresh the access token this long before it expires

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function parseRetryAfter(header, body) {
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.max(0, seconds);
    const date = Date.parse(header);
    if (!Number.isNaN(date)) return Math.max(0, (date - Date.now()) / 1000);
  }
  const fromBody = body && Number(body.retryAfter);
  return Number.isFinite(fromBody) && fromBody > 0 ? fromBody : null;
}

const DEFAULT_MESSAGES = {
  400: 'The request was not accepted — check what you entered.',
  401: EXPIRED_MESSAGE,
  403: "You aren't allowed to do that.",
  404: "That device isn't in your account.",
  409: 'That conflicts with the current state of the device — reload and try again.',
  429: 'Too many requests — wait a moment and try again.',
};

/** Call the owner API; resolves to the parsed JSON body (null for 204), rejects with ApiError. */
export async function api(method, path, body) {
  return (await apiRequest(method, path, body)).data;
}

/** The same, resolving to {status, data} for callers whose wording depends on the status (200 vs 201). */
export async function apiRequest(method, path, body) {
  if (!currentSession()) throw new ApiError(401, 'signed_out', EXPIRED_MESSAGE);
  if (currentSession().expiresAt - Date.now() < REFRESH_MARGIN_MS) await refreshSession();

  const send = async () => {
    const headers = { Authorization: `Bearer ${currentSession().accessToken}`, Accept: 'application/json' };
    const init = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    try {
      return await fetchWithTimeout(config.apiBase + path, init);
    } catch (err) {
      const timedOut = isTimeout(err);
      throw new ApiError(0, timedOut ? 'timeout' : 'network', timedOut ? TIMEOUT_MESSAGE : NETWORK_MESSAGE);
    }
  };

  let res = await send();
  if (res.status === 401) {
    const renewed = await refreshSession();
    if (renewed && currentSession()) res = await send();
    if (res.status === 401) {
      if (renewed !== null) signOut(EXPIRED_MESSAGE);
      throw new ApiError(401, 'unauthorized', EXPIRED_MESSAGE);
    }
  }

  const text = await res.text().catch(() => '');
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const message =
      (data && typeof data.message === 'string' && data.message) ||
      DEFAULT_MESSAGES[res.status] ||
      `Something went wrong (HTTP ${res.status}) — try again.`;
    const code = (data && data.error) || `http_${res.status}`;
    throw new ApiError(res.status, code, message, parseRetryAfter(res.headers.get('Retry-After'), data));
  }
  return { status: res.status, data };
}

export const devicePath = (id) => `/v1/devices/${encodeURIComponent(id)}`;
export const statePath = (id) => `${devicePath(id)}/state`; // the device shadow (relays, sensors)
