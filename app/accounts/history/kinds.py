"""Every kind of account event, in one place: a feature that records a new kind names it here
(and in `AccountEventRead.kind`'s description and docs/access.md)."""

ROLE_CHANGED = "role_changed"
ACTIVATION_CHANGED = "activation_changed"
ACCOUNT_DELETED = "account_deleted"
SSO_FIRST_SIGN_IN = "sso_first_sign_in"  # an account made by its first single sign-on
API_KEY_CREATED = "api_key_created"
API_KEY_REVOKED = "api_key_revoked"
