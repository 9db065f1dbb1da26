// The signed-in owner: Cognito calls from the browser (sign in, new-password and TOTP challenges,
// refresh, sign out; `cognito()` for the account flows in account-api.js) and the tokens in sessionStorage. Signing out is announced with a `latchkey:signed-out` event
// so that this module needs nothing from the views.
import { config } from './config.js';
import { EXPIRED_MESSAGE, NETWORK_MESSAGE, TIMEOUT_MESSAGE, fetchWithTimeout, isTimeout } from './http.js';

const SESSION_KEY = 'latchkey.session';

let session = null; // {sub, accessToken, idToken, refreshToken, expiresAt, email}
let challenge = null; // {type: 'new-password' | 'mfa', session, email} while a sign-in challenge is open
let refreshing = null;

export const currentSession = () => session;
export const hasChallenge = () => Boolean(challenge);
export const challengeType = () => (challenge ? challenge.type : null);

export function cancelChallenge() {
  challenge = null;
}

export class AuthError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
  }
}

function cognitoMessage(type, raw) {
  const text = String(raw || '');
  switch (type) {
    case 'NotAuthorizedException':
      if (/attempts exceeded/i.test(text)) return 'Too many failed sign-ins — wait a few minutes and try again.';
      if (/refresh token|access token/i.test(text)) return EXPIRED_MESSAGE;
      if (/session is expired/i.test(text)) return 'The sign-in took too long — go back and sign in again.';
      return 'Incorrect email or password.';
    case 'UserNotFoundException':
      return 'Incorrect email or password.';
    case 'UserNotConfirmedException':
      return "Your account isn't confirmed yet — enter the code from the email we sent you.";
    case 'UsernameExistsException':
      return 'An account with this email already exists — sign in, or reset your password.';
    case 'CodeMismatchException':
      return /auth state/i.test(text)
        ? "That code isn't right — check your authenticator app and try again."
        : "That code isn't right — check the email and try again.";
    case 'ExpiredCodeException':
      return /already been used/i.test(text)
        ? 'That code was used already — wait for the next one in your authenticator app.'
        : 'That code has expired — ask for a new one.';
    case 'EnableSoftwareTokenMFAException':
      return "That code isn't right — check the code in your authenticator app and try again.";
    case 'PasswordResetRequiredException':
      return 'You need to reset your password before you can sign in.';
    case 'InvalidPasswordException':
      return 'The password needs at least 12 characters, with upper- and lowercase letters, a digit and a symbol.';
    case 'TooManyRequestsException':
    case 'LimitExceededException':
      return /attempt limit/i.test(text)
        ? 'Too many wrong codes — ask for a new code.'
        : 'Too many attempts — wait a minute and try again.';
    case 'InvalidParameterException':
      return text || 'Enter your email and password.';
    default:
      return text || 'Sign-in failed — try again.';
  }
}

/** One Cognito user-pool call; AuthError (with `type` and a sentence) when Cognito says no. */
export async function cognito(target, payload) {
  let res;
  try {
    res = await fetchWithTimeout(config.cognitoEndpoint, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-amz-json-1.1',
        'X-Amz-Target': `AWSCognitoIdentityProviderService.${target}`,
      },
      body: JSON.stringify(payload),
    });
  } catch (err) {
    throw new AuthError('network', isTimeout(err) ? TIMEOUT_MESSAGE : NETWORK_MESSAGE);
  }
  let body = {};
  try {
    body = await res.json();
  } catch {
    body = {};
  }
  if (!res.ok) {
    const rawType = body.__type || body.code || res.headers.get('x-amzn-errortype') || '';
    const type = String(rawType).split('#').pop().split(':')[0];
    throw new AuthError(type, cognitoMessage(type, body.message || body.Message));
  }
  return body;
}

function decodeJwt(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      [...atob(part)].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
    );
    return JSON.parse(json);
  } catch {
    return {};
  }
}

/** Pick up the session this tab had before a reload, if any. */
export function restoreSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    session = s && s.accessToken ? s : null;
  } catch {
    session = null;
  }
  return session;
}

function saveSession(next) {
  session = next;
  try {
    if (next) sessionStorage.setItem(SESSION_KEY, JSON.stringify(next));
    else sessionStorage.removeItem(SESSION_KEY);
  } catch {
    /* storage disabled: the session lives only in memory */
  }
}

