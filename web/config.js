// The page's runtime configuration (config.json next to index.html), loaded once at start.
import { fetchWithTimeout } from './http.js';

export const config = {
  value: null, // the parsed config.json
  apiBase: '',
  cognitoEndpoint: '',
};

export function productName() {
  return (config.value && config.value.productName) || 'Latchkey';
}

/** Load and check config.json; throws an Error whose message is shown instead of the page. */
export async function loadConfig() {
  let res;
  try {
    res = await fetchWithTimeout(new URL('config.json', document.baseURI).href);
  } catch {
    throw new Error("The page couldn't load its configuration — check your connection.");
  }
  if (!res.ok) throw new Error(`The page couldn't load its configuration (HTTP ${res.status}).`);
  let value;
  try {
    value = await res.json();
  } catch {
    throw new Error('The configuration (config.json) is not valid JSON.');
  }
  const missing = ['userPoolClientId'].filter((k) => !value[k]);
  if (!value.cognitoEndpoint && !value.region) missing.push('cognitoEndpoint or region');
  if (missing.length) throw new Error(`The configuration is missing: ${missing.join(', ')}.`);
  config.value = value;
  config.apiBase = String(value.apiUrl || location.origin).replace(/\/+$/, '');
  config.cognitoEndpoint = value.cognitoEndpoint || `https://cognito-idp.${value.region}.amazonaws.com/`;
  return value;
}
