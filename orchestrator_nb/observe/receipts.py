"""Signed run receipts: what a finished run did, checkable offline by anyone with the public key.

At the end of each run the audit subscriber writes ``.orchestrator/runs/<run>/receipt.json``::

    {"kind": "orchestrator-nb.receipt", "alg": "Ed25519", "key_id": "SHA256:…",
     "public_key": "<base64 raw key>", "signature": "<base64>", "payload": "<JSON text>"}

``payload`` is kept as the exact text that was signed (canonical JSON): the run id, workflow,
outcome, the SHA-256 of the task, each step (agent, ok, changed files, tokens, cost), the run's
changed files, total tokens and cost, and the seq and hash of the run's ``run_finished`` record
in the audit trail, which ties the receipt to the trail. Any change to the payload, or a
signature by another key, fails :func:`verify_receipt`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import fsio
from ..errors import WorkspaceError
from . import audit_keys
from .redact import redact_obj

KIND = "orchestrator-nb.receipt"
RECEIPT_FILE = "receipt.json"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sign(payload: dict[str, Any], *, config: Path | None = None) -> dict[str, Any]:
    """A receipt of ``payload`` (redacted first) signed with this user's receipt key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = audit_keys.signing_key(config=config)
    assert isinstance(key, Ed25519PrivateKey)
    text = _canonical(redact_obj(payload))
    raw = audit_keys.public_key_raw(config=config)
    return {
        "kind": KIND,
        "alg": "Ed25519",
        "key_id": audit_keys.fingerprint(raw),
        "public_key": base64.b64encode(raw).decode(),
        "signature": base64.b64encode(key.sign(text.encode())).decode(),
        "payload": text,
    }


def receipt_path(workspace: str | os.PathLike[str], run_id: str) -> Path:
    from ..workspace.state import safe_id

    root = Path(workspace)
    state = root if root.name == fsio.STATE_DIR_NAME else root / fsio.STATE_DIR_NAME
    return state / "runs" / safe_id(run_id) / RECEIPT_FILE


def write(state_dir: Path, run_id: str, receipt: dict[str, Any]) -> Path:
    path = receipt_path(state_dir, run_id)
    # Not redacted again: the payload is the exact signed text (it was redacted before signing).
    fsio.write_text(path, json.dumps(receipt, indent=1) + "\n", redact=False)
    return path


def load(workspace: str | os.PathLike[str], run_id: str) -> dict[str, Any]:
    """The receipt of run ``run_id`` in ``workspace``; a clear error when there is none."""
    path = receipt_path(workspace, run_id)
    try:
        data = json.loads(fsio.read_text(path))
    except FileNotFoundError:
        raise WorkspaceError(
            f"no receipt for run {run_id} in {path.parent.parent.parent.parent}",
            hint="receipts are written when a run finishes; check the run id "
            "(`ls .orchestrator/runs`) and the --workspace",
        ) from None
    except ValueError as exc:
        raise WorkspaceError(f"the receipt {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WorkspaceError(f"the receipt {path} is not a JSON object")
    return data


@dataclass(frozen=True)
class ReceiptCheck:
    """Whether a receipt's signature holds, by which key, and whether that key is trusted."""

    ok: bool
    reason: str
    key_id: str = ""
    trusted: bool = False
    payload: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return f"receipt {'valid' if self.ok else 'INVALID'}: {self.reason}"


def _public_bytes(given: bytes | str | os.PathLike[str]) -> bytes:
    """A raw Ed25519 public key from raw bytes, base64, PEM text, or a PEM file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    data: bytes
    if isinstance(given, bytes):
        data = given
    elif isinstance(given, str) and "BEGIN PUBLIC KEY" in given:
        data = given.encode()
    elif isinstance(given, str) and not os.path.exists(given):
        data = base64.b64decode(given)
    else:
        data = Path(given).read_bytes()
    if b"BEGIN PUBLIC KEY" in data:
        key = load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    if len(data) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return data


def verify_receipt(
    receipt: dict[str, Any] | str | os.PathLike[str],
    *,
    public_key: bytes | str | os.PathLike[str] | None = None,
    config: Path | None = None,
) -> ReceiptCheck:
    """Check a receipt (a dict or its file) offline.

    The signature must hold for the payload as written. The signing key must be ``public_key``
    when given, else this user's own key when there is one; with neither, a valid signature is
    reported as not ``trusted``.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(receipt, dict):
        try:
            receipt = json.loads(Path(receipt).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            return ReceiptCheck(False, f"cannot read the receipt: {exc}")
    if not isinstance(receipt, dict) or receipt.get("kind") != KIND:
        return ReceiptCheck(False, "not an orchestrator-nb receipt")
    try:
        raw = base64.b64decode(str(receipt["public_key"]), validate=True)
        signature = base64.b64decode(str(receipt["signature"]), validate=True)
        text = str(receipt["payload"])
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, text.encode())
        payload = json.loads(text)
    except (KeyError, ValueError, binascii.Error) as exc:
        return ReceiptCheck(False, f"malformed receipt: {exc}")
    except InvalidSignature:
        return ReceiptCheck(False, "the signature does not match: the receipt was changed")
    key_id = audit_keys.fingerprint(raw)
    if public_key is not None:
        try:
            trusted = _public_bytes(public_key)
        except (OSError, ValueError) as exc:
            return ReceiptCheck(False, f"unusable public key: {exc}", key_id)
        if trusted != raw:
            return ReceiptCheck(False, f"signed by {key_id}, not by the given key", key_id)
        return ReceiptCheck(True, f"signed by the given key {key_id}", key_id, True, payload)
    if audit_keys.secret(audit_keys.RECEIPT_KEY, create=False, config=config) is not None:
        mine = audit_keys.public_key_raw(config=config)
        if mine != raw:
            why = f"signed by {key_id}, not by this user's key {audit_keys.fingerprint(mine)}"
            return ReceiptCheck(False, why + " (pass the signer's public key)", key_id)
        return ReceiptCheck(True, f"signed by this user's key {key_id}", key_id, True, payload)
    why = f"the signature holds, by key {key_id}; pass that key's owner's public key to trust it"
    return ReceiptCheck(True, why, key_id, False, payload)


__all__ = ["KIND", "RECEIPT_FILE", "ReceiptCheck", "load", "receipt_path", "sign", "verify_receipt"]
