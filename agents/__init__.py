"""The agents the directory declares, as Celery tasks, and the one hop they share."""

from agents._hop import HopOutcome
from agents._perform import perform_hop
from agents._runtime import AgentRuntime

__all__ = ["AgentRuntime", "HopOutcome", "perform_hop"]
