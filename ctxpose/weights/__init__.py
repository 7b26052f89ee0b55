"""Released weights, pelvis estimates and limb statistics: registry, share-link resolvers, resumable verified
downloads and a trust-on-first-use lock file (``ctxpose fetch-weights``).

Entry points: :func:`ctxpose.weights.fetch.fetch`, :func:`~ctxpose.weights.fetch.import_from`,
:func:`~ctxpose.weights.fetch.verify_present`, :func:`~ctxpose.weights.fetch.status`,
:func:`~ctxpose.weights.fetch.keyed_predictions`; the registry in :mod:`ctxpose.weights.registry`.
"""
