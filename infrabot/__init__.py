"""The composition root: the command line, the assembled system and the tools built on it.

:mod:`orchestrator` is the core library (identity rules, the authorization server, audit,
registry, run log, workflows, the action catalogue); :mod:`agents` (the Celery tasks) and
:mod:`mock_services` (the services that enforce delegation) build on it. This package wires the
three together: the Celery app with the agents' tasks (:mod:`infrabot.celery_app`), the stack of
servers (:mod:`infrabot.stack`, :mod:`infrabot.system`), the ``infrabot`` command line
(:mod:`infrabot.cli`), the demo, scenarios and the pytest plugin. Nothing below imports it
(docs/architecture.md).
"""
