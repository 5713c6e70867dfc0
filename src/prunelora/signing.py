"""Ed25519 signatures of records: who wrote a record, checked with a public key the auditor already trusts.

A record's digest (driver/record.py) shows that nothing changed since it was written, but anyone can write a
record and its digest. A signature ties the record to a private key: `--sign-key KEY` on reproduce and unlearn
signs every record the run writes; `prunelora verify RECORD --public-key KEY` checks it. Keys are PEM files as
the `cryptography` package writes them (PKCS8 private keys, SubjectPublicKeyInfo public keys), so an
organisation's existing Ed25519 keys work; `prunelora keygen PRIVATE PUBLIC` writes a new pair. An encrypted
private key is read with the passphrase in $PRUNELORA_KEY_PASSPHRASE. A key's fingerprint is the sha256 of its
DER SubjectPublicKeyInfo (what `openssl pkey -pubin -outform DER | sha256sum` prints).
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import UserError, regular_file, shown

ALGORITHM = "ed25519"
PASSPHRASE_ENV = "PRUNELORA_KEY_PASSPHRASE"  # the passphrase of an encrypted private key
SIGNATURE_FIELDS = ("algorithm", "public_key", "fingerprint", "value")


def _pem_bytes(path: str | Path, what: str) -> bytes:
    path = Path(path)
    regular_file(path, what, f"give the {what} file (PEM)")
    if not path.is_file():
        raise UserError(f"{what} {shown(path)} not found: give a PEM file (prunelora keygen PRIVATE PUBLIC writes one)")
    return path.read_bytes()


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PKCS8 PEM file; an encrypted one with the passphrase in $PRUNELORA_KEY_PASSPHRASE."""
    data = _pem_bytes(path, "--sign-key")
    passphrase = os.environ.get(PASSPHRASE_ENV)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() if passphrase else None)
    except TypeError:  # encrypted and no passphrase given, or a passphrase for a key that has none
        if passphrase:
            raise UserError(f"--sign-key {shown(path)} is not encrypted: unset ${PASSPHRASE_ENV}") from None
        raise UserError(f"--sign-key {shown(path)} is encrypted: put its passphrase in ${PASSPHRASE_ENV}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(f"--sign-key {shown(path)} is not a readable PEM private key (or the passphrase in "
                        f"${PASSPHRASE_ENV} is wrong): give an Ed25519 key in PKCS8 PEM") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"--sign-key {shown(path)} is a {type(key).__name__.removeprefix('_')}, not an Ed25519 key: "
                        "records are signed with Ed25519 (prunelora keygen writes a pair)")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """The Ed25519 public key in a SubjectPublicKeyInfo PEM file."""
    return public_key_from_pem(_pem_bytes(path, "--public-key"), f"--public-key {shown(path)}")


def public_key_from_pem(data: bytes, what: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(f"{what} is not a PEM public key (SubjectPublicKeyInfo): give the public half of the "
                        "signing key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"{what} is not an Ed25519 public key: records are signed with Ed25519")
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def fingerprint(key: Ed25519PublicKey) -> str:
    """sha256 (hex) of the key's DER SubjectPublicKeyInfo."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def describe(key: Ed25519PrivateKey) -> dict[str, str]:
    """A record's `signature` field but its value: the algorithm, the public key (PEM) and its fingerprint."""
    public = key.public_key()
    return {"algorithm": ALGORITHM, "public_key": public_pem(public), "fingerprint": fingerprint(public)}


def sign(payload: bytes, key: Ed25519PrivateKey) -> str:
    """The Ed25519 signature of `payload`, base64: the `value` of a record's `signature`."""
    return base64.b64encode(key.sign(payload)).decode()


def check(payload: bytes, signature: dict[str, Any], trusted: Ed25519PublicKey | None) -> str | None:
    """None when `signature` (a record's field) signs `payload` with `trusted` (None: with the key it names);
    else what is wrong, in a few words."""
    if signature.get("algorithm") != ALGORITHM:
        return f"signed with {shown(signature.get('algorithm'))}, not {ALGORITHM}"
    try:
        named = public_key_from_pem(str(signature["public_key"]).encode(), "the record's public key")
    except UserError:
        return "the record's public key is not a PEM Ed25519 key"
    if fingerprint(named) != signature.get("fingerprint"):
        return "the record's key fingerprint is not its public key's"
    if trusted is not None and fingerprint(trusted) != fingerprint(named):
        return (f"signed by key {signature['fingerprint'][:16]}..., not by the given public key "
                f"{fingerprint(trusted)[:16]}...")
    try:
        value = base64.b64decode(str(signature["value"]), validate=True)
        named.verify(value, payload)
    except (InvalidSignature, binascii.Error, ValueError):
        return "the signature does not match the record's content (the record was changed after it was signed)"
    return None


_active: Path | None = None  # the --sign-key of the command now running (cli.py): every record it writes is signed


@contextlib.contextmanager
def signing_with(key: str | Path | None) -> Iterator[None]:
    """While a command runs, the records it writes are signed with `key` (None: unsigned); the key is read once
    here first, so a wrong file is refused before anything trains."""
    global _active
    if key is not None:
        load_private_key(key)
    saved, _active = _active, Path(key) if key is not None else None
    try:
        yield
    finally:
        _active = saved


def active_key() -> Path | None:
    """The signing key of the command now running (None: none, or outside a command)."""
    return _active


def keygen(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new Ed25519 pair (the private key 0600, unencrypted PKCS8 PEM); refuses to replace any file.
    Returns the public key's fingerprint."""
    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.absolute() == public_path.absolute():
        raise UserError("keygen needs two files: PRIVATE and PUBLIC are the same path")
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise UserError(f"{shown(path)} exists: keygen never replaces a file (a key lost is every record it "
                            "signed unverifiable); choose another name")
        if not path.parent.is_dir():
            raise UserError(f"{shown(path.parent)} is not a folder: create it first")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_new(private_path, private, 0o600)
    try:
        _write_new(public_path, public_pem(key.public_key()).encode(), 0o644)
    except BaseException:
        private_path.unlink()
        raise
    return fingerprint(key.public_key())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (never an existing file: O_EXCL) with `mode` from the start, and write `data`."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise UserError(f"{shown(path)} exists: keygen never replaces a file; choose another name") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # whatever the umask took away from the public key's read bits


__all__ = ["ALGORITHM", "PASSPHRASE_ENV", "active_key", "check", "describe", "fingerprint", "keygen", "load_private_key",
           "load_public_key", "public_pem", "sign", "signing_with"]
