"""Secrets: provider key formats, private keys, tokens, and values assigned to secret names.

A value counts as a secret when its own shape says so (``AKIA...``, ``ghp_...``, a PEM block,
a JWT, a 40-character AWS secret access key) or when it is assigned to a name that says so
(``password=``, ``client_secret:``, ``AWS_SECRET_ACCESS_KEY=``, also base64-encoded, as in a
Kubernetes Secret). References to secrets (``${DB_PASSWORD}``, ``<token>``) are not secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.pii.entities import CREDENTIAL
from gateway.pii.findings import Finding

_SHAPES = [
    (r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b", 0.95),
    (r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b", 0.95),
    (r"\bglpat-[A-Za-z0-9_\-]{20,}", 0.95),
    (r"\bxox[abposr]-[A-Za-z0-9-]{10,250}\b", 0.95),
    (r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}", 0.95),
    (r"\bsk-(?:proj-|svcacct-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}", 0.9),
    (r"\bAIza[0-9A-Za-z_-]{35}\b", 0.9),
    (r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b", 0.9),
    (r"\bnpm_[A-Za-z0-9]{36}\b", 0.9),
    (r"\bhf_[A-Za-z0-9]{30,}\b", 0.9),
    (r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}", 0.95),
    (r"\bhv[sb]\.[A-Za-z0-9_-]{24,}", 0.9),
    (r"\bdop_v1_[a-f0-9]{64}\b", 0.95),
    (r"\bshp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}\b", 0.95),
    (r"\bpypi-AgE[A-Za-z0-9_-]{50,}", 0.95),
    (r"(?<=[Aa]ccount[Kk]ey=)[A-Za-z0-9+/=]{40,}", 0.9),
    (
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
        0.99,
    ),
    (r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 0.95),
    (r"(?<=[Bb]earer )[A-Za-z0-9._~+/-]{16,}=*", 0.85),
]
_SHAPE = re.compile("|".join(f"(?:{pattern})" for pattern, _ in _SHAPES))
# An AWS secret access key: 40 characters of base64's alphabet, mixed, not a hex digest.
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
# A password by its shape alone: upper and lower case, a digit and a symbol, no spaces.
_COMPLEX_PASSWORD = re.compile(
    r"(?<![\w!@#$%^&*?~+=/.\-])[A-Za-z0-9!@#$%^&*?~+=]{8,40}(?![\w!@#$%^&*?~+=/\-])"
)
_PASSWORD_IN_URL = re.compile(r"(?<=://)[^\s:/@]{0,64}:(?P<value>[^\s/@]{1,128})(?=@)")
# "the admin pw was X", "password is X": a secret given in prose.
_PROSE = re.compile(
    r"(?i)\b(?:password|passwd|pw|pwd|passcode|passphrase|pin code|secret|api key|access key|"
    r"token|mot de passe|passwort|kennwort|contraseña|clave|wachtwoord|senha)"
    r"(?:\s+(?:for|of|on)\s+[\w.@\-]{1,40})?\s+(?:is|was|=|:|est|ist|es|è|é|is now|was set to|"
    r"set to|changed to)\s+[`\"'“]?(?P<value>[^\s`\"'”]{4,64}?)[`\"'”]?(?=[\s,;)]|[.!?](?:\s|$)|$)"
)
_SECRET_NAME = (
    r"(?:password|passwd|passphrase|pwd|secret|token|api[_\-]?key|apikey|access[_\-]?key|"
    r"secret[_\-]?key|private[_\-]?key|signing[_\-]?key|encryption[_\-]?key|master[_\-]?key|"
    r"client[_\-]?secret|credentials?|[_\-.]pass|auth|authorization|x[_\-]api[_\-]key|pw)"
)
_ASSIGNMENT = re.compile(
    rf"(?i)(?<![\w.\-])(?P<key>[\w.\-]{{0,48}}?{_SECRET_NAME})[\"']?\s*(?:[:=]|=>|:=)\s*"
    r"(?:[\"'](?P<quoted>[^\"'\n]{4,200})[\"']|(?P<bare>[^\s\"'`,;)}\]]{4,200}))"
)
_NOT_A_SECRET = re.compile(
    r"(?i)^(?:null|none|nil|true|false|yes|no|changeme|change[_\-]?me|password|secret|token|"
    r"redacted|removed|hidden|masked|example|dummy|test|placeholder|required|optional|string|"
    r"undefined|env|your[\w\-]*|x+|\*+|\.+|-+|<[^>]*>|\[[^\]]*\]|bearer|basic|oauth2?|jwt|"
    r"apikey|api[_\-]key|none|true|disabled|enabled|on|off)$"
)
_REFERENCE = re.compile(
    r"^(?:\$|\{\{|<|%\(|%[sd]|\*{3}|#\{|@\w+\(|process\.env|os\.|env\.|config\.|settings\.|"
    r"self\.|this\.|[A-Za-z_][\w.]*\(|[A-Za-z_][\w.]*\[)"
)


def is_secret_value(value: str, key: str) -> bool:
    """A value assigned to ``key`` that is a secret itself, not a reference or a default."""
    return _is_secret_value(value.strip(), key)


def _is_secret_value(value: str, key: str) -> bool:
    if _NOT_A_SECRET.match(value) or _REFERENCE.match(value):
        return False
    if key.lower().endswith(("auth", "authorization")) and " " not in value.strip():
        return len(value) >= 12
    letters = any(c.isalpha() for c in value)
    digits = any(c.isdigit() for c in value)
    others = any(not c.isalnum() for c in value)
    if key.lower().rstrip("s").endswith(("password", "passwd", "pwd", "pass", "passphrase")):
        return len(value) >= 4
    return len(value) >= 8 and ((letters and (digits or others)) or len(value) >= 16)


def _aws_secret_shaped(value: str) -> bool:
    if all(c in "0123456789abcdefABCDEF" for c in value):
        return False  # a hex digest (git SHA-1, ...)
    upper = any(c.isupper() for c in value)
    lower = any(c.islower() for c in value)
    other = any(c.isdigit() or c in "+/" for c in value)
    return upper and lower and other and len(set(value)) >= 16


class CredentialRecognizer:
    entity_types = frozenset({CREDENTIAL})

    def find(self, text: str) -> Iterator[Finding]:
        for match in _SHAPE.finditer(text):
            yield Finding(match.start(), match.end(), CREDENTIAL, 0.95)
        for match in _AWS_SECRET.finditer(text):
            if _aws_secret_shaped(match.group(0)):
                yield Finding(match.start(), match.end(), CREDENTIAL, 0.85)
        for match in _COMPLEX_PASSWORD.finditer(text):
            value = match.group(0)
            if (
                any(c.isupper() for c in value)
                and any(c.islower() for c in value)
                and any(c.isdigit() for c in value)
                and any(c in "!#$%^&*?~" for c in value)
                and not _REFERENCE.match(value)
                and not ("@" in value and "." in value)  # an address, not a password
                and not re.fullmatch(r"[A-Za-z]+#\d+", value)  # "Issue#42"
            ):
                yield Finding(match.start(), match.end(), CREDENTIAL, 0.7)
        if "://" in text:
            for match in _PASSWORD_IN_URL.finditer(text):
                if not _REFERENCE.match(match.group("value")):
                    yield Finding(match.start("value"), match.end("value"), CREDENTIAL, 0.85)
        for match in _PROSE.finditer(text):
            value = match.group("value")
            if _is_secret_value(value, "password") and any(not c.isalpha() for c in value):
                yield Finding(match.start("value"), match.end("value"), CREDENTIAL, 0.75)
        for match in _ASSIGNMENT.finditer(text):
            group = "quoted" if match.group("quoted") is not None else "bare"
            value = match.group(group)
            if _is_secret_value(value.strip(), match.group("key")):
                yield Finding(match.start(group), match.end(group), CREDENTIAL, 0.8)
