"""`fusekit review`: a local web page on which a person settles what the audit queued (the `reviews` table).

    from fusekit.review import make_app, serve
"""

from __future__ import annotations

from fusekit import lazy

__all__, __getattr__ = lazy.exports(__name__, {
    "make_app": "fusekit.review.server",
    "serve": "fusekit.review.server",
})
