"""Password verifiers as PostgreSQL stores them: SCRAM-SHA-256 (RFC 7677, with PostgreSQL's SASLprep) and md5.

Pure functions; no pulumi import. tests/test_password_rotation.py holds them to libpq's own
PQencryptPasswordConn.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import stringprep
import unicodedata

SCRAM_ITERATIONS = 4096  # PostgreSQL's scram_iterations default
SCRAM_SALT_BYTES = 16  # PostgreSQL's SCRAM_DEFAULT_SALT_LEN


def saslprep(password: str) -> str:
    """The password as PostgreSQL prepares it for SCRAM (src/common/saslprep.c): ASCII as is; else
    RFC 4013 (map, NFKC, prohibit, bidi), and the password unchanged when that fails."""
    if password.isascii():
        return password
    mapped = "".join(" " if stringprep.in_table_c12(c) else "" if stringprep.in_table_b1(c) else c for c in password)
    if not mapped:
        return password
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7,
                  stringprep.in_table_c8, stringprep.in_table_c9, stringprep.in_table_a1)
    # PostgreSQL checks the mapped characters, before normalisation.
    if any(check(c) for c in mapped for check in prohibited):
        return password
    if any(stringprep.in_table_d1(c) for c in mapped) and (
            any(stringprep.in_table_d2(c) for c in mapped)
            or not (stringprep.in_table_d1(mapped[0]) and stringprep.in_table_d1(mapped[-1]))):
        return password
    return unicodedata.normalize("NFKC", mapped)


def scram_salt(user: str, password: str, namespace: str) -> bytes:
    """A salt unique to the role, its namespace and its password; fixed for them, so renders repeat."""
    message = f"pgpool-k8s scram salt\0{namespace}\0{user}".encode()
    return hmac.new(password.encode(), message, hashlib.sha256).digest()[:SCRAM_SALT_BYTES]


def scram_sha_256_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as PostgreSQL stores it (RFC 7677)."""
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def md5_verifier(user: str, password: str) -> str:
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()
