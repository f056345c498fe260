"""Chain tests in your own pytest suite.

Installing ``infrabot-chains`` registers a pytest plugin (entry point ``pytest11``:
:mod:`infrabot.testing.plugin`) with the fixture ``infrabot_system``: an embedded system
(servers on free ports, in-memory broker, a temporary state directory), optionally on your own
workflows directory (``--infrabot-workflows DIR`` or the ``infrabot_workflows`` ini option).

    from infrabot.testing import assert_allowed, assert_chain, assert_denied

    def test_sam_deploys(infrabot_system):
        run = infrabot_system.deploy(user="sam", environment="prod")
        assert run.status == "succeeded"
        assert_allowed(run, agent="agent:argocd", action="aws.ec2.create_tags")
"""

from infrabot.testing._asserts import assert_allowed, assert_chain, assert_denied
from infrabot.testing._system import ChainRun, EmbeddedSystem, embedded_system

__all__ = ["ChainRun", "EmbeddedSystem", "assert_allowed", "assert_chain", "assert_denied",
           "embedded_system"]
