"""Cognito user pool for device owners and the app client the claim page uses."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from infrastructure.nag import acknowledge
from infrastructure.settings import Settings
from lambdas import definitions


class Auth(Construct):
    """Email sign-in, strong passwords, Plus-tier threat protection, a public (secret-less) client.

    Self sign-up is on by default: owners are the buyers of the devices, and "claim in seconds" means they
    create their own account from the claim page (email verified by a code). An operator running a closed
    fleet turns it off with `-c selfSignUp=false` and creates owners with `admin-create-user`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        spec = definitions.USER_POOL
        if spec.sign_in_alias != "email":
            raise ValueError(f"unsupported sign-in alias {spec.sign_in_alias!r}")

        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            sign_in_aliases=cognito.SignInAliases(email=True),
            sign_in_case_sensitive=False,
            self_sign_up_enabled=settings.self_sign_up,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            keep_original=cognito.KeepOriginalAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            password_policy=cognito.PasswordPolicy(
                min_length=spec.password_min_length,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            # With a sender, Cognito's messages (sign-up and reset codes) go through SES from it; without,
            # Cognito's default sender, whose daily quota is for trying out (docs/deploy.md, "Email").
            email=(
                cognito.UserPoolEmail.with_ses(
                    from_email=settings.ses_sender,
                    from_name=settings.product_name,
                    ses_region=Stack.of(self).region,
                )
                if settings.ses_sender
                else None
            ),
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.user_pool,
            "AwsSolutions-COG2",
            "MFA is optional (TOTP, no SMS): owners of consumer devices sign up from the claim page and can "
            "turn TOTP on; requiring it would block the claim-in-seconds flow. Account takeover is covered by "
            "Plus-tier threat protection in full-function (enforced) mode, which blocks risky sign-ins and "
            "compromised credentials, and by the 12+ character, 4-class password policy.",
        )

        flows = set(spec.auth_flows)
        unknown = flows - {"USER_PASSWORD_AUTH", "USER_SRP_AUTH"}
        if unknown:
            raise ValueError(f"unsupported auth flows {sorted(unknown)}")
        self.client = self.user_pool.add_client(
            "WebClient",
            auth_flows=cognito.AuthFlow(
                user_password="USER_PASSWORD_AUTH" in flows,
                user_srp="USER_SRP_AUTH" in flows,
            ),
            generate_secret=False,  # a browser page cannot keep a secret
            # The page signs in with the user-pool API (SRP/password), not the hosted UI: no OAuth flow,
            # no callback URL (CDK's default would enable the implicit grant with https://example.com).
            disable_o_auth=True,
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
        )
