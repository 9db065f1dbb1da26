// Cognito's account operations for the page (sign-up, confirmation, password reset and change, TOTP).
// Each resolves with Cognito's answer or throws session.js's AuthError with a sentence for the person.
import { config } from './config.js';
import { EXPIRED_MESSAGE } from './http.js';
import { AuthError, cognito, currentSession, refreshSession } from './session.js';

const clientId = () => config.value.userPoolClientId;

/** Emails are kept lowercase, so that sharing and transfer find the account however it is typed. */
export const normalizeEmail = (email) => String(email || '').trim().toLowerCase();

export const signUp = (email, password) =>
  cognito('SignUp', {
    ClientId: clientId(),
    Username: normalizeEmail(email),
    Password: password,
    UserAttributes: [{ Name: 'email', Value: normalizeEmail(email) }],
  });

export const confirmSignUp = (email, code) =>
  cognito('ConfirmSignUp', { ClientId: clientId(), Username: normalizeEmail(email), ConfirmationCode: code.trim() });

export const resendCode = (email) =>
  cognito('ResendConfirmationCode', { ClientId: clientId(), Username: normalizeEmail(email) });

export const forgotPassword = (email) =>
  cognito('ForgotPassword', { ClientId: clientId(), Username: normalizeEmail(email) });

export const confirmForgotPassword = (email, code, password) =>
  cognito('ConfirmForgotPassword', {
    ClientId: clientId(),
    Username: normalizeEmail(email),
    ConfirmationCode: code.trim(),
    Password: password,
  });

/** A call with the access token, renewed once if Cognito says it has expired. */
async function withAccessToken(target, payload) {
  const call = () => {
    const session = currentSession();
    if (!session) throw new AuthError('NotAuthorizedException', 'Sign in first.');
    return cognito(target, { ...payload, AccessToken: session.accessToken });
  };
  try {
    return await call();
  } catch (err) {
    if (err.message !== EXPIRED_MESSAGE || !(await refreshSession())) throw err;
    return call();
  }
}

export const changePassword = (previous, proposed) =>
  withAccessToken('ChangePassword', { PreviousPassword: previous, ProposedPassword: proposed });

/** {enabled} for the authenticator app (TOTP), from GetUser. */
export async function mfaStatus() {
  const user = await withAccessToken('GetUser', {});
  return { enabled: (user.UserMFASettingList || []).includes('SOFTWARE_TOKEN_MFA') };
}

/** The secret to put into the authenticator app (base32). */
export async function startTotp() {
  const answer = await withAccessToken('AssociateSoftwareToken', {});
  return answer.SecretCode;
}

/** Check the app's first code, then make TOTP the account's second step at sign-in. */
export async function enableTotp(code) {
  await withAccessToken('VerifySoftwareToken', { UserCode: code.trim(), FriendlyDeviceName: 'Authenticator app' });
  await withAccessToken('SetUserMFAPreference', { SoftwareTokenMfaSettings: { Enabled: true, PreferredMfa: true } });
}

export const disableTotp = () =>
  withAccessToken('SetUserMFAPreference', { SoftwareTokenMfaSettings: { Enabled: false, PreferredMfa: false } });
