"""The audit trail's keys, kept outside every workspace in the user's config folder.

``$XDG_CONFIG_HOME/orchestrator-nb/`` (default ``~/.config/orchestrator-nb/``) holds:

* ``audit.key`` — 32 random bytes; HMAC-SHA256 over each record's exact bytes, so a record
  forged in the workspace (even with a recomputed hash) does not authenticate.
* ``receipt.key`` — an Ed25519 private key (raw, 32 bytes) that signs each run's receipt; its
  public key is exportable (:func:`public_key_pem`) so anyone can check a receipt offline.
* ``audit-heads/`` — the last sequence number and hash of each workspace's trail, keyed by the
  trail's real path, so deleting or replacing the trail *and* its head in the workspace is seen.

Both keys are created on first use with mode 0600, under a lock so two processes starting at
once agree on one key. Everything goes through :mod:`orchestrator_nb.fsio` (no symlink is
followed below the config folder).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from pathlib import Path

from .. import fsio
from ..userdirs import user_config_dir

AUDIT_KEY = "audit.key"
RECEIPT_KEY = "receipt.key"
HEADS_DIR = "audit-heads"
_KEY_BYTES = 32
_cache: dict[tuple[str, str], bytes] = {}
_cache_lock = threading.Lock()


def _anchor(config: Path) -> Path:
    return config.parent


def _read_key(config: Path, name: str) -> bytes | None:
    try:
        data = fsio.read_bytes(config / name, anchor=_anchor(config))
    except FileNotFoundError:
        return None
    return data if len(data) == _KEY_BYTES else None


def secret(name: str, *, create: bool = True, config: Path | None = None) -> bytes | None:
    """The 32-byte key ``name`` of the config folder, made (0600) on first use."""
    config = config or user_config_dir()
    memo = (str(config), name)
    with _cache_lock:
        if memo in _cache:
            return _cache[memo]
    key = _read_key(config, name)
    if key is None and create:
        fsio.ensure_dir(config, anchor=_anchor(config))
        os.chmod(config, 0o700)
        with fsio.FileLock(config / "keys.lock", anchor=_anchor(config)):
            key = _read_key(config, name)  # another process may have made it meanwhile
            if key is None:
                key = secrets.token_bytes(_KEY_BYTES)
                fsio.write_bytes(config / name, key, anchor=_anchor(config), mode=0o600)
    if key is not None:
        with _cache_lock:
            _cache[memo] = key
    return key


def audit_key(*, create: bool = True, config: Path | None = None) -> bytes | None:
    return secret(AUDIT_KEY, create=create, config=config)


def signing_key(*, create: bool = True, config: Path | None = None) -> object | None:
    """The Ed25519 private key that signs receipts (a ``cryptography`` object)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = secret(RECEIPT_KEY, create=create, config=config)
    return None if raw is None else Ed25519PrivateKey.from_private_bytes(raw)


def public_key_raw(*, config: Path | None = None) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = signing_key(config=config)
    assert isinstance(key, Ed25519PrivateKey)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_pem(*, config: Path | None = None) -> str:
    """This user's receipt-signing public key, PEM (to hand to whoever checks receipts)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PublicKey.from_public_bytes(public_key_raw(config=config))
    return public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def fingerprint(raw_public: bytes) -> str:
    return "SHA256:" + hashlib.sha256(raw_public).hexdigest()[:32]


def outside_head_path(trail: Path, *, config: Path | None = None) -> Path:
    """Where the head of the trail at ``trail`` is kept outside its workspace."""
    config = config or user_config_dir()
    real = os.path.realpath(trail)
    return config / HEADS_DIR / f"{hashlib.sha256(real.encode()).hexdigest()[:40]}.json"


def forget_cached_keys() -> None:
    """Drop keys held in memory (tests that switch config folders)."""
    with _cache_lock:
        _cache.clear()


__all__ = [
    "audit_key",
    "fingerprint",
    "forget_cached_keys",
    "outside_head_path",
    "public_key_pem",
    "public_key_raw",
    "secret",
    "signing_key",
    "user_config_dir",
]
