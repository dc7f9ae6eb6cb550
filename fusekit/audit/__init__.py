"""`fusekit audit`: score every kept face out of sample and queue likely label errors for review.

    from fusekit.audit import AuditConfig, run_audit
"""

from __future__ import annotations

from fusekit import lazy

__all__, __getattr__ = lazy.exports(__name__, {
    "AuditConfig": "fusekit.audit.stage",
    "AuditReport": "fusekit.audit.stage",
    "run_audit": "fusekit.audit.stage",
    "render_report": "fusekit.audit.stage",
})