function sessionFromResult(result, email, previous = null) {
  const claims = decodeJwt(result.IdToken || (previous && previous.idToken) || '');
  const access = decodeJwt(result.AccessToken || '');
  return {
    sub: claims.sub || access.sub || (previous && previous.sub) || '',
    accessToken: result.AccessToken,
    idToken: result.IdToken || (previous && previous.idToken) || null,
    refreshToken: result.RefreshToken || (previous && previous.refreshToken) || null,
    expiresAt: Date.now() + (Number(result.ExpiresIn) || 3600) * 1000,
    email: claims.email || email || (previous && previous.email) || '',
  };
}

/** Resolves 'ok' when signed in, 'new-password' when Cognito asks for a new password first, 'mfa' when
 * it asks for the code of the authenticator app. */
export async function signIn(email, password) {
  const r = await cognito('InitiateAuth', {
    AuthFlow: 'USER_PASSWORD_AUTH',
    ClientId: config.value.userPoolClientId,
    AuthParameters: { USERNAME: email, PASSWORD: password },
  });
  if (r.ChallengeName === 'NEW_PASSWORD_REQUIRED') {
    challenge = { type: 'new-password', session: r.Session, email };
    return 'new-password';
  }
  if (r.ChallengeName === 'SOFTWARE_TOKEN_MFA') {
    challenge = { type: 'mfa', session: r.Session, email };
    return 'mfa';
  }
  if (r.ChallengeName || !r.AuthenticationResult) {
    throw new AuthError('challenge', "This account needs a sign-in step this page doesn't support yet.");
  }
  saveSession(sessionFromResult(r.AuthenticationResult, email));
  return 'ok';
}

export async function answerNewPassword(newPassword) {
  const { session: challengeSession, email } = challenge;
  const r = await cognito('RespondToAuthChallenge', {
    ChallengeName: 'NEW_PASSWORD_REQUIRED',
    ClientId: config.value.userPoolClientId,
    Session: challengeSession,
    ChallengeResponses: { USERNAME: email, NEW_PASSWORD: newPassword },
  });
  if (!r.AuthenticationResult) throw new AuthError('challenge', 'Setting the password failed — try signing in again.');
  challenge = null;
  saveSession(sessionFromResult(r.AuthenticationResult, email));
}

export async function answerMfa(code) {
  const { session: challengeSession, email } = challenge;
  const r = await cognito('RespondToAuthChallenge', {
    ChallengeName: 'SOFTWARE_TOKEN_MFA',
    ClientId: config.value.userPoolClientId,
    Session: challengeSession,
    ChallengeResponses: { USERNAME: email, SOFTWARE_TOKEN_MFA_CODE: code },
  });
  if (r.Session) challenge.session = r.Session; // a wrong code keeps the challenge open
  if (!r.AuthenticationResult) throw new AuthError('challenge', 'Signing in failed — try signing in again.');
  challenge = null;
  saveSession(sessionFromResult(r.AuthenticationResult, email));
}

/** Resolves true when the access token was renewed, false when the session is over, null on a network blip. */
export function refreshSession() {
  const current = session;
  if (!current || !current.refreshToken) return Promise.resolve(false);
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const r = await cognito('InitiateAuth', {
          AuthFlow: 'REFRESH_TOKEN_AUTH',
          ClientId: config.value.userPoolClientId,
          AuthParameters: { REFRESH_TOKEN: current.refreshToken },
        });
        if (!r.AuthenticationResult || !r.AuthenticationResult.AccessToken) return false;
        if (session !== current) return false; // signed out meanwhile
        saveSession(sessionFromResult(r.AuthenticationResult, current.email, current));
        return true;
      } catch (err) {
        // A network blip is not a reason to end the session: keep the old token and let the call decide.
        return err.type === 'network' ? null : false;
      } finally {
        refreshing = null;
      }
    })();
  }
  return refreshing;
}

/** Forget the tokens; the views listen for `latchkey:signed-out` and show the sign-in form with `message`. */
export function signOut(message) {
  const previous = session;
  saveSession(null);
  challenge = null;
  if (previous && previous.refreshToken) {
    // Best effort: invalidate the refresh token server-side too. The page does not wait for it.
    cognito('RevokeToken', { Token: previous.refreshToken, ClientId: config.value.userPoolClientId }).catch(() => {});
  }
  document.dispatchEvent(new CustomEvent('latchkey:signed-out', { detail: { message: message || '' } }));
}
