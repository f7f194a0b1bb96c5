"""Errors of the auth package. Each message is for the person, in plain words.

AuthError
├── SignInRefused           a sign-in that cannot go on (forged, replayed, expired, not allowed)
│   ├── NoSuchProvider      no sign-in provider of that name is configured here
│   └── ProviderFailed      the provider could not be reached, or answered what no sign-in can use
├── NotSignedIn             the request needs a signed-in person
└── IdentityRefused         the provider's answer names no stable subject
"""

from __future__ import annotations


class AuthError(Exception):
    """Root of every error the auth package raises."""

    status = 400  # what an HTTP client is told (api/errors.py)


class SignInRefused(AuthError):
    """A sign-in that cannot go on; nothing was created or linked."""


class NoSuchProvider(SignInRefused):
    """No sign-in provider of that name is configured here."""

    status = 404


class ProviderFailed(SignInRefused):
    """The provider could not be reached, or answered what no sign-in can use."""

    status = 502


class NotSignedIn(AuthError):
    """The request needs a signed-in person."""

    status = 401


class IdentityRefused(AuthError):
    """The provider's answer names no stable subject: nobody can be signed in from it."""
