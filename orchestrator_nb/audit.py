"""``orchestrator_nb.audit``: check a workspace's audit trail and its runs' receipts.

* ``verify(path)`` — the trail of a workspace (or a trail file): the first bad record and the
  kind of damage, or intact.
* ``receipt(run_id, workspace=".")`` — a finished run's signed receipt (a dict);
  ``verify_receipt(receipt_or_file, public_key=None)`` checks it offline.
* ``public_key_pem()`` — this user's receipt-signing public key, to hand to whoever checks.

The implementation lives in :mod:`orchestrator_nb.observe.audit` and
:mod:`orchestrator_nb.observe.receipts`; the shell commands are ``orchestrator-nb audit verify``
and ``orchestrator-nb audit receipt RUN_ID --verify``.
"""

from __future__ import annotations

import os
from typing import Any

from .observe.audit import AUDIT_FILE, AuditTrail, VerifyResult, verify
from .observe.audit_keys import public_key_pem, user_config_dir
from .observe.receipts import ReceiptCheck, verify_receipt
from .observe.receipts import load as _load


def receipt(run_id: str, workspace: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """The signed receipt of run ``run_id`` in ``workspace``."""
    return _load(workspace, run_id)


__all__ = [
    "AUDIT_FILE",
    "AuditTrail",
    "ReceiptCheck",
    "VerifyResult",
    "public_key_pem",
    "receipt",
    "user_config_dir",
    "verify",
    "verify_receipt",
]
