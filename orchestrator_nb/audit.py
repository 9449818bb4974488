"""``orchestrator_nb.audit.verify(path)``: check a workspace's audit trail.

The implementation lives in :mod:`orchestrator_nb.observe.audit`; this module is the short,
documented name.
"""

from __future__ import annotations

from .observe.audit import AUDIT_FILE, AuditTrail, VerifyResult, verify

__all__ = ["AUDIT_FILE", "AuditTrail", "VerifyResult", "verify"]
