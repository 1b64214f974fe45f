"""What serves a model, for every process that does: the worker, ``ticketflow serve`` and the
memory commands (backfill, similar).

:mod:`~ticketflow.runtime.loading` loads the served model on its encoders with the vector
store of its vector space, once; :mod:`~ticketflow.runtime.reload` follows promotions (the
``model-updates`` announcements and the registry's ``current`` pointer) and hands a loaded,
verified model over at the caller's boundary: a batch in the worker, a request in serve.
Above :mod:`ticketflow.config` (it reads one ``Settings``), below the services.
"""
